"""Generate ``notebooks/data/force_map.rwa``: a TRamWAy 0.7 DV analysis with a known force.

Run from the repository root with TRamWAy 0.7 installed (``pip install -e ".[tramway]"``)::

    .venv/bin/python scripts/make_force_rwa.py           # writes notebooks/data/force_map.rwa
    .venv/bin/python scripts/make_force_rwa.py --check   # also reloads it and prints the tree

About 3 minutes on one core: TRamWAy's ``'dv'`` inference is the slow step. The notebook
``notebooks/tramway_force_map.ipynb`` reads the file; it never runs TRamWAy's inference.

It uses TRamWAy the way a user does (``tramway.helper``), end to end:

1. simulate 2D trajectories in a harmonic trap with a diffusivity gradient, Itô scheme
   ``r[k+1] = r[k] + D(r) F(r) dt / kT + sqrt(2 D(r) dt) N(0, I)``, the model of TRamWAy's
   ``'dv'`` mode, with

   - ``D(x, y) = 0.5 + 0.15 x - 0.08 y`` um^2/s (as the other samples),
   - ``V(x, y) = K (x^2 + y^2) / 2`` with ``K = 4`` kT/um^2, so that the force is
     ``F = -grad V = -K (x, y)`` kT/um (up to 5.7 kT/um in the corners);

   trajectories start uniformly in [-1, 1]^2, take up to 10 steps of dt = 0.02 s and stop at
   their first point outside the box; columns ``n, x, y, t``;
2. ``tessellate(tree, 'hexagon', label='hexagon', avg_location_count=...)``;
3. ``infer(tree, 'dv', input_label='hexagon', output_label='DV', sigma=0)``: the map has
   columns ``diffusivity``, ``potential`` (kT, shifted by TRamWAy to a minimum of 0) and
   ``force x``, ``force y`` (TRamWAy's ``-grad1`` of the potential, selection_angle 0.9);
4. ``Partition.freeze()``, then ``save_rwa(..., force=True)``.

Deterministic up to the ``datetime`` of each analysis's metadata and the last digits of
TRamWAy's optimizer.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import _trajectories as trajectories  # scripts/ is on the path of a script
import numpy as np
import pandas as pd

SEED = 20240801
D0, GX, GY = 0.5, 0.15, -0.08  # um^2/s, um/s, um/s
K = 4.0  # kT/um^2: V = K (x^2 + y^2) / 2
DT = 0.02  # s
N_TRAJECTORIES = 1000
MAX_STEPS = 10
BOX = (-1.0, 1.0)
AVG_LOCATION_COUNT = 120

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "notebooks" / "data" / "force_map.rwa"
LABEL = "hexagon"
DV_LABEL = "DV"


def diffusivity(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return D0 + GX * x + GY * y


def force(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The true force -grad V (kT/um), shape (..., 2)."""
    return np.stack([-K * x, -K * y], axis=-1)


def simulate(seed: int = SEED) -> pd.DataFrame:
    """Trajectories in the trap: drift D F, diffusivity D (see scripts/_trajectories.py)."""
    return trajectories.simulate(
        seed, N_TRAJECTORIES, MAX_STEPS, DT, BOX,
        lambda xy: diffusivity(xy[:, 0], xy[:, 1]), lambda xy: force(xy[:, 0], xy[:, 1]),
    )



def build_tree(df: pd.DataFrame, verbose: bool = False):
    from tramway.core.analyses import Analyses
    from tramway.helper import infer, tessellate

    tree = Analyses(df)
    np.random.seed(SEED)  # noqa: NPY002  (some TRamWAy tessellations use the global RNG)
    tessellate(tree, "hexagon", label=LABEL, comment="hexagon tessellation",
               avg_location_count=AVG_LOCATION_COUNT)
    t = time.perf_counter()
    infer(tree, "dv", input_label=LABEL, output_label=DV_LABEL, sigma=0.0,
          comment="diffusivity and potential, mode 'dv'")
    if verbose:
        print(f"dv inference: {time.perf_counter() - t:.0f} s")
    tree[LABEL].data.freeze()
    return tree


def describe(path: Path) -> str:
    from tramway.core.hdf5 import load_rwa
    from tramway.inference.base import distributed

    tree = load_rwa(str(path))
    partition = tree[LABEL].data
    dv = tree[LABEL][DV_LABEL].data
    cells = distributed(partition)
    return "\n".join([
        str(tree),
        f"points: {tree.data.shape} columns {list(tree.data.columns)}",
        f"[{LABEL}] {type(partition.tessellation).__name__}: "
        f"{partition.tessellation.number_of_cells} cells, {len(list(cells.keys()))} with data; "
        f"DV map {dv.maps.shape} {list(dv.maps.columns)} mode={dv.mode!r}",
    ])


def main(argv=None) -> int:
    def build(df: pd.DataFrame):  # noqa: ANN202
        return build_tree(df, verbose=True)

    return trajectories.write_rwa(argv, __doc__, OUTPUT, simulate, build, describe)


if __name__ == "__main__":
    sys.exit(main())
