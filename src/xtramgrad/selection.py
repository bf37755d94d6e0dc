"""Neighbour-selection rules of TRamWAy's per-axis gradient (``grad1``), as a registry.

``grad1`` estimates each component ``j`` from the neighbours *below* and *above* the bin
along axis ``j``; a rule decides which neighbours those are. Each rule is one
:class:`Rule` object in :data:`RULES`, holding everything the library needs to know about
it: its name and parameters, its side test for the numpy path (:mod:`xtramgrad.kernels`)
and for the compiled path (the name of a function of :mod:`xtramgrad.kernels._numba`),
whether it needs edge labels, its description (written into results' attrs and the docs)
and how :func:`xtramgrad.plot_selection` draws it. :func:`resolve_selection`, the gradient
functions, the command line and the plots read this registry; a new rule is one more
:func:`register_rule` call.

This module is plain Python and numpy: it never imports xarray or dask.

Examples
--------
>>> from xtramgrad.selection import RULES, resolve_selection
>>> sorted(RULES)
['cone', 'halfspace', 'labels', 'quadrants']
>>> resolve_selection(2, selection_angle=0.7).describe()
'cone(selection_angle=0.7)'
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_SELECTION_ANGLE",
    "Param",
    "Rule",
    "RULES",
    "Selection",
    "register_rule",
    "resolve_selection",
    "selection_table",
]

#: TRamWAy's ``infer(...)`` default (``get_grad_kwargs``).
DEFAULT_SELECTION_ANGLE = 0.9

# Relative width of the band around the cone threshold inside which the side of a neighbour
# is decided by TRamWAy's own float64 expression rather than by the precomputed threshold.
TIE_BAND = 1e-9


@dataclass(frozen=True)
class Param:
    """One option of a rule or a method: its name, default, meaning and check.

    ``check(value)`` returns the normalised value or raises :class:`ValueError` with a
    message naming the option, the value found and what is expected.
    """

    name: str
    default: Any
    doc: str
    check: Callable[[Any], Any] = field(default=lambda v: v, repr=False, compare=False)
    #: type used by the command line to parse the option (``float``, ``int``, ``str``)
    cli_type: type = float


@dataclass(frozen=True)
class Selection:
    """A resolved neighbour-selection rule: a rule name and its parameter value.

    ``kind`` names a rule of :data:`RULES` (``"cone"``: ``value`` = selection angle in
    units of pi; ``"quadrants"``: InferenceMAP's one-axis-per-neighbour rule, any
    dimension; ``"halfspace"``: ``value`` = exclusion margin eps >= 0; ``"labels"``: sides
    read from signed edge labels +-(j+1)).
    """

    kind: str
    value: float | None = None

    @property
    def rule(self) -> Rule:
        try:
            return RULES[self.kind]
        except KeyError:
            raise ValueError(
                f"unknown selection rule {self.kind!r}; expected one of {sorted(RULES)}."
            ) from None

    def describe(self) -> str:
        """The rule and its parameter, as written into results' attrs."""
        rule = self.rule
        if not rule.params:
            return rule.name
        return f"{rule.name}({rule.params[0].name}={self.value})"


@dataclass(frozen=True)
class Rule:
    """A neighbour-selection rule of ``grad1``.

    Attributes
    ----------
    name : str
        The name users pass as ``selection=``.
    params : tuple of Param
        Its parameter (at most one: its value is ``Selection.value``).
    summary : str
        One line for the docs and ``--help``.
    sides : callable
        ``sides(offsets (E, d), own (E, d), other (E, d), labels (E,) or None, value)``
        returns ``(below, above)``, two (E, d) bool arrays: whether each neighbour counts on
        the lower / upper side of each axis. ``own`` / ``other`` are the absolute centers of
        the bin and of the neighbour, ``offsets = other - own``.
    compiled : str or None
        Name of the rule's side test in grad1's compiled kernels
        (``xtramgrad.kernels._numba.RULE_CODES``: the same decisions, bit for bit); None runs
        the rule on the numpy path only.
    needs_labels : bool
        Whether the rule reads ``neighbour_label``.
    draw : str or None
        Name of the function of :mod:`xtramgrad.plot` that draws the rule's regions around
        a bin, called as ``draw(ax, center_xy, radius, value)``.
    """

    name: str
    params: tuple[Param, ...]
    summary: str
    sides: Callable[..., tuple[np.ndarray, np.ndarray]] = field(repr=False)
    compiled: str | None = None
    needs_labels: bool = False
    draw: str | None = None


