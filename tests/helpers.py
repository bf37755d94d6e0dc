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
