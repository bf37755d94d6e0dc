"""Many fields through the reusable operator: per-field cost against the gather floor.

``G = ds.tram.grad_operator()`` (scipy csr, shape (n*d, n)) is built once; 100 fields on
10^6 bins are then one sparse product ``G @ Y`` with ``Y`` (n, 100). Target: each extra field
<= 1x the gather floor of one field.

    python benchmarks/bench_many_fields.py [--quick]
"""

from __future__ import annotations

import time

import _common as C
import numpy as np


def main() -> None:
    args = C.parser(__doc__.splitlines()[0]).parse_args()
    n = 20_000 if args.quick else 1_000_000
    n_fields = 100
    C.header(f"bench_many_fields: {n_fields} fields on {n} bins through the operator")
    for name, make in (("grid8-2d", C.grid_problem), ("voronoi-2d", C.voronoi_problem)):
        ds = make(n)
        n_bins = ds.sizes["bin"]
        t0 = time.perf_counter()
        G = ds.tram.grad_operator()
        t_build = time.perf_counter() - t0
        rng = np.random.default_rng(1)
        Y = ds.D.values[:, None] * (1.0 + rng.random(n_fields))[None, :]  # (n, fields)
        cands = C.floors(ds)
        cands["G @ Y (100 fields)"] = lambda G=G, Y=Y: G @ Y
        cands["grad, 1 field (default backend)"] = lambda ds=ds: ds.tram.grad("D")
        times = C.best_times(cands, max(2, args.repeat // 2))
        print(f"\n## {name}: {n_bins} bins, operator {G.shape} with {G.nnz} stored entries, "
              f"built in {t_build * 1e3:.0f} ms")
        for k, t in times.items():
            print(f"{k:34s} {t * 1e3:9.1f} ms")
        g = (G @ ds.D.values).reshape(n_bins, -1)
        ref = ds.tram.grad("D").values
        ok = ~np.isnan(ref)
        err = np.max(np.abs(g[ok] - ref[ok])) / np.max(np.abs(ref[ok]))
        print(f"operator == grad: max diff / max |grad| = {err:.1e}")
        per_field = times["G @ Y (100 fields)"] / n_fields
        C.ratio(f"{name} per-field operator cost / floor", per_field / times["floor"], "<= 1")
        C.ratio(f"{name} per-field operator cost / edge floor", per_field / times["edge floor"])
        C.ratio(f"{name} operator build / floor", t_build / times["floor"])


if __name__ == "__main__":
    main()
