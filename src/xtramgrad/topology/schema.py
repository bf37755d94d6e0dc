"""The schema of a tessellation Dataset: names, dims, the cheap checks and :func:`validate`.

Two layouts of the neighbour table are recognised, by the dims of ``neighbours``:

* **padded**: ``neighbours(bin, nbr)``, each row padded with -1 to the widest row;
* **ragged** (CF "contiguous ragged array"): ``neighbours(edge)`` holds the neighbours of
  bin 0, then of bin 1, ..., and ``neighbour_count(bin)`` (attribute
  ``sample_dimension = "edge"``) how many belong to each bin.

Per-edge variables (``neighbour_label``, ``face_area``) have the dims of ``neighbours``.
:func:`table_csr` and :func:`edge_values` give any of them as flat, CSR-ordered arrays.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import TessellationError

__all__ = [
    "check_counts",
    "BIN",
    "SPACE",
    "NBR",
    "EDGE",
    "CENTER",
    "NEIGHBOURS",
    "COUNT",
    "LABEL",
    "VOLUME",
    "FACE_AREA",
    "VERTEX",
    "CELL_VERTEX",
    "CORNER",
    "AsymmetryWarning",
    "Topology",
    "topology",
    "table_csr",
    "edge_values",
    "check_values",
    "row_problem",
    "validate",
]

BIN = "bin"
SPACE = "space"
NBR = "nbr"
EDGE = "edge"
CENTER = "center"
NEIGHBOURS = "neighbours"
COUNT = "neighbour_count"
LABEL = "neighbour_label"
VOLUME = "volume"
FACE_AREA = "face_area"
VERTEX = "vertex"
CELL_VERTEX = "cell_vertex"
CORNER = "corner"
DEFAULT_SPACE = ("x", "y", "z")
SCHEMA_VARIABLES = (CENTER, NEIGHBOURS, LABEL, VOLUME, COUNT, FACE_AREA, VERTEX, CELL_VERTEX)
"""Names that are not measurements."""

#: Kinds of per-row problems returned by :func:`row_problem`.
PROBLEM_RANGE, PROBLEM_SELF, PROBLEM_DUPLICATE = 1, 2, 3


class AsymmetryWarning(UserWarning):
    """The neighbour table is not symmetric: some bin ``i`` lists ``j`` but ``j`` does not
    list ``i``. Legitimate for k-nearest-neighbour tables; see :func:`xtramgrad.symmetrize`."""


class Topology(NamedTuple):
    """The tessellation variables of a Dataset, checked and normalised.

    Fields, in this order (construct positionally with the first three):

    center : xarray.DataArray
        ``(bin, space)``, float.
    neighbours : xarray.DataArray
        Integer; padded ``(bin, nbr)`` (-1 padding) or ragged ``(edge,)``.
    labels : xarray.DataArray or None
        ``neighbour_label``, same dims as ``neighbours``.
    count : xarray.DataArray or None
        Ragged layout: ``neighbour_count(bin)``; padded: None.
    """

    center: xr.DataArray
    neighbours: xr.DataArray
    labels: xr.DataArray | None
    # the field shadows tuple.count, as the interface requires
    count: xr.DataArray | None = None  # type: ignore[assignment]

    @property
    def layout(self) -> str:
        """``"padded"`` or ``"ragged"``."""
        return "ragged" if self.neighbours.dims == (EDGE,) else "padded"

    @property
    def ndim(self) -> int:
        return int(self.center.sizes[SPACE])

    @property
    def n_bins(self) -> int:
        return int(self.center.sizes[BIN])

    @property
    def space(self) -> list[Hashable]:
        if SPACE in self.center.coords:
            return list(self.center.coords[SPACE].values.tolist())
        return list(DEFAULT_SPACE[: self.ndim])


# --------------------------------------------------------------------------- helpers


def _is_lazy(da: xr.DataArray | xr.Variable | None) -> bool:
    if da is None:
        return False
    var = da.variable if isinstance(da, xr.DataArray) else da
    return not isinstance(var._data, np.ndarray) and hasattr(var.data, "dask")


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


def _unsigned_message(name: str, dtype: Any) -> str:
    top = np.iinfo(dtype).max
    return (
        f"variable {name!r} has unsigned dtype {dtype}, which cannot hold the -1 padding of "
        "a neighbour table (tables are zero-based positions padded with -1). Map the "
        f"table's padding value (often {top}, the largest {dtype}) to -1 while converting "
        f"to a signed type: ds[{name!r}] = ds.{name}.astype('int64').where(ds.{name} != "
        f"{top}, -1)."
    )


# --------------------------------------------------------------------------- bin coordinate


def _bin_coordinate_ok(ds: xr.Dataset | xr.DataArray, n: int) -> bool | None:
    """True when ``ds`` has no ``bin`` coordinate or one equal to 0..n-1; False when it
    differs; None when it is lazy and not checked. O(1) for range indexes."""
    if BIN not in ds.coords:
        return True
    index = ds.xindexes.get(BIN)
    if isinstance(index, xr.indexes.PandasIndex):
        pidx = index.index
        if isinstance(pidx, pd.RangeIndex):
            return pidx.start == 0 and pidx.step == 1 and len(pidx) == n
        if len(pidx) != n:  # pragma: no cover - xarray keeps index and dim sizes equal
            return False
        if n == 0:
            return True
        if np.issubdtype(pidx.dtype, np.integer):
            # pandas caches both properties; a strictly increasing index needs no hash table
            return bool(
                pidx[0] == 0 and pidx[-1] == n - 1 and pidx.is_monotonic_increasing
                and pidx.is_unique
            )
    elif index is not None and type(index).__name__ == "RangeIndex":
        start, step = getattr(index, "start", None), getattr(index, "step", None)
        return bool(start == 0 and step == 1 and getattr(index, "size", -1) == n)
    coord = ds.coords[BIN]
    if _is_lazy(coord):
        return None
    return _is_arange(np.asarray(coord.values), 0)


def _is_arange(values: np.ndarray, start: int) -> bool:
    """``values == arange(start, start + len(values))``, in blocks (bounded memory)."""
    values = np.asarray(values)
    if values.ndim != 1:
        return False
    if values.dtype.kind not in "iuf":
        return False
    step = 1 << 20
    for lo in range(0, len(values), step):
        block = values[lo : lo + step]
        if not np.array_equal(block, np.arange(start + lo, start + lo + len(block))):
            return False
    return True


def bin_coordinate_message(values: Any, rows: np.ndarray | None = None) -> str:
    """Say what happened to rows whose ``bin`` coordinate is not 0..n-1, and the fix."""
    v = np.asarray(values)
    n = len(v)
    where = "" if rows is None else f" (rows {rows[0]}..{rows[-1]})"
    head = f"coordinate 'bin'{where} does not number the rows 0..{n - 1} in order: "
    reset = (
        " If you renumbered the neighbour table yourself, reset the coordinate: "
        "ds = ds.assign_coords(bin=np.arange(ds.sizes['bin']))."
    )
    isel_fix = (
        "Select or reorder bins with xtramgrad.isel(ds, bin=...) (ds.tram.isel(bin=...)) "
        "on the original Dataset: it renumbers the table, drops neighbours outside the "
        "selection and keeps the original positions in 'bin_id'."
    )
    numeric = v.dtype.kind in "iu" or (
        v.dtype.kind == "f" and bool(np.all(np.isfinite(v)) and np.all(v == np.round(v)))
    )
    if not numeric:
        sample = ", ".join(repr(x) for x in v[:3].tolist())
        return (
            f"{head}it holds {v.dtype} labels ({sample}, ...), but xtramgrad reserves 'bin' "
            "for the row positions the neighbour table refers to. If the table refers to "
            "the current rows, keep the labels under another name: "
            "ds = ds.assign_coords(label=('bin', ds.bin.values)).drop_vars('bin')."
        )
    vi = v.astype(np.int64)
    if rows is not None:
        bad = int(np.flatnonzero(vi != rows)[0])
        return (
            f"{head}row {rows[bad]} holds bin {vi[bad]}, so rows moved without the table "
            f"being renumbered. {isel_fix}{reset}"
        )
    uniq, counts = np.unique(vi, return_counts=True)
    if len(uniq) < n:
        dup = int(uniq[np.argmax(counts)])
        return (
            f"{head}it repeats values (bin {dup} appears {int(counts.max())} times), as after "
            "xr.concat of tessellations: each part's neighbour table still counts from 0, so "
            "neighbours point into the wrong part. Combine tessellations with "
            "xtramgrad.concat([ds1, ds2, ...]), which offsets the tables." + reset
        )
    if n and uniq[0] == 0 and uniq[-1] == n - 1:
        return (
            f"{head}it is a permutation of 0..{n - 1} (row 0 holds bin {vi[0]}): the rows "
            "were reordered (ds.isel, ds.sortby, ds.reindex, ...) without the neighbour "
            "table being renumbered, so neighbours point to the wrong rows. Restore the "
            "order with ds = ds.sortby('bin'), then reorder with xtramgrad.isel(ds, "
            "bin=order) (ds.tram.isel), which renumbers the table." + reset
        )
    if n and bool(np.all(np.diff(vi) > 0)) and vi[0] >= 0:
        return (
            f"{head}it is an increasing subset of the positions ({n} bins, from {vi[0]} to "
            f"{vi[-1]}): bins were removed (ds.isel, ds.sel, ds.where(..., drop=True), ...) "
            "and the neighbour table still counts the removed ones. " + isel_fix + reset
        )
    return (
        f"{head}its values (row 0 holds {vi[0]}) are neither 0..{n - 1}, nor a permutation, "
        "nor an increasing subset: rows moved (reordered and subset) without the neighbour "
        "table being renumbered. " + isel_fix + reset
    )


def check_bin_coordinate(ds: xr.Dataset, n: int) -> None:
    """Raise when the ``bin`` coordinate shows that rows moved without the table."""
    if _bin_coordinate_ok(ds, n) is False:
        raise TessellationError(bin_coordinate_message(ds.coords[BIN].values))


# --------------------------------------------------------------------------- topology


def _layout_of(ds: xr.Dataset) -> str:
    if NEIGHBOURS in ds.variables and ds[NEIGHBOURS].ndim == 1:
        return "ragged"
    return "padded"


def _integer_table(da: xr.DataArray, name: str, layout: str) -> xr.DataArray:
    if np.issubdtype(da.dtype, np.unsignedinteger):
        if layout == "ragged":  # no padding to hold: a signed copy is exact
            if da.size and not _is_lazy(da) and int(da.max()) > np.iinfo(np.int64).max:
                raise TessellationError(_unsigned_message(name, da.dtype))
            return da.astype(np.int64)
        raise TessellationError(_unsigned_message(name, da.dtype))
    if not np.issubdtype(da.dtype, np.integer):
        if layout == "ragged":
            raise TessellationError(
                f"variable {name!r} has dtype {da.dtype}, expected integer bin positions (a "
                "ragged table holds no padding). Convert it with "
                f"ds[{name!r}] = ds.{name}.astype('int64')."
            )
        raise TessellationError(
            f"variable {name!r} has dtype {da.dtype}, expected integer bin positions "
            "padded with -1. A float table usually comes from NaN padding: convert it with "
            f"ds[{name!r}] = ds.{name}.fillna(-1).astype('int64'). (If it comes from "
            "ds.where(..., drop=True), bins were removed and the table not renumbered: select "
            "with xtramgrad.isel(original, bin=...) instead.)"
        )
    return da


def topology(ds: xr.Dataset, labels: bool = False) -> Topology:
    """Find and check the tessellation variables, cheaply.

    Checks names, dims, dtypes and sizes, and the ``bin`` coordinate (rows moved without
    the table being renumbered); never loads dask-backed data. For in-memory tables, also
    the values of each row (bounds, self-loops, duplicates: :func:`row_problem`) and the
    centers; :func:`validate` checks more.

    Parameters
    ----------
    ds : xarray.Dataset
    labels : bool
        Require the ``neighbour_label`` variable.

    Returns
    -------
    Topology

    Raises
    ------
    TessellationError

    Examples
    --------
    >>> import xtramgrad
    >>> topo = topology(xtramgrad.grid((3, 4)))
    >>> topo.layout, topo.n_bins, topo.ndim, topo.space
    ('padded', 12, 2, ['x', 'y'])
    >>> topology(xtramgrad.grid((3, 4)).isel(bin=[1, 0, 2]))
    Traceback (most recent call last):
    ...
    xtramgrad.errors.TessellationError: coordinate 'bin' does not number the rows 0..2 ...
    """
    _require_dataset(ds)
    center = _require(ds, CENTER, (BIN, SPACE), _BUILD_HINT)
    layout = _layout_of(ds)
    count = None
    if layout == "ragged":
        table = _require(ds, NEIGHBOURS, (EDGE,), _BUILD_HINT)
        count = _require(
            ds, COUNT, (BIN,),
            "A ragged table neighbours(edge) needs neighbour_count(bin): the number of "
            "neighbours of each bin, in order (CF contiguous ragged array). " + _BUILD_HINT,
        )
        sample = count.attrs.get("sample_dimension", EDGE)
        if sample != EDGE:
            raise TessellationError(
                f"variable {COUNT!r} has sample_dimension={sample!r}, but the ragged table "
                f"{NEIGHBOURS!r} has dims ({EDGE!r},); set "
                f"ds[{COUNT!r}].attrs['sample_dimension'] = {EDGE!r}."
            )
        if not np.issubdtype(count.dtype, np.integer):
            raise TessellationError(
                f"variable {COUNT!r} has dtype {count.dtype}, expected integer counts. "
                f"Convert it with ds[{COUNT!r}] = ds.{COUNT}.astype('int64')."
            )
    else:
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
    n = int(center.sizes[BIN])
    if n == 0:
        raise TessellationError(
            "the Dataset has 0 bins (dimension 'bin' has size 0); a tessellation needs at "
            "least one bin. Check the selection or the input that produced it."
        )
    check_bin_coordinate(ds, n)  # first: moved rows also spoil dtypes (ds.where(drop=True))
    table = _integer_table(table, NEIGHBOURS, layout)
    label = None
    if labels:
        if LABEL not in ds.variables:
            raise TessellationError(
                f"selection='labels' needs a 'neighbour_label' variable with dims "
                f"{table.dims} holding +-(j+1) for a neighbour above/below along axis j; the "
                "Dataset has none. Pass labels= to xtramgrad.from_neighbours, or choose "
                "another selection."
            )
        label = _require(ds, LABEL, tuple(str(x) for x in table.dims), _BUILD_HINT)
        if not np.issubdtype(label.dtype, np.integer):
            raise TessellationError(
                f"variable 'neighbour_label' has dtype {label.dtype}, expected integer labels "
                "+-(j+1) (0 for none). Convert it with ds['neighbour_label'] = "
                "ds.neighbour_label.fillna(0).astype('int64')."
            )
    topo = Topology(center, table, label, count)
    if not any(_is_lazy(a) for a in (center, table, count)):
        check_values(
            np.asarray(center.values),
            np.asarray(table.values),
            None if label is None or _is_lazy(label) else np.asarray(label.values),
            count=None if count is None else np.asarray(count.values),
        )
    return topo


# --------------------------------------------------------------------------- CSR views


def _ragged_indptr(count: np.ndarray) -> np.ndarray:
    indptr = np.zeros(len(count) + 1, dtype=np.int64)
    np.cumsum(count, out=indptr[1:])
    return indptr


def table_csr(topo: Topology) -> tuple[np.ndarray, np.ndarray]:
    """The neighbour table in memory as CSR: ``(indptr (n+1,) int64, indices (E,) int64)``.

    Rows in bin order, each row's neighbours in table order (padding skipped). Loads a
    dask-backed table.

    Examples
    --------
    >>> import xtramgrad
    >>> indptr, indices = table_csr(topology(xtramgrad.grid(3)))
    >>> indptr.tolist(), indices.tolist()
    ([0, 1, 3, 4], [1, 0, 2, 1])
    """
    table = np.asarray(topo.neighbours.values)
    if topo.layout == "ragged":
        if topo.count is None:  # pragma: no cover - topology() always sets it
            raise TessellationError("a ragged table needs neighbour_count(bin)")
        return _ragged_indptr(np.asarray(topo.count.values)), table.astype(np.int64, copy=False)
    present = table >= 0
    return _ragged_indptr(present.sum(axis=1)), table[present].astype(np.int64, copy=False)


def edge_values(topo: Topology, da: xr.DataArray) -> np.ndarray:
    """A per-edge variable as an ``(E, ...)`` array aligned with :func:`table_csr`'s indices.

    ``da`` has dims ``(bin, nbr, ...)`` (padded, any order) or ``(edge, ...)`` (ragged),
    e.g. ``neighbour_label`` or ``face_area``.

    Examples
    --------
    >>> import xtramgrad
    >>> ds = xtramgrad.from_neighbours([0.0, 1.0, 2.0], [[1, -1], [0, 2], [1, -1]],
    ...                                labels=[[1, 0], [-1, 1], [-1, 0]])
    >>> edge_values(topology(ds), ds.neighbour_label).tolist()
    [1, -1, 1, -1]
    """
    if topo.layout == "ragged":
        if EDGE not in da.dims:
            raise TessellationError(
                f"variable {da.name!r} has dims {tuple(da.dims)}; a per-edge variable of a "
                f"ragged table needs the {EDGE!r} dim."
            )
        return np.asarray(da.transpose(EDGE, ...).values)
    if BIN not in da.dims or NBR not in da.dims:
        raise TessellationError(
            f"variable {da.name!r} has dims {tuple(da.dims)}; a per-edge variable of a "
            f"padded table needs dims ({BIN!r}, {NBR!r})."
        )
    present = np.asarray(topo.neighbours.values) >= 0
    return np.asarray(da.transpose(BIN, NBR, ...).values)[present]


# --------------------------------------------------------------------------- row checks


_BLOCK_ROWS = 1 << 14


def row_problem(
    table: np.ndarray,
    rows: np.ndarray,
    n_bins: int,
    indptr: np.ndarray | None = None,
) -> tuple[int, int, int] | None:
    """The first problem of a block of neighbour-table rows, or None.

    The one place of the per-row checks (every entry a position in ``[0, n_bins)`` or -1
    padding, no bin its own neighbour, no neighbour twice in a row), so that a compiled
    version can replace it.

    Parameters
    ----------
    table : ndarray
        Padded block ``(m, k)``, or, with ``indptr``, the ragged block's edges ``(E_b,)``.
    rows : ndarray (m,)
        Global positions of the block's rows.
    n_bins : int
        Total number of bins.
    indptr : ndarray (m + 1,), optional
        Ragged block: row ``i``'s edges are ``table[indptr[i] - indptr[0]:indptr[i + 1] -
        indptr[0]]``.

    Returns
    -------
    (kind, row, value) or None
        ``kind`` is :data:`PROBLEM_RANGE` (``value`` the bad entry), :data:`PROBLEM_SELF`
        (``value`` the row's bin) or :data:`PROBLEM_DUPLICATE` (``value`` the repeated
        neighbour); ``row`` is the position within the block of the first row with a
        problem; for that row, the kinds are checked in this order.

    Examples
    --------
    >>> import numpy as np
    >>> row_problem(np.array([[1, -1], [0, 0]]), np.arange(2), 2)
    (3, 1, 0)
    >>> row_problem(np.array([1, 0, 2]), np.arange(2), 2, indptr=np.array([0, 1, 3]))
    (1, 1, 2)
    """
    table = np.asarray(table)
    rows = np.asarray(rows)
    m = len(rows)
    fast = _compiled_row_problem(table, rows, n_bins, indptr)
    if not isinstance(fast, bool):
        return fast
    if indptr is not None:
        return _ragged_problem(table, rows, n_bins, np.asarray(indptr, dtype=np.int64))
    if table.size == 0:
        return None
    k = table.shape[1]
    for lo in range(0, m, _BLOCK_ROWS):
        blk = table[lo : lo + _BLOCK_ROWS]
        r = rows[lo : lo + _BLOCK_ROWS]
        if blk.min() < -1 or blk.max() >= n_bins or _padded_flags(blk, r, k).any():
            return _padded_first(blk, r, n_bins, lo)
    return None


def _compiled_row_problem(
    table: np.ndarray, rows: np.ndarray, n_bins: int, indptr: np.ndarray | None
) -> tuple[int, int, int] | None | bool:
    """:func:`row_problem` by the compiled kernels (one pass, no temporaries) when the
    backend is numba; False when it is not (then the numpy checks run)."""
    from ..kernels.engine import compiled_kernels

    if table.size == 0 or not np.issubdtype(table.dtype, np.integer):
        return False
    _numba = compiled_kernels()
    if _numba is None:
        return False

    if indptr is not None:
        indptr = np.asarray(indptr, dtype=np.int64)
        if len(indptr) != len(rows) + 1:
            return False  # the numpy path raises the clear error
    kind, row, value = _numba.row_problem(
        np.ascontiguousarray(table, dtype=np.int64),
        np.zeros(0, np.int64) if indptr is None else indptr,
        np.ascontiguousarray(rows, dtype=np.int64), int(n_bins),
    )
    return None if kind == 0 else (int(kind), int(row), int(value))


def _padded_flags(blk: np.ndarray, r: np.ndarray, k: int) -> np.ndarray:
    """Rows of a padded block (in range) that list themselves or a neighbour twice."""
    if k > 16:  # sort each row: O(k log k) beats the k^2 / 2 comparisons below
        srt = np.sort(blk, axis=1)
        dup = ((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).any(axis=1)
        return dup | (blk == r[:, None]).any(axis=1)
    # columns contiguous, and padding replaced by distinct negatives that never match
    tt = blk.T.copy()
    tt = np.where(tt >= 0, tt, -2 - np.arange(k)[:, None])
    bad = (tt == r).any(axis=0)
    for a in range(k - 1):
        col = tt[a]
        for b in range(a + 1, k):
            np.logical_or(bad, col == tt[b], out=bad)
    return bad


def _padded_first(
    blk: np.ndarray, r: np.ndarray, n_bins: int, lo: int
) -> tuple[int, int, int] | None:
    """The first problem of a padded block known to hold one (the slow path)."""
    out = np.asarray((blk < -1) | (blk >= n_bins))
    bad_range = np.asarray(out.any(axis=1))
    bad_self = np.asarray((blk == r[:, None]).any(axis=1))
    bad_dup = _padded_duplicate_rows(np.where(out, -1, blk), blk.shape[1])
    bad = bad_range | bad_self | bad_dup
    if not bad.any():  # pragma: no cover - only called on a block with a problem
        return None
    i = int(np.argmax(bad))
    row = blk[i]
    if bad_range[i]:
        return PROBLEM_RANGE, lo + i, int(row[np.argmax(out[i])])
    if bad_self[i]:
        return PROBLEM_SELF, lo + i, int(r[i])
    return PROBLEM_DUPLICATE, lo + i, _first_repeat(row[row >= 0])


def _padded_duplicate_rows(blk: np.ndarray, k: int) -> np.ndarray:
    """Rows of a padded block holding a position twice (padding ignored)."""
    m = blk.shape[0]
    if k < 2:
        return np.zeros(m, dtype=bool)
    if k <= 16:  # pairwise column comparisons: fastest for the usual widths
        tt = np.where(blk >= 0, blk, -2 - np.arange(k)).T.copy()  # padding never repeats
        dup = np.zeros(m, dtype=bool)
        for a in range(k - 1):
            col = tt[a]
            for b in range(a + 1, k):
                np.logical_or(dup, col == tt[b], out=dup)
        return dup
    srt = np.sort(blk, axis=1)
    return ((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).any(axis=1)


def _first_repeat(values: np.ndarray) -> int:
    seen: set[int] = set()
    for v in values.tolist():
        if v in seen:
            return int(v)
        seen.add(v)
    raise AssertionError("no repeated value")  # pragma: no cover


def _ragged_problem(
    edges: np.ndarray, rows: np.ndarray, n_bins: int, indptr: np.ndarray
) -> tuple[int, int, int] | None:
    m = len(rows)
    if len(indptr) != m + 1:
        raise TessellationError(
            f"a ragged block of {m} rows needs {m + 1} offsets, got {len(indptr)}"
        )
    if len(edges) == 0:
        return None
    local = indptr - indptr[0]
    deg = np.diff(local)
    owner = np.repeat(np.arange(m), deg)  # block row of each edge
    first: tuple[int, int, int] | None = None

    def keep(kind: int, row: int, value: int) -> None:
        nonlocal first
        if first is None or (row, kind) < (first[1], first[0]):
            first = (kind, row, value)

    if edges.min() < 0 or edges.max() >= n_bins:
        e = int(np.argmax((edges < 0) | (edges >= n_bins)))
        keep(PROBLEM_RANGE, int(owner[e]), int(edges[e]))
    own = edges == rows[owner]
    if own.any():
        e = int(np.argmax(own))
        keep(PROBLEM_SELF, int(owner[e]), int(rows[owner[e]]))
    inside = (edges >= 0) & (edges < n_bins)
    key = owner.astype(np.int64) * int(n_bins) + np.where(inside, edges, 0)
    key = key if first is None else key[inside]  # out-of-range entries are not repeats
    if not bool(np.all(key[1:] > key[:-1])):  # rows not strictly increasing: sort to check
        srt = np.sort(key)
        rep = np.flatnonzero(srt[1:] == srt[:-1])
        if len(rep):
            # the smallest repeated key belongs to the first row with a repeat
            row = int(srt[rep[0]]) // int(n_bins)
            values = edges[local[row] : local[row + 1]]
            keep(PROBLEM_DUPLICATE, row, _first_repeat(values[(values >= 0) & (values < n_bins)]))
    return first


def _looks_one_based(table: np.ndarray | None, n: int) -> bool:
    """A whole table that never holds 0 and whose largest entry is n."""
    if table is None:
        return False
    present = table[table >= 0]
    return bool(present.size and present.min() >= 1 and present.max() == n)


def _problem_message(
    kind: int, row: int, value: int, n: int, ragged: bool, table: np.ndarray | None
) -> str:
    """The message of a :func:`row_problem`; ``table`` is the whole table when known."""
    if _looks_one_based(table, n) and kind in (PROBLEM_RANGE, PROBLEM_SELF):
        fix = (
            "ds['neighbours'] = ds.neighbours - 1" if ragged else
            "ds['neighbours'] = (ds.neighbours - 1).where(ds.neighbours != <padding>, -1), "
            "or build with xtramgrad.from_neighbours(centers, table, start_index=1, "
            "fill_value=<padding>)"
        )
        what = (
            f"holds position {value} at bin {row}, outside [0, {n - 1}]" if kind == PROBLEM_RANGE
            else f"lists bin {row} as its own neighbour"
        )
        return (
            f"variable 'neighbours' {what}, and the table looks one-based (it never holds 0 "
            f"and its largest entry is {n}, the number of bins); positions are zero-based. "
            f"Convert it: {fix}."
        )
    if kind == PROBLEM_SELF:
        return (
            f"variable 'neighbours' lists bin {row} as its own neighbour; a bin cannot "
            "neighbour itself. Remove self-loops (for an adjacency matrix A: A.setdiag(0); "
            "A.eliminate_zeros()). If the rows were reordered without renumbering the table "
            "(a Dataset without a 'bin' coordinate), redo the reordering on the original "
            "Dataset with xtramgrad.isel(original, bin=order)."
        )
    if kind == PROBLEM_DUPLICATE:
        return (
            f"variable 'neighbours' lists bin {value} twice as a neighbour of bin {row}; each "
            "neighbour must appear once per row (a repeated neighbour counts twice in the "
            "gradient's side means and fits). Drop the repeats when building the table: "
            "xtramgrad.from_neighbours(centers, table, dedupe=True) or "
            "xtramgrad.from_adjacency(centers, adjacency, dedupe=True)."
        )
    where = f"variable 'neighbours' holds position {value} at bin {row}"
    if ragged:
        return (
            f"{where}, outside [0, {n - 1}] (the 'bin' dimension has {n} bins); a ragged "
            "table neighbours(edge) holds no padding, every entry is a zero-based neighbour "
            "position. Rebuild it from a correct edge list with "
            "xtramgrad.from_adjacency(centers, (indptr, indices))."
        )
    if value < -1:
        return (
            f"{where}; expected zero-based positions in [0, {n - 1}] padded with -1. If "
            f"{value} is the table's padding value, map it to -1: ds['neighbours'] = "
            f"ds.neighbours.where(ds.neighbours != {value}, -1) (or build with "
            f"xtramgrad.from_neighbours(centers, table, fill_value={value}))."
        )
    return (
        f"{where}, outside [0, {n - 1}] (the 'bin' dimension has {n} bins); expected "
        f"zero-based positions padded with -1. If {value} is the table's padding value, map "
        f"it to -1: ds['neighbours'] = ds.neighbours.where(ds.neighbours != {value}, -1); "
        "if the table is one-based (UGRID start_index=1), convert it: ds['neighbours'] = "
        "(ds.neighbours - 1).where(ds.neighbours != <padding>, -1); if bins were removed "
        "(ds.isel, ds.sel, e.g. keeping the first rows) without renumbering the table, "
        "select from the original Dataset with xtramgrad.isel(original, bin=...)."
    )


def check_counts(count: np.ndarray, edges: int, rows: np.ndarray | None = None
                 ) -> np.ndarray:
    """Check a ragged table's ``neighbour_count`` (block) against its ``edges`` entries;
    return its ``indptr``. ``rows``: the global positions of the counts' bins."""
    count = np.asarray(count)
    rows = np.arange(len(count)) if rows is None else rows
    if count.size and count.min() < 0:
        i = int(np.argmax(count < 0))
        raise TessellationError(
            f"variable {COUNT!r} holds {int(count[i])} at bin {rows[i]}; expected "
            "non-negative neighbour counts. Rebuild the table (xtramgrad.from_neighbours or "
            "from_adjacency)."
        )
    indptr = _ragged_indptr(count)
    if indptr[-1] != edges:
        raise TessellationError(
            f"variable {COUNT!r} sums to {int(indptr[-1])} but the ragged table "
            f"{NEIGHBOURS!r} has {edges} entries along {EDGE!r}; the counts must add up to "
            "the table's length (CF contiguous ragged array)."
        )
    return indptr


