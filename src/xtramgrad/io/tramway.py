"""TRamWAy analyses (.rwa files and loaded trees) in, gradient maps out."""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import TessellationError
from ..topology import BIN, SCHEMA_VARIABLES, SPACE
from ..topology import from_adjacency as _from_adjacency

__all__ = ["from_tramway", "to_tramway", "TRAMWAY_CELL"]

#: Name of the coordinate (along ``bin``) holding TRamWAy's cell index.
TRAMWAY_CELL = "tramway_cell"

_LabelPath = tuple[Hashable, ...]


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
    xtramgrad.errors.TessellationError: no TRamWAy file at 'no-such-file.rwa'; ...

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
