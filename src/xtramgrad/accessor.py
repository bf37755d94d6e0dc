"""The ``.tram`` accessor on :class:`xarray.Dataset`.

Thin on purpose: it keeps the Dataset and nothing else (xarray caches accessor objects and
never invalidates them when a Dataset changes in place), and each method calls the public
function of the same name with ``self._ds`` as first argument.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from . import core, topology


@xr.register_dataset_accessor("tram")
class TramAccessor:
    """Gradients and tessellation tools: ``ds.tram.grad("D")``.

    Every method has a functional twin in the ``xtramgrad`` namespace
    (``ds.tram.grad(...)`` is ``xtramgrad.grad(ds, ...)``).
    """

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def grad(
        self,
        variables: Hashable | Sequence[Hashable],
        *,
        method: str | Callable[..., Any] = "grad1",
        selection: str | None = None,
        selection_angle: float | None = None,
        eps: float | None = None,
        na: float = np.nan,
    ) -> xr.DataArray | xr.Dataset:
        """Spatial gradient of measurement(s); see :func:`xtramgrad.grad`."""
        return core.grad(
            self._ds, variables, method=method, selection=selection,
            selection_angle=selection_angle, eps=eps, na=na,
        )

    def grad_operator(
        self,
        variable: Hashable | None = None,
        *,
        method: str = "grad1",
        selection: str | None = None,
        selection_angle: float | None = None,
        eps: float | None = None,
    ) -> Any:
        """The gradient as a sparse matrix; see :func:`xtramgrad.grad_operator`."""
        return core.grad_operator(
            self._ds, variable, method=method, selection=selection,
            selection_angle=selection_angle, eps=eps,
        )

    def validate(self) -> xr.Dataset:
        """Check the tessellation thoroughly; see :func:`xtramgrad.validate`."""
        return topology.validate(self._ds)
