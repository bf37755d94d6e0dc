"""Stencils: which bins enter each bin's local fit, in which order (pure numpy).

A method declares the stencil it needs (:class:`Rings`: the 1-ring of the neighbour table,
the 2-ring, ...; :class:`Radius`: every bin within a distance, reached through the table).
The stencil of a bin is an *ordered* list of other bins, the same on every path (eager,
chunked, numpy, numba), so that every path does the same arithmetic in the same order:

* ring 1: the bin's row of the neighbour table, in table order;
* ring ``r + 1``: for each bin of ring ``r`` in order, its table row in order, keeping bins
  not seen before (the center included);
* :class:`Radius`: the bins that the same breadth-first walk reaches, keeping (and walking
  on from) only the bins within the radius of the center, ordered by cell then by bin: cells
  of side ``radius * (1 + BALL_SLACK)`` anchored at the origin, sorted by their index along
  the last axis first (the compiled path scans these cells instead of walking where that
  is proved to give the same bins: :func:`xtramgrad.kernels._numba.ball_index`). Radius
  stencils do not record rings (all 1).

:func:`ring_stencil` and :func:`radius_stencil` build it for a block of bins from a table in
CSR form; :class:`Neighbourhood` is the block's stencil with its geometry, as the numpy
weight functions receive it. Tables come as a padded ``(n, k)`` array (-1 padding) or as a
CSR pair ``(indptr, indices)``: :func:`as_csr` turns either into CSR.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..errors import TessellationError

#: Radius stencils are ordered by cells this much wider than the radius (mirrored by the
#: compiled kernels).
BALL_SLACK = 1e-6

__all__ = [
    "Rings",
    "Radius",
    "StencilSpec",
    "Neighbourhood",
    "as_csr",
    "ring_stencil",
    "radius_stencil",
    "build_neighbourhood",
    "gathered_neighbourhood",
    "pad_rows",
    "row_entries",
    "size_groups",
]


@dataclass(frozen=True)
class Rings:
    """The bins within ``rings`` steps of the neighbour table.

    Where a bin's stencil has fewer than ``min_points`` bins, it is widened ring by ring up
    to ``widen_to`` rings (a geometric decision, independent of missing values, so every
    path builds the same stencil).
    """

    rings: int = 1
    widen_to: int = 0
    min_points: int = 0

    @property
    def depth(self) -> int:
        """The largest number of rings any bin may use."""
        return max(self.rings, self.widen_to)


@dataclass(frozen=True)
class Radius:
    """The bins within ``radius`` (space units) of the center, walking the table."""

    radius: float


StencilSpec = Rings | Radius


def as_csr(table: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr, indices)`` of a padded table (n, k) or of a CSR pair, as int64.

    Examples
    --------
    >>> indptr, indices = as_csr(np.array([[1, -1], [0, 2], [1, -1]]))
    >>> indptr.tolist(), indices.tolist()
    ([0, 1, 3, 4], [1, 0, 2, 1])
    """
    if isinstance(table, tuple):
        indptr, indices = table
        return np.asarray(indptr, dtype=np.int64), np.asarray(indices, dtype=np.int64)
    table = np.asarray(table)
    present = table >= 0
    indptr = np.zeros(table.shape[0] + 1, dtype=np.int64)
    np.cumsum(present.sum(axis=1), out=indptr[1:])
    return indptr, table[present].astype(np.int64, copy=False)


