"""The library's exceptions, in one place.

* :class:`TessellationError` (a :class:`ValueError`): a Dataset does not follow the
  tessellation schema, or its values (table, centers, measurements) cannot give a correct
  gradient.
* :class:`ValueError`: a bad option (an unknown method, a conflicting keyword).
* :class:`ImportError`: an optional dependency is missing; the message names the pip extra
  that installs it (:func:`require`).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["TessellationError", "MissingExtraError", "require"]


class TessellationError(ValueError):
    """A tessellation Dataset or argument does not follow xtramgrad's schema."""


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the pip extra to install."""


def require(module: str, extra: str, purpose: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise an ImportError naming the pip extra that installs it.

    ``package`` is the requirement to suggest for a plain ``pip install`` (default: the
    module's top-level name), e.g. ``"tramway==0.7"``.

    Examples
    --------
    >>> require("numpy", "core", "arrays").__name__
    'numpy'
    >>> require("no_such_module_xyz", "io", "reading zarr stores")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xtramgrad.errors.MissingExtraError: reading zarr stores needs no_such_module_xyz, ...
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        raise MissingExtraError(
            f"{purpose} needs {top}, which is not installed; install it with "
            f'`pip install -e ".[{extra}]"` from a checkout of xtramgrad (or `pip install '
            f"{package or top}`)."
        ) from err
