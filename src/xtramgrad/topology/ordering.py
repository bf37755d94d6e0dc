"""Bin order: space-filling-curve sorting (for chunk locality) and its inverse."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ..errors import TessellationError
from .schema import BIN, NEIGHBOURS, topology
from .tables import BIN_ID, bin_coordinate, isel

CURVES = ("hilbert", "morton")


def _quantize(centers: np.ndarray, bits: int) -> np.ndarray:
    """Integer coordinates in ``[0, 2**bits)``, one scale for every axis (isotropic)."""
    lo = centers.min(axis=0)
    extent = float((centers.max(axis=0) - lo).max()) if len(centers) else 0.0
    scale = (2**bits - 1) / extent if extent > 0 else 0.0
    q = np.floor((centers - lo) * scale)
    return np.clip(q, 0, 2**bits - 1).astype(np.uint64)


def _interleave(x: np.ndarray, bits: int) -> np.ndarray:
    """Bits of the columns of ``x`` (n, d) interleaved, most significant first."""
    n, d = x.shape
    key = np.zeros(n, dtype=np.uint64)
    one = np.uint64(1)
    for b in range(bits - 1, -1, -1):
        for j in range(d):
            key = (key << one) | ((x[:, j] >> np.uint64(b)) & one)
    return key


def hilbert_key(coords: np.ndarray, bits: int) -> np.ndarray:
    """Position along the Hilbert curve of integer points ``coords`` (n, d) < ``2**bits``.

    J. Skilling's transform ("Programming the Hilbert curve", AIP Conf. Proc. 707, 2004),
    vectorised over points. Consecutive keys are face-adjacent cells.

    Examples
    --------
    >>> xy = np.array([[0, 0], [0, 1], [1, 1], [1, 0]], dtype=np.uint64)
    >>> hilbert_key(xy, 1).tolist()
    [0, 1, 2, 3]
    """
    x = np.array(coords, dtype=np.uint64, copy=True)
    n, d = x.shape
    if d == 1:
        return x[:, 0].copy()
    q = 1 << (bits - 1)
    while q > 1:  # inverse undo
        p = np.uint64(q - 1)
        for i in range(d):
            high = (x[:, i] & np.uint64(q)) != 0
            if i == 0:
                x[:, 0] = np.where(high, x[:, 0] ^ p, x[:, 0])
                continue
            t = (x[:, 0] ^ x[:, i]) & p
            x[:, 0] = np.where(high, x[:, 0] ^ p, x[:, 0] ^ t)
            x[:, i] = np.where(high, x[:, i], x[:, i] ^ t)
        q >>= 1
    for i in range(1, d):  # Gray encode
        x[:, i] ^= x[:, i - 1]
    t = np.zeros(n, dtype=np.uint64)
    q = 1 << (bits - 1)
    while q > 1:
        t = np.where((x[:, d - 1] & np.uint64(q)) != 0, t ^ np.uint64(q - 1), t)
        q >>= 1
    x ^= t[:, None]
    return _interleave(x, bits)


def sort(ds: xr.Dataset, curve: str = "hilbert") -> xr.Dataset:
    """Reorder the bins along a space-filling curve, for chunk locality (either layout).

    Bins of irregular tessellations often come in random order; chunked along ``bin``,
    every chunk then neighbours every other chunk. Along a Hilbert (or Morton, "Z-order")
    curve, bins close in space are close in order, so a chunk's neighbours lie in a few
    nearby chunks. Use it before chunking, before writing a big tessellation to zarr, and
    before :func:`xtramgrad.plan`. Gradients are unchanged bin by bin.

    Every variable along ``bin`` is reordered and the neighbour table renumbered (it is
    :func:`xtramgrad.isel` with the curve's order); the original positions are kept in the
    ``bin_id`` coordinate (composed if the Dataset was already sorted), the ``bin``
    coordinate is 0..n-1, and :func:`unsort` restores the original order of a Dataset or
    of any result. The table is loaded into memory (n x k integers).

    Parameters
    ----------
    ds : xarray.Dataset
    curve : {"hilbert", "morton"}

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> import numpy as np, xtramgrad
    >>> ds = xtramgrad.voronoi(np.random.default_rng(0).random((100, 2)))
    >>> ds["D"] = ds.center.sel(space="x") ** 2
    >>> s = ds.tram.sort()
    >>> s.bin_id.values[:5].tolist()
    [1, 10, 29, 34, 50]
    >>> g = xtramgrad.unsort(s.tram.grad("D"))
    >>> bool((g == ds.tram.grad("D")).all())
    True
    """
    if curve not in CURVES:
        raise TessellationError(f"curve={curve!r}; expected one of {CURVES}.")
    topo = topology(ds)
    centers = np.asarray(topo.center.values, dtype=np.float64)
    d = centers.shape[1]
    bits = 64 // d if d > 1 else 63
    coords = _quantize(centers, bits)
    key = hilbert_key(coords, bits) if curve == "hilbert" else _interleave(coords, bits)
    order = np.argsort(key, kind="stable")
    out = isel(ds, bin=order)
    out[BIN_ID].attrs.update(
        {"long_name": "original bin position", "xtramgrad_curve": curve}
    )
    return out


def unsort(obj: xr.Dataset | xr.DataArray) -> Any:
    """Undo :func:`sort`: put bins back in the order of their ``bin_id`` coordinate.

    Works on the sorted Dataset (the neighbour table is renumbered back) and on any
    result computed from it (a gradient DataArray or Dataset); the ``bin`` coordinate is
    0..n-1 again. ``bin_id`` is dropped when it is then 0..n-1 (a sorted Dataset); after
    a subset (:func:`xtramgrad.isel`) it is kept, in increasing order, since it still
    names the positions in the original Dataset.

    Examples
    --------
    >>> import xtramgrad
    >>> ds = xtramgrad.grid((3, 3))
    >>> back = xtramgrad.unsort(ds.tram.sort())
    >>> back.equals(ds)
    True
    """
    if BIN_ID not in obj.coords:
        raise TessellationError(
            f"no {BIN_ID!r} coordinate to restore the bin order from; unsort applies to "
            "Datasets sorted with xtramgrad.sort (ds.tram.sort()) and their results."
        )
    ids = np.asarray(obj[BIN_ID].values)
    order = np.argsort(ids, kind="stable")
    out: xr.Dataset | xr.DataArray
    if isinstance(obj, xr.Dataset) and NEIGHBOURS in obj.variables:
        out = isel(obj, bin=order)
    else:
        out = obj.isel({BIN: order})
        if BIN in out.coords:
            out = out.drop_vars(BIN).assign_coords(bin_coordinate(len(order)))
    ids = ids[order]
    if len(ids) and ids[0] == 0 and ids[-1] == len(ids) - 1 and bool(np.all(np.diff(ids) == 1)):
        out = out.drop_vars(BIN_ID)
    return out

