"""TRamWAy analyses (.rwa files and loaded trees) in, gradient maps out.

Units
-----
TRamWAy works in micrometres and seconds (``tramway.helper.map_plot`` labels its maps with
these "standard units"). :func:`from_tramway` writes them into the attributes, with the
space unit ``L`` given by ``units=`` (default ``"um"``):

==========================================  ========================  ==================
TRamWAy map columns (plugins)               meaning                   ``units``
==========================================  ========================  ==================
``diffusivity`` (d, dd, df, dv, ...)        diffusivity               ``L^2/s``
``ci low``, ``ci high`` (d.conj_prior)      its confidence interval   ``L^2/s``
``potential`` (dv)                          potential energy          ``kT``
``force x``, ``force y`` (df, dv)           force                     ``kT/L``
``drift x``, ``drift y`` (dd)               drift                     ``L/s``
``zeta_total x``, ``zeta_spurious x`` (snr) signal-to-noise ratios    ``1``
``<feature> x`` of a ``gradient`` map       gradient of a feature     ``<its units> / L``
==========================================  ========================  ==================

Other columns (``density``, whose units depend on the plugin's ``scale`` option, ``n``,
``V``, user maps) get no ``units``. ``center`` and ``vertex`` are in ``L``, ``volume`` in
``L^d``, ``face_area`` in ``L`` (2D), and the time coordinates of a time lattice in ``s``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import TessellationError, require
from ..topology import BIN, SCHEMA_VARIABLES, SPACE
from ..topology import from_adjacency as _from_adjacency
from . import _tables
from ._tables import CELL_VERTEX, CORNER, FACE_AREA, VERTEX, VERTEX_DIM, VOLUME

__all__ = ["from_tramway", "to_tramway", "TRAMWAY_CELL", "TIME", "TIME_START", "TIME_STOP"]

#: Name of the coordinate (along ``bin``) holding TRamWAy's cell index.
TRAMWAY_CELL = "tramway_cell"
#: Time lattices: the dimension of the windows, and the coordinates of their bounds.
TIME, TIME_START, TIME_STOP = "time", "time_start", "time_stop"
#: Time lattices: the coordinate (along ``time``) holding TRamWAy's segment index.
TRAMWAY_SEGMENT = "tramway_segment"
#: Attribute of ``tramway_cell`` for a time lattice: its number of spatial cells ``n``
#: (TRamWAy numbers the cell ``i`` of segment ``t`` as ``t * n + i``).
_LATTICE_CELLS = "tramway_lattice_cells"

_LabelPath = tuple[Hashable, ...]

_FEATURE_UNITS = {
    "diffusivity": "{L}^2/s",
    "ci low": "{L}^2/s",
    "ci high": "{L}^2/s",
    "potential": "kT",
    "force": "kT/{L}",
    "drift": "{L}/s",
    "zeta_total": "1",
    "zeta_spurious": "1",
}

_RESERVED = (
    set(SCHEMA_VARIABLES)
    | set(_tables.GEOMETRY_VARIABLES)
    | {TRAMWAY_CELL, TRAMWAY_SEGMENT, TIME, TIME_START, TIME_STOP, "location_count",
       "tramway_inferred"}
)


def _import_tramway() -> Any:
    require("tramway", "tramway", "reading or writing TRamWAy analyses", "tramway==0.7")
    return require("tramway.core.analyses.base", "tramway", "reading TRamWAy analyses",
                   "tramway==0.7")


# --------------------------------------------------------------------------- files

_EXPECTED = (
    "expected a TRamWAy analysis file (.rwa: HDF5 written by tramway.helper.save_rwa, "
    "holding an 'analyses' tree)"
)


def _short(err: BaseException) -> str:
    """One line from an exception raised while reading a file (rwa's messages start with
    the path inside the file, 'In: analyses |- _instances |- grid ...')."""
    text = str(err)
    if isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    where = [ln[3:].strip() if ln.startswith("In:") else ln[2:].strip()
             for ln in lines if ln.startswith(("In:", "|-"))]
    rest = [ln for ln in lines if not ln.startswith(("In:", "|-"))]
    message = f"{type(err).__name__}: {rest[-1] if rest else text.strip()}"
    if where:
        message += f" (at {'/'.join(where)} inside the file)"
    return message


def _diagnose(path: str) -> str | None:
    """Why ``path`` cannot be a TRamWAy analysis file, or None if it looks like one."""
    size = os.path.getsize(path)
    if size == 0:
        return "the file is empty (0 bytes)"
    try:
        import h5py
    except ImportError:  # pragma: no cover - rwa-python (tramway's dependency) needs it
        return None
    if not h5py.is_hdf5(path):
        with open(path, "rb") as f:
            head = f.read(16)
        return f"it is not an HDF5 file (its first bytes are {head!r})"
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        text = str(err)
        m = re.search(r"eof\s*=\s*(\d+).*stored_eof\s*=\s*(\d+)", text)
        if m:
            return (
                f"it is truncated: the file has {int(m.group(1)):,} bytes but its HDF5 "
                f"header records {int(m.group(2)):,} (an interrupted copy, download or "
                "save?)"
            )
        return f"HDF5 cannot open it ({text.strip()})"
    with f:
        if "analyses" not in f:
            return (
                "it is an HDF5 file but holds no TRamWAy analysis tree (no 'analyses' "
                f"group; its top-level objects are {sorted(f)[:10]})"
            )
        kind = f["analyses"].attrs.get("type", b"")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if "Analyses" not in kind:
            return f"its 'analyses' object is a {kind or 'untyped object'}, not an analysis tree"
    return None


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
        if not os.path.isfile(path):
            raise TessellationError(f"{path!r} is a directory; {_EXPECTED}.")
        problem = _diagnose(path)
        if problem is not None:
            raise TessellationError(
                f"{path!r} could not be read as a TRamWAy .rwa file: {problem}; {_EXPECTED}."
            )
        from tramway.core.hdf5 import load_rwa

        try:
            tree = load_rwa(path, lazy=False, verbose=False)
        except (KeyboardInterrupt, SystemExit):  # pragma: no cover
            raise
        except Exception as err:  # rwa raises many unrelated types
            raise TessellationError(
                f"{path!r} could not be read as a TRamWAy .rwa file: it is corrupt, TRamWAy "
                f"failed on it with {_short(err)}; {_EXPECTED}. Write it again from the "
                "analysis that produced it."
            ) from err
        if not _is_tree(tree):
            raise TessellationError(
                f"{path!r} holds a {type(tree).__name__}, not a TRamWAy analysis tree; "
                f"{_EXPECTED}."
            )
        return tree, path
    if _is_tree(source):
        return source, None
    raise TessellationError(
        f"source is a {type(source).__name__}; expected the path of a TRamWAy .rwa file or a "
        "loaded TRamWAy analysis tree (tramway.core.analyses.Analyses)."
    )


def _is_tree(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("labels", "instances", "data"))


# --------------------------------------------------------------------------- the tree


def _fmt_path(path: Sequence[Hashable]) -> str:
    return "/".join(str(p) for p in path)


def _data(node: Any, path: _LabelPath) -> Any:
    """``node.data``, with a clear error when a lazily loaded tree cannot read it."""
    try:
        return node.data
    except (KeyboardInterrupt, SystemExit):  # pragma: no cover
        raise
    except Exception as err:
        raise TessellationError(
            f"the analysis {_fmt_path(path) or '(root)'!r} of the TRamWAy tree could not be "
            f"loaded: {_short(err)}. Its file is corrupt (a tree loaded with lazy=True reads "
            "it on access); load a sound copy."
        ) from err


def _walk(node: Any, path: _LabelPath = ()) -> Iterable[tuple[_LabelPath, Any]]:
    """Every (label path, sub-tree) below ``node`` (depth first, in label order)."""
    try:
        children = [(label, node[label]) for label in list(node.labels)]
    except (KeyboardInterrupt, SystemExit):  # pragma: no cover
        raise
    except Exception as err:
        raise TessellationError(
            f"the analyses below {_fmt_path(path) or 'the root'!r} of the TRamWAy tree could "
            f"not be loaded: {_short(err)}. Its file is corrupt; load a sound copy."
        ) from err
    for label, child in children:
        yield (*path, label), child
        yield from _walk(child, (*path, label))


def _is_partition(data: Any) -> bool:
    from tramway.tessellation.base import Partition

    return isinstance(data, Partition)


def _is_maps(data: Any) -> bool:
    from tramway.inference.base import Maps

    return isinstance(data, Maps)


def _is_lattice(tess: Any) -> bool:
    try:
        from tramway.tessellation.time import TimeLattice
    except ImportError:  # pragma: no cover
        return False
    return isinstance(tess, TimeLattice)


def _as_path(label: Any) -> _LabelPath:
    if isinstance(label, (list, tuple)):
        return tuple(label)
    return (label,)


def _choose_partition(tree: Any, label: Any) -> tuple[_LabelPath, Any]:
    nodes = list(_walk(tree))
    partitions = [(p, n) for p, n in nodes if _is_partition(_data(n, p))]
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
        if _is_partition(_data(by_path[path[:cut]], path[:cut])):
            return path[:cut], by_path[path[:cut]]
    raise TessellationError(
        f"label={label!r} names a {type(by_path[path].data).__name__}, not a tessellation or "
        f"a map below one; available tessellation labels are {listing}."
    )


def _space_labels_tramway(partition: Any, tess: Any, d: int) -> list[Hashable]:
    """The names TRamWAy gives the space columns (``cells.space_cols``)."""
    cols: list[Hashable] = []
    scaler = getattr(tess, "scaler", None)
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


# --------------------------------------------------------------------------- bins


def _distributed(partition: Any) -> Any:
    """TRamWAy's inference cells (``distributed(partition)``), None without points."""
    points = getattr(partition, "_points", None)
    if points is None or not np.size(points):
        return None
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
    return dist


