"""Convergence of vector calculus on irregular 2D meshes: div, curl, Laplacian, penalties.

For each mesh and size (10^3 to 10^5 bins in the unit square), each gradient method
(grad1 with TRamWAy's default selection_angle 0.9, gradn, lsq, lsq2):

* ``div(grad f)`` against ``lap f`` (relative to the RMS of ``lap f``);
* ``curl(grad f)`` against 0 (relative to the RMS of the Hessian, ``|H|_F``);
* ``div F`` of a smooth vector field against its closed form (relative to RMS ``div F``);
* ``laplacian(f)``, ``method="lsq2"`` and ``"fv"``, against ``lap f``;
* ``u @ P @ u / integral |grad u|^2`` for ``smoothness_penalty`` (``two_point``,
  ``gradient`` with each method, ``tramway``), for a field whose normal derivative vanishes
  on the border (``u_n``) and one whose does not (``u``).

Errors are RMS over the interior: the bins whose cells touch the box (found by the
closed-surface identity sum_f A_f n_f = 0 of interior cells) and their neighbours (two rings)
are excluded. "trim" figures also drop the worst 0.5% of interior bins (on random meshes a
few near-coincident bins dominate a plain RMS). Orders p are least-squares slopes of
log(error) against log(h), h = n^(-1/2).

Meshes (all ``xtramgrad.voronoi(points, bounds=[(0, 1), (0, 1)])``: Delaunay neighbours,
exact clipped cells):

* ``random``: uniform random points;
* ``kmeans``: k-means-like centroids, 5 Lloyd iterations from uniform random points (20
  uniform samples per center, nearest-center assignment, centers moved to the means);
* ``jittered``: a square grid of cell centers moved by uniform offsets of +-0.25 spacing.

Then the penalty's properties (symmetric, ``P @ 1 = 0``, smallest eigenvalues by
``scipy.sparse.linalg.eigsh``), chunked == eager for div, curl and laplacian, and operators
== functions (10^4 bins).

    python benchmarks/calculus.py [--quick]

Targets (issue 13): curl(grad f) with lsq2, trimmed, order >= 0.9; laplacian lsq2 order
>= 0.9; div F with lsq2 order >= 1.6; two_point penalty ratio within 1% at 10^5 bins.
"""

from __future__ import annotations

import time
from typing import Any

import _common as C
import numpy as np

import xtramgrad
from xtramgrad import calculus

TWO_PI = 2 * np.pi
METHODS = ("grad1", "gradn", "lsq", "lsq2")
MESHES = ("random", "kmeans", "jittered")
BOX = [(0.0, 1.0), (0.0, 1.0)]


# --------------------------------------------------------------------------- fields


