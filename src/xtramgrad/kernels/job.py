"""The inputs of one kernel run, as the numpy engine and the compiled kernels receive them."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..selection import Selection
from .stencil import StencilSpec

__all__ = ["Job", "Gathered"]


class Gathered(NamedTuple):
    """Stencils gathered beforehand, one padded row per bin (the chunked path).

    ``values`` (S, n, K) and ``sigma`` (S, n, K) or None: the stencil entries' values (NaN
    for a missing value or padding); ``center`` (n, K, d): their centers (NaN at padding);
    ``label`` (n, K) or None: edge labels (1-ring only); ``ring`` (n, K) int8: the ring of
    each entry.
    """

    values: np.ndarray
    sigma: np.ndarray | None
    center: np.ndarray
    label: np.ndarray | None
    ring: np.ndarray


class Job(NamedTuple):
    """One kernel run over ``n`` bins and ``S`` slices.

    Attributes
    ----------
    values : (S, n) float64
        The bins' own values (NaN: missing).
    sigma : (S, n) float64 or None
        Per-bin standard deviations (uncertainty propagation); None for values.
    centers : (n, d) float64
    table : padded (n, k) int or CSR indices (E,) int, or None with ``gathered``
    indptr : (n + 1,) int64 (CSR) or an empty array (padded)
    labels : edge labels in the layout of ``table``, or None
    gathered : Gathered or None
        Stencils gathered beforehand (then ``table`` is not used).
    spec : StencilSpec
    options : dict
        The method's resolved options.
    selection : Selection or None
        For methods that use a selection rule.
    na : float
        Value of a quantity that the data do not determine.
    combine : (Qo, Q) float64
        Output quantities as combinations of the method's quantities.
    """

    values: np.ndarray
    sigma: np.ndarray | None
    centers: np.ndarray
    table: Any
    indptr: np.ndarray
    labels: Any
    gathered: Gathered | None
    spec: StencilSpec
    options: dict[str, Any]
    selection: Selection | None
    na: float
    combine: np.ndarray
