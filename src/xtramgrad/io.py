"""Meet users where their data is: TRamWAy analyses and UGRID meshes in, gradient maps out.

Three public functions, each returning or consuming the tessellation Dataset of
:mod:`xtramgrad.topology`:

* :func:`from_tramway` reads a TRamWAy ``.rwa`` file (or a loaded analysis tree): the bins
  and adjacency exactly as TRamWAy's inference sees them, and every map stored under the
  chosen tessellation as variables;
* :func:`to_tramway` turns a gradient (or any per-bin variable) back into a TRamWAy map: a
  :class:`pandas.DataFrame` indexed by TRamWAy's cell index with TRamWAy's column names
  (``"diffusivity x"``, ...), optionally stored in the analysis tree / ``.rwa`` file;
* :func:`from_ugrid` reads a 2D UGRID mesh (an :class:`xarray.Dataset` following the UGRID
  conventions, an ``xugrid`` ``Ugrid2d``/``UgridDataset``/``UgridDataArray``, or an
  ``uxarray`` ``Grid``/``UxDataset``/``UxDataArray``): faces become bins.

TRamWAy, xugrid and uxarray are optional: each is imported only inside the function that
needs it (``pip install 'xtramgrad[tramway]'`` / ``'xtramgrad[ugrid]'``).

Examples
--------
>>> import numpy as np, xarray as xr, xtramgrad
>>> mesh = xr.Dataset(
...     {
...         "mesh": ((), 0, {"cf_role": "mesh_topology", "topology_dimension": 2,
...                         "node_coordinates": "node_x node_y",
...                         "face_node_connectivity": "face_nodes"}),
...         "node_x": ("node", [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]),
...         "node_y": ("node", [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]),
...         "face_nodes": (("face", "corner"), [[0, 1, 4, 3], [1, 2, 5, 4]]),
...         "D": ("face", [1.0, 3.0]),
...     }
... )
>>> ds = xtramgrad.from_ugrid(mesh)
>>> ds.center.values.tolist(), ds.neighbours.values.tolist()
([[0.5, 0.5], [1.5, 0.5]], [[1], [0]])
>>> ds.tram.grad("D").values.tolist()
[[2.0, nan], [2.0, nan]]
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .topology import BIN, SCHEMA_VARIABLES, SPACE, TessellationError
from .topology import from_adjacency as _from_adjacency

__all__ = ["from_tramway", "to_tramway", "from_ugrid", "TRAMWAY_CELL"]

#: Name of the coordinate (along ``bin``) holding TRamWAy's cell index.
TRAMWAY_CELL = "tramway_cell"

_LabelPath = tuple[Hashable, ...]


# =========================================================================== TRamWAy


def _import_tramway() -> Any:
    try:
        import tramway  # noqa: F401
        from tramway.core.analyses import base as analyses_base
    except ImportError as err:
        raise TessellationError(
            "reading or writing TRamWAy analyses needs the optional dependency 'tramway' "
            f"({err}); install it with: pip install 'xtramgrad[tramway]' (tramway==0.7)."
        ) from err
    return analyses_base


def _load_tree(source: Any) -> tuple[Any, str | None]:
    """The analysis tree of ``source`` (path or tree) and the path it came from."""
    _import_tramway()
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise TessellationError(
                f"no TRamWAy file at {path!r}; pass the path of an existing .rwa file or a "
                "loaded analysis tree (tramway.helper.load_rwa(path))."
            )
        from tramway.core.hdf5 import load_rwa

        try:
            tree = load_rwa(path, lazy=False, verbose=False)
        except Exception as err:  # rwa raises many unrelated types
            raise TessellationError(
                f"{path!r} could not be read as a TRamWAy .rwa file: "
                f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''}"
            ) from err
        return tree, path
    if hasattr(source, "labels") and hasattr(source, "instances") and hasattr(source, "data"):
        return source, None
    raise TessellationError(
        f"source is a {type(source).__name__}; expected the path of a TRamWAy .rwa file or a "
        "loaded TRamWAy analysis tree (tramway.core.analyses.Analyses)."
    )


def _walk(node: Any, path: _LabelPath = ()) -> Iterable[tuple[_LabelPath, Any]]:
    """Every (label path, sub-tree) below ``node`` (depth first, in label order)."""
    for label in list(node.labels):
        child = node[label]
        yield (*path, label), child
        yield from _walk(child, (*path, label))


def _is_partition(data: Any) -> bool:
    from tramway.tessellation.base import Partition

    return isinstance(data, Partition)


def _is_maps(data: Any) -> bool:
    from tramway.inference.base import Maps

    return isinstance(data, Maps)


def _fmt_path(path: Sequence[Hashable]) -> str:
    return "/".join(str(p) for p in path)


def _as_path(label: Any) -> _LabelPath:
    if isinstance(label, (list, tuple)):
        return tuple(label)
    return (label,)


def _choose_partition(tree: Any, label: Any) -> tuple[_LabelPath, Any]:
    nodes = list(_walk(tree))
    partitions = [(p, n) for p, n in nodes if _is_partition(n.data)]
    listing = ", ".join(repr(_fmt_path(p)) for p, _ in partitions) or "none"
    if not partitions:
        raise TessellationError(
            "the TRamWAy analysis tree holds no tessellation (no Partition); tessellate the "
            "data first, e.g. tramway.helper.tessellate(analyses, 'grid', label='grid')."
        )
    if label is None:
        if len(partitions) > 1:
            raise TessellationError(
                f"the TRamWAy analysis tree holds {len(partitions)} tessellations; choose one "
                f"with label=: available labels are {listing} (a nested label is a path, "
                "e.g. label=('roi', 'grid'))."
            )
        return partitions[0]
    want = _as_path(label)
    by_path = {p: n for p, n in nodes}
    # an exact path from the root, or a unique path ending with the given labels
    matches = [p for p in by_path if p == want]
    if not matches:
        matches = [p for p in by_path if p[-len(want) :] == want]
    if len(matches) != 1:
        what = "no analysis" if not matches else f"{len(matches)} analyses"
        raise TessellationError(
            f"label={label!r} matches {what} in the TRamWAy analysis tree; available "
            f"tessellation labels are {listing}. Pass the full label path as a tuple."
        )
    path = matches[0]
    # a path to a map selects the tessellation it was computed on
    for cut in range(len(path), 0, -1):
        if _is_partition(by_path[path[:cut]].data):
            return path[:cut], by_path[path[:cut]]
    raise TessellationError(
        f"label={label!r} names a {type(by_path[path].data).__name__}, not a tessellation or "
        f"a map below one; available tessellation labels are {listing}."
    )


def _space_labels_tramway(partition: Any, d: int) -> list[Hashable]:
    """The names TRamWAy gives the space columns (``cells.space_cols``)."""
    cols: list[Hashable] = []
    scaler = getattr(partition.tessellation, "scaler", None)
    scaler_cols = getattr(scaler, "columns", None)
    if scaler_cols is not None and len(scaler_cols) == d:
        cols = list(scaler_cols)
    else:
        points = getattr(partition, "_points", None)
        columns = getattr(points, "columns", None)
        if columns is not None:
            cols = [c for c in columns if c not in ("n", "t")]
    if len(cols) != d or not all(isinstance(c, str) for c in cols):
        cols = list(("x", "y", "z")[:d])
    return cols


def _inference_cells(partition: Any, keep_empty: bool) -> tuple[np.ndarray, Any, np.ndarray]:
    """(kept cell indices, their csr adjacency in TRamWAy's order, inferred mask)."""
    from scipy import sparse

    tess = partition.tessellation
    n_cells = int(np.asarray(tess.cell_centers).shape[0])
    label = getattr(tess, "cell_label", None)
    labelled = np.ones(n_cells, dtype=bool) if label is None else np.asarray(label) > 0
    inferred = None
    adjacency = None
    points = getattr(partition, "_points", None)
    if points is not None and np.size(points):
        from tramway.inference.base import Distributed, distributed

        try:
            dist = distributed(partition, new_group=Distributed)
        except (KeyboardInterrupt, SystemExit):  # pragma: no cover
            raise
        except Exception as err:
            raise TessellationError(
                "TRamWAy could not build the inference cells of this tessellation "
                f"({type(err).__name__}: {err}); is it a partition of (trans-)locations?"
            ) from err
        inferred = np.zeros(n_cells, dtype=bool)
        inferred[np.fromiter(dist.cells.keys(), dtype=np.int64)] = True
        adjacency = sparse.csr_matrix(dist.adjacency)
    else:
        counts = np.asarray(partition.location_count)
        inferred = (counts > 0) & labelled
    try:
        base = tess.diagonal_adjacency
    except AttributeError:
        base = None
    if keep_empty:
        keep = labelled
        adjacency = tess.simplified_adjacency(adjacency=base, label=keep, format="csr")
    else:
        keep = inferred
        if adjacency is None:
            adjacency = tess.simplified_adjacency(adjacency=base, label=keep, format="csr")
    cells = np.flatnonzero(keep)
    adjacency = sparse.csr_matrix(adjacency)[cells][:, cells]
    return cells, adjacency, inferred[cells]


def _split_feature(columns: Sequence[str], feature: str) -> list[str]:
    return [c for c in columns if c == feature or c.startswith(f"{feature} ")]


def _maps_variables(
    node: Any, part_path: _LabelPath, cells: np.ndarray, space: list[Hashable], select: Any
) -> list[tuple[str, str, _LabelPath, xr.Variable]]:
    """(feature, short label, map path, Variable) for every map below the partition."""
    import pandas as pd

    out = []
    wanted = None if select in (None, True) else [_as_path(s) for s in _as_list(select)]
    for rel, child in _walk(node):
        if not _is_maps(child.data):
            continue
        path = (*part_path, *rel)
        if wanted is not None and not any(rel[-len(w) :] == w for w in wanted):
            continue
        df = child.data.maps
        if not isinstance(df, pd.DataFrame):  # pragma: no cover - Maps enforces it
            continue
        index = np.asarray(df.index)
        table = df.reindex(cells)
        for feature in child.data.features or []:
            cols = _split_feature([str(c) for c in df.columns], str(feature))
            if not cols:
                continue
            values = table[cols].to_numpy(dtype=np.float64, na_value=np.nan)
            attrs: dict[str, Any] = {
                "tramway_map": _fmt_path(path),
                "tramway_feature": str(feature),
                "tramway_columns": list(cols),
                "long_name": str(feature),
            }
            mode = getattr(child.data, "mode", None)
            if mode is not None:
                attrs["tramway_mode"] = str(mode)
            outside = int(np.setdiff1d(index, cells).size)
            if outside:
                attrs["tramway_rows_outside"] = outside
            if cols == [feature]:
                var = xr.Variable((BIN,), values[:, 0], attrs)
            else:
                suffix = [c[len(str(feature)) + 1 :] for c in cols]
                if suffix == [str(s) for s in space]:
                    var = xr.Variable((BIN, SPACE), values, attrs)
                else:
                    dim = f"{feature}_component"
                    attrs["tramway_components"] = suffix
                    var = xr.Variable((BIN, dim), values, attrs)
            out.append((str(feature), str(rel[-1]), path, var))
    return out


def _as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, list) else [x]