def f(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sin(TWO_PI * x) * np.cos(TWO_PI * y)


def lap_f(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -2 * TWO_PI**2 * f(x, y)


def hessian_f(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, 3): f_xx, f_xy, f_yy."""
    fxx = -(TWO_PI**2) * f(x, y)
    fxy = -(TWO_PI**2) * np.cos(TWO_PI * x) * np.sin(TWO_PI * y)
    return np.stack([fxx, fxy, fxx], axis=1)


def vector_field(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F = (sin(2 pi x) cos(pi y), cos(2 pi x) sin(2 pi y) + x y^2), not a gradient, and div F."""
    fx = np.sin(TWO_PI * x) * np.cos(np.pi * y)
    fy = np.cos(TWO_PI * x) * np.sin(TWO_PI * y) + x * y**2
    div = (TWO_PI * np.cos(TWO_PI * x) * np.cos(np.pi * y)
           + TWO_PI * np.cos(TWO_PI * x) * np.cos(TWO_PI * y) + 2 * x * y)
    return fx, fy, div


def u_fields(x: np.ndarray, y: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    """Penalty test fields and their Dirichlet energies over the unit square."""
    # u_n = cos(pi x) cos(2 pi y): zero normal derivative on the border;
    # energy = int (pi sin(pi x) cos(2 pi y))^2 + (2 pi cos(pi x) sin(2 pi y))^2
    #        = (pi^2 + 4 pi^2) / 4
    un = np.cos(np.pi * x) * np.cos(TWO_PI * y)
    # u = sin(pi x + 0.3) + 0.5 y^2: energy = int pi^2 cos^2(pi x + 0.3) dx + int y^2 dy
    u = np.sin(np.pi * x + 0.3) + 0.5 * y**2
    e_x = np.pi**2 * (0.5 + (np.sin(2 * np.pi + 0.6) - np.sin(0.6)) / (4 * np.pi))
    return {"u_n": (un, 5 * np.pi**2 / 4), "u": (u, e_x + 1.0 / 3.0)}


# --------------------------------------------------------------------------- meshes


def mesh_points(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.random((n, 2))
    if kind == "kmeans":
        from scipy.spatial import cKDTree

        pts = rng.random((n, 2))
        samples = rng.random((20 * n, 2))
        for _ in range(5):
            _, near = cKDTree(pts).query(samples, workers=1)
            cnt = np.bincount(near, minlength=n)
            sums = np.stack([np.bincount(near, weights=samples[:, a], minlength=n)
                             for a in range(2)], axis=1)
            keep = cnt > 0
            pts[keep] = sums[keep] / cnt[keep, None]
        return pts
    if kind == "jittered":
        side = max(2, round(np.sqrt(n)))
        g = (np.arange(side) + 0.5) / side
        xx, yy = np.meshgrid(g, g, indexing="ij")
        pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
        return np.clip(pts + rng.uniform(-0.25, 0.25, pts.shape) / side, 0.0, 1.0)
    raise ValueError(kind)


def interior(ds: Any) -> np.ndarray:
    """Bins more than two rings from the border (cells touching the box)."""
    nb = ds.neighbours.values
    c = ds.center.values
    present = nb >= 0
    safe = np.where(present, nb, 0)
    off = c[safe] - c[:, None, :]
    dist = np.linalg.norm(off, axis=2)
    fa = np.where(present, ds.face_area.values, 0.0)
    normal = np.where(present[..., None], off / np.where(dist > 0, dist, 1.0)[..., None], 0.0)
    closure = np.linalg.norm((fa[..., None] * normal).sum(axis=1), axis=1)
    perimeter = fa.sum(axis=1)
    border = closure > 1e-9 * perimeter  # cells with a facet on the box
    second = (present & border[safe]).any(axis=1)  # their neighbours
    return ~(border | second)


def build(kind: str, n: int, seed: int) -> tuple[Any, np.ndarray]:
    pts = mesh_points(kind, n, seed)
    ds = xtramgrad.voronoi(pts, bounds=BOX)
    x, y = pts.T
    ds["f"] = ("bin", f(x, y))
    fx, fy, _ = vector_field(x, y)
    ds["Fx"], ds["Fy"] = ("bin", fx), ("bin", fy)
    return ds, interior(ds)


# --------------------------------------------------------------------------- errors


def rel(err: np.ndarray, scale: float, keep: np.ndarray) -> tuple[float, float]:
    """(plain, trimmed) relative RMS over ``keep``; NaN bins count as failures (inf)."""
    e = np.abs(np.asarray(err, dtype=np.float64)[keep])
    e = np.where(np.isnan(e), np.inf, e)
    plain = float(np.sqrt(np.mean(e**2)) / scale)
    s = np.sort(e)[: max(1, int(len(e) * 0.995))]
    return plain, float(np.sqrt(np.mean(s**2)) / scale)


def order(ns: list[int], errs: list[float]) -> float:
    h = np.asarray(ns, dtype=np.float64) ** -0.5
    e = np.asarray(errs, dtype=np.float64)
    if not np.all(np.isfinite(e) & (e > 0)):
        return float("nan")
    return float(np.polyfit(np.log(h), np.log(e), 1)[0])


def measure(ds: Any, keep: np.ndarray, penalties: bool) -> dict[str, tuple[float, float]]:
    x, y = ds.center.values.T
    lap = lap_f(x, y)
    lap_rms = float(np.sqrt(np.mean(lap[keep] ** 2)))
    h = hessian_f(x, y)
    h_rms = float(np.sqrt(np.mean((h[:, 0] ** 2 + 2 * h[:, 1] ** 2 + h[:, 2] ** 2)[keep])))
    _, _, divf = vector_field(x, y)
    div_rms = float(np.sqrt(np.mean(divf[keep] ** 2)))
    out: dict[str, tuple[float, float]] = {}
    for m in METHODS:
        g = xtramgrad.grad(ds, "f", method=m)
        out[f"div(grad f) {m}"] = rel(calculus.div(ds, g, method=m).values - lap, lap_rms, keep)
        out[f"curl(grad f) {m}"] = rel(calculus.curl(ds, g, method=m).values, h_rms, keep)
        out[f"div F {m}"] = rel(calculus.div(ds, ["Fx", "Fy"], method=m).values - divf,
                                div_rms, keep)
    for m in ("lsq2", "fv"):
        out[f"laplacian {m}"] = rel(calculus.laplacian(ds, "f", method=m).values - lap,
                                    lap_rms, keep)
    if penalties:
        forms: dict[str, Any] = {
            "two_point": calculus.smoothness_penalty(ds),
            "tramway": calculus.smoothness_penalty(ds, "tramway"),
        }
        for m in METHODS:
            forms[f"gradient {m}"] = calculus.smoothness_penalty(ds, "gradient", method=m)
        for name, (u, energy) in u_fields(x, y).items():
            for form, p in forms.items():
                r = float(u @ (p @ u)) / energy
                out[f"penalty {form} {name}"] = (r, r)
    return out


# --------------------------------------------------------------------------- reports


def convergence(sizes: list[int], meshes: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for kind in meshes:
        rows: dict[int, dict[str, tuple[float, float]]] = {}
        for n in sizes:
            t0 = time.perf_counter()
            ds, keep = build(kind, n, seed=n + len(kind))
            rows[n] = measure(ds, keep, penalties=True)
            print(f"# {kind} n={n}: {ds.sizes['bin']} bins, {int(keep.sum())} interior, "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
        results[kind] = {"rows": rows}
    return results


def table(results: dict[str, dict[str, Any]], sizes: list[int]) -> None:
    for kind, res in results.items():
        rows = res["rows"]
        keys = list(rows[sizes[0]])
        print(f"\n## {kind}: relative interior RMS error (trimmed 0.5% in brackets), order p")
        print(f"{'quantity':32s}" + "".join(f"{n:>20d}" for n in sizes) + f"{'p':>8s}"
              f"{'p trim':>8s}")
        for key in keys:
            if key.startswith("penalty"):
                continue
            plain = [rows[n][key][0] for n in sizes]
            trim = [rows[n][key][1] for n in sizes]
            cells = "".join(f"{a:>10.2e} [{b:7.1e}]" for a, b in zip(plain, trim, strict=True))
            print(f"{key:32s}{cells}{order(sizes, plain):8.2f}{order(sizes, trim):8.2f}")
        print(f"\n## {kind}: u @ P @ u / integral |grad u|^2")
        print(f"{'penalty':32s}" + "".join(f"{n:>12d}" for n in sizes))
        for key in keys:
            if key.startswith("penalty"):
                print(f"{key[8:]:32s}" + "".join(f"{rows[n][key][0]:12.4f}" for n in sizes))


def ratios(results: dict[str, dict[str, Any]], sizes: list[int]) -> None:
    print()
    for kind, res in results.items():
        rows = res["rows"]
        for key, target in [("curl(grad f) lsq2", ">= 0.9 (trimmed)"),
                            ("laplacian lsq2", ">= 0.9"), ("div F lsq2", ">= 1.6"),
                            ("div(grad f) lsq2", "")]:
            p_plain = order(sizes, [rows[n][key][0] for n in sizes])
            p_trim = order(sizes, [rows[n][key][1] for n in sizes])
            if p_trim > 0:
                C.ratio(f"order {key} {kind} trimmed", p_trim, target)
            if p_plain > 0:
                C.ratio(f"order {key} {kind} plain", p_plain)
        for key in ("div(grad f) grad1", "div(grad f) gradn", "div(grad f) lsq"):
            first, last = rows[sizes[0]][key][0], rows[sizes[-1]][key][0]
            if np.isfinite(first) and np.isfinite(last) and first > 0:
                C.ratio(f"error growth {key} {kind} n={sizes[-1]:.0e} / n={sizes[0]:.0e}",
                        last / first)
        for name in ("u_n", "u"):
            r = rows[sizes[-1]][f"penalty two_point {name}"][0]
            C.ratio(f"penalty two_point {name} {kind} n={sizes[-1]:.0e}", r,
                    "within 1% of 1" if name == "u" else "")
            r = rows[sizes[-1]][f"penalty tramway {name}"][0]
            C.ratio(f"penalty tramway {name} {kind} n={sizes[-1]:.0e}", r)


def properties(n: int) -> None:
    """Penalty properties; chunked == eager; operators == functions."""
    from scipy.sparse import identity
    from scipy.sparse.linalg import eigsh

    print(f"\n## properties on a random mesh of {n} bins")
    ds, _ = build("random", n, seed=7)
    for form, kw in [("two_point", {}), ("gradient", {"method": "lsq2"}),
                     ("gradient", {"method": "grad1"}), ("tramway", {})]:
        p = calculus.smoothness_penalty(ds, form, **kw)
        scale = float(abs(p).max())
        sym = float(abs(p - p.T).max()) / scale
        ones = float(np.abs(p @ np.ones(p.shape[0])).max()) / scale
        top = float(eigsh(p, k=1, which="LA", return_eigenvectors=False)[0])
        shift = 1e-6 * top
        low = eigsh(p + shift * identity(p.shape[0]), k=4, sigma=0.0, which="LM",
                    return_eigenvectors=False) - shift
        label = form + (f" {kw['method']}" if kw else "")
        print(f"{label:18s} nnz/row {p.nnz / p.shape[0]:6.1f}  |P-P^T|/|P| {sym:.1e}  "
              f"|P 1|/|P| {ones:.1e}  lowest eigenvalues / largest "
              f"{np.array2string(np.sort(low) / top, precision=2)}")
        if form == "two_point":
            C.ratio("two_point: lowest eigenvalue magnitude / largest (rounding)",
                    max(float(np.abs(np.sort(low)[0]) / top), 1e-300))
    dsc = ds.chunk({"bin": max(1, n // 4)})
    g = xtramgrad.grad(ds, "f", method="lsq2")
    gc = g.chunk({"bin": max(1, n // 4)})
    worst_chunk = 0.0
    for name, eager, lazy in [
        ("div", calculus.div(ds, g), calculus.div(dsc, gc)),
        ("curl", calculus.curl(ds, g), calculus.curl(dsc, gc)),
        ("laplacian lsq2", calculus.laplacian(ds, "f"), calculus.laplacian(dsc, "f")),
        ("laplacian fv", calculus.laplacian(ds, "f", method="fv"),
         calculus.laplacian(dsc, "f", method="fv")),
    ]:
        a, b = eager.values, lazy.compute().values
        same = bool(np.array_equal(a, b, equal_nan=True))
        diff = float(np.nanmax(np.abs(a - b)))
        worst_chunk = max(worst_chunk, diff)
        print(f"chunked == eager {name:15s}: bitwise {same}, max |diff| {diff:.1e}")
    fvec = g.values.reshape(-1)
    u = ds.f.values
    worst = 0.0
    for name, op, x, res in [
        ("div_operator", calculus.div_operator(ds), fvec, calculus.div(ds, g)),
        ("curl_operator", calculus.curl_operator(ds), fvec, calculus.curl(ds, g)),
        ("laplacian_operator lsq2", calculus.laplacian_operator(ds), u,
         calculus.laplacian(ds, "f")),
        ("laplacian_operator fv", calculus.laplacian_operator(ds, method="fv"), u,
         calculus.laplacian(ds, "f", method="fv")),
    ]:
        bound = abs(op) @ np.abs(x)
        r = float(np.nanmax(np.abs(op @ x - res.values.reshape(-1)) / bound))
        worst = max(worst, r)
        print(f"{name:24s} == function: max |Op x - f(x)| / (|Op| |x|) = {r:.1e}")
    C.ratio("operators vs functions: worst |Op x - f(x)| / (|Op| |x|) / 1e-12",
            max(worst / 1e-12, 1e-300), "<= 1")


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    args = p.parse_args()
    C.header("bench_calculus: convergence of div, curl, Laplacian and smoothness penalties")
    t0 = time.perf_counter()
    if args.quick:
        sizes = [1000, 3000]
        meshes: tuple[str, ...] = ("random", "jittered")
        prop_n = 1000
    else:
        sizes = [1000, 3000, 10_000, 30_000, 100_000]
        meshes = MESHES
        prop_n = 10_000
    results = convergence(sizes, meshes)
    table(results, sizes)
    ratios(results, sizes)
    properties(prop_n)
    print(f"\n# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
