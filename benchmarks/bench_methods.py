"""Speed of every gradient method through ``ds.tram.grad``, eager and chunked, at 10^6 bins.

A random 2D Voronoi tessellation (Delaunay neighbours), sorted along a space-filling curve
(``ds.tram.sort()``: what ``xtramgrad sort`` does to a store), with a smooth field. Measured
side by side in one process, interleaved, best of ``--repeat``:

* eager: each method through ``ds.tram.grad`` on numpy data, ``local`` with a fixed
  bandwidth of 2 spacings (the automatic choice costs a GCV search on top, reported apart);
* chunked: the same on the Dataset chunked along ``bin`` (``--chunk`` bins per chunk),
  computed with dask's threaded scheduler.

Targets (issue 12): lsq <= 2x grad1's time, lsq2 <= 8x, local (2 spacings) <= 15x; every
method's chunked path within 2x of its eager one on a sorted mesh.

    python benchmarks/bench_methods.py [--quick] [--repeat N] [--chunk 131072]
"""

from __future__ import annotations

import _common as C
import numpy as np

import xtramgrad

METHODS = {
    "grad1": {},
    "gradn": {},
    "lsq": {"method": "lsq"},
    "lsq2": {"method": "lsq2"},
    "local": {"method": "local", "degree": 1},
}
TARGETS = {"lsq": 2.0, "lsq2": 8.0, "local": 15.0}


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--chunk", type=int, default=2**17, help="bins per chunk (chunked path)")
    args = p.parse_args()
    n = 20_000 if args.quick else 1_000_000
    repeat = max(1, args.repeat if not args.quick else 1)
    C.header(f"bench_methods: every method eager and chunked, {n} bins, sorted 2D Voronoi")
    pts = np.random.default_rng(0).random((n, 2))
    ds = xtramgrad.voronoi(pts, geometry=False).tram.sort()
    ds["D"] = ("bin", C.field(ds.center.values))
    spacing = n ** -0.5
    chunked = ds.chunk(bin=min(args.chunk, n // 4))
    print(f"{n} bins, {len(chunked.chunks['bin'])} chunks of {chunked.chunks['bin'][0]}; "
          f"backend {'numba' if C.have_numba() else 'numpy'}")

    def call(data, name):
        kw = dict(METHODS[name])
        method = kw.pop("method", name)
        if method == "local":
            kw["bandwidth"] = 2 * spacing
        return lambda: data.tram.grad("D", method=method, **kw).compute()

    eager = C.best_times({m: call(ds, m) for m in METHODS}, repeat)
    lazy = C.best_times({m: call(chunked, m) for m in METHODS}, repeat)
    # after one untimed call, as for the others: a cold numba cache compiles the GCV's
    # kernels on the first (30 s), which is not the method's speed
    t_auto = C.best_times({"auto": lambda: ds.tram.grad("D", method="local")}, 1)["auto"]
    auto = ds.tram.grad("D", method="local")
    print(f"\n{'method':8s} {'eager s':>9s} {'chunked s':>10s} {'ns/bin':>8s}")
    for m in METHODS:
        print(f"{m:8s} {eager[m]:9.3f} {lazy[m]:10.3f} {eager[m] / n * 1e9:8.0f}")
    print(f"local bandwidth='auto' (GCV + fit): {t_auto:.2f} s, chose "
          f"{auto.attrs['xtramgrad_bandwidth'] / spacing:.2f} spacings")
    for m, target in TARGETS.items():
        C.ratio(f"{m} eager / grad1 eager", eager[m] / eager["grad1"], f"<= {target:g}")
    for m in METHODS:
        C.ratio(f"{m} chunked / eager", lazy[m] / eager[m], "<= 2")


if __name__ == "__main__":
    main()
