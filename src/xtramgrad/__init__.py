"""xtramgrad: spatial gradients of measurements on tessellations, on xarray and dask.

``import xtramgrad`` registers the ``.tram`` accessor on :class:`xarray.Dataset`:

>>> import xtramgrad
>>> ds = xtramgrad.grid((4, 4), D=list(range(16)))
>>> ds.tram.grad("D").sel(space="y").values[5]
np.float64(1.0)
"""

from . import accessor as _accessor  # noqa: F401  (registers ds.tram)
from .core import DEFAULT_SELECTION_ANGLE, grad, grad_operator, pointwise, resolve_selection
from .kernels import Selection
from .topology import (
    TessellationError,
    from_adjacency,
    from_neighbours,
    grid,
    validate,
    voronoi,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SELECTION_ANGLE",
    "Selection",
    "TessellationError",
    "from_adjacency",
    "from_neighbours",
    "grad",
    "grad_operator",
    "grid",
    "pointwise",
    "resolve_selection",
    "validate",
    "voronoi",
]
