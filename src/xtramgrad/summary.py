"""A summary of a tessellation Dataset, as text and as HTML for notebooks.

``ds.tram`` displays it in Jupyter (``_repr_html_``) and at the prompt (``repr``);
``xtramgrad.summary(ds)`` returns it as an object with the figures as attributes.
Nothing dask-backed is computed unless ``compute=True``.
"""

from __future__ import annotations

import html
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from .topology import (
    BIN,
    CELL_VERTEX,
    EDGE,
    FACE_AREA,
    LABEL,
    NBR,
    SCHEMA_VARIABLES,
    VOLUME,
    topology,
)
from .topology.schema import _is_lazy

__all__ = ["Summary", "Measurement", "summary"]


@dataclass(frozen=True)
class Measurement:
    """One measurement variable: its name, dims, dtype, units and missing count."""

    name: Hashable
    dims: tuple[Hashable, ...]
    dtype: str
    units: str | None
    long_name: str | None
    missing: int | None  # None when not computed (dask-backed)


@dataclass(frozen=True)
class Summary:
    """What a tessellation Dataset holds, cheaply computed.

    Attributes
    ----------
    n_bins, ndim : int
    space : list
        Coordinate labels of the ``space`` dim.
    table_width : int or None
        Size of the ``nbr`` dim (the widest neighbour list) of a padded table; None for a
        ragged one.
    degree : (min, mean, max) or None
        Neighbours per bin; None when the table is dask-backed and ``compute=False``.
    isolated : int or None
        Bins without any neighbour.
    extent : list of (min, max) or None
        Bounding box of the centers, per axis.
    labels, volume : bool
        Whether ``neighbour_label`` / ``volume`` are present.
    layout : str
        ``"padded"`` (``neighbours(bin, nbr)``) or ``"ragged"`` (``neighbours(edge)``).
    n_edges : int or None
        Neighbour entries (the ``edge`` size of a ragged table; for a padded one, counted
        with the degrees).
    face_area, polygons : bool
        Whether ``face_area`` / the cell polygons (``vertex``, ``cell_vertex``) are present.
    measurements : list of Measurement
    chunks : dict
        ``bin`` chunk sizes of dask-backed tessellation variables (empty when eager).
    attrs : dict
        The Dataset's attrs.
    """

    n_bins: int
    ndim: int
    space: list[Hashable]
    table_width: int | None
    degree: tuple[int, float, int] | None
    isolated: int | None
    extent: list[tuple[float, float]] | None
    labels: bool
    volume: bool
    layout: str = "padded"
    n_edges: int | None = None
    face_area: bool = False
    polygons: bool = False
    measurements: list[Measurement] = field(default_factory=list)
    chunks: dict[str, tuple[int, ...]] = field(default_factory=dict)
    attrs: dict[Hashable, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ text
    def _chunk_text(self) -> str:
        if not self.chunks:
            return "in memory (numpy)"
        groups: dict[tuple[int, ...], list[str]] = {}
        for name, sizes in self.chunks.items():
            groups.setdefault(sizes, []).append(name)
        parts = [
            f"{len(sizes)} chunk(s) of {min(sizes):,}-{max(sizes):,} bins: {', '.join(names)}"
            if min(sizes) != max(sizes)
            else f"{len(sizes)} chunk(s) of {sizes[0]:,} bins: {', '.join(names)}"
            for sizes, names in groups.items()
        ]
        return "dask, " + "; ".join(parts)

    def _degree_text(self) -> str:
        if self.degree is None:
            return "not computed (dask-backed; use summary(ds, compute=True))"
        lo, mean, hi = self.degree
        if self.layout == "ragged":
            storage = f"ragged table, {self.n_edges:,} entries"
        else:
            storage = f"table width {self.table_width}"
        text = f"min {lo}, mean {mean:.2f}, max {hi} ({storage})"
        if self.isolated:
            text += f", {self.isolated} isolated bin(s)"
        return text

    def _rows(self) -> list[tuple[str, str]]:
        rows = [
            ("bins", f"{self.n_bins:,}"),
            ("space", f"{self.ndim}D {list(self.space)}"),
            ("neighbours per bin", self._degree_text()),
        ]
        if self.extent is not None:
            rows.append((
                "extent",
                ", ".join(
                    f"{s}: [{lo:.4g}, {hi:.4g}]"
                    for s, (lo, hi) in zip(self.space, self.extent, strict=True)
                ),
            ))
        extras = [
            n for n, ok in (
                ("neighbour_label", self.labels), ("face_area", self.face_area),
                ("volume", self.volume), ("cell polygons", self.polygons),
            ) if ok
        ]
        if extras:
            rows.append(("optional variables", ", ".join(extras)))
        rows.append(("storage", self._chunk_text()))
        if "tessellation" in self.attrs:
            rows.append(("tessellation", str(self.attrs["tessellation"])))
        return rows

    def _measurement_text(self, m: Measurement) -> str:
        dims = ", ".join(str(d) for d in m.dims)
        units = f" [{m.units}]" if m.units else ""
        missing = "" if not m.missing else f", {m.missing:,} missing"
        return f"{m.name}({dims}) {m.dtype}{units}{missing}"

    def __repr__(self) -> str:
        lines = ["<xtramgrad tessellation>"]
        width = max(len(k) for k, _ in self._rows())
        for key, value in self._rows():
            lines.append(f"  {key:<{width}}  {value}")
        if self.measurements:
            lines.append("  measurements:")
            lines.extend(f"    {self._measurement_text(m)}" for m in self.measurements)
        else:
            lines.append("  measurements: none (add one with ds['D'] = ('bin', values))")
        return "\n".join(lines)

    # ------------------------------------------------------------------ html
    def _repr_html_(self) -> str:
        esc = html.escape
        cell = "padding:1px 8px;text-align:left"
        rows = "".join(
            f"<tr><th style='{cell}'>{esc(k)}</th><td style='{cell}'>{esc(v)}</td></tr>"
            for k, v in self._rows()
        )
        if self.measurements:
            items = []
            for m in self.measurements:
                long_name = f" <i>{esc(m.long_name)}</i>" if m.long_name else ""
                units = f" [{esc(m.units)}]" if m.units else ""
                missing = f", {m.missing:,} missing" if m.missing else ""
                dims = esc(", ".join(str(d) for d in m.dims))
                items.append(
                    f"<li><code>{esc(str(m.name))}</code>({dims}) {esc(m.dtype)}"
                    f"{units}{long_name}{esc(missing)}</li>"
                )
            meas = f"<ul style='margin:0'>{''.join(items)}</ul>"
        else:
            meas = "none"
        rows += f"<tr><th style='{cell}'>measurements</th><td style='{cell}'>{meas}</td></tr>"
        return (
            "<div class='xtramgrad-summary'><b>xtramgrad tessellation</b>"
            f"<table style='border-collapse:collapse'>{rows}</table></div>"
        )


def _bin_chunks(da: xr.DataArray) -> tuple[int, ...] | None:
    if da.chunks is None:
        return None
    return tuple(int(c) for c in da.chunks[da.dims.index(BIN)])


def summary(ds: xr.Dataset, compute: bool = False) -> Summary:
    """Summarise a tessellation Dataset: bins, dims, degrees, measurements, chunking.

    Parameters
    ----------
    ds : xarray.Dataset
        A tessellation Dataset (checked cheaply with :func:`xtramgrad.topology.topology`).
    compute : bool
        Compute degree statistics and missing counts of dask-backed variables too (reads
        the neighbour table and measurements chunk by chunk). By default they are skipped.

    Examples
    --------
    >>> import xtramgrad
    >>> ds = xtramgrad.grid((3, 3), D=range(9))
    >>> s = xtramgrad.summary(ds)
    >>> s.n_bins, s.degree
    (9, (3, 4.444444444444445, 8))
    >>> print(s)
    <xtramgrad tessellation>
      bins                9
      space               2D ['x', 'y']
      neighbours per bin  min 3, mean 4.44, max 8 (table width 8)
      extent              x: [0, 2], y: [0, 2]
      optional variables  face_area, volume
      storage             in memory (numpy)
      tessellation        grid
      measurements:
        D(bin) int64
    """
    topo = topology(ds)
    n = topo.n_bins
    table = topo.neighbours
    ragged = topo.layout == "ragged"
    counted = topo.count if ragged else table
    lazy_table = _is_lazy(counted)
    degree: tuple[int, float, int] | None = None
    isolated: int | None = None
    n_edges: int | None = int(table.sizes[EDGE]) if ragged else None
    if not lazy_table or compute:
        deg = topo.count if ragged and topo.count is not None else (table >= 0).sum(NBR)
        if lazy_table:
            deg = deg.compute()
        d = np.asarray(deg.values)
        if d.size:
            degree = (int(d.min()), float(d.mean()), int(d.max()))
            isolated = int((d == 0).sum())
            n_edges = int(d.sum())
    extent = None
    if not _is_lazy(topo.center) or compute:
        c = topo.center
        lo, hi = c.min(BIN), c.max(BIN)
        if _is_lazy(c):
            lo, hi = lo.compute(), hi.compute()
        if n:
            extent = list(zip(lo.values.tolist(), hi.values.tolist(), strict=True))
    measurements = []
    for name, var in ds.data_vars.items():
        if name in SCHEMA_VARIABLES or BIN not in var.dims:
            continue
        missing: int | None = None
        if np.issubdtype(var.dtype, np.floating) and (var.chunks is None or compute):
            missing = int(var.isnull().sum().values)
        measurements.append(Measurement(
            name=name,
            dims=tuple(var.dims),
            dtype=str(var.dtype),
            units=var.attrs.get("units"),
            long_name=var.attrs.get("long_name"),
            missing=missing,
        ))
    chunks: dict[str, tuple[int, ...]] = {}
    for vname, variable in ds.variables.items():
        if BIN in variable.dims:
            sizes = _bin_chunks(ds[vname])
            if sizes is not None:
                chunks[str(vname)] = sizes
    return Summary(
        n_bins=n,
        ndim=topo.ndim,
        space=[s.item() if isinstance(s, np.generic) else s for s in topo.space],
        table_width=None if ragged else int(table.sizes[NBR]),
        degree=degree,
        isolated=isolated,
        extent=extent,
        labels=LABEL in ds.variables,
        volume=VOLUME in ds.variables,
        layout=topo.layout,
        n_edges=n_edges,
        face_area=FACE_AREA in ds.variables,
        polygons=CELL_VERTEX in ds.variables,
        measurements=measurements,
        chunks=chunks,
        attrs=dict(ds.attrs),
    )