def _inference_cells(partition: Any, keep_empty: bool) -> tuple[np.ndarray, Any, np.ndarray]:
    """(kept cell indices, their csr adjacency in TRamWAy's order, inferred mask)."""
    from scipy import sparse

    tess = partition.tessellation
    n_cells = int(np.asarray(tess.cell_centers).shape[0])
    label = getattr(tess, "cell_label", None)
    labelled = np.ones(n_cells, dtype=bool) if label is None else np.asarray(label) > 0
    adjacency = None
    dist = _distributed(partition)
    if dist is not None:
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


def _lattice_cells(
    partition: Any, where: str, keep_empty: bool
) -> tuple[np.ndarray, Any, np.ndarray]:
    """Time lattice: (kept spatial cells, their spatial csr adjacency, inferred (bin, time)).

    TRamWAy's inference on a time lattice (``distributed(partition)``) keeps the cell ``i``
    of segment ``t`` (numbered ``t * n + i``) when it holds data in that segment, and links
    cells of one segment by the spatial mesh's ``cell_adjacency`` (a ``TimeLattice`` has no
    ``diagonal_adjacency``: grids get their 4 face neighbours, not the 8 of spatial
    inference). One spatial table serves every segment: missing values drop a bin from
    its neighbours' selections, so each segment sees exactly TRamWAy's adjacency.
    """
    from scipy import sparse

    tess = partition.tessellation
    mesh = tess.spatial_mesh
    n = int(np.asarray(mesh.cell_centers).shape[0])
    n_seg = int(np.asarray(tess.time_lattice).shape[0])
    label = getattr(mesh, "cell_label", None)
    labelled = np.ones(n, dtype=bool) if label is None else np.asarray(label) > 0
    dist = _distributed(partition)
    if dist is not None:
        present = np.zeros(n_seg * n, dtype=bool)
        keys = np.fromiter(dist.cells.keys(), dtype=np.int64)
        if keys.size and (keys.max() >= n_seg * n or keys.min() < 0):
            raise TessellationError(
                f"time lattice {where!r}: TRamWAy's inference cell {int(keys.max())} is "
                f"outside {n_seg} segments x {n} cells; the partition is inconsistent."
            )
        present[keys] = True
    else:
        try:
            counts = np.asarray(partition.location_count).ravel()
        except (KeyboardInterrupt, SystemExit):  # pragma: no cover
            raise
        except Exception as err:
            raise TessellationError(
                f"time lattice {where!r} has no points, and TRamWAy cannot tell which cells "
                f"hold data in which window without them ({type(err).__name__}: {err}). "
                "Read it from the analysis tree that holds the points."
            ) from err
        if counts.size != n_seg * n:
            raise TessellationError(
                f"time lattice {where!r} has {counts.size} location counts; expected "
                f"{n_seg} segments x {n} cells = {n_seg * n}."
            )
        present = (counts > 0) & np.tile(labelled, n_seg)
    by_window = present.reshape(n_seg, n).T
    keep = labelled if keep_empty else by_window.any(axis=1)
    adjacency = mesh.simplified_adjacency(adjacency=None, label=keep, format="csr")
    cells = np.flatnonzero(keep)
    adjacency = sparse.csr_matrix(adjacency)[cells][:, cells]
    return cells, adjacency, by_window[cells]


