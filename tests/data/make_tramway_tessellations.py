"""Regenerate tests/data/tramway_tessellations.npz from TRamWAy 0.7's own tessellations.

Usage (from the repository root, with tramway==0.7 installed)::

    .venv/bin/python tests/data/make_tramway_tessellations.py

A 2D random walk (fixed seed) is tessellated with TRamWAy's grid, kmeans, gwr and
hexagon methods through ``tramway.helper.tessellate``; the cells are then handed to
``tramway.inference.base.distributed`` exactly as ``infer`` does (translocations,
default ``Distributed`` group).  What is stored is what TRamWAy's gradients see:
the centers of the bins kept in the ``Distributed`` (bins without data dropped)
and its adjacency (for grid: the diagonal, 8-neighbour adjacency; for kmeans: the
Voronoi adjacency minus the edges pruned by TRamWAy; edges of dropped bins
removed), re-indexed to 0..n-1 in TRamWAy's order, as a neighbour table padded
with -1 in TRamWAy's csr row order.

The script checks itself: TRamWAy's ``grad1`` on the original ``Distributed``
(original cell keys) equals ``tramway_reference.tramway_grad1`` on the stored
tables, bit for bit.

Nothing runs on import (pytest imports this file when collecting doctests).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "tramway_tessellations.npz"

SEED = 20240601
N_TRAJECTORIES = 250
TRAJECTORY_LENGTH = 16  # 4000 locations, 3750 translocations
STEP_SIGMA = 0.03  # per axis, per frame
FRAME = 0.05  # s

# name -> (method, keyword arguments to tramway.helper.tessellate)
TESSELLATIONS = {
    # default grid: bounds from the data, near-square rectangular cells
    "grid": ("grid", dict(avg_location_count=20)),
    # grid with exactly square cells (0.1 x 0.1): diagonal neighbours sit at 45 degrees
    # up to the rounding of np.linspace midpoints (tie cases of the quadrant rule)
    "grid_square": (
        "grid",
        dict(
            lower_bound=np.array([-0.3, -0.3]),
            upper_bound=np.array([1.3, 1.3]),
            count_per_dim=np.array([16, 16]),
        ),
    ),
    "kmeans": ("kmeans", dict(avg_location_count=20)),
    "gwr": ("gwr", dict(avg_location_count=20)),
    "hexagon": ("hexagon", dict(avg_location_count=20)),
}


def simulate():
    """Brownian trajectories started uniformly in the unit square (DataFrame n, x, y, t)."""
    import pandas as pd

    rng = np.random.default_rng(SEED)
    frames = []
    for n in range(N_TRAJECTORIES):
        start = rng.uniform(0.0, 1.0, size=2)
        xy = start + np.cumsum(rng.normal(0.0, STEP_SIGMA, (TRAJECTORY_LENGTH, 2)), axis=0)
        frames.append(
            pd.DataFrame(
                dict(
                    n=n + 1,
                    x=xy[:, 0],
                    y=xy[:, 1],
                    t=FRAME * np.arange(TRAJECTORY_LENGTH),
                )
            )
        )
    return pd.concat(frames, ignore_index=True)


def tessellate_and_distribute(points, method, kwargs, seed):
    import warnings

    from tramway.helper import tessellate
    from tramway.inference.base import Distributed, distributed

    np.random.seed(seed)  # noqa: NPY002 (TRamWAy's kmeans/gwr draw from the global generator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cells = tessellate(points, method, **kwargs)
        dist = distributed(cells, new_group=Distributed)  # what infer() builds
    return cells, dist


def main():
    sys.path.insert(0, str(HERE.parent))
    from importlib.metadata import version

    import scipy
    from tramway.inference.gradient import grad1

    from tramway_reference import neighbour_table_from_csr, tramway_grad1

    points = simulate()
    arrays = {}
    rng = np.random.default_rng(SEED + 1)
    for k, (name, (method, kwargs)) in enumerate(TESSELLATIONS.items()):
        cells, dist = tessellate_and_distribute(points, method, kwargs, SEED + 10 + k)
        keys = np.array(list(dist.cells.keys()))
        assert np.all(np.diff(keys) > 0)
        A = dist.adjacency
        assert A.dtype == bool, A.dtype
        # no edge to a dropped bin survives
        kept = np.zeros(A.shape[0], dtype=bool)
        kept[keys] = True
        assert np.all(kept[A.tocoo().row]) and np.all(kept[A.tocoo().col])
        centers = np.vstack([dist.cells[j].center for j in keys]).astype(np.float64)
        assert np.array_equal(centers, cells.tessellation.cell_centers[keys])
        neighbours = neighbour_table_from_csr(A, keys)
        counts = np.array([dist.cells[j].tcount for j in keys])
        location_counts = np.asarray(cells.location_count)[keys]

        # self-check against TRamWAy on its own Distributed (original keys)
        y = rng.normal(size=keys.size)
        y[rng.uniform(size=keys.size) < 0.1] = np.nan
        present = ~np.isnan(y)
        reverse_index = np.full(A.shape[0], -1, dtype=int)
        reverse_index[keys[present]] = np.arange(present.sum())
        X = y[present]
        for sa in (0.9, 0.5, None):
            dist.clear_caches()
            ref = np.full((keys.size, 2), np.nan)
            for pos in np.flatnonzero(present):
                g = grad1(dist, keys[pos], X, reverse_index, selection_angle=sa)
                if g is not None:
                    ref[pos] = g
            ours = tramway_grad1(centers, neighbours, y, selection_angle=sa)
            assert np.array_equal(ref, ours, equal_nan=True), (name, sa)

        arrays[f"{name}__centers"] = centers
        arrays[f"{name}__neighbours"] = neighbours.astype(np.int16)
        arrays[f"{name}__counts"] = counts.astype(np.int32)
        arrays[f"{name}__location_counts"] = location_counts.astype(np.int32)
        deg = (neighbours >= 0).sum(axis=1)
        print(
            f"{name:12s} {type(cells.tessellation).__name__:14s} "
            f"{cells.tessellation.cell_centers.shape[0]:4d} cells, {keys.size:4d} kept, "
            f"degree {deg.min()}-{deg.max()} (mean {deg.mean():.2f}), "
            f"adjacency {A.dtype}"
        )

    arrays["names"] = np.array(list(TESSELLATIONS))
    arrays["meta__versions"] = np.array(
        [
            f"tramway {version('tramway')}",
            f"numpy {np.__version__}",
            f"scipy {scipy.__version__}",
            f"python {sys.version.split()[0]}",
        ]
    )
    arrays["meta__simulation"] = np.array(
        [
            f"seed={SEED}",
            f"trajectories={N_TRAJECTORIES}",
            f"length={TRAJECTORY_LENGTH}",
            f"step_sigma={STEP_SIGMA}",
            f"frame={FRAME}",
        ]
    )
    np.savez_compressed(OUTPUT, **arrays)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