def check_values(
    centers: np.ndarray,
    neighbours: np.ndarray,
    labels: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    n_bins: int | None = None,
    *,
    count: np.ndarray | None = None,
    bin_ids: np.ndarray | None = None,
) -> None:
    """Check the values of (a block of) the tessellation variables; raise on the first
    problem.

    Used eagerly on whole arrays and, for dask-backed Datasets, inside each chunk's task.

    Parameters
    ----------
    centers : ndarray (m, d)
        The block's centers (may be empty to skip their check).
    neighbours : ndarray
        Padded block ``(m, k)``, or ragged edges ``(E_b,)`` with ``count``.
    labels : ndarray, optional
        ``neighbour_label`` block, same shape as ``neighbours``.
    rows : ndarray (m,), optional
        Global positions of the block's rows (default ``arange(m)``).
    n_bins : int, optional
        Total number of bins (default ``len(centers)``).
    count : ndarray (m,), optional
        Ragged layout: the block's ``neighbour_count``.
    bin_ids : ndarray (m,), optional
        The block's ``bin`` coordinate values; they must equal ``rows``.
    """
    n = len(centers) if n_bins is None else int(n_bins)
    m = neighbours.shape[0] if count is None else len(count)
    if rows is None:
        rows = np.arange(m)
    if not np.isfinite(centers).all():
        finite = np.isfinite(centers).all(axis=1)
        bad = np.flatnonzero(~finite)
        raise TessellationError(
            f"variable 'center' holds non-finite values at {len(bad)} bin(s) (first: bin "
            f"{rows[bad[0]] if len(centers) == len(rows) else bad[0]}); every bin needs a "
            "finite center. Drop those bins (xtramgrad.isel(ds, bin=mask)), or fill their "
            "centers."
        )
    if bin_ids is not None and not _is_arange(np.asarray(bin_ids), int(rows[0]) if m else 0):
        raise TessellationError(bin_coordinate_message(bin_ids, rows=rows))
    indptr = None if count is None else check_counts(count, len(neighbours), rows)
    problem = row_problem(neighbours, rows, n, indptr=indptr)
    if problem is not None:
        kind, row, value = problem
        whole = neighbours if m == n else None
        raise TessellationError(
            _problem_message(kind, int(rows[row]), value, n, count is not None, whole)
        )
    if labels is not None:
        d = centers.shape[1]
        labels = np.asarray(labels)
        present = np.ones(labels.shape, dtype=bool) if count is not None else neighbours >= 0
        bad_lab = present & ((np.abs(labels) > d) | (labels == 0))
        if bad_lab.any():
            if indptr is not None:
                e = int(np.argmax(bad_lab))
                row = int(rows[np.searchsorted(indptr, e, side="right") - 1])
                value = labels[e]
            else:
                bad = np.argwhere(bad_lab)[0]
                row, value = int(rows[bad[0]]), labels[tuple(bad)]
            raise TessellationError(
                f"variable 'neighbour_label' holds {value} for a neighbour of bin {row}; "
                f"expected +-(j+1) with j < {d} (the axis and side)."
            )