def _segments(partition: Any, where: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(start, stop, units) of the time segments of a time lattice."""
    seg = np.asarray(partition.tessellation.time_lattice)
    if seg.ndim == 1 and seg.size == 2:
        seg = seg[None, :]
    if seg.ndim != 2 or seg.shape[1] != 2 or seg.shape[0] == 0:
        raise TessellationError(
            f"time lattice {where!r} has segments of shape {seg.shape}; expected (n, 2) "
            "(start, stop) pairs."
        )
    if np.issubdtype(seg.dtype, np.integer):
        # frame indices: TRamWAy's TimeLattice.cell_index turns them into times with the
        # first time stamp and the smallest positive time step of the points
        points = getattr(partition, "_points", None)
        columns = getattr(points, "columns", ())
        if points is not None and "t" in columns:
            ts = np.sort(np.asarray(points["t"], dtype=np.float64))
            steps = np.unique(np.diff(ts))
            steps = steps[steps > 0]
            if steps.size:
                seg = seg * steps[0] + ts[0]
                return seg[:, 0].astype(np.float64), seg[:, 1].astype(np.float64), "s"
        return seg[:, 0], seg[:, 1], "frame"
    return seg[:, 0].astype(np.float64), seg[:, 1].astype(np.float64), "s"


# --------------------------------------------------------------------------- geometry


def _cell_vertex_table(cell_vertices: Any, n_cells: int) -> np.ndarray:
    """TRamWAy's ``cell_vertices`` (a dict of arrays or a sparse cells x vertices matrix) as
    a table padded with -1 (vertex order as TRamWAy lists them)."""
    from scipy import sparse

    if sparse.issparse(cell_vertices):
        csr = sparse.csr_matrix(cell_vertices)
        csr.sort_indices()
        return _tables.pad_csr(csr.indptr[: n_cells + 1], csr.indices)
    rows = []
    for i in range(n_cells):
        v = cell_vertices.get(i, ()) if hasattr(cell_vertices, "get") else cell_vertices[i]
        rows.append(np.asarray(sorted(set(np.asarray(v).ravel().tolist())), dtype=np.int64))
    return _tables.pad_ragged(rows)


def _polygons(
    table: np.ndarray, membership: Any, edges: np.ndarray, vertices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(closed, polygons): which cells are closed polygons, and their vertices in
    counter-clockwise order (padded with -1; all -1 for open cells).

    A cell is closed when the Voronoi edges among its vertices form one cycle through all
    of them (as many edges as vertices, each vertex on two), the test TRamWAy's own
    ``cell_volume`` makes; scipy's unbounded border cells fail it (their vertices at
    infinity are dropped).
    """
    from scipy import sparse

    n_vert = (table >= 0).sum(axis=1)
    n_edge = np.asarray(membership.sum(axis=1)).ravel()
    # degree of each vertex inside its cell: membership @ (edges x vertices incidence)
    m = edges.shape[0]
    inc = sparse.csr_array(
        (np.ones(2 * m), (np.repeat(np.arange(m), 2), edges.ravel())),
        shape=(m, vertices.shape[0]),
    )
    degree = sparse.csr_array(membership @ inc)
    valid = table >= 0
    rows = np.broadcast_to(np.arange(table.shape[0])[:, None], table.shape)
    deg = np.zeros(table.shape)
    deg[valid] = np.asarray(degree[rows[valid], table[valid]]).ravel()
    closed = (n_vert >= 3) & (n_edge == n_vert) & np.all(~valid | (deg == 2), axis=1)
    # convex cells: vertices in order of angle around their mean (inside the polygon)
    safe = np.where(valid, table, 0)
    n = np.maximum(n_vert, 1)[:, None]
    mean_x = np.where(valid, vertices[safe, 0], 0.0).sum(axis=1, keepdims=True) / n
    mean_y = np.where(valid, vertices[safe, 1], 0.0).sum(axis=1, keepdims=True) / n
    dx, dy = vertices[safe, 0] - mean_x, vertices[safe, 1] - mean_y
    angle = np.where(valid, np.arctan2(dy, dx), np.inf)
    ordered = np.take_along_axis(table, np.argsort(angle, axis=1, kind="stable"), axis=1)
    polygons = np.where(closed[:, None], ordered, -1)
    return closed, polygons


def _geometry(
    ds: xr.Dataset, mesh: Any, cells: np.ndarray, units: str | None
) -> xr.Dataset:
    """``volume``, and in 2D ``face_area``, ``vertex`` and ``cell_vertex``, from TRamWAy's
    Voronoi description of its cells (``vertices``, ``cell_vertices``,
    ``vertex_adjacency``, ``cell_volume``), where the tessellation has it."""
    from scipy import sparse

    d = ds.sizes[SPACE]
    n_cells = int(np.asarray(mesh.cell_centers).shape[0])
    try:
        volume = np.asarray(mesh.cell_volume, dtype=np.float64)
    except Exception:  # TRamWAy computes volumes lazily and may not know them
        volume = None
    if volume is not None and volume.shape != (n_cells,):
        volume = None
    geometry = None
    if d == 2:
        try:
            vertices = np.asarray(mesh.vertices, dtype=np.float64)
            cell_vertices = mesh.cell_vertices
            vertex_adjacency = sparse.coo_matrix(mesh.vertex_adjacency)
        except Exception:  # not a Voronoi-like tessellation, or not computable
            geometry = None
        else:
            if vertices.ndim == 2 and vertices.shape[1] == 2 and cell_vertices is not None:
                geometry = (vertices, cell_vertices, vertex_adjacency)
    if geometry is not None:
        vertices, cell_vertices, vertex_adjacency = geometry
        table = _cell_vertex_table(cell_vertices, n_cells)[cells]
        a, b = vertex_adjacency.row, vertex_adjacency.col
        keep = a < b
        edges = np.unique(np.stack([a[keep], b[keep]], axis=1), axis=0).reshape(-1, 2)
        length = np.hypot(*(vertices[edges[:, 1]] - vertices[edges[:, 0]]).T)
        # cell i has edge e when it has both its vertices
        valid = table >= 0
        rows = np.broadcast_to(np.arange(table.shape[0])[:, None], table.shape)
        has = sparse.csr_array(
            (np.ones(int(valid.sum())), (rows[valid], table[valid])),
            shape=(table.shape[0], vertices.shape[0]),
        )
        membership = sparse.csr_array(
            has[:, edges[:, 0]].multiply(has[:, edges[:, 1]]) if edges.size
            else sparse.csr_array((table.shape[0], 0))
        )
        closed, polygons = _polygons(table, membership, edges, vertices)
        r, c, dims = _tables.neighbour_entries(ds)
        ok = r >= 0
        face = np.zeros(r.shape)
        face[ok] = _tables.boundary_lengths(r[ok], c[ok], membership, length)
        ds[FACE_AREA] = (
            dims, face,
            {"long_name": "length of the face shared with each neighbour (TRamWAy's Voronoi "
                          "vertices; 0: the cells touch at a corner or the face is unbounded)"},
        )
        used = np.unique(polygons[polygons >= 0])
        renumber = np.full(vertices.shape[0], -1, dtype=np.int64)
        renumber[used] = np.arange(used.size)
        ds = ds.assign_coords(
            {VERTEX: ((VERTEX_DIM, SPACE), vertices[used],
                      {"long_name": "cell vertices (TRamWAy)"}),
             "tramway_vertex": (VERTEX_DIM, used, {"long_name": "TRamWAy vertex index"})}
        )
        ds[CELL_VERTEX] = (
            (BIN, CORNER), _tables.pack(np.where(polygons >= 0, renumber[polygons], -1)),
            {"long_name": "cell polygon: positions into 'vertex', counter-clockwise, padded "
                          "with -1 (all -1: an unbounded border cell)",
             "start_index": 0, "fill_value": -1},
        )
        if volume is not None:
            # TRamWAy's volume of an unbounded cell is the hull of its finite vertices and
            # its center: not the cell's area
            volume = volume[cells]
            volume = np.where(closed, volume, np.nan)
            ds[VOLUME] = (BIN, volume, {"long_name": "cell area (TRamWAy; NaN: unbounded "
                                                     "border cell)"})
    elif volume is not None:
        ds[VOLUME] = (BIN, volume[cells], {"long_name": "cell volume (TRamWAy)"})
    if units is not None:
        if VOLUME in ds.variables:
            ds[VOLUME].attrs["units"] = f"{units}^{d}"
        if FACE_AREA in ds.variables:
            ds[FACE_AREA].attrs["units"] = units
        if VERTEX in ds.variables:
            ds[VERTEX].attrs["units"] = units
    return ds


# --------------------------------------------------------------------------- maps


def _split_feature(columns: Sequence[str], feature: str) -> list[str]:
    return [c for c in columns if c == feature or c.startswith(f"{feature} ")]


def _feature_units(feature: str, mode: Any, units: str | None) -> str | None:
    template = _FEATURE_UNITS.get(feature)
    if template is None or (units is None and "{L}" in template):
        return None
    value = template.format(L=units)
    if str(mode) == "gradient":
        return None if units is None else f"{value} / {units}"
    return value


def _maps_variables(
    node: Any,
    part_path: _LabelPath,
    rows: np.ndarray,
    lead: tuple[str, ...],
    space: list[Hashable],
    select: Any,
    units: str | None,
) -> list[tuple[str, str, _LabelPath, xr.Variable]]:
    """(feature, short label, map path, Variable) for every map below the partition.

    ``rows`` holds the TRamWAy map row (cell index) of every element, shaped like the
    leading dims ``lead`` (``(bin,)``, or ``(bin, time)`` for a time lattice).
    """
    import pandas as pd

    out = []
    wanted = None if select in (None, True) else [_as_path(s) for s in _as_list(select)]
    for rel, child in _walk(node):
        path = (*part_path, *rel)
        data = _data(child, path)
        if not _is_maps(data):
            continue
        if wanted is not None and not any(rel[-len(w) :] == w for w in wanted):
            continue
        df = data.maps
        if not isinstance(df, pd.DataFrame):  # pragma: no cover - Maps enforces it
            continue
        index = np.asarray(df.index)
        table = df.reindex(rows.ravel())
        mode = getattr(data, "mode", None)
        for feature in data.features or []:
            cols = _split_feature([str(c) for c in df.columns], str(feature))
            if not cols:
                continue
            values = table[cols].to_numpy(dtype=np.float64, na_value=np.nan)
            values = values.reshape(*rows.shape, len(cols))
            attrs: dict[str, Any] = {
                "tramway_map": _fmt_path(path),
                "tramway_feature": str(feature),
                "tramway_columns": list(cols),
                "long_name": str(feature),
            }
            if mode is not None:
                attrs["tramway_mode"] = str(mode)
            unit = _feature_units(str(feature), mode, units)
            if unit is not None:
                attrs["units"] = unit
            outside = int(np.setdiff1d(index, rows.ravel()).size)
            if outside:
                attrs["tramway_rows_outside"] = outside
            if cols == [feature]:
                var = xr.Variable(lead, values[..., 0], attrs)
            else:
                suffix = [c[len(str(feature)) + 1 :] for c in cols]
                if suffix == [str(s) for s in space]:
                    var = xr.Variable((*lead, SPACE), values, attrs)
                else:
                    dim = f"{feature}_component"
                    attrs["tramway_components"] = suffix
                    var = xr.Variable((*lead, dim), values, attrs)
            out.append((str(feature), str(rel[-1]), path, var))
    return out


def _as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, list) else [x]


