"""Operations that move rows of a tessellation and keep its neighbour table right.

A neighbour table refers to rows by position, so xarray's own ``isel``/``concat`` break it
silently (the ``bin`` coordinate then tells :func:`~xtramgrad.topology.topology` to refuse
the result). These are the supported ways: :func:`isel` (subset or reorder), :func:`concat`
(disjoint union) and :func:`symmetrize` (add the missing reverse entries). All work with
both table layouts (padded and ragged) and choose between them with :func:`choose_layout`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import TessellationError
from .schema import (
    BIN,
    CELL_VERTEX,
    CORNER,
    COUNT,
    EDGE,
    LABEL,
    NBR,
    NEIGHBOURS,
    SPACE,
    VERTEX,
    Topology,
    _is_lazy,
    check_values,
    edge_values,
    table_csr,
    topology,
)

__all__ = [
    "BIN_ID",
    "LAYOUTS",
    "RAGGED_WASTE",
    "RAGGED_MIN_CELLS",
    "bin_coordinate",
    "choose_layout",
    "concat",
    "isel",
    "symmetrize",
]

BIN_ID = "bin_id"
LAYOUTS = ("auto", "padded", "ragged")
#: ``layout="auto"`` goes ragged when the padded table would hold more than
#: ``RAGGED_WASTE`` cells per neighbour entry and more than ``RAGGED_MIN_CELLS`` cells in
#: all (2**22 int64 cells: 32 MiB); see :func:`choose_layout`.
RAGGED_WASTE = 8
RAGGED_MIN_CELLS = 1 << 22

_TABLE_ATTRS = {"long_name": "neighbour bin positions", "start_index": 0}


# --------------------------------------------------------------------------- layout


def choose_layout(layout: str, n_bins: int, width: int, n_edges: int) -> str:
    """The table layout to build: ``"padded"`` or ``"ragged"``.

    ``"auto"`` is ragged when the padded table (``n_bins * width`` cells, ``width`` the
    largest degree) would hold more than ``RAGGED_WASTE`` (8) times the number of
    neighbour entries and more than ``RAGGED_MIN_CELLS`` (2**22) cells: a few hub bins
    with huge degrees, which would pad every row to the widest.

    Examples
    --------
    >>> choose_layout("auto", 10**5, 10**5 - 1, 4 * 10**5)
    'ragged'
    >>> choose_layout("auto", 10**6, 8, 6 * 10**6)
    'padded'
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}; expected one of {LAYOUTS}.")
    if layout != "auto":
        return layout
    cells = int(n_bins) * int(width)
    ragged = cells > RAGGED_WASTE * int(n_edges) and cells > RAGGED_MIN_CELLS
    return "ragged" if ragged else "padded"


def bin_coordinate(n: int) -> xr.Coordinates:
    """The ``bin`` coordinate 0..n-1 as a range index (constant memory at any size).

    Examples
    --------
    >>> bin_coordinate(4)["bin"].values.tolist()
    [0, 1, 2, 3]
    """
    index = xr.indexes.PandasIndex(pd.RangeIndex(int(n), name=BIN), dim=BIN)
    return xr.Coordinates.from_xindex(index)


def _edge_fill(name: Hashable, dtype: np.dtype) -> Any:
    if np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.complexfloating):
        return np.nan
    if np.issubdtype(dtype, np.bool_):
        return False
    return 0  # neighbour_label: 0 means no neighbour


def left_pack_order(present: np.ndarray) -> np.ndarray:
    """For each row of a padded table, the column order that puts its present entries
    (``present``, a boolean (n, k) mask) first, in their order, and the padding after
    them: apply it with ``np.take_along_axis(..., axis=1)`` to the table and to every
    per-edge array.

    Examples
    --------
    >>> table = np.array([[-1, 2, -1, 5], [1, 3, -1, -1]])
    >>> np.take_along_axis(table, left_pack_order(table >= 0), axis=1).tolist()
    [[2, 5, -1, -1], [1, 3, -1, -1]]
    """
    return np.argsort(~present, axis=1, kind="stable")