def _name_variables(
    found: list[tuple[str, str, _LabelPath, xr.Variable]],
) -> dict[str, xr.Variable]:
    """Feature names, suffixed with the map label (then the path) where they collide."""
    reserved = set(SCHEMA_VARIABLES) | {TRAMWAY_CELL, "location_count", "tramway_inferred"}
    count: dict[str, int] = {}
    for feature, *_ in found:
        count[feature] = count.get(feature, 0) + 1
    names = [
        f if count[f] == 1 and f not in reserved else f"{f}_{short}"
        for f, short, _, _ in found
    ]
    if len(set(names)) != len(names) or reserved & set(names):
        names = [
            f"{f}_{'_'.join(str(p) for p in path[1:])}" for f, _, path, _ in found
        ]
    return dict(zip(names, (v for *_, v in found), strict=True))


def from_tramway(
    source: Any,
    label: Any = None,
    *,
    maps: Any = True,
    keep_empty: bool = False,
) -> xr.Dataset:
    """Tessellation Dataset from a TRamWAy analysis (``.rwa`` file or loaded tree).

    The bins are the cells that TRamWAy's inference uses (``tramway.inference.base.
    distributed``: cells holding data, with a positive label), in TRamWAy's order; the
    neighbour table is the adjacency that inference uses (the "diagonal" 8/18-neighbour
    adjacency of grids, the Voronoi adjacency of kmeans/gwr/hexagon minus the edges TRamWAy
    pruned, edges of dropped cells removed), in TRamWAy's (csr) order. Every map found below
    the tessellation becomes a variable.

    Parameters
    ----------
    source : str, path-like or tramway analysis tree
        A ``.rwa`` file written by TRamWAy, or the tree ``tramway.helper.load_rwa`` returns.
    label : label or tuple of labels, optional
        The tessellation to read, as a label path from the root (``("roi", "grid")``) or
        its unique tail (``"grid"``); a path to a map selects the tessellation the map was
        computed on. Required when the tree holds several tessellations (the error lists
        them).
    maps : bool, label or list of labels
        ``True`` (default): every map below the tessellation. A label (path) or a list of
        them: only those maps. ``False``: none.
    keep_empty : bool
        Keep the cells without data (bins that inference dropped), with their edges; their
        maps are NaN (missing), so gradients ignore them as TRamWAy does, and the boolean
        variable ``tramway_inferred`` marks the cells inference used.

    Returns
    -------
    xarray.Dataset
        ``center``, ``neighbours``, ``volume`` (when TRamWAy knows cell volumes),
        ``location_count``, the coordinate ``tramway_cell`` (TRamWAy's cell index of each
        bin: :func:`to_tramway` maps results back with it) and one variable per map
        feature: a scalar map ``diffusivity`` has dims ``(bin,)``; a vector map with columns
        ``"force x"``, ``"force y"`` has dims ``(bin, space)``. A feature found in several
        maps (``diffusivity`` in the D map and in a gradient map below it) is suffixed with
        its map label: ``diffusivity_D``, ``diffusivity_gradD`` (with the label path if
        that still collides). Each variable's attrs record its map path (``tramway_map``)
        and TRamWAy columns.

    Raises
    ------
    TessellationError
        tramway missing, unreadable file, no or ambiguous tessellation, unknown label.

    Examples
    --------
    >>> import xtramgrad
    >>> xtramgrad.from_tramway("no-such-file.rwa")
    Traceback (most recent call last):
    ...
    xtramgrad.topology.TessellationError: no TRamWAy file at 'no-such-file.rwa'; ...

    With a file holding a ``grid`` tessellation and a ``D`` map below it:
    ``ds = xtramgrad.from_tramway("sample.rwa", label="grid")``, then
    ``ds.tram.grad("diffusivity")``.
    """
    tree, path = _load_tree(source)
    part_path, node = _choose_partition(tree, label)
    partition = node.data
    tess = partition.tessellation
    try:
        from tramway.tessellation.time import TimeLattice

        if isinstance(tess, TimeLattice):
            raise TessellationError(
                f"tessellation {_fmt_path(part_path)!r} is a TRamWAy time lattice "
                f"({type(tess).__name__}); from_tramway reads spatial tessellations. Read "
                "the spatial tessellation it was built on, or export each time segment."
            )
    except ImportError:  # pragma: no cover
        pass
    cells, adjacency, inferred = _inference_cells(partition, keep_empty)
    centers = np.asarray(tess.cell_centers, dtype=np.float64)[cells]
    if centers.ndim != 2 or centers.shape[1] not in (1, 2, 3):
        raise TessellationError(
            f"tessellation {_fmt_path(part_path)!r} has cell centers of shape "
            f"{centers.shape}; expected (n, d) with d = 1, 2 or 3."
        )
    space = _space_labels_tramway(partition, centers.shape[1])
    ds = _from_adjacency(centers, adjacency, space=space)
    ds.neighbours.attrs["tramway_adjacency"] = (
        "diagonal" if getattr(tess, "_diagonal_adjacency", None) is not None
        or hasattr(type(tess), "diagonal_adjacency") else "cell"
    )
    try:
        volume = np.asarray(tess.cell_volume, dtype=np.float64)[cells]
    except Exception:  # TRamWAy computes volumes lazily and may not know them
        volume = None
    if volume is not None and volume.shape == (len(cells),):
        ds["volume"] = (BIN, volume, {"long_name": "cell volume (TRamWAy)"})
    counts = getattr(partition, "location_count", None)
    if counts is not None and np.shape(counts) == (len(tess.cell_centers),):
        ds["location_count"] = (
            BIN, np.asarray(counts)[cells], {"long_name": "locations per cell (TRamWAy)"}
        )
    if keep_empty:
        ds["tramway_inferred"] = (
            BIN, inferred, {"long_name": "cell used by TRamWAy's inference"}
        )
    if maps is not False:
        found = _maps_variables(node, part_path, cells, space, maps)
        if maps not in (True, None) and not found:
            raise TessellationError(
                f"maps={maps!r} matches no map below tessellation "
                f"{_fmt_path(part_path)!r}; available maps: "
                f"{[_fmt_path(p) for p, n in _walk(node) if _is_maps(n.data)]}."
            )
        for name, var in _name_variables(found).items():
            ds[name] = var
    origin = {"tramway_label": _fmt_path(part_path)}
    if path is not None:
        origin["tramway_source"] = path
    ds = ds.assign_coords(
        {TRAMWAY_CELL: (BIN, cells.astype(np.int64), {"long_name": "TRamWAy cell index",
                                                       **origin})}
    )
    ds.attrs.update(
        {
            "tessellation": type(tess).__name__,
            **origin,
        }
    )
    return ds


