"""The schema of a tessellation Dataset: names, dims, the cheap checks and :func:`validate`."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from ..errors import TessellationError

__all__ = [
    "BIN",
    "SPACE",
    "NBR",
    "CENTER",
    "NEIGHBOURS",
    "LABEL",
    "VOLUME",
    "Topology",
    "topology",
    "check_values",
    "validate",
]

BIN = "bin"
SPACE = "space"
NBR = "nbr"
CENTER = "center"
NEIGHBOURS = "neighbours"
LABEL = "neighbour_label"
VOLUME = "volume"
DEFAULT_SPACE = ("x", "y", "z")
SCHEMA_VARIABLES = (CENTER, NEIGHBOURS, LABEL, VOLUME)


class Topology(NamedTuple):
    """The tessellation variables of a Dataset, checked and normalised."""

    center: xr.DataArray  # (bin, space) float64
    neighbours: xr.DataArray  # (bin, nbr) integer
    labels: xr.DataArray | None  # (bin, nbr) integer

    @property
    def ndim(self) -> int:
        return int(self.center.sizes[SPACE])

    @property
    def space(self) -> list[Hashable]:
        if SPACE in self.center.coords:
            return list(self.center.coords[SPACE].values)
        return list(DEFAULT_SPACE[: self.ndim])


# --------------------------------------------------------------------------- checks


def _is_lazy(da: xr.DataArray) -> bool:
    return not isinstance(da.variable._data, np.ndarray) and hasattr(da.data, "dask")


def _require(ds: xr.Dataset, name: str, dims: tuple[str, ...], fix: str) -> xr.DataArray:
    if name not in ds.variables:
        raise TessellationError(
            f"the Dataset has no {name!r} variable; expected {name}{dims}. {fix}"
        )
    da = ds[name]
    if tuple(da.dims) != dims:
        if set(da.dims) == set(dims):
            return da.transpose(*dims)
        raise TessellationError(
            f"variable {name!r} has dims {tuple(da.dims)}, expected {dims}. {fix}"
        )
    return da


_BUILD_HINT = (
    "Build the Dataset with xtramgrad.from_neighbours, from_adjacency, voronoi or grid, "
    "or see the data model in xtramgrad.topology."
)


def _require_dataset(ds: Any) -> None:
    if not isinstance(ds, xr.Dataset):
        raise TessellationError(
            f"expected an xarray.Dataset holding a tessellation, got {type(ds).__name__}. "
            + _BUILD_HINT
        )


def topology(ds: xr.Dataset, labels: bool = False) -> Topology:
    """Find and check the tessellation variables, cheaply.

    Checks names, dims, dtypes and sizes only (never loads dask-backed data); for numpy
    data, also the values of the neighbour table and the centers (see :func:`validate`).

    Parameters
    ----------
    ds : xarray.Dataset
    labels : bool
        Require the ``neighbour_label`` variable.

    Raises
    ------
    TessellationError
    """
    _require_dataset(ds)
    center = _require(ds, CENTER, (BIN, SPACE), _BUILD_HINT)
    table = _require(ds, NEIGHBOURS, (BIN, NBR), _BUILD_HINT)
    if not np.issubdtype(center.dtype, np.floating):
        if np.issubdtype(center.dtype, np.integer):
            center = center.astype(np.float64)
        else:
            raise TessellationError(
                f"variable 'center' has dtype {center.dtype}, expected float. "
                "Convert it with ds['center'] = ds.center.astype(float)."
            )
    d = center.sizes[SPACE]
    if d not in (1, 2, 3):
        raise TessellationError(
            f"variable 'center' has {d} entries along 'space', expected 1, 2 or 3 "
            "(the number of spatial dimensions). Transpose it to dims (bin, space)."
        )
    if SPACE in ds.coords and ds.sizes[SPACE] != d:  # pragma: no cover - xarray forbids it
        raise TessellationError("coordinate 'space' does not match variable 'center'")
    if not np.issubdtype(table.dtype, np.integer):
        raise TessellationError(
            f"variable 'neighbours' has dtype {table.dtype}, expected integer bin positions "
            "padded with -1. A float table usually comes from NaN padding: convert it with "
            "ds['neighbours'] = ds.neighbours.fillna(-1).astype('int64')."
        )
    label = None
    if labels:
        if LABEL not in ds.variables:
            raise TessellationError(
                "selection='labels' needs a 'neighbour_label' variable with dims (bin, nbr) "
                "holding +-(j+1) for a neighbour above/below along axis j; the Dataset has "
                "none. Pass labels= to xtramgrad.from_neighbours, or choose another selection."
            )
        label = _require(ds, LABEL, (BIN, NBR), _BUILD_HINT)
        if not np.issubdtype(label.dtype, np.integer):
            raise TessellationError(
                f"variable 'neighbour_label' has dtype {label.dtype}, expected integer labels "
                "+-(j+1) (0 for none). Convert it with .astype('int64')."
            )
    topo = Topology(center, table, label)
    if not _is_lazy(center) and not _is_lazy(table):
        check_values(
            np.asarray(center.values), np.asarray(table.values),
            None if label is None else np.asarray(label.values),
        )
    return topo


def check_values(
    centers: np.ndarray,
    neighbours: np.ndarray,
    labels: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    n_bins: int | None = None,
) -> None:
    """Check the values of (a block of) the tessellation variables.

    ``rows`` are the global positions of the table's rows (``arange`` by default), and
    ``n_bins`` the total number of bins (``len(centers)`` by default). Used eagerly on whole
    arrays and, for dask-backed Datasets, inside each chunk's task.
    """
    n = len(centers) if n_bins is None else n_bins
    if rows is None:
        rows = np.arange(neighbours.shape[0])
    if not np.isfinite(centers).all():
        finite = np.isfinite(centers).all(axis=1)
        bad = np.flatnonzero(~finite)
        raise TessellationError(
            f"variable 'center' holds non-finite values at {len(bad)} bin(s) (first: bin "
            f"{rows[bad[0]] if len(centers) == len(rows) else bad[0]}); every bin needs a "
            "finite center. Drop those bins, or fill their centers."
        )
    if neighbours.size:
        lo, hi = neighbours.min(), neighbours.max()
        if lo < -1 or hi >= n:
            bad = np.argwhere((neighbours < -1) | (neighbours >= n))[0]
            raise TessellationError(
                f"variable 'neighbours' holds position {neighbours[tuple(bad)]} at bin "
                f"{rows[bad[0]]}, outside [0, {n - 1}] (the 'bin' dimension has {n} bins); "
                "expected zero-based positions padded with -1. If the table is one-based, "
                "subtract 1 (see from_neighbours(start_index=1))."
            )
        own = neighbours == rows[:, None]
        if own.any():
            bad = np.argwhere(own)[0]
            raise TessellationError(
                f"variable 'neighbours' lists bin {rows[bad[0]]} as its own neighbour; a bin "
                "cannot neighbour itself. Remove self-loops (e.g. the diagonal of an "
                "adjacency matrix)."
            )
    if labels is not None:
        d = centers.shape[1]
        pad = neighbours < 0
        bad_lab = (~pad) & ((np.abs(labels) > d) | (labels == 0))
        if bad_lab.any():
            bad = np.argwhere(bad_lab)[0]
            raise TessellationError(
                f"variable 'neighbour_label' holds {labels[tuple(bad)]} for a neighbour of bin "
                f"{rows[bad[0]]}; expected +-(j+1) with j < {d} (the axis and side)."
            )


def validate(ds: xr.Dataset) -> xr.Dataset:
    """Check a tessellation Dataset thoroughly; return it unchanged.

    Beyond :func:`topology`'s checks, this also checks dask-backed variables (it computes
    their reductions chunk by chunk), duplicate neighbours, and measurement dims.

    Examples
    --------
    >>> import xtramgrad
    >>> ds = xtramgrad.grid((2, 2))
    >>> ds = ds.tram.validate()
    >>> bad = ds.copy()
    >>> bad["neighbours"] = bad.neighbours.where(bad.neighbours != 3, 9)
    >>> bad.tram.validate()
    Traceback (most recent call last):
    ...
    xtramgrad.errors.TessellationError: variable 'neighbours' holds position 9 at bin 0, ...
    """
    _require_dataset(ds)
    topo = topology(ds, labels=LABEL in ds.variables)
    if _is_lazy(topo.center) or _is_lazy(topo.neighbours):
        import dask.array as da

        lab = None if topo.labels is None else topo.labels.data
        checks = da.map_blocks(
            _check_block,
            topo.neighbours.data,
            *(() if lab is None else (lab,)),
            n_bins=topo.center.shape[0],
            centers=topo.center.data,
            drop_axis=1,
            dtype=bool,
            meta=np.array((), dtype=bool),
            has_labels=lab is not None,
        )
        finite = da.isfinite(topo.center.data).all()
        bad_center, _ = da.compute(~finite, checks.sum())
        if bad_center:
            check_values(np.asarray(topo.center.values), np.zeros((0, 0), int))
    table = np.asarray(topo.neighbours.values) if not _is_lazy(topo.neighbours) else None
    if table is not None and table.shape[1] > 1:
        srt = np.sort(table, axis=1)
        dup = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
        if dup.any():
            row = int(np.argwhere(dup)[0][0])
            raise TessellationError(
                f"variable 'neighbours' lists a neighbour twice for bin {row}; each neighbour "
                "must appear once per row. Deduplicate the table (np.unique per row)."
            )
    if VOLUME in ds.variables and tuple(ds[VOLUME].dims) != (BIN,):
        raise TessellationError(
            f"variable 'volume' has dims {tuple(ds[VOLUME].dims)}, expected ('bin',)."
        )
    return ds


def _check_block(table, *rest, n_bins, centers, has_labels, block_info=None):
    """Per-chunk value checks of a dask-backed table (raises inside the task)."""
    loc = block_info[0]["array-location"][0]
    rows = np.arange(loc[0], loc[1])
    labels = rest[0] if has_labels else None
    d = centers.shape[1]
    check_values(np.zeros((0, d)), table, labels, rows=rows, n_bins=n_bins)
    return np.ones(table.shape[0], dtype=bool)


