"""grad1 (and gradn) at 10^6 bins against the gather floor.

The floor is gathering the neighbours' values and centers once over the neighbour table
with ``np.take``: any gradient must at least read those. Targets: grad1 <= 4x the floor
(goal 2x), on a random 2D Voronoi tessellation and on an 8-neighbour grid.

    python benchmarks/bench_floor.py [--quick]
"""

from __future__ import annotations

import _common as C

from xtramgrad import kernels


def main() -> None:
    args = C.parser(__doc__.splitlines()[0]).parse_args()
    n = 5_000 if args.quick else 1_000_000
    C.header(f"bench_floor: grad1 / gradn against the gather floor, {n} bins")
    backends = ["numba", "numpy"] if C.have_numba() else ["numpy"]
    for name, make in (("voronoi-2d", C.voronoi_problem), ("grid8-2d", C.grid_problem)):
        case(name, make(n), backends, args.repeat)


def case(name, ds, backends, repeat):
    table = ds.neighbours.values
    deg = (table >= 0).sum(axis=1)
    print(
        f"\n## {name}: {ds.sizes['bin']} bins, table width {table.shape[1]}, "
        f"mean degree {deg.mean():.2f}"
    )
    y, centers = ds.D.values, ds.center.values
    sel = kernels.Selection("cone", 0.9)
    cands = C.floors(ds)
    for be in backends:
        for method in ("grad1", "gradn"):
            cands[f"{method} {be}"] = (
                lambda m=method, b=be: kernels.local_gradient(
                    y, centers, table, selection=sel, method=m, backend=b
                )
            )
    cands["ds.tram.grad (grad1, default backend)"] = lambda: ds.tram.grad("D")
    times = C.best_times(cands, repeat)
    for k, t in times.items():
        print(f"{k:40s} {t * 1e3:9.1f} ms")
    for k in times:
        if k in ("floor", "edge floor"):
            continue
        target = "<= 4, goal 2" if k.startswith("grad1") or k.startswith("ds.") else ""
        C.ratio(f"{name} {k} / floor", times[k] / times["floor"], target)
    best = min(times[k] for k in times if k.startswith("grad1"))
    C.ratio(f"{name} best grad1 / edge floor", best / times["edge floor"])


if __name__ == "__main__":
    main()