# --------------------------------------------------------------------------- way back


def _frame_columns(
    da: xr.DataArray, feature: str
) -> tuple[np.ndarray, list[str]]:
    if BIN not in da.dims:
        raise TessellationError(
            f"variable {da.name!r} has dims {tuple(da.dims)} without 'bin'; TRamWAy maps hold "
            "one row per cell."
        )
    extra = [d for d in da.dims if d != BIN]
    if len(extra) > 1:
        raise TessellationError(
            f"variable {da.name!r} has dims {tuple(da.dims)}; a TRamWAy map holds one row per "
            f"cell and one column per component. Select one slice of {extra[1:]} first, "
            "e.g. .isel(time=0)."
        )
    if not extra:
        return da.values[:, None].astype(np.float64), [feature]
    comp = extra[0]
    values = da.transpose(BIN, comp).values.astype(np.float64)
    labels = (
        [str(c) for c in da.coords[comp].values] if comp in da.coords
        else [str(c) for c in da.attrs.get("tramway_components", range(da.sizes[comp]))]
    )
    return values, [f"{feature} {c}" for c in labels]


def _feature_name(da: xr.DataArray, feature: str | None) -> str:
    if feature is not None:
        return feature
    if "tramway_feature" in da.attrs:
        return str(da.attrs["tramway_feature"])
    name = "" if da.name is None else str(da.name)
    if "xtramgrad_method" in da.attrs:
        # a gradient: its long_name is "gradient of <the field's long_name or name>"
        long_name = str(da.attrs.get("long_name", ""))
        if long_name.startswith("gradient of "):
            return long_name[len("gradient of ") :]
        if name.startswith("grad_"):
            name = name[len("grad_") :]
    if not name:
        raise TessellationError(
            "the DataArray has no name; pass feature= (the TRamWAy feature name, e.g. "
            "'diffusivity')."
        )
    return name