def pad_rows(
    indptr: np.ndarray, values: np.ndarray, width: int, fill: Any
) -> np.ndarray:
    """Per-edge ``values`` (E, ...) of CSR rows as a padded ``(n, width, ...)`` array."""
    n = len(indptr) - 1
    deg = np.diff(indptr)
    out = np.full((n, width, *values.shape[1:]), fill, dtype=values.dtype)
    if len(values):
        rows = np.repeat(np.arange(n), deg)
        slots = np.arange(len(values)) - np.repeat(indptr[:-1], deg)
        out[rows, slots] = values
    return out


def table_variables(
    indptr: np.ndarray,
    indices: np.ndarray,
    edge_vars: Mapping[Hashable, tuple[np.ndarray, dict[str, Any]]],
    layout: str,
    table_attrs: Mapping[str, Any] | None = None,
) -> dict[Hashable, xr.Variable]:
    """``neighbours`` (+ ``neighbour_count``) and the per-edge variables, in ``layout``.

    ``edge_vars`` maps names to ``(values (E, ...), attrs)`` in CSR order. ``layout`` may
    be ``"auto"``.
    """
    n = len(indptr) - 1
    deg = np.diff(indptr)
    width = int(deg.max()) if n else 0
    layout = choose_layout(layout, n, width, len(indices))
    attrs = dict(_TABLE_ATTRS if table_attrs is None else table_attrs)
    out: dict[Hashable, xr.Variable] = {}
    if layout == "ragged":
        attrs.pop("fill_value", None)
        out[NEIGHBOURS] = xr.Variable((EDGE,), indices.astype(np.int64, copy=False), attrs)
        out[COUNT] = xr.Variable(
            (BIN,), deg.astype(np.int64),
            {"long_name": "number of neighbours of each bin", "sample_dimension": EDGE},
        )
        for name, (values, vattrs) in edge_vars.items():
            out[name] = xr.Variable((EDGE, *_extra_dims(name, values)), values, vattrs)
        return out
    attrs["fill_value"] = -1
    out[NEIGHBOURS] = xr.Variable(
        (BIN, NBR), pad_rows(indptr, indices.astype(np.int64, copy=False), width, -1), attrs
    )
    for name, (values, vattrs) in edge_vars.items():
        padded = pad_rows(indptr, values, width, _edge_fill(name, values.dtype))
        out[name] = xr.Variable((BIN, NBR, *_extra_dims(name, values)), padded, vattrs)
    return out


def _extra_dims(name: Hashable, values: np.ndarray) -> tuple[str, ...]:
    if values.ndim > 1:
        raise TessellationError(
            f"per-edge variable {name!r} has {values.ndim - 1} extra dims; per-edge "
            "variables hold one value per neighbour entry."
        )
    return ()


# --------------------------------------------------------------------------- reading


def _edge_var_names(ds: xr.Dataset, topo: Topology) -> list[Hashable]:
    """Variables with one value per neighbour entry (other than the table)."""
    key = EDGE if topo.layout == "ragged" else NBR
    return [
        name for name, var in ds.variables.items()
        if key in var.dims and name != NEIGHBOURS
    ]


def _loaded(ds: xr.Dataset, topo: Topology) -> tuple[np.ndarray, np.ndarray]:
    """The table as CSR, checked row by row if it was lazy (topology() checked it
    otherwise)."""
    indptr, indices = table_csr(topo)
    if _is_lazy(topo.neighbours) or _is_lazy(topo.count):
        d = topo.ndim
        check_values(
            np.zeros((0, d)), indices, rows=np.arange(topo.n_bins), n_bins=topo.n_bins,
            count=np.diff(indptr),
        )
    return indptr, indices


def _edge_arrays(
    ds: xr.Dataset, topo: Topology, names: Sequence[Hashable]
) -> dict[Hashable, tuple[np.ndarray, dict[str, Any]]]:
    out = {}
    for name in names:
        da = ds[name]
        if topo.layout == "padded" and BIN not in da.dims:
            raise TessellationError(
                f"variable {name!r} has dims {tuple(da.dims)}: it has the table's {NBR!r} "
                f"dim but not {BIN!r}; per-edge variables have the dims of 'neighbours'."
            )
        if da.ndim != len(topo.neighbours.dims):
            raise TessellationError(
                f"per-edge variable {name!r} has dims {tuple(da.dims)}, expected "
                f"{tuple(topo.neighbours.dims)} (one value per neighbour entry)."
            )
        out[name] = (edge_values(topo, da), dict(da.attrs))
    return out


