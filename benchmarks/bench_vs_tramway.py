"""Throughput against TRamWAy 0.7's own grad1 and gradn, same tessellation, values, options.

TRamWAy is called per bin exactly as its ``gradient_map`` calls it (see
tests/tramway_reference.py). Targets: grad1 >= 1000x TRamWAy at 2*10^4 bins (2D,
selection_angle=0.9); gradn >= 50x TRamWAy's gradn (ours computes the corrected derivative).

    python benchmarks/bench_vs_tramway.py [--quick]
"""

from __future__ import annotations

import time
import warnings

import _common as C
import numpy as np

from xtramgrad import kernels

C.sys.path.insert(0, str(C.ROOT / "tests"))
import tramway_reference as R  # noqa: E402


def tramway_seconds(centers, table, y, method):
    """Time of TRamWAy's per-bin loop (the Distributed is built beforehand)."""
    dist = R.build_distributed(centers, table)
    d = centers.shape[1]
    if method == "grad1":

        def call(dist, i, X, reverse_index):
            return dist.grad(i, X, reverse_index, selection_angle=0.9)

    else:
        from tramway.inference.gradient import gradn

        def call(dist, i, X, reverse_index):
            return gradn(dist, i, X, reverse_index)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        out = R._run_per_bin(dist, y, d, call)
        return time.perf_counter() - t0, out


def main() -> None:
    args = C.parser(__doc__.splitlines()[0]).parse_args()
    sizes = {2: 1_000, 3: 500} if args.quick else {2: 20_000, 3: 10_000}
    C.header("bench_vs_tramway: throughput against TRamWAy 0.7 (per-bin Python calls)")
    backends = ["numba", "numpy"] if C.have_numba() else ["numpy"]
    sel = kernels.Selection("cone", 0.9)
    for d, n in sizes.items():
        ds = C.voronoi_problem(n, d)
        table = ds.neighbours.values
        print(f"\n## {d}D Voronoi, {n} bins, mean degree {(table >= 0).sum(1).mean():.2f}")
        for method in ("grad1", "gradn"):
            case(d, n, ds, method, backends, sel, args.repeat)


def case(d, n, ds, method, backends, sel, repeat):
    centers, table, y = ds.center.values, ds.neighbours.values, ds.D.values
    t_tw, ref = tramway_seconds(centers, table, y, method)
    cands = {
        f"{method} {be}": (
            lambda m=method, b=be: kernels.local_gradient(
                y, centers, table, selection=sel, method=m, backend=b
            )
        )
        for be in backends
    }
    if method == "grad1":
        cands["ds.tram.grad (grad1)"] = lambda: ds.tram.grad("D", selection_angle=0.9)
    else:
        cands["ds.tram.grad (gradn)"] = lambda: ds.tram.grad("D", method="gradn")
    times = C.best_times(cands, repeat)
    print(f"TRamWAy {method:5s}: {n / t_tw:12.0f} bins/s")
    for k, t in times.items():
        print(f"{k:22s}: {n / t:12.0f} bins/s")
    if method == "grad1":
        ours = kernels.local_gradient(y, centers, table, selection=sel)
        ok = ~np.isnan(ref)
        err = np.max(np.abs(ours[ok] - ref[ok]) / np.maximum(np.abs(ref[ok]), 1e-300))
        same_nan = bool(np.array_equal(np.isnan(ours), np.isnan(ref)))
        print(f"agreement with TRamWAy grad1: max rel diff {err:.2e}, "
              f"same NaNs {same_nan}")
    target = ">= 1000" if method == "grad1" and d == 2 else (
        ">= 50" if method == "gradn" else ""
    )
    for k, t in times.items():
        C.ratio(f"{d}D {k} throughput / TRamWAy {method}", t_tw / t, target)


if __name__ == "__main__":
    main()
