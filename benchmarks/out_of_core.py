"""Out-of-core gradients through the natural zarr path, at 10^6, 10^7 and 10^8 bins.

For each size, a jittered 8-neighbour lattice (``xtramgrad.grid(..., chunks=)`` with each
center moved by up to 10% of the spacing, and a smooth field ``D``) is written to a zarr
store with the plain ``Dataset.to_zarr`` (no locality plan in the store: what a user who
writes the public schema by hand gets). Then, each in a fresh child process whose peak
resident memory is read from the kernel (``os.wait4``):

* ``grad``: ``xr.open_zarr(store)``, ``ds.tram.grad("D")``, then the plain
  ``.to_zarr(out)`` of the result (without a plan, each chunk's reach is guessed from a
  few sampled chunks' rows, and rows reaching further read what they need in their task;
  logged);
* ``floor``: the I/O floor of the same job: open the same store, read the centers, the
  table and ``D`` chunk by chunk and write an output of the gradient's size (a reduction of
  what was read, so that nothing can be skipped), in the same dask scheduler;
* ``check``: a few lattice rows of the result against the eager path on those rows' data.

Targets (issue 11): peak resident memory <= 2 GB at every size, time per bin at 10^8 within
1.5x of 10^7, and wall time <= 2x the I/O floor measured in the same run.

Usage::

    python benchmarks/out_of_core.py                  # 1e6, 1e7 and 1e8 (needs ~12 GB disk)
    python benchmarks/out_of_core.py --sizes 1e6 1e7  # a subset
    python benchmarks/out_of_core.py --chunk 262144 --workdir /tmp/ooc --keep --repeat 5

Each child (floor and gradient) runs ``--repeat`` times, alternating, in fresh processes;
the fastest of each is kept (these machines are shared: single runs vary by 30%) and the
largest peak memory.

The stores go to ``benchmarks/_work`` (git-ignored) and are deleted at the end unless
``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {
    10**6: (1000, 1000),
    10**7: (2500, 4000),
    10**8: (10000, 10000),
}
JITTER = 0.1  # fraction of the spacing


# --------------------------------------------------------------------------- children


def _jittered_lattice(shape: tuple[int, int], chunk: int):
    import dask.array as da
    import numpy as np

    import xtramgrad

    ds = xtramgrad.grid(shape, spacing=1.0, chunks=chunk)

    def jitter(center, block_info=None):
        lo = block_info[0]["array-location"][0][0]
        rng = np.random.default_rng([20240601, lo])
        return center + rng.uniform(-JITTER, JITTER, size=center.shape)

    center = da.map_blocks(jitter, ds.center.data, dtype=np.float64)
    ds["center"] = (("bin", "space"), center, ds.center.attrs)
    x, y = ds.center.sel(space="x"), ds.center.sel(space="y")
    ds["D"] = 1.0 + 0.5 * np.sin(x / 40.0) * np.cos(y / 70.0) + 1e-4 * x
    ds["D"].attrs["units"] = "um2/s"
    return ds


def child_write(n: int, chunk: int, store: str) -> dict:
    ds = _jittered_lattice(SHAPES[n], chunk)
    # as if written by hand in the public schema: no locality hint (the grid declares its band)
    ds.neighbours.attrs.pop("xtramgrad_halo", None)
    write = ds.to_zarr(store, mode="w", compute=False)
    tasks = len(write.__dask_graph__())
    t0 = time.perf_counter()
    write.compute()
    return {"wall": time.perf_counter() - t0, "tasks": tasks}


def child_grad(n: int, store: str, out: str) -> dict:
    import logging

    import dask.array  # noqa: F401  (imported before the clock, as in the floor's child)
    import xarray as xr

    import xtramgrad  # noqa: F401  (the accessor)

    logging.basicConfig(level=logging.INFO, format="# %(message)s")
    t0 = time.perf_counter()
    ds = xr.open_zarr(store)
    g = ds.tram.grad("D")  # builds the graph (the reach guessed from a sample of the table)
    build = time.perf_counter() - t0
    tasks = len(g.data.__dask_graph__())
    t1 = time.perf_counter()
    g.to_dataset(name="grad_D").to_zarr(out, mode="w")  # what every xarray user writes
    end = time.perf_counter()
    return {"wall": end - t0, "compute": end - t1, "build": build, "tasks": tasks,
            "chunks": len(g.chunks[0])}


def child_floor(n: int, store: str, out: str) -> dict:
    """Read centers, table and D chunk by chunk; write an array of the gradient's shape."""
    import dask.array as da
    import xarray as xr

    t0 = time.perf_counter()
    ds = xr.open_zarr(store)
    c = ds.center.data.rechunk({1: -1})
    t = ds.neighbours.data.rechunk({0: c.chunks[0], 1: -1})
    y = ds.D.data.rechunk({0: c.chunks[0]})[:, None]

    def touch(c, t, y):
        return c + (t.sum(axis=1, keepdims=True) + y) * 1e-300

    res = da.map_blocks(touch, c, t, y, dtype=c.dtype, chunks=c.chunks)
    outds = xr.Dataset({"grad_D": (("bin", "space"), res)})
    outds.to_zarr(out, mode="w")
    return {"wall": time.perf_counter() - t0}


