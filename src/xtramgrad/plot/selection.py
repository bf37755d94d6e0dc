"""Which neighbours a selection rule picks around one bin (:func:`plot_selection`).

Each rule's geometry is drawn by one function ``draw_<rule>(ax, center_xy, radius,
rule_params) -> None`` (:data:`RULE_DRAWERS`), which a selection-rule registry can call by
name. ``rule_params`` is the rule's parameter: its value (a float, or None for a rule
without one), or a mapping with the key ``"value"`` or the parameter's name
(``"selection_angle"``, ``"eps"``), and optionally ``"space"``: the names of the two axes
drawn (default ``("x", "y")``), used in the artists' gids (``"xtramgrad-rule-x-below"``)
and labels.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, cast

import numpy as np
import xarray as xr

from .. import kernels
from ..core import resolve_selection
from ..topology import TessellationError, edge_values, table_csr, topology
from ._common import View, field, new_axes, pad_csr, space_names, space_units
from .maps import _polygons, cell_kind

__all__ = [
    "AXIS_COLOURS",
    "RULE_DRAWERS",
    "SIDE_MARKERS",
    "draw_cone",
    "draw_halfspace",
    "draw_labels",
    "draw_quadrants",
    "plot_selection",
]

#: Marker of each (axis, side) in :func:`plot_selection`; axis 0, 1, 2 is x, y, z.
SIDE_MARKERS = {(0, "below"): "<", (0, "above"): ">", (1, "below"): "v", (1, "above"): "^",
                (2, "below"): "s", (2, "above"): "D"}
AXIS_COLOURS = ("tab:blue", "tab:orange", "tab:green")


def _param(rule_params: Any, name: str, default: float | None) -> float | None:
    if isinstance(rule_params, Mapping):
        value = rule_params.get(name, rule_params.get("value", default))
    else:
        value = rule_params
    return default if value is None else float(value)


def _names(rule_params: Any) -> tuple[str, str]:
    if isinstance(rule_params, Mapping) and "space" in rule_params:
        names = [str(s) for s in rule_params["space"]]
        if len(names) < 2:
            raise ValueError(f"rule_params['space']={names!r}; expected two axis names.")
        return names[0], names[1]
    return "x", "y"


def _sectors(ax: Any, center_xy: Any, radius: float, half: float, names: tuple[str, str]) -> None:
    from matplotlib.patches import Wedge

    for j, (angle_below, angle_above) in enumerate(((180.0, 0.0), (270.0, 90.0))):
        for side, angle in (("below", angle_below), ("above", angle_above)):
            w = Wedge(
                (float(center_xy[0]), float(center_xy[1])), radius, angle - half,
                angle + half, facecolor=AXIS_COLOURS[j], alpha=0.10,
                edgecolor=AXIS_COLOURS[j], linewidth=0.8, linestyle="--", zorder=1,
            )
            w.set_gid(f"xtramgrad-rule-{names[j]}-{side}")
            ax.add_patch(w)


def draw_cone(ax: Any, center_xy: Any, radius: float, rule_params: Any) -> None:
    """The four angular sectors of half-angle ``selection_angle * 90`` degrees around
    ``+-x`` and ``+-y`` (default ``selection_angle`` 0.9).

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> draw_cone(ax, (0.0, 0.0), 1.0, 0.7)
    >>> sorted(round(p.theta2 - p.theta1, 6) for p in ax.patches)
    [126.0, 126.0, 126.0, 126.0]
    """
    s = _param(rule_params, "selection_angle", 0.9)
    assert s is not None
    _sectors(ax, center_xy, radius, 90.0 * s, _names(rule_params))


def draw_quadrants(ax: Any, center_xy: Any, radius: float, rule_params: Any) -> None:
    """InferenceMAP's four quadrants (sectors of 90 degrees around ``+-x`` and ``+-y``).

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> draw_quadrants(ax, (0.0, 0.0), 1.0, None)
    >>> sorted(p.get_gid() for p in ax.patches)[:2]
    ['xtramgrad-rule-x-above', 'xtramgrad-rule-x-below']
    """
    _sectors(ax, center_xy, radius, 45.0, _names(rule_params))


def draw_halfspace(ax: Any, center_xy: Any, radius: float, rule_params: Any) -> None:
    """The half-space boundaries through the bin (dashed), and with a margin ``eps > 0``
    the two lines at ``+-eps`` and the band between them, per axis.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> draw_halfspace(ax, (0.0, 0.0), 1.0, {"eps": 0.1})
    >>> sorted(a.get_gid() for a in ax.lines + ax.patches)[:3]
    ['xtramgrad-rule-x-boundary', 'xtramgrad-rule-x-boundary', 'xtramgrad-rule-x-margin']
    """
    e = _param(rule_params, "eps", 0.0) or 0.0
    names = _names(rule_params)
    for j in range(2):
        line = ax.axvline if j == 0 else ax.axhline
        for off in ((-e, e) if e > 0 else (0.0,)):
            ln = line(float(center_xy[j]) + off, color=AXIS_COLOURS[j], linestyle="--",
                      linewidth=1, zorder=1)
            ln.set_gid(f"xtramgrad-rule-{names[j]}-boundary")
        if e > 0:
            span = ax.axvspan if j == 0 else ax.axhspan
            band = span(float(center_xy[j]) - e, float(center_xy[j]) + e,
                        color=AXIS_COLOURS[j], alpha=0.2, zorder=1,
                        label=f"{names[j]} margin (eps={e:g})")
            band.set_gid(f"xtramgrad-rule-{names[j]}-margin")


def draw_labels(ax: Any, center_xy: Any, radius: float, rule_params: Any) -> None:
    """Nothing: with labelled edges, the sides are data, not geometry.

    Examples
    --------
    >>> draw_labels(None, (0.0, 0.0), 1.0, None) is None
    True
    """
    return None


#: The drawing function of each selection rule, by rule name.
RULE_DRAWERS: dict[str, Callable[[Any, Any, float, Any], None]] = {
    "cone": draw_cone,
    "quadrants": draw_quadrants,
    "halfspace": draw_halfspace,
    "labels": draw_labels,
}
_DRAWERS_BY_NAME = {f.__name__: f for f in RULE_DRAWERS.values()}


def _draw_rule(ax: Any, sel: Any, c0: np.ndarray, radius: float, names: list[str]) -> None:
    """The rule's geometry around a 2D bin at ``c0``: the function the selection registry
    names for the rule (``Rule.draw``), else the one of :data:`RULE_DRAWERS`."""
    rule = getattr(sel, "rule", None)
    name = getattr(rule, "draw", None) if rule is not None else None
    draw = _DRAWERS_BY_NAME.get(name) if name else RULE_DRAWERS.get(sel.kind)
    if draw is None:
        return  # a rule without a drawing (labels, or one registered without)
    draw(ax, c0, radius, {"value": sel.value, "space": names[:2]})


def plot_selection(
    ds: xr.Dataset,
    bin: int,
    *,
    selection: str | None = None,
    selection_angle: float | None = None,
    eps: float | None = None,
    variable: Hashable | None = None,
    ax: Any = None,
    cells: str = "auto",
    annotate: bool = True,
    legend: bool = True,
) -> Any:
    """Which neighbours of one bin count below / above along each axis, under a rule.

    The sides are decided by :func:`xtramgrad.kernels.build_stencil`, the function the
    gradient itself uses, so the picture is the computation. Drawn: the cells around the
    bin (as :func:`plot_map` draws them), the rule's geometry (2D: the angular sectors, the
    InferenceMAP quadrants, or the half-space boundaries with their margin band; none for
    labels; see :data:`RULE_DRAWERS`), the bin (a star), and, per neighbour, one marker per
    axis and side it counts for (``<``/``>`` for x below/above, ``v``/``^`` for y,
    squares/diamonds for z), hollow grey circles for neighbours that count for no axis,
    and grey crosses for neighbours without a measurement (with ``variable``: they are
    removed before selection, as in the gradient).

    Parameters
    ----------
    ds : xarray.Dataset
    bin : int
        Position of the bin along ``bin``.
    selection, selection_angle, eps
        The rule, as in :func:`xtramgrad.grad` (default ``selection_angle=0.9``).
    variable : str, optional
        A measurement (one value per bin) whose missing values exclude neighbours.
    ax : matplotlib Axes, optional
    cells : {"auto", "polygons", "grid", "voronoi", "delaunay", "scatter"}
        How the surrounding bins are drawn (see :func:`plot_map`).
    annotate : bool
        Write each neighbour's roles next to it (``x+``, ``y-``, ...).
    legend : bool

    Returns
    -------
    matplotlib.axes.Axes
        Each marker group is a collection labelled ``"x below"``, ``"x above"``,
        ``"y below"``, ..., ``"unused"``, ``"missing"`` (gid ``"xtramgrad-selection"``).
        In 3D the picture is projected on the first two axes and the rule's geometry is
        not drawn.

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import xtramgrad
    >>> ds = xtramgrad.grid((5, 5))
    >>> ax = ds.tram.plot_selection(12, selection_angle=0.5)
    >>> sorted((c.get_label(), len(c.get_offsets())) for c in ax.collections
    ...        if c.get_gid() == "xtramgrad-selection")
    [('x above', 3), ('x below', 3), ('y above', 1), ('y below', 1)]
    """
    topo = topology(ds, labels=selection == "labels")
    centers = np.asarray(topo.center.values, dtype=np.float64)
    n, d = centers.shape
    b = int(bin)
    if not 0 <= b < n:
        raise TessellationError(f"bin={bin}; expected a position in [0, {n - 1}].")
    sel = resolve_selection(d, selection, selection_angle, eps)
    indptr, indices = table_csr(topo)
    table = pad_csr(indptr, indices)
    row = slice(indptr[b], indptr[b + 1])
    labels = None
    if topo.labels is not None:
        labels = edge_values(topo, topo.labels)[row][None, :]
    st = kernels.build_stencil(
        centers, indices[row][None, :], sel, targets=np.array([b]), labels=labels
    )
    valid = np.ones(n, dtype=bool)
    if variable is not None:
        fld = field(ds, variable)
        assert fld is not None
        valid = ~np.isnan(fld.values)
    ok = valid[st.dst]
    ax = new_axes(ax)
    names = space_names(ds)
    plane = [0, 1] if d >= 2 else [0]

    def xy(points: np.ndarray) -> np.ndarray:
        if d == 1:
            return np.column_stack([points[:, 0], np.zeros(len(points))])
        return points[:, plane]

    c0 = xy(centers[b : b + 1])[0]
    nbr_xy = xy(centers[st.dst])
    reach = float(np.max(np.linalg.norm(nbr_xy - c0, axis=1))) if len(st.dst) else 1.0
    radius = 1.25 * reach
    if d == 2:
        kind = cell_kind(ds, cells)
        if kind != "scatter":
            from matplotlib.collections import PolyCollection

            from .geometry import typical_spacing

            # each cell is built from its own neighbours: only the cells in view
            dist = np.linalg.norm(centers - c0, axis=1)
            local = np.flatnonzero(dist <= 2.0 * reach)
            full = View(np.arange(n), [0, 1], centers, "",
                        typical_spacing(centers, table))
            polys = _polygons(ds, kind, full, local)
            pc = PolyCollection(cast(Any, polys.padded()), facecolors="none", edgecolors="0.75",
                                linewidths=0.8, zorder=0)
            pc.set_gid("xtramgrad-cells")
            ax.add_collection(pc)
        _draw_rule(ax, sel, c0, radius, names)
    # neighbour markers
    used = np.zeros(len(st.dst), dtype=bool)
    for j in range(d):
        for side, mask in (("below", st.below[:, j]), ("above", st.above[:, j])):
            pick = mask & ok
            used |= pick
            if not pick.any():
                continue
            coll = ax.scatter(
                nbr_xy[pick, 0], nbr_xy[pick, 1], marker=SIDE_MARKERS[(j, side)],
                s=150 if j == 0 else 70, color=AXIS_COLOURS[j], edgecolors="black",
                linewidths=0.5, zorder=3 + j, label=f"{names[j]} {side}",
            )
            coll.set_gid("xtramgrad-selection")
    for label, pick, style in (
        ("unused", ok & ~used, {"marker": "o", "facecolors": "none", "edgecolors": "0.4"}),
        ("missing", ~ok, {"marker": "x", "color": "0.4"}),
    ):
        if pick.any():
            coll = ax.scatter(nbr_xy[pick, 0], nbr_xy[pick, 1], s=60, zorder=2, label=label,
                              **style)
            coll.set_gid("xtramgrad-selection")
    star = ax.scatter([c0[0]], [c0[1]], marker="*", s=250, color="black", zorder=6,
                      label=f"bin {b}")
    star.set_gid("xtramgrad-bin")
    if annotate:
        for e in range(len(st.dst)):
            roles = [
                f"{names[j]}{'-' if st.below[e, j] else '+'}"
                for j in range(d)
                if ok[e] and (st.below[e, j] or st.above[e, j])
            ]
            text = ", ".join(roles) if ok[e] else "missing"
            ax.annotate(text or "unused", nbr_xy[e], xytext=(6, 6),
                        textcoords="offset points", fontsize=8)
    title = f"bin {b}: {sel.describe()}"
    if not valid[b]:
        title += " (no measurement: no gradient)"
    if d == 3:
        title += f", projected on {names[0]}-{names[1]}"
    ax.set_title(title, fontsize=10)
    ax.set_xlim(c0[0] - radius, c0[0] + radius)
    ax.set_ylim(c0[1] - radius, c0[1] + radius)
    ax.set_aspect("equal")
    ax.set_xlabel(names[0] + space_units(ds))
    if d >= 2:
        ax.set_ylabel(names[1] + space_units(ds))
    else:
        ax.set_yticks([])
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    return ax
