"""UGRID meshes (xarray Datasets, xugrid, uxarray) in: faces become bins."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from ..errors import TessellationError
from ..topology import BIN, SCHEMA_VARIABLES
from ..topology import from_adjacency as _from_adjacency

__all__ = ["from_ugrid"]


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
        from ..topology import from_neighbours

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
        from ..topology import from_neighbours

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
    xtramgrad.errors.TessellationError: the Dataset is not a UGRID dataset: ...
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