def row_entries(indptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Positions in the CSR ``indices`` of the entries of ``rows``, row after row.

    Examples
    --------
    >>> row_entries(np.array([0, 2, 2, 5]), np.array([2, 0])).tolist()
    [2, 3, 4, 0, 1]
    """
    rows = np.asarray(rows, dtype=np.int64)
    deg = indptr[rows + 1] - indptr[rows]
    first = np.repeat(indptr[rows] - np.concatenate([[0], np.cumsum(deg)[:-1]]), deg)
    return (first + np.arange(int(deg.sum()))).astype(np.int64)


def size_groups(indptr: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The rows of a CSR table by groups of similar length (a factor of 2 apart, so that
    padding each group to its widest row at most doubles it): for each group, its rows,
    their own ``indptr`` and the positions of their entries in the table.

    Examples
    --------
    >>> [(r.tolist(), e.tolist()) for r, _, e in size_groups(np.array([0, 1, 5, 6]))]
    [([0, 2], [0, 5]), ([1], [1, 2, 3, 4])]
    """
    deg = np.diff(indptr)
    level = np.ceil(np.log2(np.maximum(deg, 1))).astype(np.int64)
    for lv in np.unique(level):
        rows = np.flatnonzero(level == lv)
        sub = np.concatenate([[0], np.cumsum(deg[rows])]).astype(np.int64)
        yield rows, sub, row_entries(indptr, rows)


def pad_rows(indptr: np.ndarray, indices: np.ndarray, width: int | None = None) -> np.ndarray:
    """A CSR table as a padded (n, width) array, -1 padding (width: the widest row).

    Examples
    --------
    >>> pad_rows(np.array([0, 1, 3]), np.array([5, 6, 7])).tolist()
    [[5, -1], [6, 7]]
    """
    deg = np.diff(indptr)
    n = len(deg)
    k = int(deg.max()) if n and width is None else int(width or 0)
    out = np.full((n, k), -1, dtype=np.int64)
    rows = np.repeat(np.arange(n), deg)
    slots = np.arange(len(indices)) - np.repeat(indptr[:-1], deg)
    out[rows, slots] = indices
    return out


def _rows_of(indptr: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into ``indices``) of the rows of ``bins``, and the index of the bin each
    position belongs to, in order."""
    start = indptr[bins]
    deg = indptr[bins + 1] - start
    owner = np.repeat(np.arange(len(bins)), deg)
    pos = np.arange(int(deg.sum())) - np.repeat(np.cumsum(deg) - deg, deg) + start[owner]
    return pos, owner


def _walk(
    indptr: np.ndarray,
    indices: np.ndarray,
    targets: np.ndarray,
    depth: np.ndarray,
    keep: Any = None,
    loaded: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Breadth-first stencils of ``targets`` (global positions), ring by ring.

    ``depth[b]`` is the number of rings of target ``b``. ``keep(rows, ids)`` filters
    candidate bins (radius stencils). ``loaded`` (sorted) restricts expansion to bins whose
    table rows are known (their positions in ``indptr``); None means all bins, positions
    are the bins themselves. Returns (row, id, ring) of the stencil entries, in stencil
    order (row, then ring, then walk order).
    """
    b = len(targets)
    big = np.int64(max(int(indices.max(initial=0)), int(targets.max(initial=0))) + 1)
    seen = np.sort(np.arange(b, dtype=np.int64) * big + targets)
    rows_all, ids_all, ring_all = [], [], []
    front_rows = np.arange(b, dtype=np.int64)
    front_ids = np.asarray(targets, dtype=np.int64)
    ring = 0
    while len(front_rows):
        ring += 1
        go = depth[front_rows] >= ring
        front_rows, front_ids = front_rows[go], front_ids[go]
        if loaded is None:
            where = front_ids
        else:
            where = np.searchsorted(loaded, front_ids)
            ok = (where < len(loaded)) & (loaded[np.minimum(where, len(loaded) - 1)] == front_ids)
            front_rows, front_ids, where = front_rows[ok], front_ids[ok], where[ok]
        pos, owner = _rows_of(indptr, where)
        cand_rows = front_rows[owner]
        cand_ids = indices[pos]
        if keep is not None:
            mask = keep(cand_rows, cand_ids)
            cand_rows, cand_ids = cand_rows[mask], cand_ids[mask]
        key = cand_rows * big + cand_ids
        # first occurrence of each (row, id) in walk order, not seen before
        _, first = np.unique(key, return_index=True)
        first.sort()
        key, cand_rows, cand_ids = key[first], cand_rows[first], cand_ids[first]
        where_seen = np.searchsorted(seen, key)
        new = (where_seen >= len(seen)) | (seen[np.minimum(where_seen, len(seen) - 1)] != key)
        cand_rows, cand_ids, key = cand_rows[new], cand_ids[new], key[new]
        # the new keys are not in ``seen``: a merge of two sorted runs (np.union1d hashes)
        seen = np.sort(np.concatenate([seen, np.sort(key)]), kind="stable")
        rows_all.append(cand_rows)
        ids_all.append(cand_ids)
        ring_all.append(np.full(len(cand_rows), ring, dtype=np.int8))
        front_rows, front_ids = cand_rows, cand_ids
    if not rows_all:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.int8)
    rows = np.concatenate(rows_all)
    ids = np.concatenate(ids_all)
    rings = np.concatenate(ring_all)
    order = np.argsort(rows, kind="stable")  # walk order is ring order within a row
    return rows[order], ids[order], rings[order]


