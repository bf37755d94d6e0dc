"""What the plotting functions share: matplotlib import, field values and labels, 3D slabs."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from ..errors import require
from ..topology import BIN, SPACE, TessellationError, Topology, table_csr, topology
from .geometry import typical_spacing

#: The component name that asks for the length of a vector (``component="magnitude"``).
MAGNITUDE = "magnitude"


def padded_table(topo: Topology) -> np.ndarray:
    """The neighbour table as a padded (n, k) array, whatever the Dataset's layout."""
    if topo.count is not None:  # ragged: neighbours(edge) and neighbour_count(bin)
        return pad_csr(*table_csr(topo))
    return np.asarray(topo.neighbours.transpose(BIN, ...).values)


def pad_csr(indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """A CSR table as a padded (n, k) array (-1 padding)."""
    deg = np.diff(indptr)
    out = np.full((len(deg), max(int(deg.max()) if len(deg) else 0, 1)), -1, dtype=np.int64)
    rows = np.repeat(np.arange(len(deg)), deg)
    out[rows, np.arange(len(indices)) - indptr[rows]] = indices
    return out


def pyplot() -> Any:
    """``matplotlib.pyplot``, or an ImportError naming the ``plot`` extra."""
    return require("matplotlib.pyplot", "plot", "xtramgrad's plots")


def new_axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    _, ax = pyplot().subplots(figsize=(5.5, 4.5), layout="constrained")
    return ax


def space_names(ds: xr.Dataset) -> list[str]:
    return [str(s) for s in topology(ds).space]


def space_units(ds: xr.Dataset) -> str:
    u = ds["center"].attrs.get("units")
    return f" [{u}]" if u else ""


def label_axes(ax: Any, ds: xr.Dataset, plane: Sequence[int]) -> None:
    names = space_names(ds)
    ax.set_aspect("equal")
    ax.set_xlabel(names[plane[0]] + space_units(ds))
    ax.set_ylabel(names[plane[1]] + space_units(ds))


class Field(NamedTuple):
    """One value per bin, with what the colour bar should say about it."""

    values: np.ndarray
    #: e.g. "gradient of diffusivity, x component [um^2/s / um]"
    label: str
    #: "x", "magnitude", ... or None for a scalar measurement
    component: str | None
    units: str | None


def _component_index(da: xr.DataArray, component: Any, name: Any) -> tuple[str, Any]:
    """The name of the component and how to select it along ``space``."""
    labels = [str(v) for v in da[SPACE].values] if SPACE in da.coords else [
        str(j) for j in range(da.sizes[SPACE])
    ]
    if isinstance(component, (int, np.integer)) and not isinstance(component, bool):
        if not -len(labels) <= int(component) < len(labels):
            raise ValueError(
                f"component={component!r}; {name!r} has {len(labels)} components "
                f"{labels}: pass one of them, an index in [0, {len(labels) - 1}] or "
                f"{MAGNITUDE!r}."
            )
        return labels[int(component)], {SPACE: int(component)}
    if str(component) in labels:
        return str(component), {SPACE: labels.index(str(component))}
    raise ValueError(
        f"component={component!r}; {name!r} has components {labels}: pass one of them, an "
        f"index or {MAGNITUDE!r}."
    )


def field(
    ds: xr.Dataset, variable: Hashable | xr.DataArray | None, component: Any = None
) -> Field | None:
    """The (bin,) values to colour the map with, and their colour-bar label.

    A variable with a ``space`` dim (a gradient) needs ``component``: a label of ``space``
    (``"x"``), a position, or ``"magnitude"`` (the Euclidean length); a variable already
    reduced to one component (``g.sel(space="x")``) is recognised from its scalar ``space``
    coordinate.
    """
    if variable is None:
        if component is not None:
            raise ValueError(f"component={component!r} needs a variable to take it from.")
        return None
    if isinstance(variable, xr.DataArray):
        da = variable
        name = da.name
    else:
        if variable not in ds.variables:
            raise TessellationError(
                f"the Dataset has no variable {variable!r} to plot; its variables are "
                f"{[str(v) for v in ds.data_vars]}."
            )
        da = ds[variable]
        name = variable
    comp: str | None = None
    if SPACE in da.dims:
        if component is None:
            labels = [str(v) for v in da[SPACE].values] if SPACE in da.coords else []
            raise ValueError(
                f"variable {name!r} has a {SPACE!r} dim (a vector, such as a gradient); pick "
                f"what to map with component= (one of {labels}, a position, or "
                f"{MAGNITUDE!r})."
            )
        if str(component) == MAGNITUDE:
            units_attrs = da.attrs
            da = (da**2).sum(SPACE, skipna=False) ** 0.5
            da.attrs = dict(units_attrs)
            comp = MAGNITUDE
        else:
            comp, index = _component_index(da, component, name)
            da = da.isel(index)
    elif component is not None:
        if SPACE in da.coords and da[SPACE].ndim == 0 and str(da[SPACE].item()) == str(component):
            comp = str(component)
        else:
            raise ValueError(
                f"component={component!r}, but variable {name!r} has no {SPACE!r} dim "
                f"(dims {tuple(da.dims)}); drop component= for a scalar measurement."
            )
    elif SPACE in da.coords and da[SPACE].ndim == 0:
        comp = str(da[SPACE].item())
    extra = [d for d in da.dims if d != BIN]
    if BIN not in da.dims or any(da.sizes[d] != 1 for d in extra):
        raise TessellationError(
            f"variable {name!r} has dims {tuple(da.dims)}; a map needs one value per bin. "
            "Select the other dims first, e.g. ds.D.isel(time=0), or pass component= for a "
            "gradient."
        )
    if da.sizes[BIN] != ds.sizes[BIN]:
        raise TessellationError(
            f"variable {name!r} has {da.sizes[BIN]} bins but the Dataset has "
            f"{ds.sizes[BIN]}."
        )
    values = np.asarray(da.squeeze(extra, drop=True).values, dtype=np.float64)
    base = str(da.attrs.get("long_name", name if name is not None else ""))
    if comp == MAGNITUDE:
        text = f"|{base}|"
    elif comp is not None:
        text = f"{base}, {comp} component"
    else:
        text = base
    units = da.attrs.get("units")
    if units:
        text += f" [{units}]"
    return Field(values, text, comp, str(units) if units else None)


class View(NamedTuple):
    """The bins drawn and the plane they are drawn in."""

    bins: np.ndarray
    #: the two axes drawn (positions along ``space``)
    plane: list[int]
    #: (m, 2) centers of the drawn bins in that plane
    xy: np.ndarray
    #: e.g. "z = 0.5 +- 0.25" for a 3D slab, "" otherwise
    title: str
    spacing: float


def view(ds: xr.Dataset, at: Mapping[Hashable, float] | None) -> View:
    """The bins of a 2D tessellation, or of a slab of a 3D one (``at={"z": 0.5}``).

    A slab holds the bins whose center lies within half a typical neighbour distance of
    the plane (default: the middle layer along the last axis).
    """
    topo = topology(ds)
    centers = np.asarray(topo.center.values, dtype=np.float64)
    d = centers.shape[1]
    spacing = typical_spacing(centers, padded_table(topo))
    if d == 2:
        if at is not None:
            raise TessellationError("at= selects a slab of a 3D tessellation; this one is 2D.")
        return View(np.arange(len(centers)), [0, 1], centers, "", spacing)
    if d != 3:
        raise TessellationError(f"maps are drawn in 2D and 3D; this tessellation is {d}D.")
    space = space_names(ds)
    if at is None:
        axis = 2
        levels = np.unique(centers[:, axis])
        value = float(levels[len(levels) // 2])
    else:
        if not isinstance(at, Mapping) or len(at) != 1:
            raise TessellationError(f"at={at!r}; expected one axis, e.g. {{'z': 0.5}}.")
        ((key, value),) = at.items()
        if str(key) not in space:
            raise TessellationError(f"at={dict(at)!r}: {key!r} is not one of {space}.")
        axis = space.index(str(key))
        value = float(value)
    keep = np.abs(centers[:, axis] - value) <= 0.5 * spacing
    if not keep.any():
        raise TessellationError(
            f"no bin center lies within {0.5 * spacing:.3g} of {space[axis]} = {value}; "
            f"the centers span [{centers[:, axis].min():.3g}, {centers[:, axis].max():.3g}]."
        )
    plane = [j for j in range(3) if j != axis]
    bins = np.flatnonzero(keep)
    title = f"{space[axis]} = {value:.3g} \u00b1 {0.5 * spacing:.2g}"
    return View(bins, plane, centers[bins][:, plane], title, spacing)
