"""Shared helpers of the benchmark scripts (not a benchmark itself).

Absolute times on shared machines are noise: every script measures the quantities it
compares side by side, in one process, interleaving the candidates (A B A B ...) and keeping
each one's best time, and prints ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of seconds")
    p.add_argument("--repeat", type=int, default=5, help="timings per candidate (best kept)")
    return p


def machine() -> str:
    """One line naming the machine: CPU model, cores, Python, numpy, numba."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import numba

        nb = f"numba {numba.__version__}"
    except ImportError:
        nb = "numba not installed"
    return (
        f"{cpu}, nproc={os.cpu_count()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, {nb}"
    )


def header(title: str) -> None:
    print(f"# {title}")
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} | {machine()}")


def best_times(cands: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Best wall time of each candidate over ``repeat`` interleaved rounds (after a warm-up)."""
    for f in cands.values():
        f()
    best = dict.fromkeys(cands, np.inf)
    for _ in range(repeat):
        for name, f in cands.items():
            t0 = time.perf_counter()
            f()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def ratio(label: str, value: float, target: str = "") -> None:
    """Print a ratio line: ``RATIO <label> = <value>x [target ...]`` (parsed by the smoke test)."""
    suffix = f"   (target {target})" if target else ""
    print(f"RATIO {label} = {value:.3g}x{suffix}")


def grid_problem(n: int, d: int = 2, jitter: float = 0.2, seed: int = 0) -> Any:
    """A regular grid of about ``n`` bins with TRamWAy's inference adjacency (8 / 18
    neighbours), its centers jittered by ``jitter`` spacings (no exact ties), and a field."""
    import xtramgrad

    side = max(2, round(n ** (1.0 / d)))
    ds = xtramgrad.grid((side,) * d)
    rng = np.random.default_rng(seed)
    center = ds.center.values + rng.uniform(-jitter, jitter, ds.center.shape)
    ds["center"] = (("bin", "space"), center)
    ds["D"] = ("bin", field(center))
    return ds


def voronoi_problem(n: int, d: int = 2, seed: int = 0) -> Any:
    """Random points in the unit square / cube, Voronoi (Delaunay) adjacency, random order."""
    import xtramgrad

    pts = np.random.default_rng(seed).random((n, d))
    ds = xtramgrad.voronoi(pts)
    ds["D"] = ("bin", field(pts))
    return ds


def field(center: np.ndarray) -> np.ndarray:
    x = center[:, 0]
    y = center[:, -1]
    return 1.0 + np.sin(3.0 * x) + 0.5 * y * y


def floors(ds: Any) -> dict[str, Callable[[], Any]]:
    """The gather floor: the neighbours' values and centers taken once with ``np.take``.

    ``floor`` runs over the padded neighbour table and allocates its result, as the issue
    defines it; ``edge floor`` runs over the existing edges only, into preallocated arrays
    (stricter: no page faults, no padding, which matters for Voronoi tables padded to the
    maximum degree).
    """
    table = ds.neighbours.values
    center = ds.center.values
    y = ds.D.values
    safe = np.where(table >= 0, table, 0)
    dst = table[table >= 0]
    y_out = np.empty(dst.shape)
    c_out = np.empty((len(dst), center.shape[1]))

    def floor() -> Any:
        return np.take(y, safe), np.take(center, safe, axis=0)

    def edge_floor() -> Any:
        return np.take(y, dst, out=y_out), np.take(center, dst, axis=0, out=c_out)

    return {"floor": floor, "edge floor": edge_floor}


def have_numba() -> bool:
    from xtramgrad import kernels

    return kernels.numba_available()