#: A multi-ring stencil walk may cost at most this many times an ordinary mesh's
HUB_FACTOR = 100


def check_walk_cost(table: np.ndarray, indptr: np.ndarray, spec: Any, method: str) -> None:
    """Refuse, before walking, a multi-ring stencil on a table with a hub: every neighbour
    of a bin with D neighbours gets all D in its 2-ring, so the walk costs sum(deg^2)
    entries, quadratic in the hub's degree (10^4 bins and one 10^4-neighbour hub: 10^8).
    ``table``: padded (n, k) (``indptr`` empty) or CSR entries with ``indptr``. Nothing is
    read for a 1-ring or radius stencil.

    Examples
    --------
    >>> star = np.array([[1, 2, 3], [0, -1, -1], [0, -1, -1], [0, -1, -1]])
    >>> check_walk_cost(star, np.zeros(0, np.int64), Rings(2), "lsq2")  # small: fine
    """
    if not (isinstance(spec, Rings) and spec.depth >= 2):
        return
    deg = np.diff(indptr) if len(indptr) else (np.asarray(table) >= 0).sum(axis=1)
    n = len(deg)
    if n == 0:
        return
    med = max(1.0, float(np.median(deg)))
    work = float(np.sum(deg.astype(np.float64) ** 2))
    ordinary = n * med * med
    if work <= HUB_FACTOR * ordinary or work < 1e7:
        return
    hub = int(np.argmax(deg))
    raise TessellationError(
        f"bin {hub} has {int(deg[hub])} neighbours (the median bin has {med:g}): every one "
        f"of them would get all of them in its {spec.rings}-ring stencil (method {method!r}),"
        f" {work:.2g} stencil entries in all, {work / ordinary:.0f}x an ordinary mesh of "
        f"{n} bins. Use a 1-ring method (lsq, grad1, gradn) on a table with hubs, or check "
        "the table for a bin that should not have so many neighbours."
    )