# --------------------------------------------------------------------------- validate


def validate(ds: xr.Dataset) -> xr.Dataset:
    """Check a tessellation Dataset thoroughly; return it unchanged.

    Beyond :func:`topology`'s checks, this also checks dask-backed variables (chunk by
    chunk), neighbours at their bin's own position (zero offset: coincident centers),
    the symmetry of the table (warns with :class:`AsymmetryWarning`), and the dims of
    ``volume``, ``face_area`` and the cell polygons.

    A lazy table is read chunk by chunk: first each chunk on its own (rows, centers, the
    ``bin`` coordinate), then each pair of chunks linked by an edge (zero offsets and
    symmetry), with two chunks in memory per task.

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
    lazy = any(_is_lazy(a) for a in (topo.center, topo.neighbours, topo.count, topo.labels))
    coord_lazy = BIN in ds.coords and _bin_coordinate_ok(ds, topo.n_bins) is None
    if lazy or coord_lazy:
        asym = _validate_lazy(ds, topo)
    else:
        indptr, indices = table_csr(topo)
        centers = np.asarray(topo.center.values, dtype=np.float64)
        owner = np.repeat(np.arange(topo.n_bins, dtype=np.int64), np.diff(indptr))
        _check_zero_offsets(centers, owner, indices, centers, 0, 0)
        asym = _asymmetry(owner, indices, owner, indices)
    if asym[0]:
        count, i, j = asym
        warnings.warn(
            f"the neighbour table is not symmetric: {count} neighbour entr"
            f"{'y has' if count == 1 else 'ies have'} no reverse entry (e.g. bin {i} lists "
            f"{j}, but bin {j} does not list {i}). The gradients read each bin's own row "
            "and do not need symmetry (k-nearest-neighbour tables are legitimately "
            "asymmetric); TRamWAy's adjacencies are symmetric. To add the missing reverse "
            "entries: ds = xtramgrad.symmetrize(ds).",
            AsymmetryWarning,
            stacklevel=2,
        )
    _check_optional_dims(ds, topo)
    return ds


def _check_optional_dims(ds: xr.Dataset, topo: Topology) -> None:
    if VOLUME in ds.variables and tuple(ds[VOLUME].dims) != (BIN,):
        raise TessellationError(
            f"variable 'volume' has dims {tuple(ds[VOLUME].dims)}, expected ('bin',)."
        )
    if FACE_AREA in ds.variables and set(ds[FACE_AREA].dims) != set(topo.neighbours.dims):
        raise TessellationError(
            f"variable {FACE_AREA!r} has dims {tuple(ds[FACE_AREA].dims)}, expected the dims "
            f"of 'neighbours' {tuple(topo.neighbours.dims)} (one area per neighbour entry)."
        )
    if CELL_VERTEX in ds.variables:
        cv = ds[CELL_VERTEX]
        if set(cv.dims) != {BIN, CORNER}:
            raise TessellationError(
                f"variable {CELL_VERTEX!r} has dims {tuple(cv.dims)}, expected "
                f"({BIN!r}, {CORNER!r}): each cell's polygon as positions along {VERTEX!r}, "
                "padded with -1."
            )
        if VERTEX not in ds.variables or set(ds[VERTEX].dims) != {VERTEX, SPACE}:
            raise TessellationError(
                f"variable {CELL_VERTEX!r} needs a {VERTEX!r} variable with dims "
                f"({VERTEX!r}, {SPACE!r}) holding the polygon corners."
            )
        if not _is_lazy(cv):
            v = np.asarray(cv.values)
            nv = ds.sizes[VERTEX]
            if v.size and (v.min() < -1 or v.max() >= nv):
                bad = int(v[(v < -1) | (v >= nv)][0])
                raise TessellationError(
                    f"variable {CELL_VERTEX!r} holds {bad}, outside [0, {nv - 1}] (the "
                    f"{VERTEX!r} dim has {nv} entries); expected positions padded with -1."
                )


def _check_zero_offsets(
    centers: np.ndarray,
    owner: np.ndarray,
    indices: np.ndarray,
    target_centers: np.ndarray,
    owner_start: int,
    target_start: int,
) -> None:
    """Raise when an edge joins two bins at the same position (in blocks of edges)."""
    step = 1 << 20
    for lo in range(0, len(indices), step):
        o = owner[lo : lo + step]
        j = indices[lo : lo + step]
        same = np.all(centers[o - owner_start] == target_centers[j - target_start], axis=1)
        if same.any():
            e = int(np.argmax(same))
            i, nb = int(o[e]), int(j[e])
            pos = ", ".join(f"{x:g}" for x in centers[i - owner_start])
            raise TessellationError(
                f"variable 'neighbours' lists bin {nb} as a neighbour of bin {i}, but both "
                f"centers are at ({pos}): a zero offset gives no direction and divides by "
                "zero in the gradient. Merge or drop coincident bins (e.g. np.unique on the "
                "points before xtramgrad.voronoi), or remove that entry from the table."
            )


def _asymmetry(
    owner_a: np.ndarray, idx_a: np.ndarray, owner_b: np.ndarray, idx_b: np.ndarray
) -> tuple[int, int, int]:
    """Entries ``(i, j)`` of edge set A whose reverse ``(j, i)`` is not in edge set B.

    Returns ``(count, i, j)`` with the first such entry (``(0, -1, -1)`` when none).
    """
    if len(idx_a) == 0:
        return 0, -1, -1
    big = int(max(owner_a.max(initial=0), idx_a.max(initial=0), owner_b.max(initial=0),
                  idx_b.max(initial=0))) + 1
    # stable sorts: linear on the (often) already ordered keys
    keys_b = np.sort(owner_b.astype(np.int64) * big + idx_b, kind="stable")
    rev = idx_a.astype(np.int64) * big + owner_a
    if len(rev) == len(keys_b) and np.array_equal(np.sort(rev, kind="stable"), keys_b):
        return 0, -1, -1  # the same sets of entries (rows hold no repeats)
    pos = np.searchsorted(keys_b, rev)
    found = (pos < len(keys_b)) & (keys_b[np.minimum(pos, len(keys_b) - 1)] == rev)
    missing = np.flatnonzero(~found)
    if len(missing) == 0:
        return 0, -1, -1
    e = int(missing[0])
    return len(missing), int(owner_a[e]), int(idx_a[e])


def _block_edges(
    table: np.ndarray, count: np.ndarray | None, lo: int
) -> tuple[np.ndarray, np.ndarray]:
    """(owner, neighbour) arrays of a block of rows starting at global row ``lo``."""
    table = np.asarray(table)
    if count is None:
        present = table >= 0
        owner = np.nonzero(present)[0].astype(np.int64) + lo
        return owner, table[present].astype(np.int64)
    count = np.asarray(count)
    owner = np.repeat(np.arange(lo, lo + len(count), dtype=np.int64), count)
    return owner, table.astype(np.int64)


def _chunk_check(
    table: np.ndarray,
    count: np.ndarray | None,
    labels: np.ndarray | None,
    centers: np.ndarray,
    bin_ids: np.ndarray | None,
    *,
    lo: int,
    n: int,
    bounds: np.ndarray,
) -> np.ndarray:
    """Pass 1 of lazy validation on one chunk: its own checks; returns the chunks its rows
    point into."""
    table = np.asarray(table)
    m = len(centers)
    check_values(
        np.asarray(centers), table, None if labels is None else np.asarray(labels),
        rows=np.arange(lo, lo + m), n_bins=n,
        count=None if count is None else np.asarray(count),
        bin_ids=None if bin_ids is None else np.asarray(bin_ids),
    )
    _, nb = _block_edges(table, count, lo)
    return np.unique(np.searchsorted(bounds, nb, side="right") - 1)


def _pair_check(
    table_a: np.ndarray,
    count_a: np.ndarray | None,
    centers_a: np.ndarray,
    table_b: np.ndarray,
    count_b: np.ndarray | None,
    centers_b: np.ndarray,
    *,
    lo_a: int,
    lo_b: int,
    hi_b: int,
) -> tuple[int, int, int]:
    """Pass 2 of lazy validation on chunks a, b: zero offsets and symmetry of the entries
    of a's rows that point into b (and of b's rows pointing into a)."""
    oa, ja = _block_edges(table_a, count_a, lo_a)
    ob, jb = _block_edges(table_b, count_b, lo_b)
    hi_a = lo_a + len(centers_a)
    into_b = (ja >= lo_b) & (ja < hi_b)
    into_a = (jb >= lo_a) & (jb < hi_a)
    centers_a = np.asarray(centers_a, dtype=np.float64)
    centers_b = np.asarray(centers_b, dtype=np.float64)
    _check_zero_offsets(centers_a, oa[into_b], ja[into_b], centers_b, lo_a, lo_b)
    first = _asymmetry(oa[into_b], ja[into_b], ob[into_a], jb[into_a])
    if lo_a == lo_b:
        return first
    _check_zero_offsets(centers_b, ob[into_a], jb[into_a], centers_a, lo_b, lo_a)
    second = _asymmetry(ob[into_a], jb[into_a], oa[into_b], ja[into_b])
    count = first[0] + second[0]
    example = first if first[0] else second
    return count, example[1], example[2]


def _validate_lazy(ds: xr.Dataset, topo: Topology) -> tuple[int, int, int]:
    """Chunk-by-chunk validation of a dask-backed tessellation (two passes)."""
    import dask
    import dask.array as da

    n = topo.n_bins
    ref = topo.count if topo.layout == "ragged" else topo.neighbours
    assert ref is not None
    chunks: tuple[int, ...] | None = None
    for arr in (ref, topo.center, topo.labels if topo.layout == "padded" else None):
        if arr is not None and arr.chunks is not None:
            chunks = tuple(int(c) for c in arr.chunks[arr.get_axis_num(BIN)])
            break
    if chunks is None:
        chunks = (n,)
    bounds = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)

    def blocks(data: Any, shape_rest: tuple[int, ...]) -> list[Any]:
        arr = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
        arr = arr.rechunk((chunks, *((s,) for s in shape_rest)))
        return list(arr.to_delayed().ravel())

    center_blocks = blocks(topo.center.data, (topo.ndim,))
    if topo.layout == "ragged":
        assert topo.count is not None
        count_blocks = blocks(topo.count.data, ())
        sums = np.asarray(
            dask.compute(*[dask.delayed(np.sum)(c) for c in count_blocks]), dtype=np.int64
        )
        edge_bounds = np.concatenate([[0], np.cumsum(sums)]).astype(np.int64)
        total = int(topo.neighbours.sizes[EDGE])
        if edge_bounds[-1] != total:
            raise TessellationError(
                f"variable {COUNT!r} sums to {int(edge_bounds[-1])} but the ragged table "
                f"{NEIGHBOURS!r} has {total} entries along {EDGE!r}; the counts must add up "
                "to the table's length (CF contiguous ragged array)."
            )
        edges = topo.neighbours.data
        edges = edges if isinstance(edges, da.Array) else da.from_array(np.asarray(edges))
        table_blocks = [
            edges[int(a) : int(b)] for a, b in zip(edge_bounds[:-1], edge_bounds[1:], strict=True)
        ]
        label_data = topo.labels.data if topo.labels is not None else None
        label_blocks: list[Any] = (
            [label_data[int(a) : int(b)]
             for a, b in zip(edge_bounds[:-1], edge_bounds[1:], strict=True)]
            if label_data is not None else [None] * len(chunks)
        )
        counts: list[Any] = count_blocks
    else:
        k = int(topo.neighbours.sizes[NBR])
        table_blocks = blocks(topo.neighbours.data, (k,))
        label_blocks = (
            blocks(topo.labels.data, (k,)) if topo.labels is not None else [None] * len(chunks)
        )
        counts = [None] * len(chunks)
    id_blocks: list[Any] = [None] * len(chunks)
    if BIN in ds.coords and _bin_coordinate_ok(ds, n) is None:
        id_blocks = blocks(ds.coords[BIN].data, ())
    check = dask.delayed(_chunk_check, pure=True)
    refs = dask.compute(*[
        check(t, c, lab, cen, ids, lo=int(bounds[i]), n=n, bounds=bounds)
        for i, (t, c, lab, cen, ids) in enumerate(
            zip(table_blocks, counts, label_blocks, center_blocks, id_blocks, strict=True)
        )
    ])
    pairs = sorted({(min(a, int(b)), max(a, int(b))) for a, r in enumerate(refs) for b in r})
    pair = dask.delayed(_pair_check, pure=True)
    results = dask.compute(*[
        pair(table_blocks[a], counts[a], center_blocks[a],
             table_blocks[b], counts[b], center_blocks[b],
             lo_a=int(bounds[a]), lo_b=int(bounds[b]), hi_b=int(bounds[b + 1]))
        for a, b in pairs
    ])
    total_asym = sum(r[0] for r in results)
    example = next((r for r in results if r[0]), (0, -1, -1))
    return total_asym, example[1], example[2]
