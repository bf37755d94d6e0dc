"""Helpers shared by the tests (imported as ``helpers``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

from typing import Any

import dask


class CountingScheduler:
    """Counts dask computes; raises past ``max_computes`` (as xarray's own tests do).

    Build the graph inside ``dask.config.set(scheduler=CountingScheduler(0))``, compute
    outside it.
    """

    def __init__(self, max_computes: int = 0) -> None:
        self.total = 0
        self.max_computes = max_computes

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        self.total += 1
        if self.total > self.max_computes:
            raise RuntimeError(f"too many dask computes: {self.total} > {self.max_computes}")
        return dask.get(dsk, keys, **kwargs)


def no_compute() -> Any:
    """Context manager in which any dask compute raises."""
    return dask.config.set(scheduler=CountingScheduler(0))


def assert_same(chunked: Any, eager: Any, *, bitwise: bool = False, rtol: float = 1e-12) -> None:
    """A chunked (dask-backed) result equals the eager one: same dims, coordinates, attrs,
    name and NaN pattern; values bit for bit (``bitwise``) or within ``rtol`` of the scale."""
    import numpy as np
    import xarray as xr

    assert chunked.chunks is not None, "expected a dask-backed result"
    got = chunked.compute()
    assert got.dims == eager.dims and got.shape == eager.shape
    assert got.name == eager.name and got.attrs == eager.attrs
    xr.testing.assert_identical(got.coords.to_dataset(), eager.coords.to_dataset())
    a, b = got.values, eager.values
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    if bitwise:
        np.testing.assert_array_equal(a, b)
        return
    ok = ~np.isnan(b)
    scale = max(1.0, float(np.abs(b[ok]).max())) if ok.any() else 1.0
    assert np.max(np.abs(a[ok] - b[ok]), initial=0.0) <= rtol * scale