def child_check(n: int, store: str, out: str, rows: int = 3) -> dict:
    """Check a few lattice rows of the result against the eager path on those rows' data."""
    import numpy as np
    import xarray as xr

    import xtramgrad

    ny, nx = SHAPES[n]
    ds = xr.open_zarr(store)
    g = xr.open_zarr(out).grad_D
    mid = ny // 2
    lo, hi = (mid - 2) * nx, (mid + rows + 2) * nx  # the rows plus their full neighbourhood
    sub = ds.isel(bin=slice(lo, hi)).load()
    table = sub.neighbours.values - lo
    table = np.where((sub.neighbours.values >= lo) & (sub.neighbours.values < hi), table, -1)
    local = xtramgrad.from_neighbours(sub.center.values, table, D=sub.D.values)
    eager = local.tram.grad("D").values[2 * nx : (2 + rows) * nx]
    got = g.isel(bin=slice(lo + 2 * nx, lo + (2 + rows) * nx)).values
    return {"max_abs_diff": float(np.max(np.abs(got - eager))), "bins_checked": rows * nx}


# --------------------------------------------------------------------------- parent


def run_child(args: list[str], required: bool = True) -> tuple[dict, float]:
    """Run ``this_script --child ...``; return its JSON result and peak RSS in bytes."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        if not required:
            return {}, usage.ru_maxrss * 1024.0
        raise SystemExit(f"child {args} failed with exit code {proc.returncode}")
    return json.loads(output.strip().splitlines()[-1]), usage.ru_maxrss * 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7, 1e8])
    parser.add_argument("--chunk", type=int, default=2**18, help="bins per chunk")
    parser.add_argument(
        "--workdir", default=str(Path(__file__).resolve().parent / "_work"),
        help="where the zarr stores go (default benchmarks/_work, git-ignored)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the stores")
    parser.add_argument(
        "--planned", action="store_true",
        help="also time the gradient after `xtramgrad plan STORE` (the exact reach stored)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3,
        help="runs of the floor and of the gradient, alternating (fastest kept; peak RSS: "
             "the largest)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import warnings

        warnings.filterwarnings("ignore", message=".*Zarr V3 specification.*")
        warnings.filterwarnings("ignore", message="Consolidated metadata.*")
        kind, n, *rest = args.child
        func = {"write": child_write, "grad": child_grad, "floor": child_floor,
                "check": child_check}[kind]
        extra = [int(rest[0]), *rest[1:]] if kind == "write" else rest
        print(json.dumps(func(int(n), *extra)))
        return
    import dask
    import numpy as np
    import xarray as xr

    sizes = [int(s) for s in args.sizes]
    for n in sizes:
        if n not in SHAPES:
            raise SystemExit(f"size {n}: choose among {sorted(SHAPES)}")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"out-of-core gradient, zarr -> zarr; jittered 8-neighbour lattice, {args.chunk} bins "
        f"per chunk; {os.cpu_count()} cores; numpy {np.__version__}, dask {dask.__version__}, "
        f"xarray {xr.__version__}",
        flush=True,
    )
    header = (
        f"{'bins':>11} {'chunks':>6} {'tasks':>7} {'write s':>8} {'floor s':>8} "
        f"{'floor GB':>8} {'grad s':>8} {'grad GB':>8} {'us/bin':>7} {'x floor':>7} "
        f"{'check':>9}"
    )
    rows = {}
    print(header, flush=True)
    for n in sizes:
        store, out = str(work / f"lattice_{n}.zarr"), str(work / f"grad_{n}.zarr")
        floor_out = str(work / f"floor_{n}.zarr")
        for path in (store, out, floor_out):
            shutil.rmtree(path, ignore_errors=True)
        w, w_rss = run_child(["write", str(n), str(args.chunk), store])
        f, g, f_rss, g_rss = None, None, 0.0, 0.0
        for _ in range(args.repeat):  # side by side, alternating; the fastest of each kept
            fi, fi_rss = run_child(["floor", str(n), store, floor_out])
            gi, gi_rss = run_child(["grad", str(n), store, out])
            f = fi if f is None or fi["wall"] < f["wall"] else f
            g = gi if g is None or gi["wall"] < g["wall"] else g
            f_rss, g_rss = max(f_rss, fi_rss), max(g_rss, gi_rss)
        assert f is not None and g is not None
        c, _ = run_child(["check", str(n), store, out], required=False)
        planned = None  # the same gradient once the plan is stored (`xtramgrad plan STORE`)
        if args.planned:
            subprocess.run([sys.executable, "-m", "xtramgrad", "plan", store], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(args.repeat):
                pi, _ = run_child(["grad", str(n), store, out])
                planned = pi if planned is None or pi["wall"] < planned["wall"] else planned
        per_bin = g["wall"] / n * 1e6
        rows[n] = {"write": w, "grad": g, "floor": f, "write_rss": w_rss, "grad_rss": g_rss,
                   "floor_rss": f_rss, "per_bin_us": per_bin, "check": c, "planned": planned}
        print(
            f"{n:>11,} {g['chunks']:>6} {g['tasks']:>7} {w['wall']:>8.1f} {f['wall']:>8.1f} "
            f"{f_rss / 1e9:>8.2f} {g['wall']:>8.1f} {g_rss / 1e9:>8.2f} {per_bin:>7.3f} "
            f"{g['wall'] / f['wall']:>7.2f} {c.get('max_abs_diff', float('nan')):>9.1e}",
            flush=True,
        )
        if not args.keep:
            for path in (store, out, floor_out):
                shutil.rmtree(path, ignore_errors=True)
    print()
    print("grad s: wall time of xr.open_zarr -> ds.tram.grad -> .to_zarr (no plan stored);")
    print("floor s: the same store's centers, table and D read, an output of the same")
    print("size written; GB: peak resident memory of that child process; check: max |chunked")
    print("- eager| on 3 lattice rows.")
    peak = max(max(r["write_rss"], r["grad_rss"]) for r in rows.values())
    print(f"RATIO peak resident memory / 2 GB = {peak / 2e9:.2f}x (target <= 1)")
    for n in sorted(rows):
        print(f"RATIO wall / I/O floor at {n:.0e} = "
              f"{rows[n]['grad']['wall'] / rows[n]['floor']['wall']:.2f}x (target <= 2)")
    for n in sorted(rows):
        if rows[n]["planned"] is not None:
            print(f"(with the plan stored: {rows[n]['planned']['wall']:.1f} s at {n:.0e}, "
                  f"{rows[n]['planned']['wall'] / rows[n]['floor']['wall']:.2f}x the floor)")
    ordered = sorted(rows)
    for a, b in zip(ordered, ordered[1:], strict=False):
        ratio = rows[b]["per_bin_us"] / rows[a]["per_bin_us"]
        print(f"RATIO time per bin {b:.0e} / {a:.0e} = {ratio:.2f}x (target <= 1.5)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1, default=float))
    if not args.keep and not any(work.iterdir()):
        work.rmdir()


if __name__ == "__main__":
    main()
