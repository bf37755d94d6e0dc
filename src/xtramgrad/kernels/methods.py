"""Gradient methods, as a registry.

A method is one :class:`Method` object in :data:`METHODS`: its name, the stencil it needs,
its weight function on numpy (the reference), its optional compiled kernel, whether it is
linear (so that :func:`xtramgrad.grad_operator` exists for it), the options it takes and
the quantities it estimates. The gradient functions, the command line, the docs' tables
and the tests read this registry; a new method is one :func:`register_method` call, and is
then tested by the tests that exist (they are parametrised over the registry).

A method without a compiled kernel runs on numpy, on every backend: never on another
method's kernel.

Writing a method
----------------
The weight function receives a :class:`~xtramgrad.kernels.stencil.Neighbourhood` (a block
of bins with their stencils, in CSR form, with the offsets) and ``ok`` (E,), whether each
stencil entry holds a measurement, plus the method's options as keywords; it returns a
:class:`~xtramgrad.kernels.fits.Weights` (or just ``(w, c0)``): ``w`` (E, Q) the coefficient
of each entry's value and ``c0`` (n, Q) that of the bin's own value, Q = d for a gradient.
A NaN in ``c0`` marks a quantity the data do not determine (it becomes ``na``).

Examples
--------
A method that gives the mean slope over the measured neighbours, registered then used:

>>> import numpy as np, xtramgrad
>>> from xtramgrad.kernels import Method, register_method, unregister_method
>>> from xtramgrad.kernels.fits import segment_sum
>>> def mean_slope(nb, ok):
...     r2 = (nb.offsets ** 2).sum(axis=1, keepdims=True)
...     cnt = segment_sum(ok.astype(float), nb.indptr)[nb.rows][:, None]
...     w = np.where(ok[:, None], nb.offsets / r2 / cnt, 0.0)
...     return w, -segment_sum(w, nb.indptr)
>>> _ = register_method(Method("mean_slope", "mean of the neighbour slopes", mean_slope))
>>> ds = xtramgrad.grid(5, D=np.arange(5.0) * 3)
>>> ds.tram.grad("D", method="mean_slope").values[2, 0]
np.float64(3.0)
>>> unregister_method("mean_slope")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..selection import Param
from . import compiled as _compiled
from .fits import Weights, local_weights, lsq2_weights, lsq_weights
from .stencil import Radius, Rings, StencilSpec
from .tramway import grad1_weights, gradn_weights

__all__ = [
    "Method",
    "METHODS",
    "register_method",
    "unregister_method",
    "resolve_options",
    "quantity_columns",
    "method_table",
    "BUILTIN",
]

QUANTITIES = ("gradient", "hessian", "fit")


@dataclass(frozen=True)
class Method:
    """A gradient method.

    Attributes
    ----------
    name : str
        What users pass as ``method=``.
    summary : str
        One line for the docs and ``--help``.
    weights : callable
        The numpy weight function (see the module docstring).
    stencil : StencilSpec or callable
        The stencil, or ``stencil(ndim, options) -> StencilSpec``.
    options : tuple of Param
        The options it takes (keywords of ``grad``), with defaults and checks.
    quantities : tuple of str
        What it estimates, in column order: ``"gradient"`` (d columns, always first), then
        ``"hessian"`` (d(d+1)/2 columns, upper triangle) and/or ``"fit"`` (1 column).
    compiled : callable or None
        Its compiled kernel (:mod:`xtramgrad.kernels.compiled`), or None: numpy only.
    linear : bool
        Whether the result is linear in the values (an operator exists).
    uses_selection : bool
        Whether it takes a neighbour-selection rule (``selection=``, ``selection_angle=``,
        ``eps=``).
    convergence : str
        What is known of its accuracy, for the docs.
    stencil_doc : str
        The stencil in words, for the docs.
    """

    name: str
    summary: str
    weights: Callable[..., Weights | tuple[np.ndarray, np.ndarray]] = field(repr=False)
    stencil: StencilSpec | Callable[[int, Mapping[str, Any]], StencilSpec] = Rings(1)
    options: tuple[Param, ...] = ()
    quantities: tuple[str, ...] = ("gradient",)
    compiled: Any = field(default=None, repr=False)
    linear: bool = True
    uses_selection: bool = False
    convergence: str = ""
    stencil_doc: str = "1-ring"

    def stencil_for(self, ndim: int, options: Mapping[str, Any]) -> StencilSpec:
        """The stencil of this method in ``ndim`` dimensions with these options."""
        spec = self.stencil
        return spec(ndim, options) if callable(spec) else spec

    def n_quantities(self, ndim: int) -> int:
        return sum(_width(q, ndim) for q in self.quantities)


def _width(quantity: str, ndim: int) -> int:
    return {"gradient": ndim, "hessian": ndim * (ndim + 1) // 2, "fit": 1}[quantity]


def quantity_columns(method: Method, quantity: str, ndim: int) -> slice:
    """The columns of ``quantity`` among the method's estimates.

    Examples
    --------
    >>> quantity_columns(METHODS["lsq2"], "hessian", 2)
    slice(2, 5, None)
    """
    if quantity not in method.quantities:
        raise ValueError(
            f"method {method.name!r} does not estimate the {quantity}; methods that do: "
            f"{[m.name for m in METHODS.values() if quantity in m.quantities]}."
        )
    start = 0
    for q in method.quantities:
        if q == quantity:
            return slice(start, start + _width(q, ndim))
        start += _width(q, ndim)
    raise AssertionError("unreachable")


#: The registered methods, by name.
METHODS: dict[str, Method] = {}
#: Names of the methods the library itself registers.
BUILTIN: tuple[str, ...] = ()


def register_method(method: Method, *, replace: bool = False) -> Method:
    """Add a method to :data:`METHODS`; returns it.

    A method of the same name that you registered is replaced only with ``replace=True``;
    the built-in methods (grad1, gradn, lsq, lsq2, local) cannot be replaced: register
    yours under another name.
    """
    if not isinstance(method, Method):
        raise TypeError(
            f"register_method expects a Method, got {type(method).__name__} {method!r}; "
            "build one with Method(name, summary, weights, ...)."
        )
    if not callable(method.weights):
        raise TypeError(
            f"method {method.name!r}: weights is {method.weights!r}, not a function; expected "
            "weights(neighbourhood, options) returning (w, c0)."
        )
    if method.name in BUILTIN:
        raise ValueError(
            f"method {method.name!r} is built in and cannot be replaced (every default "
            "gradient would silently change); register yours under another name."
        )
    if method.name in METHODS and not replace:
        raise ValueError(
            f"a method {method.name!r} is already registered; pass replace=True to replace "
            "it, or unregister_method it first."
        )
    if not method.quantities or method.quantities[0] != "gradient":
        raise ValueError(f"method {method.name!r}: quantities must start with 'gradient'.")
    unknown = set(method.quantities) - set(QUANTITIES)
    if unknown:
        raise ValueError(f"method {method.name!r}: unknown quantities {sorted(unknown)}.")
    METHODS[method.name] = method
    return method


def unregister_method(name: str) -> None:
    """Remove a method registered with :func:`register_method` (not a built-in one)."""
    if name in BUILTIN:
        raise ValueError(f"method {name!r} is built in; it cannot be removed.")
    if name not in METHODS:
        raise ValueError(
            f"no method {name!r} is registered; the registered ones are {', '.join(METHODS)}."
        )
    METHODS.pop(name)


def resolve_options(method: Method, options: Mapping[str, Any]) -> dict[str, Any]:
    """The method's options with defaults filled in and every value checked.

    Examples
    --------
    >>> resolve_options(METHODS["lsq"], {"power": 1})
    {'power': 1.0, 'cutoff': 3.0}
    >>> resolve_options(METHODS["lsq"], {"bandwidth": 1})
    Traceback (most recent call last):
    ...
    ValueError: method 'lsq' takes no option 'bandwidth'; its options are power, cutoff.
    """
    known = {p.name: p for p in method.options}
    extra = [k for k in options if k not in known]
    if extra:
        takes = ", ".join(known) if known else "none"
        raise ValueError(
            f"method {method.name!r} takes no option {extra[0]!r}; its options are {takes}."
        )
    return {name: p.check(options.get(name, p.default)) for name, p in known.items()}


def method_table() -> str:
    """The registered methods as a Markdown table (used by the docs and ``--help``).

    Examples
    --------
    >>> print(method_table().splitlines()[0])
    | method | options | stencil | compiled | what it computes |
    """
    rows = [
        "| method | options | stencil | compiled | what it computes |",
        "|---|---|---|---|---|",
    ]
    for m in METHODS.values():
        opts = ", ".join(f"`{p.name}={p.default!r}`" for p in m.options) or "-"
        if m.uses_selection:
            opts = "`selection_angle=0.9`, `eps=`, `selection=` " + ("" if opts == "-" else opts)
        rows.append(
            f"| `{m.name}` | {opts} | {m.stencil_doc} | "
            f"{'yes' if m.compiled is not None else 'no'} | {m.summary.replace('|', '&#124;')} |"
        )
    return "\n".join(rows)


# --------------------------------------------------------------------------- checks


def _positive(name: str, what: str) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = np.nan
        if not (v > 0 and np.isfinite(v)):
            raise ValueError(f"{name}={value!r}; expected {what}.")
        return v

    return check


def _power(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = np.nan
    if not (0 <= v <= 8):
        raise ValueError(
            f"power={value!r}; expected a weight exponent in [0, 8] (weights |offset|^-power;"
            " 0 for plain least squares)."
        )
    return v


def _cutoff(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = np.nan
    if not (v > 1 or v == np.inf):
        raise ValueError(
            f"cutoff={value!r}; expected a ratio > 1 (entries longer than cutoff times the "
            "median entry length of the bin are left out), or inf to keep every entry."
        )
    return v


def _bandwidth(value: Any) -> float | str:
    if isinstance(value, str):
        if value == "auto":
            return value
        raise ValueError(f"bandwidth={value!r}; expected a length in space units or 'auto'.")
    return _positive("bandwidth", "a length > 0 in space units, or 'auto'")(value)


def _degree(value: Any) -> int:
    if value not in (1, 2) or isinstance(value, bool):
        raise ValueError(f"degree={value!r}; expected 1 (local linear) or 2 (local quadratic).")
    return int(value)


# --------------------------------------------------------------------------- built-ins

#: Default weight exponents of ``lsq`` and ``lsq2`` (measured trade-offs between accuracy and
#: noise gain: docs/which_method.md).
LSQ_POWER = 2.0
LSQ2_POWER = 4.0
#: Default long-entry cutoff of ``lsq``, and of ``lsq2`` (whose entries reach the 2-ring).
LSQ_CUTOFF = 3.0
LSQ2_CUTOFF = 4.0
#: How many bandwidths the stencil of ``local`` reaches.
LOCAL_REACH = 3.0


def _lsq2_stencil(ndim: int, options: Mapping[str, Any]) -> StencilSpec:
    unknowns = ndim + ndim * (ndim + 1) // 2
    return Rings(2, widen_to=3, min_points=2 * unknowns)


def _local_stencil(ndim: int, options: Mapping[str, Any]) -> StencilSpec:
    bw = options["bandwidth"]
    if isinstance(bw, str):
        raise ValueError("bandwidth='auto' must be resolved from the data before the stencil")
    return Radius(LOCAL_REACH * float(bw))


def _register_builtins() -> tuple[str, ...]:
    register_method(Method(
        "grad1",
        "TRamWAy's per-axis 3-point regression with 2-point fallback, on the neighbours a "
        "selection rule picks (TRamWAy's default; exact on grids and hexagons only)",
        grad1_weights, Rings(1), compiled=_compiled.grad1, uses_selection=True,
        convergence="order 0 on irregular meshes (errors 27-51% of |grad f| for linear "
        "fields); exact on grids and hexagons",
    ))
    register_method(Method(
        "gradn",
        "TRamWAy's order-2 regression over the 1-ring, with a correct derivative; linear "
        "fallback where the quadratic is not determined with redundancy",
        gradn_weights, Rings(1), compiled=_compiled.generic("gradn", lambda o: ()),
        convergence="exact for linear fields; 2D: order 1 inside, not converging at the border "
                    "(fallback bins); 3D: order 2",
    ))
    power = Param("power", LSQ_POWER, "weights |offset|^-power", _power)
    cutoff = Param("cutoff", LSQ_CUTOFF,
                   "leave out entries longer than cutoff times the bin's median entry",
                   _cutoff)
    register_method(Method(
        "lsq",
        "weighted linear least squares through the bin's value over its 1-ring, weights "
        "|o|^-power",
        lsq_weights, Rings(1), options=(power, cutoff),
        compiled=_compiled.generic("lsq", lambda o: (o["power"], o["cutoff"])),
        convergence="exact for linear fields; order 1 on irregular meshes, 2 on symmetric",
    ))
    register_method(Method(
        "lsq2",
        "weighted quadratic least squares through the bin's value over its 2-ring (3-ring "
        "where small); falls back to lsq where the quadratic is not determined",
        lambda nb, ok, power, cutoff: lsq2_weights(
            nb, ok, power=power, cutoff=cutoff, fallback_power=LSQ_POWER,
            fallback_cutoff=LSQ_CUTOFF,
        ),
        _lsq2_stencil,
        options=(
            Param("power", LSQ2_POWER, power.doc, _power),
            Param("cutoff", LSQ2_CUTOFF, cutoff.doc, _cutoff),
        ),
        quantities=("gradient", "hessian"),
        compiled=_compiled.generic(
            "lsq2", lambda o: (o["power"], o["cutoff"], LSQ_POWER, LSQ_CUTOFF)
        ),
        convergence="exact for quadratic fields; order 2 inside irregular meshes",
        stencil_doc="2-ring (3-ring where small)",
    ))
    register_method(Method(
        "local",
        "Gaussian-weighted local polynomial fit (kernel regression) over the bins within 3 "
        "bandwidths; the bias-variance knob for noisy maps",
        local_weights, _local_stencil,
        options=(
            Param("bandwidth", "auto",
                  "Gaussian kernel width in space units, or 'auto' (generalized "
                  "cross-validation)", _bandwidth, cli_type=str),
            Param("degree", 1, "1 (local linear) or 2 (local quadratic)", _degree,
                  cli_type=int),
        ),
        quantities=("gradient", "fit"),
        compiled=_compiled.generic(
            "local", lambda o: (float(o["bandwidth"]), float(o["degree"]))
        ),
        convergence="exact for polynomials of its degree; bias ~ bandwidth^degree, noise "
        "gain ~ 1/bandwidth",
        stencil_doc="bins within 3 bandwidths",
    ))
    return tuple(METHODS)


BUILTIN = _register_builtins()
