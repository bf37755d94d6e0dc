"""The ``.tram`` accessor on :class:`xarray.Dataset`.

Thin on purpose: it keeps the Dataset and nothing else (xarray caches accessor objects and
never invalidates them when a Dataset changes in place), and each method calls the public
function of the same name with ``self._ds`` as first argument.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from . import calculus, core, topology
from . import plot as _plot
from . import summary as _repr


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
        return_flags: bool = False,
        **options: Any,
    ) -> Any:
        """Spatial gradient of measurement(s); see :func:`xtramgrad.grad`."""
        return core.grad(
            self._ds, variables, method=method, selection=selection,
            selection_angle=selection_angle, eps=eps, na=na, return_flags=return_flags,
            **options,
        )

    def grad_std(
        self,
        variables: Hashable | Sequence[Hashable],
        *,
        std: Any,
        method: str = "grad1",
        selection: str | None = None,
        selection_angle: float | None = None,
        eps: float | None = None,
        na: float = np.nan,
        **options: Any,
    ) -> Any:
        """Standard deviation of the gradient; see :func:`xtramgrad.grad_std`."""
        return core.grad_std(
            self._ds, variables, std=std, method=method, selection=selection,
            selection_angle=selection_angle, eps=eps, na=na, **options,
        )

    def noise_gain(
        self,
        variable: Hashable,
        *,
        method: str = "grad1",
        selection: str | None = None,
        selection_angle: float | None = None,
        eps: float | None = None,
        **options: Any,
    ) -> xr.DataArray:
        """Per-bin noise gain of the gradient; see :func:`xtramgrad.noise_gain`."""
        return core.noise_gain(
            self._ds, variable, method=method, selection=selection,
            selection_angle=selection_angle, eps=eps, **options,
        )

    def grad_operator(
        self,
        variable: Hashable | None = None,
        *,
        method: str = "grad1",
        selection: str | None = None,
        selection_angle: float | None = None,
        eps: float | None = None,
        quantity: str = "gradient",
        **options: Any,
    ) -> Any:
        """The gradient as a sparse matrix; see :func:`xtramgrad.grad_operator`."""
        return core.grad_operator(
            self._ds, variable, method=method, selection=selection,
            selection_angle=selection_angle, eps=eps, quantity=quantity, **options,
        )

    def neighbour_values(self, variable: Hashable, *, rings: int = 1) -> xr.DataArray:
        """Each bin's neighbours' values; see :func:`xtramgrad.neighbour_values`."""
        return core.neighbour_values(self._ds, variable, rings=rings)

    def neighbour_offsets(self, *, rings: int = 1) -> xr.DataArray:
        """Each bin's neighbours' offsets; see :func:`xtramgrad.neighbour_offsets`."""
        return core.neighbour_offsets(self._ds, rings=rings)

    # ------------------------------------------------------------------ vector calculus

    def div(self, field: Any, *, method: Any = "lsq2", **kwargs: Any) -> xr.DataArray:
        """Divergence of a vector field; see :func:`xtramgrad.div`."""
        return calculus.div(self._ds, field, method=method, **kwargs)

    def curl(self, field: Any, *, method: Any = "lsq2", **kwargs: Any) -> xr.DataArray:
        """Curl of a vector field (2D: a scalar; 3D: a vector); see :func:`xtramgrad.curl`."""
        return calculus.curl(self._ds, field, method=method, **kwargs)

    def laplacian(self, variable: Hashable, *, method: str = "lsq2", **options: Any) -> Any:
        """Laplacian of a measurement; see :func:`xtramgrad.laplacian`."""
        return calculus.laplacian(self._ds, variable, method=method, **options)

    def div_operator(self, field: Any = None, *, method: str = "lsq2", **kwargs: Any) -> Any:
        """The divergence as a sparse matrix; see :func:`xtramgrad.div_operator`."""
        return calculus.div_operator(self._ds, field, method=method, **kwargs)

    def curl_operator(self, field: Any = None, *, method: str = "lsq2", **kwargs: Any) -> Any:
        """The curl as a sparse matrix; see :func:`xtramgrad.curl_operator`."""
        return calculus.curl_operator(self._ds, field, method=method, **kwargs)

    def laplacian_operator(
        self, variable: Hashable | None = None, *, method: str = "lsq2", **options: Any
    ) -> Any:
        """The Laplacian as a sparse matrix; see :func:`xtramgrad.laplacian_operator`."""
        return calculus.laplacian_operator(self._ds, variable, method=method, **options)

    def smoothness_penalty(self, form: str = "two_point", **kwargs: Any) -> Any:
        """A quadratic smoothness penalty ``u^T P u ~ integral |grad u|^2``; see
        :func:`xtramgrad.smoothness_penalty`."""
        return calculus.smoothness_penalty(self._ds, form, **kwargs)

    # ------------------------------------------------------------------ tables

    def isel(self, bin: Any = None, *, layout: str | None = None, **indexers: Any) -> xr.Dataset:
        """Select or reorder bins, renumbering the table; see :func:`xtramgrad.isel`."""
        return topology.isel(self._ds, bin=bin, layout=layout, **indexers)

    def symmetrize(self, *, layout: str | None = None) -> xr.Dataset:
        """Add the missing reverse neighbour entries; see :func:`xtramgrad.symmetrize`."""
        return topology.symmetrize(self._ds, layout=layout)

    def validate(self) -> xr.Dataset:
        """Check the tessellation thoroughly; see :func:`xtramgrad.validate`."""
        return topology.validate(self._ds)

    def sort(self, curve: str = "hilbert") -> xr.Dataset:
        """Reorder bins along a space-filling curve; see :func:`xtramgrad.sort`."""
        return topology.sort(self._ds, curve=curve)

    def plan(self, *, block: int | None = None, halo: int | None = None) -> xr.Dataset:
        """Record the neighbour table's chunk locality; see :func:`xtramgrad.plan`."""
        from . import chunked

        return chunked.plan(self._ds, block=block, halo=halo)

    # ------------------------------------------------------------------ display

    def summary(self, compute: bool = False) -> _repr.Summary:
        """Bins, dims, degree statistics, measurements, chunking; see
        :func:`xtramgrad.summary`."""
        return _repr.summary(self._ds, compute=compute)

    def __repr__(self) -> str:
        try:
            return repr(_repr.summary(self._ds))
        except topology.TessellationError as err:
            return f"<xtramgrad accessor: not a tessellation Dataset: {err}>"

    def _repr_html_(self) -> str:
        try:
            return _repr.summary(self._ds)._repr_html_()
        except topology.TessellationError as err:
            import html

            return f"<pre>not a tessellation Dataset: {html.escape(str(err))}</pre>"

    def plot_map(self, variable: Hashable | xr.DataArray | None = None, **kwargs: Any) -> Any:
        """Map of a measurement over the bins; see :func:`xtramgrad.plot_map`."""
        return _plot.plot_map(self._ds, variable, **kwargs)

    def plot_gradient(self, variable: Hashable, **kwargs: Any) -> Any:
        """Gradient arrows over the map; see :func:`xtramgrad.plot_gradient`."""
        return _plot.plot_gradient(self._ds, variable, **kwargs)

    def plot_selection(self, bin: int, **kwargs: Any) -> Any:
        """Neighbour selection around one bin; see :func:`xtramgrad.plot_selection`."""
        return _plot.plot_selection(self._ds, bin, **kwargs)

    def plot_compare(
        self,
        variable: Hashable,
        methods: Sequence[str | Mapping[str, Any]] = ("grad1", "gradn"),
        **kwargs: Any,
    ) -> Any:
        """Gradient methods side by side, against a known gradient; see
        :func:`xtramgrad.plot_compare`."""
        return _plot.plot_compare(self._ds, variable, methods, **kwargs)
