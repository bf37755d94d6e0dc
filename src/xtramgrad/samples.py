"""Sample diffusivity maps shipped with the package, loaded with one call.

Each sample is a real TRamWAy 0.7 diffusivity map: TRamWAy tessellated a simulated 2D
random walk whose diffusivity has a known linear gradient, ``D(x, y) = D0 + gx x + gy y``,
and inferred ``D`` per bin (mode ``'d'``). ``scripts/make_sample.py`` regenerates the files
(``src/xtramgrad/data/sample_<name>.npz``, documented in ``src/xtramgrad/data/README.md``).

>>> import xtramgrad
>>> "hexagon" in xtramgrad.samples.available()
True
>>> ds = xtramgrad.open_sample("hexagon")
>>> ds.D.attrs["units"], ds.attrs["true_gradient"]
('um^2/s', [0.15, -0.08])
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
import xarray as xr

from .topology import BIN, SPACE, TessellationError, from_neighbours

__all__ = ["available", "open_sample", "DEFAULT_SAMPLE"]

#: The sample opened by :func:`open_sample` without a name.
DEFAULT_SAMPLE = "hexagon"

_PREFIX, _SUFFIX = "sample_", ".npz"
_REQUIRED = ("center", "neighbours", "D")


def _data_dir() -> Any:
    return resources.files("xtramgrad") / "data"


def available() -> list[str]:
    """Names of the shipped samples (``open_sample(name)`` accepts each).

    Examples
    --------
    >>> names = available()
    >>> "grid" in names and "hexagon" in names
    True
    """
    folder = _data_dir()
    if not folder.is_dir():
        return []
    names = [
        p.name[len(_PREFIX) : -len(_SUFFIX)]
        for p in folder.iterdir()
        if p.name.startswith(_PREFIX) and p.name.endswith(_SUFFIX)
    ]
    return sorted(names)


def _scalar(z: Any, key: str) -> Any:
    value = z[key]
    return value.item() if value.ndim == 0 else value


def load_npz(path: Any) -> xr.Dataset:
    """Build the tessellation Dataset from one sample file (a path or file-like object).

    The file holds ``center`` (n, 2), ``neighbours`` (n, k) padded with -1, ``D`` (n,) and,
    optionally, ``D_true``, ``n_points``, ``tramway_grad`` (n, 2), ``tramway_cell``,
    ``true_gradient`` (2,), ``D0``, ``dt``, ``seed``, ``description``, ``tramway_version``
    and ``method``.
    """
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in _REQUIRED if k not in z.files]
        if missing:
            raise TessellationError(
                f"sample file {path} lacks {missing}; expected arrays {list(_REQUIRED)} at "
                "least. Regenerate it with scripts/make_sample.py."
            )
        center = np.asarray(z["center"], dtype=np.float64)
        ds = from_neighbours(center, np.asarray(z["neighbours"]).astype(np.int64))
        ds["center"].attrs["units"] = "um"
        ds["D"] = (BIN, np.asarray(z["D"], dtype=np.float64), {
            "long_name": "diffusivity",
            "units": "um^2/s",
            "description": "TRamWAy 0.7 mode 'd' estimate",
        })
        if "D_true" in z.files:
            ds["D_true"] = (BIN, np.asarray(z["D_true"], dtype=np.float64), {
                "long_name": "true diffusivity",
                "units": "um^2/s",
                "description": "the simulated D(x, y) at the bin centers",
            })
        if "n_points" in z.files:
            ds["n_points"] = (BIN, np.asarray(z["n_points"]).astype(np.int64), {
                "long_name": "number of points in the bin",
            })
        if "tramway_grad" in z.files:
            ds["tramway_grad_D"] = ((BIN, SPACE), np.asarray(z["tramway_grad"], np.float64), {
                "long_name": "TRamWAy 0.7's own gradient of D (grad1, selection_angle=0.9)",
                "units": "um^2/s / um",
            })
        if "tramway_cell" in z.files:
            ds = ds.assign_coords(tramway_cell=(BIN, np.asarray(z["tramway_cell"], np.int64)))
        attrs: dict[str, Any] = {}
        for key in ("description", "tramway_version", "method", "dt", "seed", "D0"):
            if key in z.files:
                attrs[key] = _scalar(z, key)
        if "true_gradient" in z.files:
            attrs["true_gradient"] = np.asarray(z["true_gradient"], np.float64).tolist()
            attrs["true_gradient_units"] = "um^2/s / um"
    if "method" in attrs:
        attrs["tessellation"] = str(attrs["method"])
    if attrs.get("tessellation") == "grid":
        attrs.update(_grid_attrs(center))
    ds.attrs.update(attrs)
    return ds


def _grid_attrs(center: np.ndarray) -> dict[str, Any]:
    """Spacing, origin and shape of the regular grid whose bins the centers are."""
    spacing, origin, shape = [], [], []
    for j in range(center.shape[1]):
        coords = np.unique(np.round(center[:, j], 12))
        step = float(np.min(np.diff(coords))) if len(coords) > 1 else 1.0
        spacing.append(step)
        origin.append(float(coords[0]))
        shape.append(int(round((coords[-1] - coords[0]) / step)) + 1)
    return {"grid_spacing": spacing, "grid_origin": origin, "grid_shape": shape}


def open_sample(name: str = DEFAULT_SAMPLE) -> xr.Dataset:
    """Open a shipped TRamWAy diffusivity map as a tessellation Dataset.

    Parameters
    ----------
    name : str
        One of :func:`available` (``"grid"``, ``"hexagon"``, ``"kmeans"``: the TRamWAy
        tessellation method). Default ``"hexagon"``.

    Returns
    -------
    xarray.Dataset
        The tessellation (``center`` in um, ``neighbours`` exactly as TRamWAy's inference
        uses them: bins without data dropped with their edges, the 8-neighbour adjacency on
        grids) with variables ``D`` (TRamWAy's estimate, um^2/s), ``D_true`` (the simulated
        diffusivity at the centers), ``n_points`` and ``tramway_grad_D`` (TRamWAy's own
        gradient of ``D``, for comparison). ``attrs["true_gradient"]`` is the known gradient
        (um^2/s per um) and ``attrs["description"]`` says how the map was made.

    Examples
    --------
    >>> import numpy as np, xtramgrad
    >>> ds = xtramgrad.open_sample("grid")
    >>> ds.attrs["tessellation"], ds.attrs["grid_shape"]
    ('grid', [20, 20])
    >>> g = ds.tram.grad("D")
    >>> bool(np.allclose(g, ds.tramway_grad_D, rtol=1e-9, equal_nan=True))
    True
    """
    names = available()
    if name not in names:
        raise TessellationError(
            f"no sample named {name!r}; the shipped samples are {names}. Use "
            "xtramgrad.samples.available() to list them."
        )
    with resources.as_file(_data_dir() / f"{_PREFIX}{name}{_SUFFIX}") as path:
        return load_npz(path)