def _without_table(ds: xr.Dataset, names: Sequence[Hashable]) -> xr.Dataset:
    drop = [NEIGHBOURS, COUNT, *names]
    out = ds.drop_vars([v for v in drop if v in ds.variables])
    if BIN in out.coords:
        out = out.drop_vars(BIN)
    return out


def _table_attrs(ds: xr.Dataset) -> dict[str, Any]:
    """Attributes of 'neighbours' that survive rows moving (locality declarations do not)."""
    return {
        k: v for k, v in ds[NEIGHBOURS].attrs.items()
        if not str(k).startswith("xtramgrad_") and k != "fill_value"
    }


# --------------------------------------------------------------------------- isel


def _positions(indexer: Any, n: int) -> np.ndarray:
    if isinstance(indexer, xr.DataArray):
        indexer = indexer.values
    if isinstance(indexer, slice):
        return np.arange(n, dtype=np.int64)[indexer]
    arr = np.asarray(indexer)
    if arr.ndim != 1:
        raise ValueError(
            f"bin= has shape {arr.shape}; expected a slice, a 1-D array of positions or a "
            f"boolean mask of length {n} (for one bin, pass a list: bin=[i])."
        )
    if arr.dtype == bool:
        if len(arr) != n:
            raise ValueError(
                f"bin= is a boolean mask of length {len(arr)}; the Dataset has {n} bins."
            )
        return np.flatnonzero(arr).astype(np.int64)
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"bin= has dtype {arr.dtype}; expected integer positions or a mask.")
    pos = arr.astype(np.int64)
    if pos.min() < -n or pos.max() >= n:
        bad = int(pos[(pos < -n) | (pos >= n)][0])
        raise ValueError(f"bin= holds position {bad}, outside [-{n}, {n - 1}] ({n} bins).")
    pos = np.where(pos < 0, pos + n, pos)
    seen = np.zeros(n, dtype=bool)
    seen[pos] = True
    if int(seen.sum()) != len(pos):
        counts = np.bincount(pos, minlength=n)
        raise ValueError(
            f"bin= selects bin {int(np.argmax(counts))} {int(counts.max())} times; each bin "
            "can be selected once (a copy of a bin would have no neighbour entries that "
            "point to it)."
        )
    return pos


def isel(
    ds: xr.Dataset,
    bin: Any = None,  # noqa: A002  (the dimension's name)
    *,
    layout: str | None = None,
    **indexers: Any,
) -> xr.Dataset:
    """Select or reorder bins, renumbering the neighbour table.

    Like ``ds.isel(bin=...)``, but the table is remapped to the new positions and the
    neighbours outside the selection are dropped from every row. The original positions
    are kept in the ``bin_id`` coordinate (composed with an existing one, as after
    :func:`xtramgrad.sort`), and the ``bin`` coordinate is 0..m-1 again. Other indexers
    (e.g. ``time=0``) are passed to :meth:`xarray.Dataset.isel`.

    Parameters
    ----------
    ds : xarray.Dataset
        A tessellation Dataset (either layout; a lazy table is loaded).
    bin : slice, array of int or array of bool
        Positions to keep, in the new order (negative positions count from the end), or
        a mask over bins. Each bin at most once; at least one bin.
    layout : {"auto", "padded", "ragged"}, optional
        Layout of the result's table (default: the input's).
    **indexers
        Other dimensions to index.

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> import xtramgrad
    >>> ds = xtramgrad.grid(5, D=[0.0, 1.0, 4.0, 9.0, 16.0])
    >>> from xtramgrad.topology import isel
    >>> sub = isel(ds, bin=[3, 1, 2])
    >>> sub.neighbours.values.tolist()
    [[2, -1], [2, -1], [1, 0]]
    >>> sub.bin_id.values.tolist(), sub.D.values.tolist()
    ([3, 1, 2], [9.0, 1.0, 4.0])
    """
    topo = topology(ds, labels=LABEL in ds.variables)
    n = topo.n_bins
    if bin is None:
        raise ValueError("isel needs bin=...; use ds.isel for other dimensions only.")
    if BIN in indexers:  # pragma: no cover - python forbids the duplicate keyword
        raise ValueError("bin= given twice")
    pos = _positions(bin, n)
    m = len(pos)
    if m == 0:
        raise TessellationError(
            "bin= selects 0 bins; a tessellation needs at least one bin."
        )
    names = _edge_var_names(ds, topo)
    target = topo.layout if layout is None else layout
    new_pos = np.full(n, -1, dtype=np.int64)
    new_pos[pos] = np.arange(m, dtype=np.int64)
    tables: dict[Hashable, xr.Variable]
    if topo.layout == "padded" and target == "padded":
        tables = _isel_padded(ds, topo, names, pos, new_pos)
    else:
        indptr, indices = _loaded(ds, topo)
        edges = _edge_arrays(ds, topo, names)
        deg = np.diff(indptr)[pos]
        starts = indptr[pos]
        sel_ptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(deg, out=sel_ptr[1:])
        e = np.repeat(starts - sel_ptr[:-1], deg) + np.arange(sel_ptr[-1], dtype=np.int64)
        mapped = new_pos[indices[e]]
        keep = mapped >= 0
        owner = np.repeat(np.arange(m, dtype=np.int64), deg)[keep]
        new_ptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(np.bincount(owner, minlength=m), out=new_ptr[1:])
        tables = table_variables(
            new_ptr, mapped[keep],
            {k: (v[e][keep], a) for k, (v, a) in edges.items()},
            target, _table_attrs(ds),
        )
    rest = _without_table(ds, names)
    ids = np.asarray(ds[BIN_ID].values)[pos] if BIN_ID in ds.coords else pos
    id_attrs = dict(ds[BIN_ID].attrs) if BIN_ID in ds.coords else {
        "long_name": "original bin position"
    }
    out = rest.isel({BIN: pos, **indexers}) if indexers else rest.isel({BIN: pos})
    if BIN_ID in out.coords:
        out = out.drop_vars(BIN_ID)
    out = out.assign_coords(bin_coordinate(m))
    out = out.assign_coords({BIN_ID: (BIN, ids.astype(np.int64), id_attrs)})
    for name, var in tables.items():
        out[name] = var
    if m != n:
        out.attrs.pop("grid_shape", None)  # no longer the full lattice
    return out