def to_tramway(
    obj: xr.DataArray | xr.Dataset,
    *,
    feature: str | None = None,
    dropna: bool = True,
    into: Any = None,
    label: Any = None,
    output_label: Hashable | None = None,
    comment: str | None = None,
) -> Any:
    """A gradient (or any per-bin variable) as a TRamWAy map.

    Parameters
    ----------
    obj : xarray.DataArray or xarray.Dataset
        A result of :func:`xtramgrad.grad` (dims ``(bin, space)``), a scalar per-bin variable,
        or a Dataset of those. Bins map back to TRamWAy cells through the ``tramway_cell``
        coordinate that :func:`from_tramway` adds (bin positions are used without it).
    feature : str, optional
        The TRamWAy feature name. By default: for a gradient, the name of the field it is
        the gradient of (the end of its ``long_name``, "gradient of ...": a map read by
        :func:`from_tramway` keeps its TRamWAy feature name there even when the variable
        was renamed ``diffusivity_D``), so the gradient of ``diffusivity`` gets the columns
        of TRamWAy's gradient plugin, ``"diffusivity x"``, ``"diffusivity y"``; otherwise
        the ``tramway_feature`` attribute or the variable name. Only for a DataArray.
    dropna : bool
        Drop the rows whose components are all NaN (default), as TRamWAy omits the cells
        where it computes no gradient.
    into : str, path-like or tramway analysis tree, optional
        Also store the map, as a ``tramway.inference.base.Maps`` (mode ``"gradient"`` for a
        gradient), in this analysis tree, or in this ``.rwa`` file (rewritten in place).
    label : label or tuple of labels, optional
        Where to attach the map in the tree: a label path (e.g. ``("grid", "D")``). By
        default the tessellation the Dataset was read from (``tramway_cell``'s attrs).
    output_label : label, optional
        The new map's label (default ``"xtramgrad"``).
    comment : str, optional
        Comment stored with the map.

    Returns
    -------
    pandas.DataFrame
        Indexed by TRamWAy cell index, one column per component.

    Examples
    --------
    >>> import xtramgrad
    >>> ds = xtramgrad.grid((3, 3), diffusivity=[0.0, 1, 2, 0, 1, 2, 0, 1, 2])
    >>> df = xtramgrad.to_tramway(ds.tram.grad("diffusivity"))
    >>> list(df.columns)
    ['diffusivity x', 'diffusivity y']
    >>> (df.loc[4].round(12) + 0.0).tolist()
    [0.0, 1.0]
    """
    import pandas as pd

    if isinstance(obj, xr.Dataset):
        if feature is not None:
            raise TessellationError(
                "feature= names the feature of a single DataArray; a Dataset's variables keep "
                "their own names. Rename them first (ds.rename(...))."
            )
        arrays = [obj[v] for v in obj.data_vars if BIN in obj[v].dims]
        if not arrays:
            raise TessellationError(
                f"the Dataset has no per-bin variable to export; its variables are "
                f"{list(obj.data_vars)}."
            )
        ref: xr.DataArray | xr.Dataset = obj
    elif isinstance(obj, xr.DataArray):
        arrays = [obj]
        ref = obj
    else:
        raise TessellationError(
            f"expected an xarray DataArray or Dataset, got {type(obj).__name__}."
        )
    blocks, columns = [], []
    for da in arrays:
        values, cols = _frame_columns(da, _feature_name(da, feature))
        blocks.append(values)
        columns += cols
    if len(set(columns)) != len(columns):
        raise TessellationError(
            f"the exported columns {columns} are not unique: two variables map to the same "
            "TRamWAy feature. Export them separately (feature= names a DataArray's feature) "
            "or drop one."
        )
    if TRAMWAY_CELL in ref.coords:
        index = np.asarray(ref.coords[TRAMWAY_CELL].values, dtype=np.int64)
    else:
        index = np.arange(ref.sizes[BIN])
    df = pd.DataFrame(np.concatenate(blocks, axis=1), index=index, columns=columns)
    if dropna:
        df = df[~df.isna().all(axis=1)]
    if into is not None:
        _store_map(df, ref, arrays, into, label, output_label, comment)
    return df


