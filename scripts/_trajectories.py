"""Brownian trajectories in a box, shared by the scripts that make the shipped data
(``scripts/make_sample.py``, ``scripts/make_force_rwa.py``, ``tests/data/make_rwa.py``),
and the command line of the scripts that write TRamWAy .rwa files (:func:`write_rwa`).

Not part of the package: the package never simulates.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def simulate(
    seed: int,
    n_trajectories: int,
    max_steps: int,
    dt: float,
    box: tuple[float, float],
    diffusivity: Callable[[np.ndarray], np.ndarray],
    force: Callable[[np.ndarray], np.ndarray] | None = None,
) -> pd.DataFrame:
    """Overdamped Langevin trajectories ``dx = D F dt + sqrt(2 D dt) N(0, 1)`` (``F`` in kT
    per length; no drift without ``force``), started uniformly in the square ``box``,
    stopped on exit (the exiting point is recorded, nothing after it); trajectories reduced
    to one point are dropped. ``diffusivity(xy)`` (m,) and ``force(xy)`` (m, 2) take
    positions (m, 2). Columns ``n, x, y, t`` as TRamWAy reads them."""
    rng = np.random.default_rng(seed)
    lo, hi = box
    pos = rng.uniform(lo, hi, size=(n_trajectories, 2))
    alive = np.ones(n_trajectories, dtype=bool)
    traj, present = [pos.copy()], [alive.copy()]
    for _ in range(max_steps):
        D = np.where(alive, diffusivity(pos), 0.0)
        if force is not None:
            pos = pos + D[:, None] * force(pos) * dt
        pos = pos + np.sqrt(2.0 * D * dt)[:, None] * rng.standard_normal(pos.shape)
        traj.append(pos.copy())
        present.append(alive.copy())
        alive &= np.all((lo <= pos) & (pos <= hi), axis=1)
    xy = np.stack(traj, axis=1)  # (trajectories, max_steps + 1, 2)
    keep = np.stack(present, axis=1)
    n = np.broadcast_to(np.arange(1, n_trajectories + 1)[:, None], keep.shape)
    t = np.broadcast_to(np.arange(max_steps + 1)[None, :] * dt, keep.shape)
    df = pd.DataFrame(
        {"n": n[keep].astype(float), "x": xy[..., 0][keep], "y": xy[..., 1][keep], "t": t[keep]}
    )
    counts = df.groupby("n")["n"].transform("size")
    return df[counts > 1].reset_index(drop=True)


def write_rwa(argv: Sequence[str] | None, doc: str, output: Path,
              simulate: Callable[[], pd.DataFrame], build_tree: Callable[[pd.DataFrame], Any],
              describe: Callable[[Path], str]) -> int:
    """The command line of a script that writes a TRamWAy .rwa file: simulate, build the
    analysis tree, save it to ``--out`` (default ``output``), and with ``--check`` reload
    and describe the file. ``doc``: the script's docstring (its first line is the help)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="reload and describe the file")
    parser.add_argument("--out", type=Path, default=output)
    args = parser.parse_args(argv)

    from tramway.core.hdf5 import save_rwa

    warnings.simplefilter("ignore")  # TRamWAy's deprecation chatter
    df = simulate()
    tree = build_tree(df)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_rwa(str(args.out), tree, force=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB), {len(df)} points")
    if args.check:
        print(describe(args.out))
    return 0