def _isel_padded(
    ds: xr.Dataset,
    topo: Topology,
    names: Sequence[Hashable],
    pos: np.ndarray,
    new_pos: np.ndarray,
) -> dict[Hashable, xr.Variable]:
    """isel of a padded table staying padded: rows gathered and renumbered in place."""
    table = np.asarray(topo.neighbours.values)
    if _is_lazy(topo.neighbours):
        _loaded(ds, topo)
    rows = table[pos]
    present = rows >= 0
    mapped = np.where(present, new_pos[np.clip(rows, 0, None)], -1)
    for name in names:
        if set(ds[name].dims) != {BIN, NBR}:
            raise TessellationError(
                f"per-edge variable {name!r} has dims {tuple(ds[name].dims)}, expected "
                f"({BIN!r}, {NBR!r}) (one value per neighbour entry)."
            )
    edge = {name: np.asarray(ds[name].transpose(BIN, NBR).values)[pos] for name in names}
    dropped = present & (mapped < 0)
    if dropped.any():  # pack the kept neighbours first, in table order, and trim
        order = left_pack_order(mapped >= 0)
        mapped = np.take_along_axis(mapped, order, axis=1)
        width = int((mapped >= 0).sum(axis=1).max())
        mapped = mapped[:, :width]
        for name, values in edge.items():
            values = np.take_along_axis(values, order, axis=1)[:, :width].copy()
            values[mapped < 0] = _edge_fill(name, values.dtype)
            edge[name] = values
    attrs = _table_attrs(ds)
    attrs["fill_value"] = -1
    out: dict[Hashable, xr.Variable] = {
        NEIGHBOURS: xr.Variable((BIN, NBR), mapped.astype(table.dtype, copy=False), attrs)
    }
    for name, values in edge.items():
        out[name] = xr.Variable((BIN, NBR), values, dict(ds[name].attrs))
    return out


# --------------------------------------------------------------------------- concat


