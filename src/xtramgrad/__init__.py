"""xtramgrad: spatial gradients of measurements on tessellations, on xarray and dask.

``import xtramgrad`` registers the ``.tram`` accessor on :class:`xarray.Dataset`:

>>> import xtramgrad
>>> ds = xtramgrad.grid((4, 4), D=list(range(16)))
>>> ds.tram.grad("D").sel(space="y").values[5]
np.float64(1.0)
"""

from . import accessor as _accessor  # noqa: F401  (registers ds.tram)
from . import calculus, samples
from .calculus import (
    curl,
    curl_operator,
    div,
    div_operator,
    laplacian,
    laplacian_operator,
    smoothness_penalty,
)
from .chunked import plan
from .core import (
    DEFAULT_SELECTION_ANGLE,
    grad,
    grad_operator,
    grad_std,
    neighbour_offsets,
    neighbour_values,
    noise_gain,
    pointwise,
    resolve_selection,
)
from .errors import TessellationError
from .io import from_tramway, from_ugrid, to_tramway
from .io.store import store_zarr
from .kernels import Method, register_method, unregister_method
from .plot import plot_compare, plot_gradient, plot_map, plot_selection
from .samples import open_sample
from .selection import Selection
from .summary import summary
from .topology import (
    AsymmetryWarning,
    concat,
    from_adjacency,
    from_neighbours,
    grid,
    isel,
    sort,
    symmetrize,
    unsort,
    validate,
    voronoi,
)

__version__ = "0.1.0"

__all__ = [
    "calculus",
    "curl",
    "curl_operator",
    "div",
    "div_operator",
    "laplacian",
    "laplacian_operator",
    "smoothness_penalty",
    "AsymmetryWarning",
    "concat",
    "isel",
    "plot_compare",
    "symmetrize",
    "DEFAULT_SELECTION_ANGLE",
    "Selection",
    "TessellationError",
    "from_adjacency",
    "from_neighbours",
    "from_tramway",
    "from_ugrid",
    "grad",
    "grad_operator",
    "grad_std",
    "noise_gain",
    "Method",
    "neighbour_offsets",
    "neighbour_values",
    "register_method",
    "unregister_method",
    "grid",
    "open_sample",
    "plan",
    "plot_gradient",
    "plot_map",
    "plot_selection",
    "pointwise",
    "resolve_selection",
    "samples",
    "sort",
    "store_zarr",
    "summary",
    "to_tramway",
    "unsort",
    "validate",
    "voronoi",
]