def ring_stencil(
    indptr: np.ndarray,
    indices: np.ndarray,
    targets: np.ndarray,
    spec: Rings,
    loaded: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ring stencils of ``targets``: ``(sindptr (B+1,), ids (E,), ring (E,))``.

    Examples
    --------
    A chain 0-1-2-3-4: the 2-ring of bin 0 is 1, then 2.

    >>> indptr, indices = as_csr(np.array([[1, -1], [0, 2], [1, 3], [2, 4], [3, -1]]))
    >>> sp, ids, ring = ring_stencil(indptr, indices, np.array([0, 2]), Rings(2))
    >>> sp.tolist(), ids.tolist(), ring.tolist()
    ([0, 2, 6], [1, 2, 1, 3, 0, 4], [1, 2, 1, 1, 2, 2])
    """
    targets = np.asarray(targets, dtype=np.int64)
    b = len(targets)
    if spec.rings == 1 and spec.widen_to <= 1 and loaded is None:
        pos, owner = _rows_of(indptr, targets)
        sindptr = np.zeros(b + 1, dtype=np.int64)
        np.cumsum(indptr[targets + 1] - indptr[targets], out=sindptr[1:])
        return sindptr, indices[pos], np.ones(len(pos), dtype=np.int8)
    depth = np.full(b, spec.rings, dtype=np.int64)
    rows, ids, rings = _walk(indptr, indices, targets, depth, loaded=loaded)
    if spec.widen_to > spec.rings and spec.min_points > 0:
        size = np.bincount(rows, minlength=b)
        small = np.flatnonzero(size < spec.min_points)
        if len(small):
            wide = np.full(len(small), spec.widen_to, dtype=np.int64)
            r2, i2, g2 = _walk(indptr, indices, targets[small], wide, loaded=loaded)
            keep = ~np.isin(rows, small)
            rows = np.concatenate([rows[keep], small[r2]])
            ids = np.concatenate([ids[keep], i2])
            rings = np.concatenate([rings[keep], g2])
            order = np.argsort(rows, kind="stable")
            rows, ids, rings = rows[order], ids[order], rings[order]
    sindptr = np.zeros(b + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=b), out=sindptr[1:])
    return sindptr, ids, rings


def radius_stencil(
    indptr: np.ndarray,
    indices: np.ndarray,
    centers: np.ndarray,
    targets: np.ndarray,
    radius: float,
    loaded: np.ndarray | None = None,
    center_of: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bins within ``radius`` of each target, walking the table: ``(sindptr, ids, ring)``.

    ``center_of(ids)`` returns the centers of global positions (default ``centers[ids]``).

    Examples
    --------
    >>> x = np.arange(6.0)[:, None]
    >>> indptr, indices = as_csr(np.array([[1, -1], [0, 2], [1, 3], [2, 4], [3, 5], [4, -1]]))
    >>> sp, ids, _ = radius_stencil(indptr, indices, x, np.array([2]), 2.5)
    >>> ids.tolist()
    [0, 1, 3, 4]
    """
    targets = np.asarray(targets, dtype=np.int64)
    get = (lambda i: centers[i]) if center_of is None else center_of
    own = get(targets)
    r2 = float(radius) ** 2

    def keep(rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        off = get(ids) - own[rows]
        d2 = off[:, 0] * off[:, 0]
        for a in range(1, off.shape[1]):  # summed axis by axis, as the compiled walk does
            d2 = d2 + off[:, a] * off[:, a]
        return d2 <= r2

    depth = np.full(len(targets), np.iinfo(np.int64).max, dtype=np.int64)
    rows, ids, _ = _walk(indptr, indices, targets, depth, keep=keep, loaded=loaded)
    side = float(radius) * (1.0 + BALL_SLACK)
    cells = np.floor(get(ids) / side) if len(ids) else np.zeros((0, own.shape[1]))
    # by bin within a cell, cells by their index along the last axis first
    order = np.lexsort((ids, *cells.T, rows))
    rows, ids = rows[order], ids[order]
    rings = np.ones(len(ids), dtype=np.int8)
    sindptr = np.zeros(len(targets) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(targets)), out=sindptr[1:])
    return sindptr, ids, rings


def stencil_of(
    spec: StencilSpec,
    indptr: np.ndarray,
    indices: np.ndarray,
    centers: np.ndarray,
    targets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stencil of ``targets`` for any spec (global positions)."""
    if isinstance(spec, Radius):
        return radius_stencil(indptr, indices, centers, targets, spec.radius)
    return ring_stencil(indptr, indices, targets, spec)


class Neighbourhood(NamedTuple):
    """The stencils of a block of ``n`` bins with their geometry, in stencil order.

    Attributes
    ----------
    indptr : (n + 1,) int64
        Stencil entries of bin ``i`` are ``indptr[i]:indptr[i + 1]``.
    rows : (E,) intp
        Bin of each entry.
    src : (E,) intp
        Position of each entry's value in the source values.
    targets : (n,) intp
        Position of each bin's own value in the source values.
    offsets : (E, d) float64
        ``other - own[rows]``.
    own : (n, d) float64
        The bins' centers.
    other : (E, d) float64
        The entries' centers.
    labels : (E,) int64 or None
        Edge labels (1-ring stencils of labelled tables).
    ring : (E,) int8
        Ring of each entry (1 for the table's own neighbours).
    """

    indptr: np.ndarray
    rows: np.ndarray
    src: np.ndarray
    targets: np.ndarray
    offsets: np.ndarray
    own: np.ndarray
    other: np.ndarray
    labels: np.ndarray | None
    ring: np.ndarray

    @property
    def n(self) -> int:
        return len(self.targets)

    @property
    def ndim(self) -> int:
        return self.offsets.shape[1]

    @property
    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)


def build_neighbourhood(
    spec: StencilSpec,
    indptr: np.ndarray,
    indices: np.ndarray,
    centers: np.ndarray,
    targets: np.ndarray,
    labels: np.ndarray | None = None,
) -> Neighbourhood:
    """The neighbourhood of bins ``targets`` of a whole table (source = all bins).

    ``labels`` (E,) are aligned with ``indices`` (1-ring stencils only).
    """
    targets = np.asarray(targets, dtype=np.intp)
    sindptr, ids, ring = stencil_of(spec, indptr, indices, centers, targets)
    rows = np.repeat(np.arange(len(targets), dtype=np.intp), np.diff(sindptr))
    own = centers[targets]
    other = centers[ids]
    lab = None
    if labels is not None:
        if not (isinstance(spec, Rings) and spec.depth == 1):
            raise ValueError("edge labels apply to 1-ring stencils only")
        pos, _ = _rows_of(indptr, targets.astype(np.int64))
        lab = np.asarray(labels)[pos]
    return Neighbourhood(
        sindptr, rows, ids.astype(np.intp), targets, other - own[rows], own, other, lab, ring
    )


def gathered_neighbourhood(
    center: np.ndarray, nbr_center: np.ndarray, nbr_label: np.ndarray | None = None
) -> Neighbourhood:
    """The neighbourhood of gathered stencils: ``nbr_center`` (n, K, d), NaN at padding.

    Source values are laid out as ``[own values (n), nbr_values (n * K) row-major]``.
    """
    n, k, d = nbr_center.shape
    present = ~np.isnan(nbr_center[:, :, 0])
    rows, slots = np.nonzero(present)
    sindptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(present.sum(axis=1), out=sindptr[1:])
    other = nbr_center[rows, slots]
    own = np.asarray(center, dtype=np.float64)
    lab = None if nbr_label is None else np.asarray(nbr_label)[rows, slots].astype(np.int64)
    src = (n + rows * k + slots).astype(np.intp)
    ring = np.ones(len(rows), dtype=np.int8)
    return Neighbourhood(
        sindptr, rows.astype(np.intp), src, np.arange(n, dtype=np.intp), other - own[rows],
        own, other, lab, ring,
    )


def stencil_sizes(
    spec: StencilSpec, indptr: np.ndarray, indices: np.ndarray, centers: np.ndarray | None
) -> np.ndarray:
    """Size of every bin's stencil (n,), compiled when numba is installed.

    Examples
    --------
    >>> indptr, indices = as_csr(np.array([[1, -1], [0, 2], [1, 3], [2, -1]]))
    >>> stencil_sizes(Rings(2), indptr, indices, None).tolist()
    [2, 3, 3, 2]
    """
    n = len(indptr) - 1
    if isinstance(spec, Rings) and spec.depth == 1:
        return np.diff(indptr)
    from .engine import compiled_kernels

    pts = np.zeros((n, 1)) if centers is None else np.asarray(centers, dtype=np.float64)
    _numba = compiled_kernels()
    if _numba is not None:
        from .compiled import read_only, stencil_arrays

        rings, widen, min_points, radius = stencil_arrays(spec)
        out = np.empty(n, dtype=np.int64)
        _numba.stencil_sizes(
            read_only(indices, np.int64), read_only(indptr, np.int64), read_only(pts),
            rings, widen, min_points, radius, out,
        )
        return out
    out = np.empty(n, dtype=np.int64)
    step = 4096
    for lo in range(0, n, step):
        t = np.arange(lo, min(lo + step, n))
        sp, _, _ = stencil_of(spec, indptr, indices, pts, t)
        out[lo : lo + len(t)] = np.diff(sp)
    return out