def _name_variables(
    found: list[tuple[str, str, _LabelPath, xr.Variable]],
) -> dict[str, xr.Variable]:
    """Feature names, suffixed with the map label (then the path) where they collide."""
    count: dict[str, int] = {}
    for feature, *_ in found:
        count[feature] = count.get(feature, 0) + 1
    names = [
        f if count[f] == 1 and f not in _RESERVED else f"{f}_{short}"
        for f, short, _, _ in found
    ]
    if len(set(names)) != len(names) or _RESERVED & set(names):
        names = [
            f"{f}_{'_'.join(str(p) for p in path[1:])}" for f, _, path, _ in found
        ]
    return dict(zip(names, (v for *_, v in found), strict=True))


# --------------------------------------------------------------------------- reading


def from_tramway(
    source: Any,
    label: Any = None,
    *,
    maps: Any = True,
    keep_empty: bool = False,
    units: str | None = "um",
) -> xr.Dataset:
    """Tessellation Dataset from a TRamWAy analysis (``.rwa`` file or loaded tree).

    The bins are the cells that TRamWAy's inference uses (``tramway.inference.base.
    distributed``: cells holding data, with a positive label), in TRamWAy's order; the
    neighbour table is the adjacency that inference uses (the "diagonal" 8/18-neighbour
    adjacency of grids, the Voronoi adjacency of kmeans/gwr/hexagon minus the edges TRamWAy
    pruned, edges of dropped cells removed), in TRamWAy's (csr) order. Every map found below
    the tessellation becomes a variable.

    A spatio-temporal analysis (a TRamWAy time lattice, e.g. ``tessellate(...,
    time_window_duration=..., time_window_shift=...)``) is read as one spatial
    tessellation with a ``time`` dimension, one entry per time window (TRamWAy's
    segments): the bins are the cells holding data in at least one window, maps have dims
    ``(bin, time)`` (``(bin, time, space)`` for vectors) and are NaN where a cell has no
    data in a window, the coordinates ``time`` (window centers), ``time_start`` and
    ``time_stop`` (window bounds, in seconds) and ``tramway_segment`` (TRamWAy's segment
    index) describe the windows, and ``tramway_inferred(bin, time)`` marks the cells
    TRamWAy's inference used in each window. The neighbour table is the one TRamWAy's
    inference uses within a window (for grids, the 4 face neighbours: TRamWAy's time
    lattices have no diagonal adjacency), so the gradient of each window equals TRamWAy's
    ``gradient`` plugin run on the lattice's map.

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
    units : str or None
        The space units of the analysis: TRamWAy works in micrometres and seconds
        (default ``"um"``). Sets ``center.attrs["units"]`` and the units of the maps
        (diffusivity ``"um^2/s"``, potential ``"kT"``, force ``"kT/um"``, drift
        ``"um/s"``, gradients ``"<units> / um"``: the table of the "Reading your data"
        page) and of the geometry. ``None``: no space units.

    Returns
    -------
    xarray.Dataset
        ``center``, ``neighbours``, ``location_count``, the coordinate ``tramway_cell``
        (TRamWAy's cell index of each bin: :func:`to_tramway` maps results back with it)
        and one variable per map feature: a scalar map ``diffusivity`` has dims
        ``(bin,)``; a vector map with columns ``"force x"``, ``"force y"`` has dims
        ``(bin, space)``. A feature found in several maps (``diffusivity`` in the D map and
        in a gradient map below it) is suffixed with its map label: ``diffusivity_D``,
        ``diffusivity_gradD`` (with the label path if that still collides). Each
        variable's attrs record its map path (``tramway_map``) and TRamWAy columns.

        Geometry, where TRamWAy's tessellation describes its cells (grid, kmeans, gwr,
        hexagon: Voronoi vertices): ``volume(bin)`` (TRamWAy's cell volume, the area in
        2D; NaN for the unbounded border cells of kmeans and gwr, where TRamWAy's value is
        the hull of the finite vertices and the center, not the cell), and in 2D
        ``face_area(bin, nbr)`` (the length of the face shared with each neighbour,
        aligned with ``neighbours``; 0 where the two cells only touch at a corner, such
        as a grid's diagonal neighbours, or the face is unbounded), ``vertex(vertex,
        space)`` (the vertices of the closed cells) and ``cell_vertex(bin, corner)`` (each
        closed cell's polygon, counter-clockwise, as positions into ``vertex``, padded with
        -1; all -1 for an unbounded cell).

    Raises
    ------
    TessellationError
        Unreadable file (empty, not HDF5, truncated, corrupt, not an analysis tree: the
        message says which), no or ambiguous tessellation, unknown label.
    ImportError
        tramway is not installed (the message names the pip extra).

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
    if units is not None and not isinstance(units, str):
        raise TessellationError(
            f"units={units!r}; expected a string naming the space units (default 'um', "
            "TRamWAy's micrometres) or None."
        )
    tree, path = _load_tree(source)
    part_path, node = _choose_partition(tree, label)
    where = _fmt_path(part_path)
    partition = node.data
    tess = partition.tessellation
    lattice = _is_lattice(tess)
    if lattice:
        mesh = tess.spatial_mesh
        if mesh is None:
            raise TessellationError(
                f"tessellation {where!r} is a TRamWAy time lattice without a spatial "
                "tessellation (its cells are time segments only): there are no spatial bins "
                "to differentiate over. Tessellate space and time together, e.g. "
                "tramway.helper.tessellate(analyses, 'grid', time_window_duration=...)."
            )
        cells, adjacency, inferred = _lattice_cells(partition, where, keep_empty)
        start, stop, time_units = _segments(partition, where)
        n_cells = int(np.asarray(mesh.cell_centers).shape[0])
        n_seg = start.size
        rows = cells[:, None] + n_cells * np.arange(n_seg)[None, :]
        lead: tuple[str, ...] = (BIN, TIME)
    else:
        mesh = tess
        cells, adjacency, inferred = _inference_cells(partition, keep_empty)
        rows = cells
        lead = (BIN,)
    centers = np.asarray(mesh.cell_centers, dtype=np.float64)[cells]
    if centers.ndim != 2 or centers.shape[1] not in (1, 2, 3):
        raise TessellationError(
            f"tessellation {where!r} has cell centers of shape "
            f"{centers.shape}; expected (n, d) with d = 1, 2 or 3."
        )
    space = _space_labels_tramway(partition, mesh, centers.shape[1])
    ds = _from_adjacency(centers, adjacency, space=space)
    if units is not None:
        ds["center"].attrs["units"] = units
    diagonal = not lattice and (
        getattr(tess, "_diagonal_adjacency", None) is not None
        or hasattr(type(tess), "diagonal_adjacency")
    )
    ds.neighbours.attrs["tramway_adjacency"] = "diagonal" if diagonal else "cell"
    ds = _geometry(ds, mesh, cells, units)
    counts = getattr(partition, "location_count", None)
    n_rows = int(np.asarray(tess.cell_centers).shape[0]) if not lattice else n_seg * n_cells
    if counts is not None and np.size(counts) == n_rows:
        ds["location_count"] = (
            lead, np.asarray(counts).ravel()[rows],
            {"long_name": "locations per cell (TRamWAy)"},
        )
    if keep_empty or lattice:
        ds["tramway_inferred"] = (
            lead, inferred, {"long_name": "cell used by TRamWAy's inference"}
        )
    if maps is not False:
        found = _maps_variables(node, part_path, rows, lead, space, maps, units)
        if maps not in (True, None) and not found:
            raise TessellationError(
                f"maps={maps!r} matches no map below tessellation {where!r}; available "
                f"maps: {[_fmt_path(p) for p, n in _walk(node) if _is_maps(n.data)]}."
            )
        for name, var in _name_variables(found).items():
            ds[name] = var
    origin = {"tramway_label": where}
    if path is not None:
        origin["tramway_source"] = path
    cell_attrs: dict[str, Any] = {"long_name": "TRamWAy cell index", **origin}
    if lattice:
        cell_attrs[_LATTICE_CELLS] = n_cells
    ds = ds.assign_coords({TRAMWAY_CELL: (BIN, cells.astype(np.int64), cell_attrs)})
    if lattice:
        ds = ds.assign_coords(
            {
                TIME: (TIME, (start + stop) / 2,
                       {"long_name": "time window center", "units": time_units}),
                TIME_START: (TIME, start, {"long_name": "time window start",
                                           "units": time_units}),
                TIME_STOP: (TIME, stop, {"long_name": "time window stop",
                                         "units": time_units}),
                TRAMWAY_SEGMENT: (TIME, np.arange(n_seg), {
                    "long_name": "TRamWAy time segment index",
                    "description": f"TRamWAy numbers cell i of segment t as t * {n_cells} "
                                   "+ i"}),
            }
        )
    ds.attrs.update({"tessellation": type(mesh).__name__, **origin})
    if lattice:
        ds.attrs["tramway_time_lattice"] = type(tess).__name__
        for key in ("duration", "shift"):
            value = getattr(tess, key, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                ds.attrs[f"tramway_time_window_{key}"] = value
    return ds


# --------------------------------------------------------------------------- way back


def _lattice_rows(ref: xr.DataArray | xr.Dataset) -> np.ndarray | None:
    """TRamWAy row of each (time, bin) element of a time-lattice result, time-major; None
    when ``ref`` is not indexed by a time lattice's windows."""
    if TIME not in ref.dims or TRAMWAY_CELL not in ref.coords:
        return None
    n_cells = ref.coords[TRAMWAY_CELL].attrs.get(_LATTICE_CELLS)
    if n_cells is None or TRAMWAY_SEGMENT not in ref.coords:
        return None
    if ref.coords[TRAMWAY_SEGMENT].dims != (TIME,):
        return None
    segment = np.asarray(ref.coords[TRAMWAY_SEGMENT].values, dtype=np.int64)
    cells = np.asarray(ref.coords[TRAMWAY_CELL].values, dtype=np.int64)
    return (segment[:, None] * int(n_cells) + cells[None, :]).ravel()