#: The registered rules, by name.
RULES: dict[str, Rule] = {}


def register_rule(rule: Rule) -> Rule:
    """Add a rule to :data:`RULES` (replacing one of the same name); returns it."""
    if len(rule.params) > 1:
        raise ValueError(f"rule {rule.name!r} has {len(rule.params)} parameters; at most 1.")
    RULES[rule.name] = rule
    return rule


# --------------------------------------------------------------------------- side tests


def cone_sides(
    offsets: np.ndarray, own: np.ndarray, other: np.ndarray, labels: Any, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Angular sectors, decided by a comparison with a precomputed threshold.

    TRamWAy computes ``a = 1 - 2 * arccos(u) / pi`` with ``u = o / |o|`` and keeps a
    neighbour above if ``a > 1 - s`` and below if ``a < s - 1``. Mathematically this is
    ``u > cos(s * pi / 2)`` and ``u < -cos(s * pi / 2)``; away from the threshold both agree,
    and inside a narrow band around it (ties such as 45-degree grid diagonals) we evaluate
    TRamWAy's own float64 expression so that ties are decided exactly as TRamWAy decides.
    A zero offset counts for no axis.
    """
    norm = np.sqrt(np.sum(offsets * offsets, axis=1, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        u = offsets / norm  # NaN for a zero offset: it counts for no axis
    threshold = math.cos(angle * math.pi / 2.0)
    above = u > threshold
    below = u < -threshold
    tie = np.abs(np.abs(u) - threshold) <= TIE_BAND
    if tie.any():
        with np.errstate(invalid="ignore"):
            a = 1.0 - 2.0 * np.arccos(u[tie]) / math.pi
        above[tie] = 1.0 - angle < a
        below[tie] = a < angle - 1.0
    return below, above


def quadrant_sides(
    offsets: np.ndarray, own: Any, other: Any, labels: Any, value: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Each neighbour counts for the one axis where ``|o_j|`` is largest.

    Ties go to the lowest axis (``np.argmax``), so grid diagonals count for ``x``.
    """
    e, d = offsets.shape
    axis = np.argmax(np.abs(offsets), axis=1)
    along = offsets[np.arange(e), axis]
    below = np.zeros((e, d), dtype=bool)
    above = np.zeros((e, d), dtype=bool)
    below[np.arange(e), axis] = along < 0
    above[np.arange(e), axis] = along > 0
    return below, above


def halfspace_sides(
    offsets: Any, own: np.ndarray, other: np.ndarray, labels: Any, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Half-spaces with an exclusion margin, compared on absolute coordinates as TRamWAy does."""
    return other < own - eps, own + eps < other


def label_sides(
    offsets: np.ndarray, own: Any, other: Any, labels: np.ndarray, value: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Sides read from signed edge labels: ``-(j+1)`` below, ``+(j+1)`` above axis ``j``."""
    axes = np.arange(1, offsets.shape[1] + 1)
    labels = np.asarray(labels)
    return labels[:, None] == -axes, labels[:, None] == axes


# --------------------------------------------------------------------------- parameters


def _check_angle(value: Any) -> float:
    try:
        s = float(value)
    except (TypeError, ValueError):
        s = math.nan
    if not (0.5 <= s < 1.0):
        raise ValueError(
            f"selection_angle={value!r}; expected a value in [0.5, 1) (in units of pi "
            "radians: 0.5 is a quarter turn, TRamWAy's default is 0.9)."
        )
    return s


def _check_eps(value: Any) -> float:
    try:
        e = float(value)
    except (TypeError, ValueError):
        e = math.nan
    if not (e >= 0.0 and math.isfinite(e)):
        raise ValueError(
            f"eps={value!r}; expected a finite margin >= 0 in space units (0 for plain "
            "half-spaces, e.g. 1e-2 to exclude neighbours almost aligned with another axis)."
        )
    return e


register_rule(
    Rule(
        "cone",
        (Param("selection_angle", DEFAULT_SELECTION_ANGLE,
               "top angle of the sectors, in units of pi radians, in [0.5, 1)", _check_angle),),
        "angular sectors of half-angle selection_angle*pi/2 around each axis (TRamWAy's "
        "default, selection_angle=0.9); a neighbour may count for several axes",
        cone_sides, compiled="cone", draw="draw_cone",
    )
)
register_rule(
    Rule(
        "quadrants", (),
        "InferenceMAP's quadrants: each neighbour counts once, for the axis of its largest "
        "offset component (a tie goes to the lowest axis)",
        quadrant_sides, compiled="quadrants", draw="draw_quadrants",
    )
)
register_rule(
    Rule(
        "halfspace",
        (Param("eps", 0.0, "exclusion margin in space units, >= 0", _check_eps),),
        "half-spaces x_nbr < x - eps (below) and x + eps < x_nbr (above), per axis",
        halfspace_sides, compiled="halfspace", draw="draw_halfspace",
    )
)
register_rule(
    Rule(
        "labels", (),
        "sides read from the signed edge labels +-(j+1) of neighbour_label",
        label_sides, compiled="labels", needs_labels=True, draw=None,
    )
)


# --------------------------------------------------------------------------- resolution


def resolve_selection(
    ndim: int,
    selection: str | None = None,
    selection_angle: float | None = None,
    eps: float | None = None,
) -> Selection:
    """Turn the user's selection keywords into one rule, refusing conflicts.

    ================================  ===============================================
    keywords                          rule
    ================================  ===============================================
    (none)                            angular sectors, ``selection_angle=0.9``
    ``selection_angle=s``             angular sectors of half-angle ``s * pi / 2``;
                                      ``s = 0.5`` in 2D means InferenceMAP quadrants
                                      (as in TRamWAy); in 1D and 3D it stays a cone
                                      of half-angle 45 degrees (TRamWAy's behaviour:
                                      in 3D, face diagonals at exactly 45 degrees
                                      are excluded by float64 rounding, so it is *not*
                                      quadrants; use ``selection="quadrants"``)
    ``eps=e``                         half-spaces with exclusion margin ``e >= 0``
    ``selection="quadrants"``         InferenceMAP quadrants, any dimension
    ``selection="cone"``              angular sectors (``selection_angle``, default 0.9)
    ``selection="halfspace"``         half-spaces (``eps``, default 0)
    ``selection="labels"``            sides read from ``neighbour_label``
    ================================  ===============================================

    Examples
    --------
    >>> resolve_selection(2)
    Selection(kind='cone', value=0.9)
    >>> resolve_selection(2, selection_angle=0.5)
    Selection(kind='quadrants', value=None)
    >>> resolve_selection(3, selection_angle=0.5)
    Selection(kind='cone', value=0.5)
    >>> resolve_selection(2, eps=0.01)
    Selection(kind='halfspace', value=0.01)
    >>> resolve_selection(2, selection_angle=0.9, eps=0.0)
    Traceback (most recent call last):
    ...
    ValueError: selection_angle=0.9 and eps=0.0 ...
    """
    if selection_angle is not None and eps is not None:
        raise ValueError(
            f"selection_angle={selection_angle} and eps={eps} select neighbours in two "
            "different ways (angular sectors vs half-spaces); pass only one of them."
        )
    if selection_angle is not None:
        selection_angle = _check_angle(selection_angle)
    if eps is not None:
        eps = _check_eps(eps)
    if selection is None:
        if eps is not None:
            return Selection("halfspace", eps)
        s = DEFAULT_SELECTION_ANGLE if selection_angle is None else selection_angle
        if s == 0.5 and ndim == 2:
            return Selection("quadrants")
        return Selection("cone", s)
    if selection not in RULES:
        raise ValueError(f"selection={selection!r}; expected one of {tuple(RULES)}.")
    rule = RULES[selection]
    given = {"selection_angle": selection_angle, "eps": eps}
    names = [p.name for p in rule.params]
    extra = [k for k, v in given.items() if v is not None and k not in names]
    if extra:
        takes = f"takes {names[0]}=" if names else "takes no parameter"
        raise ValueError(
            f"selection={selection!r} {takes}, not {', '.join(f'{k}=' for k in extra)}; "
            "drop it."
        )
    if not rule.params:
        return Selection(selection)
    p = rule.params[0]
    value = given.get(p.name)
    return Selection(selection, p.check(p.default if value is None else value))


def selection_table() -> str:
    """The registered rules as a Markdown table (used by the docs).

    Examples
    --------
    >>> print(selection_table().splitlines()[0])
    | rule | parameter | labels | what it selects |
    """
    rows = ["| rule | parameter | labels | what it selects |", "|---|---|---|---|"]
    for rule in RULES.values():
        par = ", ".join(f"`{p.name}` (default {p.default})" for p in rule.params) or "-"
        rows.append(
            f"| `{rule.name}` | {par} | {'yes' if rule.needs_labels else 'no'} | "
            f"{rule.summary} |"
        )
    return "\n".join(rows)