def _store_map(
    df: Any,
    ref: xr.DataArray | xr.Dataset,
    arrays: list[xr.DataArray],
    into: Any,
    label: Any,
    output_label: Hashable | None,
    comment: str | None,
) -> None:
    tree, path = _load_tree(into)
    from tramway.inference.base import Maps

    if label is None:
        attrs = ref.coords[TRAMWAY_CELL].attrs if TRAMWAY_CELL in ref.coords else {}
        if "tramway_label" not in attrs:
            raise TessellationError(
                "to_tramway(into=...) needs label= (the label path of the tessellation or "
                "map to attach the new map to) when the data does not come from "
                "from_tramway."
            )
        label = tuple(attrs["tramway_label"].split("/"))
    parent = tree
    for part in _as_path(label):
        if part not in parent.labels:
            raise TessellationError(
                f"label={label!r}: no analysis {part!r} at that level of the tree; available "
                f"labels there: {list(parent.labels)}."
            )
        parent = parent[part]
    if not (_is_partition(parent.data) or _is_maps(parent.data)):
        raise TessellationError(
            f"label={label!r} names a {type(parent.data).__name__}; attach maps to a "
            "tessellation (Partition) or a map (Maps)."
        )
    is_gradient = all("xtramgrad_method" in a.attrs for a in arrays)
    maps = Maps(df, mode="gradient" if is_gradient else "xtramgrad")
    out_label = "xtramgrad" if output_label is None else output_label
    parent.add(maps, label=out_label, comment=comment)
    if path is not None:
        from tramway.core.hdf5 import save_rwa

        save_rwa(path, tree, force=True, verbose=False)


# =========================================================================== UGRID


def _ugrid_topology(ds: xr.Dataset, mesh: Hashable | None) -> tuple[Hashable, dict[str, Any]]:
    cands = [
        name for name, v in ds.variables.items()
        if v.attrs.get("cf_role") == "mesh_topology"
        and int(v.attrs.get("topology_dimension", 0)) == 2
    ]
    if mesh is not None:
        if mesh not in ds.variables or ds[mesh].attrs.get("cf_role") != "mesh_topology":
            raise TessellationError(
                f"mesh={mesh!r} is not a UGRID mesh topology variable of the Dataset; its 2D "
                f"meshes are {cands}."
            )
        if int(ds[mesh].attrs.get("topology_dimension", 0)) != 2:
            raise TessellationError(
                f"mesh {mesh!r} has topology_dimension="
                f"{ds[mesh].attrs.get('topology_dimension')}; from_ugrid reads 2D meshes "
                "(faces as bins)."
            )
        return mesh, dict(ds[mesh].attrs)
    if not cands:
        raise TessellationError(
            "the Dataset is not a UGRID dataset: no variable has attrs cf_role="
            "'mesh_topology' and topology_dimension=2. See the UGRID conventions "
            "(https://ugrid-conventions.github.io/ugrid-conventions/), or build the "
            "tessellation with xtramgrad.from_neighbours(centers, neighbours)."
        )
    if len(cands) > 1:
        raise TessellationError(
            f"the Dataset holds {len(cands)} 2D UGRID meshes {cands}; choose one with mesh=."
        )
    return cands[0], dict(ds[cands[0]].attrs)


