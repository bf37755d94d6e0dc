"""Generate ``tests/data/sample_time.rwa``: a TRamWAy 0.7 spatio-temporal analysis file.

Run from the repository root with TRamWAy 0.7 installed::

    .venv/bin/python tests/data/make_rwa_time.py           # writes tests/data/sample_time.rwa
    .venv/bin/python tests/data/make_rwa_time.py --check   # also reloads it and describes it

TRamWAy is used the way a user does (``tramway.helper``), end to end:

1. simulate 2D Brownian trajectories whose diffusivity has a linear gradient,
   ``D(x, y) = 0.5 + 0.15 x - 0.08 y`` um^2/s (Itô scheme, dt = 0.02 s, stop at the first
   point outside [-1, 1]^2); each trajectory starts at a random frame ``s`` < 40, at an x
   drawn in ``[-1 + s / 40, s / 40]``: the occupied region drifts right over time, so
   that cells hold data in some time windows and not in others;
2. ``tessellate(tree, method, label=method, time_window_duration=0.2,
   time_window_shift=0.1, ...)`` for 'grid' and 'kmeans': a TRamWAy time lattice
   (``tramway.tessellation.window.SlidingWindow``) over a spatial mesh, overlapping
   windows of 0.2 s every 0.1 s;
3. ``infer(tree, 'd', input_label=method, output_label='D', sigma=0)``: the diffusivity of
   every (cell, window) with data, on the lattice;
4. ``infer(tree, 'gradient', feature='diffusivity', input_label=(method, 'D'),
   output_label='gradD')``: TRamWAy's own gradient plugin on that lattice map (default
   options: ``grad1`` with ``selection_angle=0.9``), window by window;
5. ``Partition.freeze()`` then ``save_rwa('tests/data/sample_time.rwa', tree, force=True)``.

The resulting structure is described in ``tests/data/README.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import _trajectories as trajectories  # noqa: E402

SEED = 20240715
D0, GX, GY = 0.5, 0.15, -0.08  # um^2/s, um/s, um/s
DT = 0.02  # s
N_TRAJECTORIES = 500
MAX_STEPS = 8
START_FRAMES = 40  # trajectories start at a frame drawn uniformly in [0, START_FRAMES)
BOX = (-1.0, 1.0)
START_WIDTH, DRIFT = 1.0, 1.0  # um: x of the starts in [-1 + DRIFT * s / 40, ... + START_WIDTH]
WINDOW = dict(time_window_duration=0.2, time_window_shift=0.1)  # s

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "sample_time.rwa"

# label -> (TRamWAy method, tessellate() keyword arguments)
TESSELLATIONS = {
    "grid": ("grid", dict(avg_location_count=40)),
    "kmeans": ("kmeans", dict(avg_location_count=40)),
}
D_LABEL = "D"
GRADIENT_LABEL = "gradD"


def simulate(seed: int = SEED) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lo, hi = BOX
    frames = []
    for n in range(1, N_TRAJECTORIES + 1):
        start = int(rng.integers(START_FRAMES))
        # the start region drifts from left to right over time: in each window, part of
        # the mesh holds no data
        left = lo + DRIFT * start / START_FRAMES
        pos = np.array([rng.uniform(left, left + START_WIDTH), rng.uniform(lo, hi)])
        rows = [(n, pos[0], pos[1], start * DT)]
        for k in range(1, MAX_STEPS + 1):
            D = D0 + GX * pos[0] + GY * pos[1]
            pos = pos + np.sqrt(2.0 * D * DT) * rng.standard_normal(2)
            rows.append((n, pos[0], pos[1], (start + k) * DT))
            if not np.all((lo <= pos) & (pos <= hi)):
                break
        if len(rows) > 1:
            frames.append(np.array(rows))
    data = np.concatenate(frames)
    return pd.DataFrame(data, columns=["n", "x", "y", "t"])


def build_tree(df: pd.DataFrame):
    from tramway.core.analyses import Analyses
    from tramway.helper import infer, tessellate

    tree = Analyses(df)
    for label, (method, kwargs) in TESSELLATIONS.items():
        np.random.seed(SEED)  # noqa: NPY002  (kmeans draws from numpy's global RNG)
        tessellate(
            tree, method, label=label, comment=f"{method} tessellation, time windows",
            **WINDOW, **kwargs,
        )
        infer(
            tree, "d", input_label=label, output_label=D_LABEL, sigma=0.0,
            comment="diffusivity per time window, mode 'd'",
        )
        infer(
            tree, "gradient", feature="diffusivity", input_label=(label, D_LABEL),
            output_label=GRADIENT_LABEL, comment="TRamWAy gradient of the diffusivity",
        )
        tree[label].data.freeze()
    return tree


def describe(path: Path) -> str:
    from tramway.core.hdf5 import load_rwa
    from tramway.inference.base import distributed

    tree = load_rwa(str(path))
    lines = [str(tree), f"points: {tree.data.shape} columns {list(tree.data.columns)}"]
    for label in tree.labels:
        partition = tree[label].data
        tess = partition.tessellation
        mesh = tess.spatial_mesh
        n = mesh.number_of_cells
        seg = tess.time_lattice
        cells = distributed(partition)
        keys = np.array(sorted(cells.keys()))
        per_window = np.bincount(keys // n, minlength=len(seg))
        D = tree[label][D_LABEL].data
        G = tree[label][D_LABEL][GRADIENT_LABEL].data
        lines.append(
            f"[{label}] {type(tess).__name__} over {type(mesh).__name__}: {n} cells x "
            f"{len(seg)} windows {seg.tolist()}; cells with data per window "
            f"{per_window.tolist()}, in any window "
            f"{np.unique(keys % n).size}; D map {D.maps.shape}, gradient map "
            f"{G.maps.shape} {list(G.maps.columns)}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    return trajectories.write_rwa(argv, __doc__, OUTPUT, simulate, build_tree, describe)


if __name__ == "__main__":
    sys.exit(main())
