"""Generate ``tests/data/sample.rwa``: a small TRamWAy 0.7 analysis file for importer tests.

Run from the repository root with TRamWAy 0.7 installed::

    .venv/bin/python tests/data/make_rwa.py           # writes tests/data/sample.rwa
    .venv/bin/python tests/data/make_rwa.py --check   # also reloads it and prints the tree

It uses TRamWAy the way a user does (``tramway.helper``), end to end:

1. simulate a few thousand points of 2D Brownian trajectories whose diffusivity has a
   linear gradient, ``D(x, y) = 0.5 + 0.15 x - 0.08 y`` um^2/s (Itô scheme, stop at the
   first point outside [-1, 1]^2), columns ``n, x, y, t``;
2. ``tessellate(tree, method, label=method, ...)`` for 'grid', 'kmeans', 'gwr' and
   'hexagon' (30-150 bins each) into one analysis tree rooted at the DataFrame;
3. ``infer(tree, 'd', input_label=method, output_label='D', sigma=0)`` (diffusivity);
4. ``infer(tree, 'gradient', feature='diffusivity', input_label=(method, 'D'),
   output_label='gradD')`` (TRamWAy's gradient plugin, default options, i.e.
   ``grad1`` with ``selection_angle=0.9``);
5. ``Partition.freeze()`` (drops GWR's training graph, as TRamWAy's own pipeline does
   before saving), then ``save_rwa('tests/data/sample.rwa', tree, force=True)``.

The resulting structure and how to read it back are described in ``tests/data/README.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import _trajectories as trajectories  # noqa: E402

SEED = 20240612
D0, GX, GY = 0.5, 0.15, -0.08  # um^2/s, um/s, um/s
DT = 0.02  # s
N_TRAJECTORIES = 400
MAX_STEPS = 10
BOX = (-1.0, 1.0)

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "sample.rwa"

# label -> (TRamWAy method, tessellate() keyword arguments)
TESSELLATIONS = {
    "grid": ("grid", dict(avg_location_count=60)),
    "kmeans": ("kmeans", dict(avg_location_count=60)),
    "gwr": ("gwr", dict(avg_location_count=60)),
    "hexagon": ("hexagon", dict(avg_location_count=40)),
}
D_LABEL = "D"
GRADIENT_LABEL = "gradD"


def simulate(seed: int = SEED) -> pd.DataFrame:
    return trajectories.simulate(
        seed, N_TRAJECTORIES, MAX_STEPS, DT, BOX,
        lambda xy: D0 + GX * xy[:, 0] + GY * xy[:, 1],
    )



def build_tree(df: pd.DataFrame):
    from tramway.core.analyses import Analyses
    from tramway.helper import infer, tessellate

    tree = Analyses(df)
    for label, (method, kwargs) in TESSELLATIONS.items():
        np.random.seed(SEED)  # noqa: NPY002  (GWR draws batches from numpy's global RNG)
        tessellate(tree, method, label=label, comment=f"{method} tessellation", **kwargs)
        infer(
            tree,
            "d",
            input_label=label,
            output_label=D_LABEL,
            sigma=0.0,
            comment="diffusivity, mode 'd'",
        )
        infer(
            tree,
            "gradient",
            feature="diffusivity",
            input_label=(label, D_LABEL),
            output_label=GRADIENT_LABEL,
            comment="TRamWAy gradient of the diffusivity",
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
        D = tree[label][D_LABEL].data
        G = tree[label][D_LABEL][GRADIENT_LABEL].data
        cells = distributed(partition)
        lines.append(
            f"[{label}] {type(tess).__name__}: {tess.number_of_cells} cells, "
            f"{len(list(cells.keys()))} with data, inference edges {cells.adjacency.nnz}; "
            f"D map {D.maps.shape} {list(D.maps.columns)} mode={D.mode!r}; "
            f"gradient map {G.maps.shape} {list(G.maps.columns)} mode={G.mode!r} "
            f"feature={G.feature!r}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    return trajectories.write_rwa(argv, __doc__, OUTPUT, simulate, build_tree, describe)


if __name__ == "__main__":
    sys.exit(main())