def _frame_columns(
    da: xr.DataArray, feature: str, lattice: bool
) -> tuple[np.ndarray, list[str]]:
    if BIN not in da.dims:
        raise TessellationError(
            f"variable {da.name!r} has dims {tuple(da.dims)} without 'bin'; TRamWAy maps hold "
            "one row per cell."
        )
    lead = (TIME, BIN) if lattice else (BIN,)
    if lattice and TIME not in da.dims:
        raise TessellationError(
            f"variable {da.name!r} has dims {tuple(da.dims)} without 'time', while the map "
            "of a time lattice holds one row per cell and window. Export it separately, or "
            "broadcast it over time first (.expand_dims(time=...))."
        )
    extra = [d for d in da.dims if d not in lead]
    if len(extra) > 1:
        # the components are the space dim (a gradient), else the last dim
        comp = SPACE if SPACE in extra else extra[-1]
        others = [d for d in extra if d != comp]
        raise TessellationError(
            f"variable {da.name!r} has dims {tuple(da.dims)}; a TRamWAy map holds one row per "
            f"cell and one column per component ({comp!r}). Select one slice of {others} "
            f"first, e.g. .isel({others[0]}=0)."
        )
    rows = int(np.prod([da.sizes[d] for d in lead]))
    if not extra:
        return da.transpose(*lead).values.reshape(rows, 1).astype(np.float64), [feature]
    comp = extra[0]
    values = da.transpose(*lead, comp).values.reshape(rows, da.sizes[comp])
    labels = (
        [str(c) for c in da.coords[comp].values] if comp in da.coords
        else [str(c) for c in da.attrs.get("tramway_components", range(da.sizes[comp]))]
    )
    return values.astype(np.float64), [f"{feature} {c}" for c in labels]


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
        Results on a time lattice read by :func:`from_tramway` (dims ``(bin, time, ...)``)
        map back to TRamWAy's cells of each window (``t * n + i``, through the
        ``tramway_segment`` coordinate).
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
    index = _lattice_rows(ref)
    blocks, columns = [], []
    for da in arrays:
        values, cols = _frame_columns(da, _feature_name(da, feature), index is not None)
        blocks.append(values)
        columns += cols
    if len(set(columns)) != len(columns):
        raise TessellationError(
            f"the exported columns {columns} are not unique: two variables map to the same "
            "TRamWAy feature. Export them separately (feature= names a DataArray's feature) "
            "or drop one."
        )
    if index is None:
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
