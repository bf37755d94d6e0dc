"""Time per bin from 10^4 to 10^7 bins (grad1, jittered 8-neighbour grid), with the floor.

Target: time per bin flat within 1.5x over the range. A Voronoi series (random order, up to
10^6 bins: its Delaunay construction dominates beyond) shows the effect of locality: the
floor itself grows once the field no longer fits in cache (see ds.tram.sort()).

    python benchmarks/bench_scaling.py [--quick]
"""

from __future__ import annotations

import _common as C

from xtramgrad import kernels


def series(name, make, sizes, repeat, backend):
    sel = kernels.Selection("cone", 0.9)
    per_bin = {}
    print(f"\n## {name}, grad1 ({backend})")
    print(f"{'bins':>10s} {'ns/bin':>9s} {'floor ns/bin':>13s} {'ratio':>7s}")
    for n in sizes:
        ds = make(n)
        y, c, t = ds.D.values, ds.center.values, ds.neighbours.values
        cands = {"floor": C.floors(ds)["floor"]}
        cands["grad1"] = lambda y=y, c=c, t=t: kernels.local_gradient(
            y, c, t, selection=sel, backend=backend
        )
        times = C.best_times(cands, repeat if n <= 10**6 else 2)
        nb = ds.sizes["bin"]
        per_bin[nb] = times["grad1"] / nb
        print(
            f"{nb:10d} {per_bin[nb] * 1e9:9.1f} {times['floor'] / nb * 1e9:13.1f} "
            f"{times['grad1'] / times['floor']:7.2f}"
        )
        del ds, y, c, t, cands
    values = list(per_bin.values())
    return max(values) / min(values)


def main() -> None:
    args = C.parser(__doc__.splitlines()[0]).parse_args()
    C.header("bench_scaling: time per bin against problem size")
    backend = "numba" if C.have_numba() else "numpy"
    grid_sizes = [10**4, 10**5] if args.quick else [10**4, 10**5, 10**6, 10**7]
    vor_sizes = [10**4, 3 * 10**4] if args.quick else [10**4, 10**5, 10**6]
    spread = series("grid8-2d (jittered)", C.grid_problem, grid_sizes, args.repeat, backend)
    C.ratio(f"grid8-2d grad1 {backend} max/min time per bin", spread, "<= 1.5")
    spread = series("voronoi-2d (random order)", C.voronoi_problem, vor_sizes, args.repeat,
                    backend)
    C.ratio(f"voronoi-2d grad1 {backend} max/min time per bin", spread)

    def sorted_voronoi(n: int) -> object:
        return C.voronoi_problem(n).tram.sort()  # Hilbert order: what the docs recommend

    spread = series("voronoi-2d (sorted with ds.tram.sort())", sorted_voronoi, vor_sizes,
                    args.repeat, backend)
    C.ratio(f"voronoi-2d sorted grad1 {backend} max/min time per bin", spread, "<= 1.5")


if __name__ == "__main__":
    main()
