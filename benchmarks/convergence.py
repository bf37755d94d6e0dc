"""Which method converges: error and fitted order per method, mesh, field, interior and
border; and the noise study (bias and total error at 10-30% per-bin noise).

Meshes (unit square / cube): ``random`` (uniform random points, Voronoi cells), ``kmeans``
(k-means-like centroids: Lloyd iterations from random points, what TRamWAy's kmeans
tessellation gives), ``jittered`` (a grid with centers moved by up to 0.3 spacings),
``grid`` (a regular grid, TRamWAy's 8/18-neighbour adjacency) and ``hexagon`` (a hexagonal
lattice, 2D). Fields: linear, quadratic, ``sin(2 pi x) cos(2 pi y)`` (times ``cos(2 pi
z)`` in 3D). Errors: RMS over bins of ``|G f - grad f|`` over RMS ``|grad f|``, "interior"
excluding the bins within 2.5 spacings of the border, "border" the others, "border max"
the largest single-bin error there (same scale). The order is the slope of log(error)
against log(h), h = n^(-1/d), fitted over the sizes.

    python benchmarks/convergence.py [--quick] [--sizes2d 1e3,1e4,1e5,1e6] [--json PATH]

The figures of the docs page "Which method?" come from ``--json`` output (committed in
``benchmarks/results/convergence.json``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import _common as C
import numpy as np

import xtramgrad

METHODS = {
    "grad1": {},
    "gradn": {},
    "lsq": {},
    "lsq2": {},
    "local(1)": {"method": "local", "degree": 1, "bandwidth": 1.5},  # bandwidth in spacings
    "local(2)": {"method": "local", "degree": 2, "bandwidth": 2.0},
}


# --------------------------------------------------------------------------- meshes


def mesh(kind: str, n: int, d: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """Points of a mesh of about ``n`` bins and its spacing h."""
    rng = np.random.default_rng(seed)
    side = max(2, round(n ** (1.0 / d)))
    h = 1.0 / side
    if kind == "random":
        return rng.random((n, d)), n ** (-1.0 / d)
    if kind == "kmeans":
        pts = rng.random((n, d))
        from scipy.spatial import cKDTree

        for _ in range(3):
            sample = rng.random((6 * n, d))
            lab = cKDTree(pts).query(sample)[1]
            cnt = np.bincount(lab, minlength=n)
            new = np.stack([np.bincount(lab, sample[:, j], minlength=n) for j in range(d)], 1)
            ok = cnt > 0
            pts[ok] = new[ok] / cnt[ok, None]
        return pts, n ** (-1.0 / d)
    idx = np.stack(np.meshgrid(*([np.arange(side)] * d), indexing="ij"), -1).reshape(-1, d)
    if kind == "grid":
        return (idx + 0.5) * h, h
    if kind == "jittered":
        return (idx + 0.5 + rng.uniform(-0.3, 0.3, idx.shape)) * h, h
    if kind == "hexagon":
        assert d == 2
        rows = max(2, round(np.sqrt(n / np.sqrt(3) * 2)))
        a = 1.0 / rows
        ny = int(1.0 / (a * np.sqrt(3) / 2))
        j, i = np.meshgrid(np.arange(ny), np.arange(rows), indexing="ij")
        x = (i + 0.5 * (j % 2) + 0.25) * a
        y = (j + 0.5) * a * np.sqrt(3) / 2
        return np.stack([x.ravel(), y.ravel()], 1), a
    raise ValueError(kind)


def tessellation(kind: str, n: int, d: int, seed: int = 0):
    pts, h = mesh(kind, n, d, seed)
    if kind == "grid":
        side = round(len(pts) ** (1.0 / d))
        ds = xtramgrad.grid((side,) * d, spacing=h, origin=h / 2, geometry=False)
    else:
        ds = xtramgrad.voronoi(pts, geometry=False)
    return ds.tram.sort(), h


# --------------------------------------------------------------------------- fields


def field(kind: str, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = c.shape[1]
    if kind == "linear":
        lin = np.array([1.0, -2.0, 0.5][:d])
        return 0.3 + c @ lin, np.broadcast_to(lin, c.shape).copy()
    if kind == "quadratic":
        lin = np.array([1.0, -2.0, 0.5][:d])
        q = np.array([[2.0, 0.5, -1.0], [0.5, -1.0, 0.3], [-1.0, 0.3, 1.5]])[:d, :d]
        return 0.3 + c @ lin + 0.5 * np.einsum("ni,ij,nj->n", c, q, c), lin + c @ q
    k = 2 * np.pi
    parts = [np.sin(k * c[:, 0])] + [np.cos(k * c[:, j]) for j in range(1, d)]
    f = np.prod(parts, axis=0)
    grads = []
    for j in range(d):
        dp = [p.copy() for p in parts]
        dp[j] = k * np.cos(k * c[:, 0]) if j == 0 else -k * np.sin(k * c[:, j])
        grads.append(np.prod(dp, axis=0))
    return f, np.stack(grads, 1)


def errors(g: np.ndarray, truth: np.ndarray, inner: np.ndarray) -> dict[str, float]:
    ref = np.sqrt(np.mean(np.sum(truth**2, axis=1)))
    e = np.linalg.norm(g - truth, axis=1)
    nan = np.isnan(e)
    border = ~inner & ~nan
    return {
        "interior": float(np.sqrt(np.mean(e[inner & ~nan] ** 2)) / ref),
        "border": float(np.sqrt(np.mean(e[border] ** 2)) / ref) if border.any() else 0.0,
        "border_max": float(e[border].max() / ref) if border.any() else 0.0,
        "nan": int(nan.sum()),
    }


def run_method(ds, name: str, h: float, var: str = "f"):
    kw = dict(METHODS[name])
    method = kw.pop("method", name)
    if "bandwidth" in kw:
        kw["bandwidth"] = kw["bandwidth"] * h
    return ds.tram.grad(var, method=method, **kw).values


def fit_order(hs: list[float], es: list[float]) -> float:
    x, y = np.log(hs), np.log(np.maximum(es, 1e-300))
    return float(np.polyfit(x, y, 1)[0])


# --------------------------------------------------------------------------- studies


def convergence(sizes: dict[int, list[int]], meshes2d, meshes3d, fields_, out) -> None:
    for d, kinds in ((2, meshes2d), (3, meshes3d)):
        for kind in kinds:
            rows: dict[tuple[str, str], list[dict]] = {}
            hs = []
            for n in sizes[d]:
                ds, h = tessellation(kind, n, d)
                c = ds.center.values
                inner = ((c > 2.5 * h) & (c < 1 - 2.5 * h)).all(axis=1)
                hs.append(h)
                for fname in fields_:
                    f, truth = field(fname, c)
                    ds["f"] = ("bin", f)
                    for m in METHODS:
                        t0 = time.perf_counter()
                        g = run_method(ds, m, h)
                        r = errors(g, truth, inner)
                        r.update(n=int(ds.sizes["bin"]), h=h, seconds=time.perf_counter() - t0)
                        rows.setdefault((fname, m), []).append(r)
            for fname in fields_:
                print(f"\n## {d}D {kind}, {fname} field (h from {hs[0]:.3g} to {hs[-1]:.3g})")
                print(f"{'method':10s} {'n':>9s} {'interior':>10s} {'border':>10s} "
                      f"{'border max':>11s} {'NaN':>5s}")
                for m in METHODS:
                    rs = rows[(fname, m)]
                    for r in rs:
                        print(f"{m:10s} {r['n']:9d} {r['interior']:10.3e} {r['border']:10.3e} "
                              f"{r['border_max']:11.3e} {r['nan']:5d}")
                    order = {}
                    if len(rs) > 1 and fname != "linear":
                        order = {
                            "interior": fit_order(hs, [r["interior"] for r in rs]),
                            "border": fit_order(hs, [r["border"] for r in rs]),
                        }
                        print(f"{m:10s} order: interior {order['interior']:.2f}, border "
                              f"{order['border']:.2f}")
                    out.setdefault("convergence", []).append(
                        {"d": d, "mesh": kind, "field": fname, "method": m, "rows": rs,
                         "order": order}
                    )
                    irregular = kind in ("random", "kmeans", "jittered")
                    target = {"lsq": (0.9, 0.8), "lsq2": (1.8 if d == 2 else 1.6, 0.8)}
                    if fname == "sincos" and order and irregular and m in target:
                        ti, tb = target[m]
                        C.ratio(f"order {m} {d}D {kind} interior", order["interior"],
                                f">= {ti}")
                        if d == 2:
                            C.ratio(f"order {m} {d}D {kind} border", order["border"], f">= {tb}")
                            C.ratio(f"border max error {m} {d}D {kind} n={rs[-1]['n']}",
                                    rs[-1]["border_max"], "<= 1")
                    if fname in ("linear", "quadratic") and m in ("lsq", "lsq2"):
                        exact = fname == "linear" or m == "lsq2"
                        if exact:
                            worst = max(max(r["interior"], r["border_max"]) for r in rs)
                            C.ratio(f"exactness {m} {d}D {kind} {fname} (max error)", worst,
                                    "<= 1e-9")
            sys.stdout.flush()


def noise_study(n: int, levels, draws: int, out) -> None:
    print(f"\n## Noise: {n} bins, per-bin multiplicative noise, a field varying over ~25 bins")
    for kind in ("random", "kmeans"):
        ds, h = tessellation(kind, n, 2, seed=1)
        c = ds.center.values
        wave = 25 * h
        k = 2 * np.pi / wave
        f = 1 + 0.5 * np.sin(k * c[:, 0]) * np.cos(k * c[:, 1])
        truth = 0.5 * k * np.stack(
            [np.cos(k * c[:, 0]) * np.cos(k * c[:, 1]),
             -np.sin(k * c[:, 0]) * np.sin(k * c[:, 1])],
            1,
        )
        ref = np.sqrt(np.mean(np.sum(truth**2, axis=1)))
        ds["f"] = ("bin", f)
        cands = dict(METHODS)
        cands["local auto"] = {"method": "local"}
        for name, spec in cands.items():
            kw = dict(spec)
            method = kw.pop("method", name)
            if "bandwidth" in kw:
                kw["bandwidth"] = kw["bandwidth"] * h
            for level in levels:
                tot, bias = [], []
                for s in range(draws):
                    rng = np.random.default_rng(100 + s)
                    ds["y"] = ("bin", f * (1 + level * rng.standard_normal(len(f))))
                    res = ds.tram.grad("y", method=method, **kw)
                    tot.append(np.nanmean(np.sum((res.values - truth) ** 2, axis=1)))
                    # the bias at the bandwidth chosen for the noisy field
                    bw = {"bandwidth": res.attrs["xtramgrad_bandwidth"]} if (
                        "xtramgrad_bandwidth" in res.attrs) else {}
                    clean = ds.tram.grad("f", method=method, **{**kw, **bw}).values
                    bias.append(np.nanmean(np.sum((clean - truth) ** 2, axis=1)))
                total = float(np.sqrt(np.mean(tot)) / ref)
                b = float(np.sqrt(np.mean(bias)) / ref)
                print(f"{kind:7s} {name:11s} noise {level:.0%}: bias {b:.3f}, total {total:.3f}")
                out.setdefault("noise", []).append(
                    {"mesh": kind, "method": name, "noise": level, "bias": b, "total": total}
                )
                if name == "local auto" and level == 0.2:
                    C.ratio(f"noise local auto {kind} 20% relative RMS error", total, "<= 0.5")
        sys.stdout.flush()


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--sizes2d", default="1e3,1e4,1e5,1e6")
    p.add_argument("--sizes3d", default="1e3,1e4,1e5")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.quick:
        sizes = {2: [400, 1600], 3: [500, 2000]}
        meshes2d, meshes3d = ["random", "jittered"], ["random"]
        fields_ = ["linear", "sincos"]
        noise_n, levels, draws = 2000, [0.2], 1
    else:
        sizes = {2: [int(float(s)) for s in args.sizes2d.split(",")],
                 3: [int(float(s)) for s in args.sizes3d.split(",")]}
        meshes2d = ["random", "kmeans", "jittered", "grid", "hexagon"]
        meshes3d = ["random", "kmeans", "jittered", "grid"]
        fields_ = ["linear", "quadratic", "sincos"]
        noise_n, levels, draws = 10_000, [0.1, 0.2, 0.3], 3
    C.header("bench_convergence: error and order per method x mesh x field; noise study")
    out: dict = {"machine": C.machine(), "date": time.strftime("%Y-%m-%d")}
    convergence(sizes, meshes2d, meshes3d, fields_, out)
    noise_study(noise_n, levels, draws, out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