def concat(datasets: Sequence[xr.Dataset], *, layout: str | None = None) -> xr.Dataset:
    """Disjoint union of tessellations: bins of the first, then of the second, ...

    The tables are offset (each part's positions shifted by the bins before it), with no
    entries between the parts; measurements are concatenated along ``bin`` (other dims
    must match exactly); the ``bin`` coordinate is 0..n-1 and the parts' ``bin_id``
    coordinates are dropped (they refer to different Datasets). Cell polygons
    (``vertex``/``cell_vertex``) are kept when every part has them.

    Parameters
    ----------
    datasets : sequence of xarray.Dataset
        Tessellations with the same ``space`` coordinates and units.
    layout : {"auto", "padded", "ragged"}, optional
        Layout of the result's table (default: ragged if any part is, else padded).

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> import xtramgrad
    >>> a = xtramgrad.grid(2, D=[0.0, 1.0])
    >>> b = xtramgrad.grid(3, origin=10.0, D=[5.0, 6.0, 7.0])
    >>> from xtramgrad.topology import concat
    >>> ab = concat([a, b])
    >>> ab.neighbours.values.tolist()
    [[1, -1], [0, -1], [3, -1], [2, 4], [3, -1]]
    >>> ab.D.values.tolist()
    [0.0, 1.0, 5.0, 6.0, 7.0]
    """
    parts = list(datasets)
    if not parts:
        raise ValueError("concat needs at least one tessellation Dataset.")
    topos = [topology(p, labels=LABEL in p.variables) for p in parts]
    first = topos[0]
    for i, t in enumerate(topos[1:], start=1):
        if t.ndim != first.ndim or [str(s) for s in t.space] != [str(s) for s in first.space]:
            raise TessellationError(
                f"datasets[{i}] has space {t.space} ({t.ndim}D) but datasets[0] has "
                f"{first.space} ({first.ndim}D); concat joins tessellations of the same "
                "space. Rename the coordinates (ds.assign_coords(space=[...])) or select "
                "matching ones first."
            )
        u0, ui = first.center.attrs.get("units"), t.center.attrs.get("units")
        if u0 != ui:
            raise TessellationError(
                f"datasets[{i}] has center units {ui!r} but datasets[0] has {u0!r}; convert "
                "the centers to the same units before concat (and set "
                "ds.center.attrs['units'])."
            )
    edge_names = [_edge_var_names(p, t) for p, t in zip(parts, topos, strict=True)]
    common = set(edge_names[0])
    for i, names in enumerate(edge_names[1:], start=1):
        if set(names) != common:
            diff = sorted(str(x) for x in set(names) ^ common)
            raise TessellationError(
                f"per-edge variable(s) {diff} are in some datasets but not others "
                f"(datasets[0] vs datasets[{i}]); every part needs the same per-edge "
                "variables. Drop them (ds.drop_vars([...])) or add them to every part."
            )
    target = layout if layout is not None else (
        "ragged" if any(t.layout == "ragged" for t in topos) else "padded"
    )
    ptrs: list[np.ndarray] = []
    inds: list[np.ndarray] = []
    edges: dict[Hashable, list[np.ndarray]] = {name: [] for name in edge_names[0]}
    offset, e_offset = 0, 0
    for p, t, names in zip(parts, topos, edge_names, strict=True):
        indptr, indices = _loaded(p, t)
        ptrs.append(indptr[1:] + e_offset if ptrs else indptr + e_offset)
        inds.append(indices + offset)
        for name, (values, _) in _edge_arrays(p, t, names).items():
            edges[name].append(values)
        offset += t.n_bins
        e_offset += len(indices)
    indptr = np.concatenate(ptrs)
    indices = np.concatenate(inds)
    edge_vars = {
        name: (np.concatenate(vals), dict(parts[0][name].attrs)) for name, vals in edges.items()
    }
    tables = table_variables(indptr, indices, edge_vars, target, _table_attrs(parts[0]))
    polygons = _concat_polygons(parts)
    rest = [
        _without_table(p, names).drop_vars(
            [v for v in (BIN_ID, VERTEX, CELL_VERTEX) if v in p.variables]
        )
        for p, names in zip(parts, edge_names, strict=True)
    ]
    try:
        out = xr.concat(
            rest, dim=BIN, data_vars="minimal", coords="minimal", compat="equals",
            join="exact", combine_attrs="drop_conflicts",
        )
    except ValueError as err:
        raise TessellationError(
            f"the measurements of the datasets cannot be concatenated along 'bin': {err}. "
            "Variables without a 'bin' dim must be equal in every part, and the other "
            "dims' coordinates (e.g. time) must match exactly."
        ) from err
    out = out.assign_coords(bin_coordinate(offset))
    for name, var in tables.items():
        out[name] = var
    for name, var in polygons.items():
        out[name] = var
    for attr in ("grid_shape", "grid_origin"):
        out.attrs.pop(attr, None)
    return out