def _fill_and_start(var: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """(zero-based table with -1 padding, validity mask) of a UGRID connectivity."""
    raw = np.asarray(var.values)
    start = int(var.attrs.get("start_index", var.encoding.get("start_index", 0)))
    fill = var.attrs.get("_FillValue", var.encoding.get("_FillValue"))
    if np.issubdtype(raw.dtype, np.floating):
        valid = np.isfinite(raw)
        if fill is not None:
            valid &= raw != fill
        table = np.where(valid, raw, 0).astype(np.int64)
    elif np.issubdtype(raw.dtype, np.integer):
        table = raw.astype(np.int64)
        valid = np.ones(raw.shape, dtype=bool) if fill is None else raw != fill
        if fill is None:
            valid &= table >= start  # -1 padding without a declared _FillValue
    else:
        raise TessellationError(
            f"UGRID connectivity {var.name!r} has dtype {raw.dtype}; expected integers."
        )
    table = np.where(valid, table - start, -1)
    return table, valid


def _connectivity(
    ds: xr.Dataset, attrs: dict[str, Any], key: str, face_dim: Hashable | None
) -> xr.DataArray | None:
    name = attrs.get(key)
    if name is None:
        return None
    if name not in ds.variables:
        raise TessellationError(
            f"the mesh topology names {key}={name!r}, but the Dataset has no variable "
            f"{name!r}."
        )
    var = ds[name]
    if var.ndim != 2:
        raise TessellationError(
            f"UGRID connectivity {name!r} has dims {var.dims}; expected 2 dims (face, ...)."
        )
    if face_dim is not None and var.dims[0] != face_dim:
        if var.dims[1] == face_dim:
            var = var.transpose()
        else:
            raise TessellationError(
                f"UGRID connectivity {name!r} has dims {var.dims}, none of which is the face "
                f"dimension {face_dim!r}."
            )
    return var


def _shared_adjacency(face_nodes: np.ndarray, n_nodes: int, by: str) -> Any:
    """Faces sharing an edge (``by='edges'``) or a node (``by='nodes'``), as csr."""
    from scipy import sparse

    nf, k = face_nodes.shape
    valid = face_nodes >= 0
    rows = np.repeat(np.arange(nf), k).reshape(nf, k)
    if by == "nodes":
        inc = sparse.csr_matrix(
            (np.ones(valid.sum()), (rows[valid], face_nodes[valid])), shape=(nf, n_nodes)
        )
    else:
        # each face's edges: consecutive valid nodes, closing the polygon
        deg = valid.sum(axis=1)
        # packed nodes (valid entries first, in order)
        order = np.argsort(~valid, axis=1, kind="stable")
        packed = np.take_along_axis(face_nodes, order, axis=1)
        pos = np.arange(k)[None, :]
        nxt = np.where(pos + 1 < deg[:, None], pos + 1, 0)
        a = packed
        b = np.take_along_axis(packed, nxt, axis=1)
        ok = pos < deg[:, None]
        lo, hi = np.minimum(a, b)[ok], np.maximum(a, b)[ok]
        key = lo.astype(np.int64) * n_nodes + hi
        edge_id, inverse = np.unique(key, return_inverse=True)
        inc = sparse.csr_matrix(
            (np.ones(inverse.size), (rows[ok], inverse.ravel())), shape=(nf, edge_id.size)
        )
    adj = (inc @ inc.T).tocsr()
    adj.setdiag(0)
    adj.eliminate_zeros()
    adj.sort_indices()
    return adj


def _pack(table: np.ndarray) -> np.ndarray:
    """Valid entries first (their order kept), trimmed to the widest row."""
    valid = table >= 0
    table = np.take_along_axis(table, np.argsort(~valid, axis=1, kind="stable"), axis=1)
    return table[:, : int(valid.sum(axis=1).max(initial=0))]


def _polygon_centroids(x: np.ndarray, y: np.ndarray, face_nodes: np.ndarray) -> np.ndarray:
    """Area centroids of the faces (node mean for degenerate faces)."""
    valid = face_nodes >= 0
    deg = valid.sum(axis=1)
    k = face_nodes.shape[1]
    order = np.argsort(~valid, axis=1, kind="stable")
    packed = np.take_along_axis(face_nodes, order, axis=1)
    pos = np.arange(k)[None, :]
    nxt = np.take_along_axis(packed, np.where(pos + 1 < deg[:, None], pos + 1, 0), axis=1)
    ok = pos < deg[:, None]
    safe, safe_n = np.where(ok, packed, 0), np.where(ok, nxt, 0)
    # shift to the first node for accuracy far from the origin
    x0, y0 = x[safe[:, :1]], y[safe[:, :1]]
    xa, ya, xb, yb = x[safe] - x0, y[safe] - y0, x[safe_n] - x0, y[safe_n] - y0
    cross = np.where(ok, xa * yb - xb * ya, 0.0)
    area2 = cross.sum(axis=1)
    cx = ((xa + xb) * cross).sum(axis=1)
    cy = ((ya + yb) * cross).sum(axis=1)
    mean = _node_mean(x, y, face_nodes)
    good = np.abs(area2) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        cen = np.stack([x0[:, 0] + cx / (3 * area2), y0[:, 0] + cy / (3 * area2)], axis=1)
    return np.where(good[:, None], cen, mean)


def _node_mean(x: np.ndarray, y: np.ndarray, face_nodes: np.ndarray) -> np.ndarray:
    valid = face_nodes >= 0
    safe = np.where(valid, face_nodes, 0)
    deg = valid.sum(axis=1)
    return np.stack(
        [np.where(valid, x[safe], 0.0).sum(axis=1) / deg,
         np.where(valid, y[safe], 0.0).sum(axis=1) / deg],
        axis=1,
    )


CENTERS = ("auto", "faces", "nodes", "centroid")
CONNECTIVITY = ("auto", "face_face", "edges", "nodes")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise TessellationError(f"{name}={value!r}; expected one of {allowed}.")


def _ugrid_dataset(
    ds: xr.Dataset, mesh: Hashable | None, centers: str, connectivity: str
) -> xr.Dataset:
    name, attrs = _ugrid_topology(ds, mesh)
    fnc = attrs.get("face_node_connectivity")
    face_dim = attrs.get("face_dimension")
    fn_var = _connectivity(ds, attrs, "face_node_connectivity", face_dim)
    if face_dim is None and fn_var is not None:
        face_dim = fn_var.dims[0]
    ff_var = _connectivity(ds, attrs, "face_face_connectivity", face_dim)
    if face_dim is None and ff_var is not None:
        face_dim = ff_var.dims[0]
    if fn_var is None and ff_var is None:
        raise TessellationError(
            f"UGRID mesh {name!r} has neither face_face_connectivity nor "
            "face_node_connectivity; xtramgrad needs one of them to find neighbouring faces. "
            "Add face_node_connectivity (the nodes of each face) to the mesh attributes."
        )
    face_nodes = None
    node_xy = None
    if fn_var is not None:
        face_nodes, _ = _fill_and_start(fn_var)
        node_coords = str(attrs.get("node_coordinates", "")).split()
        if len(node_coords) >= 2 and all(c in ds.variables for c in node_coords[:2]):
            node_xy = tuple(np.asarray(ds[c].values, dtype=np.float64) for c in node_coords[:2])
        n_nodes = len(node_xy[0]) if node_xy is not None else int(face_nodes.max()) + 1
        if face_nodes.max() >= n_nodes:
            raise TessellationError(
                f"UGRID connectivity {fnc!r} refers to node {int(face_nodes.max())} but the "
                f"mesh has {n_nodes} nodes; check its start_index "
                f"({fn_var.attrs.get('start_index', 0)})."
            )
    n_faces = ds.sizes[face_dim]
    # ---- centers
    face_coords = str(attrs.get("face_coordinates", "")).split()
    has_face_xy = len(face_coords) >= 2 and all(c in ds.variables for c in face_coords[:2])
    if centers == "auto":
        centers = "faces" if has_face_xy else "nodes"
    if centers == "faces":
        if not has_face_xy:
            raise TessellationError(
                f"centers='faces' but mesh {name!r} declares no face_coordinates variables "
                f"(face_coordinates={attrs.get('face_coordinates')!r}); use centers='nodes' "
                "or 'centroid'."
            )
        xy = np.stack(
            [np.asarray(ds[c].values, dtype=np.float64) for c in face_coords[:2]], axis=1
        )
    else:
        if face_nodes is None or node_xy is None:
            raise TessellationError(
                f"centers={centers!r} needs face_node_connectivity and node_coordinates, "
                f"which mesh {name!r} lacks; declare face_coordinates instead."
            )
        if centers == "nodes":
            xy = _node_mean(node_xy[0], node_xy[1], face_nodes)
        else:
            xy = _polygon_centroids(node_xy[0], node_xy[1], face_nodes)
    # ---- neighbours
    if connectivity == "auto":
        connectivity = "face_face" if ff_var is not None else "edges"
    if connectivity == "face_face":
        if ff_var is None:
            raise TessellationError(
                f"connectivity='face_face' but mesh {name!r} has no face_face_connectivity; "
                "use connectivity='edges' (derived from face_node_connectivity)."
            )
        table = _pack(_fill_and_start(ff_var)[0])
        if table.shape[0] != n_faces or table.max(initial=-1) >= n_faces:
            raise TessellationError(
                f"UGRID connectivity {attrs['face_face_connectivity']!r} has shape "
                f"{table.shape} and refers to face {int(table.max(initial=-1))}, for "
                f"{n_faces} faces; check its start_index and _FillValue."
            )
        from .topology import from_neighbours

        out = from_neighbours(xy, table, space=["x", "y"])
    else:
        if face_nodes is None:
            raise TessellationError(
                f"connectivity={connectivity!r} needs face_node_connectivity, which mesh "
                f"{name!r} lacks; use connectivity='face_face'."
            )
        n_nodes = len(node_xy[0]) if node_xy is not None else int(face_nodes.max()) + 1
        adj = _shared_adjacency(face_nodes, n_nodes, by=connectivity)
        out = _from_adjacency(xy, adj, space=["x", "y"])
    out.attrs.update(
        {"tessellation": "ugrid", "ugrid_mesh": str(name), "ugrid_connectivity": connectivity,
         "ugrid_centers": centers}
    )
    # ---- face data as measurements
    for var_name, var in ds.data_vars.items():
        if face_dim not in var.dims or var_name in _ugrid_names(attrs):
            continue
        if var.attrs.get("mesh", name) != name:
            continue
        target = str(var_name)
        if target in SCHEMA_VARIABLES:
            target = f"{target}_data"
        out[target] = xr.Variable(
            tuple(BIN if d == face_dim else d for d in var.dims), var.variable.data,
            dict(var.attrs),
        )
    face_index = ds[face_dim] if face_dim in ds.coords else None
    if face_index is not None:
        out = out.assign_coords({str(face_dim): (BIN, np.asarray(face_index.values))})
    return out


def _ugrid_names(attrs: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for key, value in attrs.items():
        if key.endswith(("_connectivity", "_coordinates")) and isinstance(value, str):
            names.update(value.split())
    return names


def _from_xugrid(obj: Any, centers: str, connectivity: str) -> xr.Dataset | None:
    try:
        import xugrid
    except ImportError:
        return None
    data = None
    if isinstance(obj, xugrid.UgridDataArray):
        grid, data = obj.ugrid.grid, obj.obj.to_dataset(name=obj.name or "data")
    elif isinstance(obj, xugrid.UgridDataset):
        grids = [g for g in obj.ugrid.grids if isinstance(g, xugrid.Ugrid2d)]
        if len(grids) != 1:
            raise TessellationError(
                f"the UgridDataset holds {len(grids)} 2D grids; from_ugrid reads one. Select "
                "it first (e.g. uds[[variables on that grid]])."
            )
        grid, data = grids[0], obj.obj
    elif isinstance(obj, xugrid.Ugrid2d):
        grid = obj
    elif isinstance(obj, xugrid.Ugrid1d):
        raise TessellationError(
            "an xugrid Ugrid1d (network) has no faces; from_ugrid reads 2D meshes."
        )
    else:
        return None
    ds = grid.to_dataset()
    mesh = grid.name
    if centers in ("auto", "faces"):
        # xugrid's face coordinates (polygon centroids) when no face_x/face_y are stored
        ds = ds.assign({f"{mesh}_face_x": (grid.face_dimension, np.asarray(grid.face_x)),
                        f"{mesh}_face_y": (grid.face_dimension, np.asarray(grid.face_y))})
        ds[mesh].attrs["face_coordinates"] = f"{mesh}_face_x {mesh}_face_y"
    if data is not None:
        keep = {k: v for k, v in data.data_vars.items() if grid.face_dimension in v.dims}
        ds = ds.assign(keep)
    if connectivity in ("auto", "face_face"):
        derived = _ugrid_dataset(ds, mesh, "faces" if centers == "auto" else centers, "edges")
        # xugrid's own face_face_connectivity (its sparse structure; the data are edge ids)
        ff = grid.face_face_connectivity.tocsr()
        ff.sort_indices()
        out = _from_adjacency(derived.center.values, (ff.indptr, ff.indices), space=["x", "y"])
        for name in derived.data_vars:
            if name not in SCHEMA_VARIABLES:
                out[name] = derived[name].variable
        out.attrs.update(derived.attrs)
        out.attrs["ugrid_connectivity"] = "face_face"
        return out
    return _ugrid_dataset(ds, mesh, centers, connectivity)


def _from_uxarray(obj: Any, centers: str, connectivity: str) -> xr.Dataset | None:
    try:
        import uxarray
    except ImportError:
        return None
    data = None
    if isinstance(obj, uxarray.UxDataArray):
        grid, data = obj.uxgrid, obj.to_dataset(name=obj.name or "data")
    elif isinstance(obj, uxarray.UxDataset):
        grid, data = obj.uxgrid, obj
    elif isinstance(obj, uxarray.Grid):
        grid = obj
    else:
        return None
    face_nodes = np.asarray(grid.face_node_connectivity.values).astype(np.int64)
    fill = grid.face_node_connectivity.attrs.get("_FillValue", uxarray.INT_FILL_VALUE)
    face_nodes = np.where(face_nodes == fill, -1, face_nodes)
    x, y = np.asarray(grid.node_lon.values, float), np.asarray(grid.node_lat.values, float)
    if centers == "auto":
        centers = "nodes"
    if centers == "faces":
        xy = np.stack([np.asarray(grid.face_lon.values, float),
                       np.asarray(grid.face_lat.values, float)], axis=1)
    elif centers == "nodes":
        xy = _node_mean(x, y, face_nodes)
    else:
        xy = _polygon_centroids(x, y, face_nodes)
    if connectivity == "auto":
        connectivity = "face_face"
    if connectivity == "face_face":
        ff = np.asarray(grid.face_face_connectivity.values).astype(np.int64)
        ffill = grid.face_face_connectivity.attrs.get("_FillValue", uxarray.INT_FILL_VALUE)
        from .topology import from_neighbours

        out = from_neighbours(xy, _pack(np.where(ff == ffill, -1, ff)), space=["lon", "lat"])
    else:
        adj = _shared_adjacency(face_nodes, len(x), by=connectivity)
        out = _from_adjacency(xy, adj, space=["lon", "lat"])
    out.attrs.update({"tessellation": "ugrid", "ugrid_connectivity": connectivity,
                      "ugrid_centers": centers})
    if data is not None:
        for var_name, var in data.data_vars.items():
            if "n_face" in var.dims:
                target = str(var_name)
                if target in SCHEMA_VARIABLES:
                    target = f"{target}_data"
                out[target] = xr.Variable(
                    tuple(BIN if d == "n_face" else d for d in var.dims),
                    np.asarray(var.values), dict(var.attrs),
                )
    return out


def from_ugrid(
    obj: Any,
    *,
    mesh: Hashable | None = None,
    centers: str = "auto",
    connectivity: str = "auto",
) -> xr.Dataset:
    """Tessellation Dataset from a 2D UGRID mesh: faces become bins.

    Parameters
    ----------
    obj : xarray.Dataset, xugrid or uxarray object
        An :class:`xarray.Dataset` following the UGRID conventions (a variable with
        ``cf_role="mesh_topology"``, ``topology_dimension=2``), e.g. from
        ``xr.open_dataset(path)``; an ``xugrid`` ``Ugrid2d``, ``UgridDataset`` or
        ``UgridDataArray``; an ``uxarray`` ``Grid``, ``UxDataset`` or ``UxDataArray``.
    mesh : str, optional
        The mesh topology variable, when the Dataset holds several 2D meshes.
    centers : {"auto", "faces", "nodes", "centroid"}
        Bin centers: the mesh's own face coordinates (``"faces"``: the ``face_coordinates``
        variables; xugrid's ``face_x``/``face_y``; uxarray's ``face_lon``/``face_lat``), the
        mean of each face's nodes (``"nodes"``) or the polygon's area centroid
        (``"centroid"``). ``"auto"``: ``"faces"`` when the file declares them (and for
        xugrid objects), otherwise ``"nodes"``.
    connectivity : {"auto", "face_face", "edges", "nodes"}
        Neighbours: the stored ``face_face_connectivity`` (honouring ``start_index`` and
        ``_FillValue``; xugrid's and uxarray's own tables for their objects), faces sharing an
        edge (``"edges"``, derived from ``face_node_connectivity``) or faces sharing a node
        (``"nodes"``: on quadrilaterals, TRamWAy's 8-neighbour inference adjacency).
        ``"auto"``: ``"face_face"`` when stored, else ``"edges"``.

    Returns
    -------
    xarray.Dataset
        ``center`` (with ``space`` = ``x``, ``y``; ``lon``, ``lat`` for uxarray), ``neighbours``
        and every face variable of the mesh as a measurement (its face dimension renamed
        ``bin``).

    Raises
    ------
    TessellationError
        Not a UGRID dataset, several meshes and no ``mesh=``, a mesh without
        ``face_face_connectivity`` nor ``face_node_connectivity``, inconsistent indices.

    Examples
    --------
    A one-based table with a ``_FillValue``:

    >>> import numpy as np, xarray as xr, xtramgrad
    >>> ds = xr.Dataset({
    ...     "m": ((), 0, {"cf_role": "mesh_topology", "topology_dimension": 2,
    ...                   "node_coordinates": "nx ny", "face_node_connectivity": "fn"}),
    ...     "nx": ("node", [0.0, 1.0, 0.0, 1.0]), "ny": ("node", [0.0, 0.0, 1.0, 1.0]),
    ...     "fn": (("face", "three"), [[1, 2, 3], [2, 4, 3]],
    ...            {"start_index": 1, "_FillValue": -999}),
    ... })
    >>> xtramgrad.from_ugrid(ds).neighbours.values.tolist()
    [[1], [0]]
    >>> xtramgrad.from_ugrid(xr.Dataset())
    Traceback (most recent call last):
    ...
    xtramgrad.topology.TessellationError: the Dataset is not a UGRID dataset: ...
    """
    _check_choice("centers", centers, CENTERS)
    _check_choice("connectivity", connectivity, CONNECTIVITY)
    package = type(obj).__module__.split(".")[0]
    # uxarray's UxDataset subclasses xarray.Dataset: dispatch on the package first
    reader = {"xugrid": _from_xugrid, "uxarray": _from_uxarray}.get(package)
    if reader is not None:
        out = reader(obj, centers, connectivity)
        if out is not None:
            return out
    if isinstance(obj, xr.Dataset):
        return _ugrid_dataset(obj, mesh, centers, connectivity)
    raise TessellationError(
        f"from_ugrid got a {type(obj).__name__}; expected an xarray.Dataset following the "
        "UGRID conventions, an xugrid Ugrid2d/UgridDataset/UgridDataArray or an uxarray "
        "Grid/UxDataset/UxDataArray (with xugrid / uxarray installed: pip install "
        "'xtramgrad[ugrid]')."
    )

