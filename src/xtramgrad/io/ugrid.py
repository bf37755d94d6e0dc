"""UGRID meshes (xarray Datasets, xugrid, uxarray) in: faces become bins."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from ..errors import TessellationError
from ..topology import BIN, SCHEMA_VARIABLES, SPACE
from ..topology import from_adjacency as _from_adjacency
from ..topology import from_neighbours as _from_neighbours
from . import _tables
from ._tables import CELL_VERTEX, CORNER, FACE_AREA, VERTEX, VERTEX_DIM, VOLUME

__all__ = ["from_ugrid"]

_RESERVED = frozenset(SCHEMA_VARIABLES) | frozenset(_tables.GEOMETRY_VARIABLES)


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
    start = int(var.attrs.get("start_index", var.encoding.get("start_index", 0)))
    fill = var.attrs.get("_FillValue", var.encoding.get("_FillValue"))
    try:
        return _tables.zero_based(var.values, start_index=start, fill_value=fill)
    except TypeError:
        raise TessellationError(
            f"UGRID connectivity {var.name!r} has dtype {var.dtype}; expected integers (or "
            "floats once xarray has decoded a _FillValue into NaN)."
        ) from None


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


CENTERS = ("auto", "faces", "nodes", "centroid")
CONNECTIVITY = ("auto", "face_face", "edges", "nodes")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise TessellationError(f"{name}={value!r}; expected one of {allowed}.")


def _coordinate_units(variables: list[xr.DataArray]) -> str | None:
    """The common ``units`` attribute of coordinate variables (CF degrees count as one)."""
    units = [v.attrs.get("units") for v in variables]
    if not units or any(u is None for u in units):
        return None
    found = {str(u) for u in units}
    if len(found) == 1:
        return found.pop()
    if found <= {"degrees_east", "degrees_north", "degree_east", "degree_north", "degrees",
                 "degree"}:
        return "degree"
    return None


def _geometry(
    out: xr.Dataset, face_nodes: np.ndarray, x: np.ndarray, y: np.ndarray, source: str
) -> xr.Dataset:
    """``volume``, ``face_area``, ``vertex`` and ``cell_vertex`` from the face polygons."""
    rows, cols, dims = _tables.neighbour_entries(out)
    valid = rows >= 0
    lengths = np.zeros(rows.shape)
    lengths[valid] = _tables.shared_edge_lengths(rows[valid], cols[valid], face_nodes, x, y)
    polygons = _tables.pack(face_nodes)
    out[VERTEX] = ((VERTEX_DIM, SPACE), np.stack([x, y], axis=1),
                   {"long_name": f"{source} nodes (cell vertices)"})
    out[CELL_VERTEX] = (
        (BIN, CORNER), polygons,
        {"long_name": "cell polygon: positions into 'vertex', in order, padded with -1",
         "start_index": 0, "fill_value": -1},
    )
    out[VOLUME] = (BIN, _tables.polygon_areas(x, y, face_nodes),
                   {"long_name": "cell area (polygon)"})
    out[FACE_AREA] = (
        dims, lengths,
        {"long_name": "length of the edge shared with each neighbour (0: corner only)"},
    )
    return out


def _set_units(out: xr.Dataset, units: str | None) -> None:
    if units is None:
        return
    out["center"].attrs["units"] = units
    if VERTEX in out.variables:
        out[VERTEX].attrs["units"] = units
    if VOLUME in out.variables:
        out[VOLUME].attrs["units"] = f"{units}^2"
    if FACE_AREA in out.variables:
        out[FACE_AREA].attrs["units"] = units


def _ugrid_dataset(
    ds: xr.Dataset,
    mesh: Hashable | None,
    centers: str,
    connectivity: str,
    units: str | None = None,
    *,
    face_face: np.ndarray | None = None,
) -> xr.Dataset:
    """``face_face``: a zero-based neighbour table to use as the stored face_face table
    (xugrid's own)."""
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
    node_vars: list[xr.DataArray] = []
    if fn_var is not None:
        face_nodes, _ = _fill_and_start(fn_var)
        node_coords = str(attrs.get("node_coordinates", "")).split()
        if len(node_coords) >= 2 and all(c in ds.variables for c in node_coords[:2]):
            node_vars = [ds[c] for c in node_coords[:2]]
            node_xy = tuple(np.asarray(v.values, dtype=np.float64) for v in node_vars)
        n_nodes = len(node_xy[0]) if node_xy is not None else int(face_nodes.max()) + 1
        if face_nodes.max(initial=-1) >= n_nodes:
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
            xy = _tables.node_means(node_xy[0], node_xy[1], face_nodes)
        else:
            xy = _tables.polygon_centroids(node_xy[0], node_xy[1], face_nodes)
    # ---- neighbours
    if connectivity == "auto":
        connectivity = "face_face" if ff_var is not None or face_face is not None else "edges"
    if connectivity == "face_face":
        if face_face is not None:
            table = _tables.dedupe(face_face, self_index=True)
            what = "xugrid's face_face_connectivity"
        elif ff_var is None:
            raise TessellationError(
                f"connectivity='face_face' but mesh {name!r} has no face_face_connectivity; "
                "use connectivity='edges' (derived from face_node_connectivity)."
            )
        else:
            table = _tables.dedupe(_fill_and_start(ff_var)[0], self_index=True)
            what = f"UGRID connectivity {attrs['face_face_connectivity']!r}"
        if table.shape[0] != n_faces or table.max(initial=-1) >= n_faces:
            raise TessellationError(
                f"{what} has shape {table.shape} and refers to face "
                f"{int(table.max(initial=-1))}, for {n_faces} faces; check its start_index "
                "and _FillValue."
            )
        out = _from_neighbours(xy, table, space=["x", "y"])
    else:
        if face_nodes is None:
            raise TessellationError(
                f"connectivity={connectivity!r} needs face_node_connectivity, which mesh "
                f"{name!r} lacks; use connectivity='face_face'."
            )
        n_nodes = len(node_xy[0]) if node_xy is not None else int(face_nodes.max()) + 1
        adj = _tables.face_adjacency(face_nodes, n_nodes, by=connectivity)
        out = _from_adjacency(xy, adj, space=["x", "y"])
    out.attrs.update(
        {"tessellation": "ugrid", "ugrid_mesh": str(name), "ugrid_connectivity": connectivity,
         "ugrid_centers": centers}
    )
    # ---- geometry: the face polygons
    if face_nodes is not None and node_xy is not None:
        out = _geometry(out, face_nodes, node_xy[0], node_xy[1], "UGRID")
    # ---- face data as measurements
    for var_name, var in ds.data_vars.items():
        if face_dim not in var.dims or var_name in _ugrid_names(attrs):
            continue
        if var.attrs.get("mesh", name) != name:
            continue
        out[_measurement_name(var_name)] = xr.Variable(
            tuple(BIN if d == face_dim else d for d in var.dims), var.variable.data,
            dict(var.attrs),
        )
    face_index = ds[face_dim] if face_dim in ds.coords else None
    if face_index is not None:
        out = out.assign_coords({str(face_dim): (BIN, np.asarray(face_index.values))})
    if units is None:
        face_vars = [ds[c] for c in face_coords[:2]] if has_face_xy else []
        units = _coordinate_units(node_vars) or _coordinate_units(face_vars)
    _set_units(out, units)
    return out


def _measurement_name(name: Hashable) -> str:
    """A face variable's name in the tessellation (``_data`` added to a schema name)."""
    target = str(name)
    return f"{target}_data" if target in _RESERVED else target


def _ugrid_names(attrs: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for key, value in attrs.items():
        if key.endswith(("_connectivity", "_coordinates")) and isinstance(value, str):
            names.update(value.split())
    return names


def _from_xugrid(
    obj: Any, centers: str, connectivity: str, units: str | None
) -> xr.Dataset | None:
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
    face_face = None
    if connectivity in ("auto", "face_face"):
        # xugrid's own face_face_connectivity (its sparse structure; the data are edge ids)
        ff = grid.face_face_connectivity.tocsr()
        ff.sort_indices()
        face_face = _tables.pad_csr(ff.indptr, ff.indices)
        connectivity = "face_face"
    return _ugrid_dataset(ds, mesh, "faces" if centers == "auto" else centers, connectivity,
                          units, face_face=face_face)


def _from_uxarray(
    obj: Any, centers: str, connectivity: str, units: str | None
) -> xr.Dataset | None:
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
    fill = grid.face_node_connectivity.attrs.get("_FillValue", uxarray.INT_FILL_VALUE)
    face_nodes = _tables.zero_based(grid.face_node_connectivity.values, fill_value=fill)[0]
    x, y = np.asarray(grid.node_lon.values, float), np.asarray(grid.node_lat.values, float)
    if centers == "auto":
        centers = "nodes"
    if centers == "faces":
        xy = np.stack([np.asarray(grid.face_lon.values, float),
                       np.asarray(grid.face_lat.values, float)], axis=1)
    elif centers == "nodes":
        xy = _tables.node_means(x, y, face_nodes)
    else:
        xy = _tables.polygon_centroids(x, y, face_nodes)
    if connectivity == "auto":
        connectivity = "face_face"
    if connectivity == "face_face":
        ffill = grid.face_face_connectivity.attrs.get("_FillValue", uxarray.INT_FILL_VALUE)
        table = _tables.zero_based(grid.face_face_connectivity.values, fill_value=ffill)[0]
        out = _from_neighbours(xy, _tables.dedupe(table, self_index=True),
                               space=["lon", "lat"])
    else:
        adj = _tables.face_adjacency(face_nodes, len(x), by=connectivity)
        out = _from_adjacency(xy, adj, space=["lon", "lat"])
    out.attrs.update({"tessellation": "ugrid", "ugrid_connectivity": connectivity,
                      "ugrid_centers": centers})
    out = _geometry(out, face_nodes, x, y, "uxarray")
    if data is not None:
        for var_name, var in data.data_vars.items():
            if "n_face" in var.dims:
                out[_measurement_name(var_name)] = xr.Variable(
                    tuple(BIN if d == "n_face" else d for d in var.dims),
                    np.asarray(var.values), dict(var.attrs),
                )
    if units is None:
        units = _coordinate_units([grid.node_lon, grid.node_lat])
    _set_units(out, units)
    return out


def from_ugrid(
    obj: Any,
    *,
    mesh: Hashable | None = None,
    centers: str = "auto",
    connectivity: str = "auto",
    units: str | None = None,
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
        ``_FillValue``; xugrid's and uxarray's own tables for their objects; a face listed
        twice in a row, or listing itself, is kept once / dropped), faces sharing an
        edge (``"edges"``, derived from ``face_node_connectivity``) or faces sharing a node
        (``"nodes"``: on quadrilaterals, TRamWAy's 8-neighbour inference adjacency).
        ``"auto"``: ``"face_face"`` when stored, else ``"edges"``.
    units : str, optional
        Space units, set as ``center.attrs["units"]`` (and used for the geometry
        variables). Default: the ``units`` attribute of the node coordinates (of the face
        coordinates without nodes) when they declare one, e.g. ``"m"``; uxarray's
        ``degrees_east``/``degrees_north`` give ``"degree"``. None found: no units.

    Returns
    -------
    xarray.Dataset
        ``center`` (with ``space`` = ``x``, ``y``; ``lon``, ``lat`` for uxarray), ``neighbours``
        and every face variable of the mesh as a measurement (its face dimension renamed
        ``bin``; a variable named like a schema variable gets ``_data`` appended). With the
        face polygons (``face_node_connectivity`` and ``node_coordinates``), the geometry:
        ``volume(bin)`` the polygon area, ``face_area(bin, nbr)`` the length of the edge
        shared with each neighbour (0 where two faces touch at a node only, as with
        ``connectivity="nodes"``), ``vertex(vertex, space)`` the node coordinates and
        ``cell_vertex(bin, corner)`` each face's nodes in order (positions into
        ``vertex``, padded with -1). Areas and lengths are planar, in the coordinates'
        units (for uxarray: degrees, on a plane).

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
    ...     "nx": ("node", [0.0, 1.0, 0.0, 1.0], {"units": "um"}),
    ...     "ny": ("node", [0.0, 0.0, 1.0, 1.0], {"units": "um"}),
    ...     "fn": (("face", "three"), [[1, 2, 3], [2, 4, 3]],
    ...            {"start_index": 1, "_FillValue": -999}),
    ... })
    >>> tess = xtramgrad.from_ugrid(ds)
    >>> tess.neighbours.values.tolist(), tess.center.attrs["units"]
    ([[1], [0]], 'um')
    >>> tess.volume.values.tolist(), np.round(tess.face_area.values, 6).tolist()
    ([0.5, 0.5], [[1.414214], [1.414214]])
    >>> xtramgrad.from_ugrid(xr.Dataset())
    Traceback (most recent call last):
    ...
    xtramgrad.errors.TessellationError: the Dataset is not a UGRID dataset: ...
    """
    _check_choice("centers", centers, CENTERS)
    _check_choice("connectivity", connectivity, CONNECTIVITY)
    if units is not None and not isinstance(units, str):
        raise TessellationError(
            f"units={units!r}; expected a string naming the space units (e.g. 'um') or None."
        )
    package = type(obj).__module__.split(".")[0]
    # uxarray's UxDataset subclasses xarray.Dataset: dispatch on the package first
    reader = {"xugrid": _from_xugrid, "uxarray": _from_uxarray}.get(package)
    if reader is not None:
        out = reader(obj, centers, connectivity, units)
        if out is not None:
            return out
    if isinstance(obj, xr.Dataset):
        return _ugrid_dataset(obj, mesh, centers, connectivity, units)
    raise TessellationError(
        f"from_ugrid got a {type(obj).__name__}; expected an xarray.Dataset following the "
        "UGRID conventions, an xugrid Ugrid2d/UgridDataset/UgridDataArray or an uxarray "
        "Grid/UxDataset/UxDataArray (with xugrid / uxarray installed: pip install -e "
        "\".[ugrid]\" from a checkout of xtramgrad)."
    )