def _concat_polygons(parts: Sequence[xr.Dataset]) -> dict[Hashable, xr.Variable]:
    if not all(CELL_VERTEX in p.variables and VERTEX in p.variables for p in parts):
        return {}
    verts, cells = [], []
    offset = 0
    width = max(p.sizes[CORNER] for p in parts)
    for p in parts:
        cv = np.asarray(p[CELL_VERTEX].transpose(BIN, CORNER).values).astype(np.int64)
        cv = np.where(cv >= 0, cv + offset, -1)
        cv = np.pad(cv, ((0, 0), (0, width - cv.shape[1])), constant_values=-1)
        cells.append(cv)
        verts.append(np.asarray(p[VERTEX].transpose(VERTEX, SPACE).values))
        offset += p.sizes[VERTEX]
    return {
        VERTEX: xr.Variable((VERTEX, SPACE), np.concatenate(verts), dict(parts[0][VERTEX].attrs)),
        CELL_VERTEX: xr.Variable(
            (BIN, CORNER), np.concatenate(cells), dict(parts[0][CELL_VERTEX].attrs)
        ),
    }


# --------------------------------------------------------------------------- symmetrize


def symmetrize(ds: xr.Dataset, *, layout: str | None = None) -> xr.Dataset:
    """The symmetric closure of the neighbour table: add every missing reverse entry.

    Wherever bin ``i`` lists ``j`` but ``j`` does not list ``i``, ``i`` is appended to
    ``j``'s row (existing entries keep their order). ``neighbour_label`` of an added entry
    is the negated label of its reverse (the other side along the same axis),
    ``face_area`` is copied (the same face); other per-edge variables get a missing value
    (NaN, or 0 for integers). Returns ``ds`` itself when the table is already symmetric.

    Parameters
    ----------
    ds : xarray.Dataset
    layout : {"auto", "padded", "ragged"}, optional
        Layout of the result's table (default: the input's).

    Examples
    --------
    A 2-nearest-neighbour table on a line (0 lists 1 and 2, but 2 lists 1 and 3):

    >>> import xtramgrad
    >>> knn = xtramgrad.from_neighbours([0.0, 1.0, 2.0, 3.0],
    ...                                 [[1, 2], [0, 2], [1, 3], [2, 1]])
    >>> from xtramgrad.topology import symmetrize
    >>> symmetrize(knn).neighbours.values.tolist()
    [[1, 2, -1], [0, 2, 3], [1, 3, 0], [2, 1, -1]]
    """
    topo = topology(ds, labels=LABEL in ds.variables)
    n = topo.n_bins
    indptr, indices = _loaded(ds, topo)
    owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    keys = np.sort(owner * n + indices)
    rev = indices * n + owner
    pos = np.searchsorted(keys, rev)
    found = (pos < len(keys)) & (keys[np.minimum(pos, max(len(keys) - 1, 0))] == rev)
    missing = np.flatnonzero(~found)
    if len(missing) == 0 and (layout is None or layout == topo.layout):
        return ds
    names = _edge_var_names(ds, topo)
    edges = _edge_arrays(ds, topo, names)
    all_owner = np.concatenate([owner, indices[missing]])
    all_index = np.concatenate([indices, owner[missing]])
    order = np.argsort(all_owner, kind="stable")
    new_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(all_owner, minlength=n), out=new_ptr[1:])
    edge_vars = {}
    for name, (values, attrs) in edges.items():
        if name == LABEL:
            added = -values[missing]
        elif name == "face_area":
            added = values[missing]
        else:
            added = np.full(len(missing), _edge_fill(name, values.dtype), dtype=values.dtype)
        edge_vars[name] = (np.concatenate([values, added])[order], attrs)
    target = topo.layout if layout is None else layout
    tables = table_variables(new_ptr, all_index[order], edge_vars, target, _table_attrs(ds))
    out = ds.drop_vars([v for v in (NEIGHBOURS, COUNT, *names) if v in ds.variables])
    for name, var in tables.items():
        out[name] = var
    return out
