"""Speed of the cell geometry (face areas, volumes) against scipy.spatial.Voronoi's own time.

``voronoi_geometry`` runs qhull twice (all points, then the cells that reach the box with
their mirror images) and measures every ridge; the ratio to one ``scipy.spatial.Voronoi``
call of the same points says what the exact clipping costs on top of the diagram itself.
Uniform random points in the unit square / cube, the Delaunay table of
``xtramgrad.voronoi`` (built once, not timed), the default bounds (the points' bounding
box). ``grid_geometry`` is timed against building the grid itself
(``xtramgrad.grid(shape, geometry=False, layout="padded")``).

    python benchmarks/bench_geometry.py [--quick] [--repeat N] [--large]

Targets (issue 13 helper brief): 10^5 points in 2D in a few seconds, in 3D within ~30 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import _common as C
import numpy as np
from scipy.spatial import Voronoi

import xtramgrad
from xtramgrad.topology.geometry import grid_geometry, voronoi_geometry


def timed(cands: dict[str, Callable[[], Any]], repeat: int, warm: bool) -> dict[str, float]:
    """Best wall time of each candidate over interleaved rounds (warm-up for small sizes)."""
    if warm:
        for f in cands.values():
            f()
    best = dict.fromkeys(cands, np.inf)
    for _ in range(repeat):
        for name, f in cands.items():
            t0 = time.perf_counter()
            f()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def voronoi_series(d: int, sizes: list[int], repeat: int) -> None:
    print(f"\n## Voronoi cells clipped to the bounding box, {d}D")
    print(f"{'bins':>9s} {'scipy Voronoi s':>16s} {'voronoi_geometry s':>19s} {'ratio':>6s} "
          f"{'us/bin':>7s} {'|sum V / box - 1|':>18s}")
    for n in sizes:
        pts = np.random.default_rng(n + d).random((n, d))
        table = xtramgrad.voronoi(pts).neighbours.values
        rounds = repeat if n <= 10**4 else min(repeat, 2) if n <= 10**5 else 1
        times = timed(
            {
                "scipy": lambda p=pts: Voronoi(p),
                "ours": lambda p=pts, t=table: voronoi_geometry(p, t),
            },
            rounds,
            warm=n <= 10**4,
        )
        _, vol = voronoi_geometry(pts, table)
        box = float(np.prod(pts.max(0) - pts.min(0)))
        ratio = times["ours"] / times["scipy"]
        print(f"{n:9d} {times['scipy']:16.3f} {times['ours']:19.3f} {ratio:6.2f} "
              f"{times['ours'] / n * 1e6:7.1f} {abs(vol.sum() / box - 1):18.1e}")
        C.ratio(f"voronoi_geometry {d}d n={n:.0e} / scipy Voronoi", ratio)
        del pts, table, vol


def grid_series(sizes: list[tuple[int, ...]], repeat: int) -> None:
    print("\n## grid_geometry (inference connectivity) against building the grid's table")
    print(f"{'shape':>16s} {'grid() s':>9s} {'grid_geometry s':>16s} {'ratio':>6s}")
    for shape in sizes:
        table = xtramgrad.grid(shape, geometry=False, layout="padded").neighbours.values
        times = timed(
            {
                "grid": lambda s=shape: xtramgrad.grid(s, geometry=False, layout="padded"),
                "ours": lambda s=shape, t=table: grid_geometry(s, 1.0, t),
            },
            repeat,
            warm=True,
        )
        ratio = times["ours"] / times["grid"]
        print(f"{str(shape):>16s} {times['grid']:9.3f} {times['ours']:16.3f} {ratio:6.2f}")
        C.ratio(f"grid_geometry {len(shape)}d {int(np.prod(shape)):.0e} bins / grid()", ratio)


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--large", action="store_true", help="add 10^6 points in 3D (minutes, GBs)")
    args = p.parse_args()
    C.header("bench_geometry: face areas and volumes against scipy.spatial.Voronoi")
    if args.quick:
        voronoi_series(2, [10**4], args.repeat)
        voronoi_series(3, [2000], args.repeat)
        grid_series([(100, 100)], args.repeat)
        return
    voronoi_series(2, [10**4, 10**5, 10**6], args.repeat)
    voronoi_series(3, [10**4, 10**5] + ([10**6] if args.large else []), args.repeat)
    grid_series([(1000, 1000), (100, 100, 100)], args.repeat)


if __name__ == "__main__":
    main()
