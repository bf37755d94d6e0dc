"""Generate the sample diffusivity maps shipped in ``src/xtramgrad/data/``.

Run from the repository root with a Python environment that has TRamWAy 0.7::

    .venv/bin/python scripts/make_sample.py            # writes the .npz files
    .venv/bin/python scripts/make_sample.py --check    # only prints the summary

What it does (deterministic, fixed seed):

1. Simulates 2D Brownian trajectories whose diffusivity has a known linear
   gradient, ``D(x, y) = D0 + gx*x + gy*y`` (um^2/s), in the box [-1, 1]^2 (um).
   Itô scheme: each step ``r[k+1] = r[k] + sqrt(2 D(r[k]) dt) N(0, I)`` uses D at the
   particle's current position.  Trajectories start uniformly in the box, have at
   most ``MAX_STEPS`` displacements and stop at the first point that falls outside
   the box (that point is kept, so the displacement that left the box is not lost:
   every displacement whose origin is in the box is kept, whatever its length, and
   the per-bin D estimates are not biased near the walls; D is only ever evaluated
   inside the box, where it is positive).
2. Puts the points in a DataFrame with TRamWAy's columns ``n, x, y, t``.
3. Tessellates with TRamWAy 0.7 (``tramway.helper.tessellate``) with the methods
   'grid', 'hexagon' and 'kmeans' (a few hundred bins each).
4. Infers D per bin with TRamWAy's mode 'd' (``tramway.helper.infer``,
   ``sigma=0``: the simulated positions have no localization error; TRamWAy's
   default of 0.03 um would bias D down by sigma^2/dt).
5. Builds the same :class:`tramway.inference.base.Distributed` object that
   ``infer`` builds (``tramway.inference.base.distributed(partition)``) and reads
   its adjacency: bins without translocations are dropped with their edges, grids
   use the 8-neighbour "diagonal" adjacency, kmeans edges pruned by TRamWAy are
   absent.
6. Computes TRamWAy's own gradient of the inferred D map
   (``Distributed.grad`` -> ``grad1`` with ``get_grad_kwargs()``, i.e. the default
   ``selection_angle=0.9``, called the way ``gradient_map`` calls it) as a
   reference output.
7. Saves one compressed ``.npz`` per tessellation.

The arrays are documented in ``src/xtramgrad/data/README.md``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import _trajectories as trajectories  # scripts/ is on the path of a script
import numpy as np
import pandas as pd

SEED = 20240611
D0 = 0.5  # um^2/s
GX = 0.15  # um/s  (dD/dx)
GY = -0.08  # um/s (dD/dy)
DT = 0.01  # s
BOX = (-1.0, 1.0)  # um, both axes
N_TRAJECTORIES = 18000
MAX_STEPS = 10  # displacements per trajectory at most

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "src" / "xtramgrad" / "data"

# TRamWAy's partition step leaves out bins that fail a ``filter`` (``tessellate(...,
# filter=f)`` -> ``Voronoi.cell_index(filter=f)``, f(tessellation, cell, points) -> bool);
# such bins get no points and are then dropped from inference, as TRamWAy does with
# empty bins.  Here a bin is kept if at least MIN_COUNT of its points lie inside the box:
# this removes the bins that only collect the end points of trajectories that left it.
MIN_COUNT = 20


def inside_box_filter(tessellation, cell, points) -> bool:
    inside = np.all((BOX[0] <= points) & (points <= BOX[1]), axis=1)
    return bool(np.count_nonzero(inside) >= MIN_COUNT)


# TRamWAy tessellation parameters, per method (passed to tramway.helper.tessellate).
TESSELLATIONS = {
    # 20 x 20 square bins of 0.1 um exactly covering the box (8-neighbour adjacency)
    "grid": dict(
        lower_bound=np.array([BOX[0], BOX[0]]),
        upper_bound=np.array([BOX[1], BOX[1]]),
        count_per_dim=np.array([20, 20]),
    ),
    # hexagons 0.11 um across (flat to flat) over the box; for 'hexagon' the size is
    # set by min_distance (TRamWAy's helper always derives avg_probability from
    # avg_location_count, which takes precedence over avg_distance, and the hexagon
    # radius is then max(radius from avg_probability, min_distance / 2))
    "hexagon": dict(
        min_distance=0.11,
        lower_bound=np.array([BOX[0], BOX[0]]),
        upper_bound=np.array([BOX[1], BOX[1]]),
    ),
    # k-means (grid-initialised, deterministic) with ~450 locations per bin
    "kmeans": dict(avg_location_count=450),
}


def true_D(xy: np.ndarray) -> np.ndarray:
    return D0 + GX * xy[..., 0] + GY * xy[..., 1]


def simulate(seed: int = SEED) -> pd.DataFrame:
    """Brownian trajectories with D(x, y) = D0 + GX*x + GY*y, stopped on exit."""
    return trajectories.simulate(seed, N_TRAJECTORIES, MAX_STEPS, DT, BOX, true_D)



def neighbour_table(adjacency, keys: np.ndarray) -> np.ndarray:
    """(n, k) int32 zero-based neighbour table, -1 padded, from TRamWAy's CSR adjacency.

    ``keys`` are TRamWAy's cell indices of the kept bins (sorted); row i of the
    table lists the positions in ``keys`` of the neighbours of bin ``keys[i]`` in
    the order of the CSR row (the order ``Distributed.neighbours`` returns).
    """
    A = adjacency.tocsr()
    position = np.full(A.shape[0], -1, dtype=np.int64)
    position[keys] = np.arange(keys.size)
    rows = []
    for key in keys:
        nb = A.indices[A.indptr[key] : A.indptr[key + 1]]
        nb = position[nb]
        if np.any(nb < 0):
            raise RuntimeError("adjacency points to a dropped bin")
        rows.append(nb)
    k = max(len(r) for r in rows)
    table = np.full((keys.size, k), -1, dtype=np.int32)
    for i, r in enumerate(rows):
        table[i, : len(r)] = r
    return table


def plane_fit(center, value, weight=None):
    """Least-squares plane value ~ a + b x + c y; returns (b, c) and their std errors."""
    X = np.column_stack([np.ones(len(value)), center])
    w = np.ones(len(value)) if weight is None else np.asarray(weight, float)
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(X * sw[:, None], value * sw, rcond=None)
    resid = value - X @ coef
    dof = len(value) - X.shape[1]
    s2 = np.sum(w * resid**2) / dof
    cov = s2 * np.linalg.inv((X * w[:, None]).T @ X)
    return coef[1:], np.sqrt(np.diag(cov)[1:])


def make_map(df: pd.DataFrame, method: str, params: dict) -> dict:
    from importlib.metadata import version

    from tramway.helper import infer, tessellate
    from tramway.inference.base import distributed
    from tramway.inference.gradient import get_grad_kwargs

    kwargs = {k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in params.items()}
    partition = tessellate(df, method, filter=inside_box_filter, **kwargs)
    maps = infer(partition, "d", sigma=0.0)
    D_map = maps.maps["diffusivity"]

    # the Distributed object TRamWAy's infer() builds for this partition
    cells = distributed(partition)
    keys = np.array(sorted(cells.keys()), dtype=np.int64)
    if not np.array_equal(keys, np.sort(D_map.index.values)):
        raise RuntimeError("Distributed bins and inferred bins differ")
    center = np.vstack([cells[j].center for j in keys]).astype(np.float64)
    n_points = np.array([len(cells[j]) for j in keys], dtype=np.int64)
    D = D_map.loc[keys].to_numpy(dtype=np.float64)
    neighbours = neighbour_table(cells.adjacency, keys)

    # TRamWAy's gradient of the inferred map (reference output), as gradient_map does it
    reverse_index = np.full(max(cells.keys()) + 1, -1, dtype=int)
    reverse_index[keys] = np.arange(keys.size)
    grad_kwargs = get_grad_kwargs()
    grad = np.full((keys.size, 2), np.nan)
    for pos, j in enumerate(keys):
        g = cells.grad(j, D, reverse_index, **grad_kwargs)
        if g is not None:
            grad[pos] = g

    shown = {k: np.asarray(v).tolist() for k, v in params.items()}
    return dict(
        center=center,
        neighbours=neighbours,
        D=D,
        D_true=true_D(center),
        n_points=n_points,
        true_gradient=np.array([GX, GY], dtype=np.float64),
        tramway_cell=keys.astype(np.int64),
        tramway_grad=grad,
        dt=np.array(DT),
        seed=np.array(SEED, dtype=np.int64),
        D0=np.array(D0),
        description=np.array(
            f"TRamWAy {version('tramway')} '{method}' tessellation + mode 'd' diffusivity map "
            f"of simulated 2D Brownian trajectories in [-1,1]^2 um with "
            f"D(x,y) = {D0} + {GX}*x + {GY}*y um^2/s, dt = {DT} s, seed {SEED}; "
            f"tessellation parameters {shown} "
            f"and a partition filter keeping bins with >= {MIN_COUNT} points inside the box; "
            f"made by scripts/make_sample.py"
        ),
        tramway_version=np.array(version("tramway")),
        method=np.array(method),
    )


def summarize(method: str, data: dict) -> str:
    c, D, w = data["center"], data["D"], data["n_points"]
    g_true = data["true_gradient"]
    (gu, su) = plane_fit(c, D)
    (gw, sw) = plane_fit(c, D, w)
    tg = data["tramway_grad"]
    ok = np.all(np.isfinite(tg), axis=1)
    k = np.sum(data["neighbours"] >= 0, axis=1)
    rel = np.abs(D - data["D_true"]) / data["D_true"]
    lines = [
        f"[{method}] bins={len(D)}  translocations/bin: min={w.min()} "
        f"median={int(np.median(w))} max={w.max()}  neighbours/bin: {k.min()}-{k.max()} "
        f"(table width {data['neighbours'].shape[1]})",
        f"  D: mean={D.mean():.4f}  |D-D_true|/D_true median={np.median(rel):.3f}",
        f"  true gradient            : ({g_true[0]:+.4f}, {g_true[1]:+.4f})",
        f"  plane fit, unweighted    : ({gu[0]:+.4f} +- {su[0]:.4f}, {gu[1]:+.4f} +- {su[1]:.4f})",
        f"  plane fit, n-weighted    : ({gw[0]:+.4f} +- {sw[0]:.4f}, {gw[1]:+.4f} +- {sw[1]:.4f})",
        f"  TRamWAy grad1 (angle .9) : mean ({np.mean(tg[ok, 0]):+.4f}, {np.mean(tg[ok, 1]):+.4f})"
        f"  median ({np.median(tg[ok, 0]):+.4f}, {np.median(tg[ok, 1]):+.4f})"
        f"  per-bin std ({np.std(tg[ok, 0]):.3f}, {np.std(tg[ok, 1]):.3f}),"
        f" {np.sum(~ok)} bins without gradient",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not write files")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)

    warnings.simplefilter("ignore")  # TRamWAy's deprecation chatter
    np.random.seed(SEED)  # noqa: NPY002  (TRamWAy draws from numpy's global generator)
    df = simulate()
    n_disp = len(df) - df["n"].nunique()
    print(
        f"simulated {df['n'].nunique()} trajectories, {len(df)} points, {n_disp} displacements; "
        f"D range in box [{true_D(np.array([BOX[0], BOX[1]])):.3f}, "
        f"{true_D(np.array([BOX[1], BOX[0]])):.3f}]"
    )
    for method, params in TESSELLATIONS.items():
        data = make_map(df, method, params)
        print(summarize(method, data))
        if not args.check:
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"sample_{method}.npz"
            np.savez_compressed(path, **data)
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            print(f"  wrote {shown} ({path.stat().st_size / 1024:.1f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
