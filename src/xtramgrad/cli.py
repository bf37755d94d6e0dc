"""Command line: ``python -m xtramgrad`` (also installed as the ``xtramgrad`` script).

``xtramgrad grad IN -v D -o OUT.zarr``
    The out-of-core job: open a tessellation Dataset lazily from a zarr store or a netCDF
    file, compute the gradient of one or more measurements chunk by chunk (see
    :mod:`xtramgrad.chunked`) and write it to a zarr store, with a progress bar. Memory is
    bounded by a few chunks per worker thread. ``--scheduler ADDRESS`` runs it on a running
    dask.distributed cluster instead of the local threaded scheduler.

``xtramgrad sort IN -o OUT.zarr``
    Reorder the bins along a space-filling curve (:func:`xtramgrad.sort`, in memory) and
    write them with their plan, ready for ``grad``.

``xtramgrad plan IN.zarr``
    Compute the plan of the neighbour table (:func:`xtramgrad.plan`) once and store it in
    the store's ``neighbours`` attributes, without rewriting the data.

``xtramgrad demo``
    The demo on the sample maps shipped with the package.

Safety: every check of the paths and options runs before the first chunk is read, and a
user mistake is one line ``xtramgrad <command>: error: ...`` with exit status 2. Outputs
are written atomically (:mod:`xtramgrad.io.store`): a killed, interrupted or failed run
leaves OUT as it was. Ctrl-C exits with status 130, SIGTERM with 143.

Examples
--------
>>> import os, tempfile, xtramgrad
>>> from xtramgrad.cli import main
>>> ds = xtramgrad.grid((20, 20), spacing=0.1)
>>> ds["D"] = ds.center.sel(space="x") ** 2
>>> tmp = tempfile.mkdtemp()
>>> ds.chunk({"bin": 100}).to_zarr(os.path.join(tmp, "in.zarr"))  # doctest: +ELLIPSIS
<xarray.backends.zarr.ZarrStore object at ...>
>>> main(["grad", os.path.join(tmp, "in.zarr"), "-v", "D", "-o",
...       os.path.join(tmp, "out.zarr"), "--quiet"])
0
>>> import xarray as xr
>>> out = xr.open_zarr(os.path.join(tmp, "out.zarr"))
>>> out.grad_D.dims, out.grad_D.sizes["bin"]
(('bin', 'space'), 400)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shlex
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, NoReturn, TextIO

__all__ = [
    "DEFAULT_CHUNK",
    "MethodInfo",
    "ProgressBar",
    "build_parser",
    "main",
    "methods",
    "selection_rules",
    "run_grad",
    "run_plan",
    "run_sort",
]

#: Bins per chunk when the input holds all its bins in one chunk (a contiguous netCDF
#: variable, an unchunked store) and ``--chunks`` is not given.
DEFAULT_CHUNK = 262144

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SIGINT = 128 + int(signal.SIGINT)
EXIT_SIGTERM = 128 + int(signal.SIGTERM)

SELECTION_OPTIONS = ("--selection", "--selection-angle", "--eps")


class MethodInfo(NamedTuple):
    """A gradient method offered by ``--method``: a one-line summary and the options it
    takes beyond ``-v`` and ``--na``."""

    summary: str
    options: tuple[str, ...]


def methods() -> dict[str, MethodInfo]:
    """The gradient methods of ``--method`` and the options each takes, from the method
    registry (:data:`xtramgrad.kernels.METHODS`).

    The one place the command line reads them from (the parser's choices and help, the
    option checks).

    Examples
    --------
    >>> {"grad1", "gradn", "lsq", "lsq2", "local"} <= set(methods())
    True
    >>> methods()["gradn"].options
    ()
    >>> methods()["lsq"].options
    ('--power', '--cutoff')
    """
    from .kernels import METHODS

    return {
        name: MethodInfo(
            m.summary,
            (SELECTION_OPTIONS if m.uses_selection else ())
            + tuple(_flag(p.name) for p in m.options),
        )
        for name, m in METHODS.items()
    }


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def method_params() -> dict[str, Any]:
    """Every option of the registered methods, by name (the parser adds one flag each)."""
    from .kernels import METHODS

    out: dict[str, Any] = {}
    for m in METHODS.values():
        for p in m.options:
            out.setdefault(p.name, p)
    return out


def _cli_value(text: str) -> Any:
    """A method option's value from the command line: a number where it is one."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def selection_rules() -> tuple[str, ...]:
    """The neighbour-selection rules of ``--selection`` (read in one place, like
    :func:`methods`).

    Examples
    --------
    >>> "quadrants" in selection_rules()
    True
    """
    try:  # the rule registry of xtramgrad.selection, where it exists
        from .selection import RULES  # type: ignore[import-not-found,unused-ignore]

        return tuple(RULES)
    except ImportError:
        from .kernels import SELECTION_KINDS  # type: ignore[attr-defined,unused-ignore]

        return tuple(SELECTION_KINDS)


class UsageError(Exception):
    """A user mistake: reported as one line, exit status 2."""


class RunFailed(Exception):
    """A run that failed for a reason outside the user's input (a lost scheduler, a
    full disk): reported as one line, exit status 1."""


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM."""


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """One-line usage errors: ``xtramgrad grad: error: ... (see xtramgrad grad --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common_output(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT.zarr",
        help="output zarr store; written into a temporary sibling and moved into place "
        "only when complete",
    )
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace OUT.zarr if it is a zarr store (only once the new one is complete; "
        "a directory that is not a zarr store is never replaced)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``xtramgrad`` argument parser (subcommands ``grad``, ``sort``, ``plan``, ``demo``)."""
    parser = _Parser(
        prog="xtramgrad",
        description="Spatial gradients of measurements on tessellations (TRamWAy's methods "
        "on xarray and dask).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    table = methods()
    g = sub.add_parser(
        "grad",
        help="gradient of measurements, chunk by chunk, written to a zarr store",
        description="Open a tessellation Dataset lazily (zarr store or netCDF file), "
        "compute the gradient of the given measurement(s) chunk by chunk and write it to a "
        "zarr store, atomically.",
        epilog="methods: " + "; ".join(
            f"{name}: {info.summary} (options: {', '.join(info.options) or 'none'})"
            for name, info in table.items()
        ),
    )
    g.add_argument("input", metavar="IN", help="input zarr store or netCDF file")
    g.add_argument(
        "-v", "--variable", dest="variables", action="append", required=True,
        metavar="NAME", help="measurement to differentiate (repeat for several)",
    )
    sel = g.add_mutually_exclusive_group()
    sel.add_argument(
        "--selection-angle", type=float, metavar="S",
        help="angular sectors of top angle S*pi, S in [0.5, 1) (default 0.9)",
    )
    sel.add_argument(
        "--eps", type=float, metavar="E", help="half-spaces with exclusion margin E >= 0",
    )
    g.add_argument(
        "--selection", choices=selection_rules(),
        help="neighbour selection rule (quadrants and labels take no value)",
    )
    g.add_argument(
        "--method", default="grad1", choices=list(table), help="gradient method (see below)",
    )
    from .kernels import METHODS

    for name, param in method_params().items():
        defaults = {
            m: p.default for m, meth in METHODS.items() for p in meth.options if p.name == name
        }
        said = ", ".join(f"{m}: {v}" for m, v in defaults.items())
        g.add_argument(
            _flag(name), dest=f"option_{name}", type=_cli_value, default=None,
            metavar=name.upper(), help=f"{param.doc} (default {said})",
        )
    g.add_argument(
        "--na", type=float, default=math.nan,
        help="value of a component the data do not determine (default NaN)",
    )
    g.add_argument(
        "--chunks", type=int, metavar="N",
        help=f"bins per chunk (default: the input's chunks along 'bin'; {DEFAULT_CHUNK} "
        "if it holds all bins in one chunk)",
    )
    g.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="address of a running dask.distributed scheduler, e.g. tcp://10.0.0.1:8786",
    )
    g.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS",
        help="how long to try reaching the scheduler (default 10)",
    )
    _common_output(g)
    g.add_argument("--quiet", action="store_true", help="no progress bar, hints nor summary")

    s = sub.add_parser(
        "sort",
        help="reorder the bins along a space-filling curve (in memory), with their plan",
        description="Reorder the bins of a tessellation along a space-filling curve "
        "(xtramgrad.sort) so that each chunk neighbours few others, and write them with "
        "their plan to a zarr store, atomically. IN is loaded into memory: it needs about "
        "the size of IN's variables in RAM. The original positions are kept in the "
        "'bin_id' coordinate (xtramgrad.unsort maps results back).",
    )
    s.add_argument("input", metavar="IN", help="input zarr store or netCDF file")
    s.add_argument(
        "--curve", choices=("hilbert", "morton"), default="hilbert",
        help="space-filling curve (default hilbert)",
    )
    s.add_argument(
        "--chunks", type=int, metavar="N",
        help=f"bins per chunk of the output and block of its plan (default: the input's "
        f"chunks along 'bin', or {DEFAULT_CHUNK})",
    )
    _common_output(s)
    s.add_argument("--quiet", action="store_true", help="no progress bar nor summary")

    p = sub.add_parser(
        "plan",
        help="store the plan of a zarr store's neighbour table, so grad skips that pass",
        description="Read the neighbour table of a zarr store once, chunk by chunk, and "
        "store for each block of bins the blocks its neighbours fall into "
        "(xtramgrad.plan) in the attributes of its 'neighbours' variable. The data are not "
        "rewritten; the next 'xtramgrad grad' on the store reads each chunk's reach there "
        "instead of reading the table (a planning pass, or a sample and reads on demand).",
    )
    p.add_argument("input", metavar="IN.zarr", help="zarr store (changed in place: attributes)")
    p.add_argument(
        "--block", type=int, metavar="N",
        help="bins per plan block (default: the table's chunks along 'bin')",
    )
    p.add_argument(
        "--halo", type=int, metavar="H",
        help="declare, without reading the table, that every neighbour j of bin i has "
        "|j - i| <= H (lattices in C order: one row stride plus one)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar nor summary")

    d = sub.add_parser("demo", help="gradient maps of the shipped TRamWAy samples")
    d.add_argument("names", nargs="*", help="sample names (default: all)")
    return parser


# --------------------------------------------------------------------------- output


@dataclass
class _State:
    """What a command changed so far, for the last line after an interruption."""

    command: str
    unchanged: str = ""
    finished: str = ""
    started: bool = False
    done: bool = False
    pending: Any = None  # the store being written, once there is one

    @property
    def complete(self) -> bool:
        return self.done or bool(self.pending is not None and self.pending.committed)

    @property
    def prog(self) -> str:
        return f"xtramgrad {self.command}"


def _say(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


def _note(state: _State, message: str) -> None:
    print(f"{state.prog}: {message}", file=sys.stderr, flush=True)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _si(x: float) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g}{suffix}"
    return f"{x:.3g}"


def _bytes(n: float) -> str:
    """A size in bytes, e.g. ``1.2 GB``."""
    for factor, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= factor:
            return f"{n / factor:.2g} {unit}"
    return f"{int(n)} B"


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """A single-line progress bar: percent, chunks done / total, rate, time left.

    Redrawn in place (carriage return) at most once per ``interval`` seconds, and once
    more, with the elapsed time, by :meth:`close`, which ends the line.

    Parameters
    ----------
    total : int
        Number of chunks (or tasks).
    weight : float
        Total work (e.g. elements to write); each chunk advances by its own weight.
    bins : int
        Number of bins, for the rate in bins per second.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> bar = ProgressBar(4, 4.0, 1000, stream=out, clock=iter([0.0, 1.0, 2.0]).__next__)
    >>> bar.advance(1.0)
    >>> bar.render(1.0)
    ' 25% [#####---------------] 1/4 chunks | 250 bins/s | 00:03 left'
    """

    def __init__(
        self,
        total: int,
        weight: float,
        bins: int,
        *,
        label: str = "",
        unit: str = "chunks",
        stream: TextIO | None = None,
        enabled: bool = True,
        interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = int(total)
        self.weight = float(weight)
        self.bins = int(bins)
        self.label = label
        self.unit = unit
        self.stream = stream
        self.enabled = enabled
        self.interval = interval
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.done_weight = 0.0
        self._last = -math.inf
        self._width = 0
        self._drawn = False

    def reset(self, total: int, weight: float) -> None:
        """Set the totals once known (e.g. from the graph, when the computation starts)."""
        self.total, self.weight = int(total), float(weight)

    def show(self) -> None:
        """Draw the current state now (e.g. 0% when the computation starts)."""
        if self.enabled:
            self._last = self.clock()
            self._draw(self.render(self._last))

    def advance(self, weight: float = 1.0, chunks: int = 1) -> None:
        """Count finished chunks; redraw if the last drawing is old enough."""
        self.done += chunks
        self.done_weight += weight
        if self.enabled:
            now = self.clock()
            if now - self._last >= self.interval:
                self._last = now
                self._draw(self.render(now))

    def render(self, now: float | None = None, final: bool = False) -> str:
        """The bar's text at time ``now``."""
        now = self.clock() if now is None else now
        frac = 1.0 if self.weight <= 0 else min(self.done_weight / self.weight, 1.0)
        if final and self.done >= self.total:
            frac = 1.0
        pct = 100 if final and frac >= 1.0 else min(int(100 * frac), 99)
        filled = int(20 * frac)
        elapsed = max(now - self.start, 0.0)
        rate = f"{_si(frac * self.bins / elapsed)} bins/s" if elapsed > 0 and frac > 0 else (
            "- bins/s"
        )
        if final:
            tail = f"{elapsed:.1f} s"
        elif frac > 0:
            tail = f"{_clock(elapsed * (1 - frac) / frac)} left"
        else:
            tail = "--:-- left"
        return (
            f"{self.label}{pct:3d}% [{'#' * filled}{'-' * (20 - filled)}] "
            f"{self.done}/{self.total} {self.unit} | {rate} | {tail}"
        )

    def _draw(self, text: str) -> None:
        stream = self.stream or sys.stderr
        pad = " " * max(self._width - len(text), 0)
        stream.write("\r" + text + pad)
        stream.flush()
        self._width = len(text)
        self._drawn = True

    def close(self, success: bool = True) -> None:
        """Draw the final state (on success) and end the line."""
        if not self.enabled:
            return
        if success:
            self._draw(self.render(final=True))
        if self._drawn:
            stream = self.stream or sys.stderr
            stream.write("\n")
            stream.flush()
            self._drawn = False


def _dask_progress(bar: ProgressBar, weights: dict[Any, int] | None) -> Any:
    """A dask callback (local schedulers) advancing ``bar`` as tasks finish: the tasks in
    ``weights`` by their weight, or every task by 1 when ``weights`` is None."""
    from dask.callbacks import Callback

    class _Callback(Callback):  # type: ignore[misc]
        def _start_state(self, dsk: Any, state: Any) -> None:
            if weights is None:
                bar.reset(len(dsk), len(dsk))
            bar.show()

        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, id: Any) -> None:
            if weights is None:
                bar.advance(1.0)
            elif key in weights:
                bar.advance(float(weights[key]))

    return _Callback()


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class _Input:
    path: str
    kind: str  # "zarr", "netcdf4" (HDF5-based) or "netcdf3"

    @property
    def label(self) -> str:
        return "zarr store" if self.kind == "zarr" else "netCDF file"


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf", ".h5", ".hdf5")


def _check_input(path: str) -> _Input:
    """What the input is (zarr store or netCDF file), from its metadata files or magic."""
    from .io.store import zarr_format, zarr_node_type

    p = Path(path)
    if not p.exists():
        raise UsageError(
            f"input {path} does not exist; pass a zarr store (a directory written by "
            "Dataset.to_zarr) or a netCDF file."
        )
    if p.is_dir():
        if zarr_format(p) is None:
            raise UsageError(
                f"input {path} is a directory but not a zarr store (no zarr.json, .zgroup "
                "nor .zarray in it); pass a store written by Dataset.to_zarr or a netCDF file."
            )
        if zarr_node_type(p) == "array":
            raise UsageError(
                f"input {path} is a single zarr array, not a Dataset; pass the store of a "
                "tessellation Dataset (written by Dataset.to_zarr)."
            )
        if not os.access(p, os.R_OK | os.X_OK):
            raise UsageError(f"cannot read input {path}: permission denied.")
        return _Input(path, "zarr")
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except OSError as err:
        raise UsageError(f"cannot read input {path}: {err.strerror or err}.") from err
    if head.startswith(_HDF5_MAGIC):
        return _Input(path, "netcdf4")
    if head[:3] == b"CDF":
        return _Input(path, "netcdf3")
    if p.suffix.lower() == ".rwa":
        raise UsageError(
            f"input {path} is a TRamWAy analysis file; convert it first, e.g. in Python: "
            "xtramgrad.from_tramway(path).to_zarr('map.zarr')."
        )
    if p.suffix.lower() in _NETCDF_SUFFIXES:
        raise UsageError(f"input {path} is not a valid netCDF file (unknown file signature).")
    raise UsageError(
        f"input {path} is a file that is neither netCDF nor a zarr store (a directory); "
        "pass a store written by Dataset.to_zarr or a netCDF file."
    )


def _importable(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _netcdf_engine(source: _Input) -> str:
    from .errors import require

    if source.kind == "netcdf3":
        return "scipy"
    if _importable("h5netcdf"):
        return "h5netcdf"
    if _importable("netCDF4"):
        return "netcdf4"
    require("h5netcdf", "io", "reading netCDF-4 input")
    return "h5netcdf"  # pragma: no cover - require raised


def _open(source: _Input) -> Any:
    """Open the input lazily: metadata only, one independent read task per chunk."""
    import xarray as xr

    from .errors import MissingExtraError, require

    # inline_array: every chunk read is its own root task, so dask streams through the
    # chunks instead of reading a whole variable first (see xtramgrad.chunked)
    if source.kind == "zarr":
        require("zarr", "io", "reading zarr stores")
        opener: Callable[[], Any] = lambda: xr.open_dataset(  # noqa: E731
            source.path, engine="zarr", chunks={}, inline_array=True
        )
    else:
        engine = _netcdf_engine(source)
        opener = lambda: xr.open_dataset(  # noqa: E731
            source.path, engine=engine, chunks={}, inline_array=True
        )
    try:
        return opener()
    except MissingExtraError:
        raise
    except ImportError as err:
        raise MissingExtraError(
            f"reading input {source.path} needs a module that is not installed "
            f"({_one_line(err)}); install the io extra: pip install -e \".[io]\""
        ) from err
    except Exception as err:
        raise UsageError(
            f"cannot read input {source.path} as a {source.label}: "
            f"{type(err).__name__}: {_one_line(err)}"
        ) from err


def _positive(option: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{option} {value}: expected a positive number of bins.")


def _bin_chunks(ds: Any) -> tuple[int, ...] | None:
    """The chunks along ``bin`` of the neighbour table (None if it is in memory)."""
    table = ds["neighbours"]
    if table.chunks is None:
        return None
    return tuple(int(c) for c in table.chunks[table.get_axis_num("bin")])


def _default_chunking(args: argparse.Namespace, ds: Any, source: _Input) -> Any:
    if args.chunks is not None:
        return ds.chunk({"bin": args.chunks})
    n = int(ds.sizes["bin"])
    single = all(
        var.chunks is None or len(var.chunks[var.get_axis_num("bin")]) == 1
        for var in ds.variables.values()
        if "bin" in var.dims
    )
    if single and n > DEFAULT_CHUNK:
        _say(
            args,
            f"{source.path} holds its {n} bins in one chunk; computing in chunks of "
            f"{DEFAULT_CHUNK} bins (set --chunks N to choose)",
        )
        return ds.chunk({"bin": DEFAULT_CHUNK})
    return ds


# --------------------------------------------------------------------------- locality


def _plan_blocks(attrs: dict[str, Any]) -> tuple[float, int, int] | None:
    """(mean blocks referenced per block, number of blocks, block size) of a stored plan."""
    import numpy as np

    from .chunked import PLAN_ATTRS

    if not all(a in attrs for a in PLAN_ATTRS):
        return None
    try:
        indptr = np.asarray(attrs[PLAN_ATTRS[2]], dtype=np.int64).reshape(-1)
        block = int(np.asarray(attrs[PLAN_ATTRS[0]]).reshape(()))
    except (TypeError, ValueError):
        return None
    counts = np.diff(indptr)
    if counts.size == 0:
        return None
    return float(counts.mean()), int(counts.size), block


def _sorted_name(path: str) -> str:
    p = Path(path.rstrip("/\\") or path)
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    return str(p.with_name(f"{stem}-sorted.zarr"))


def order_hint(ds: Any, source: str) -> str | None:
    """A hint with the command to sort the bins, if the plan shows them poorly ordered.

    Bins sorted along a space-filling curve (or a lattice in C order) have, for each block
    of consecutive bins, neighbours in about ``3**d`` blocks at most (itself and the
    adjacent ones); the hint is given above twice that.
    """
    stats = _plan_blocks(dict(ds["neighbours"].attrs))
    if stats is None:
        return None
    mean, n_blocks, block = stats
    d = int(ds.sizes.get("space", 2))
    if mean <= 2 * 3**d:
        return None
    out = _sorted_name(source)
    return (
        f"hint: the bins of {source} are poorly ordered: the neighbours of each block of "
        f"{block} bins fall in {mean:.0f} of its {n_blocks} blocks on average (sorted bins "
        f"need about {3**d}), so every chunk reads many others. Sort them once (in memory, "
        f"about {_bytes(ds.nbytes)}): xtramgrad sort {shlex.quote(source)} -o "
        f"{shlex.quote(out)} and run grad on {shlex.quote(out)}"
    )


def _ensure_plan(args: argparse.Namespace, ds: Any, source: _Input, client: Any) -> Any:
    from . import chunked

    attrs = ds["neighbours"].attrs
    lazy = ds["neighbours"].chunks is not None
    declared = chunked.HALO_ATTR in attrs or all(a in attrs for a in chunked.PLAN_ATTRS)
    if not lazy or declared:
        return ds
    how = (
        f"run `xtramgrad plan {shlex.quote(source.path)}` once to store it"
        if source.kind == "zarr"
        else f"`xtramgrad sort {shlex.quote(source.path)} -o OUT.zarr` writes a store with it"
    )
    _say(
        args,
        f"planning: reading the neighbour table of {source.path} once, chunk by chunk "
        f"(the store has no plan; {how} and skip this pass)",
    )
    bar = ProgressBar(0, 0, int(ds.sizes["bin"]), label="planning ", unit="tasks",
                      enabled=client is None and not args.quiet)
    ok = False
    try:
        with _dask_progress(bar, None):
            planned = chunked.plan(ds)
        ok = True
    finally:
        bar.close(ok)
    return planned


# --------------------------------------------------------------------------- running


@contextlib.contextmanager
def _signals() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the main thread (SIGINT: KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[Any]:
    """A client of the scheduler at ``--scheduler`` (None without it)."""
    if not args.scheduler:
        yield None
        return
    import logging

    from .errors import require

    distributed = require("distributed", "distributed", "--scheduler (a dask cluster)")
    # the client logs connection failures with tracebacks; the CLI reports them in one line
    names = ["distributed"] + [
        n for n in list(logging.root.manager.loggerDict) if n.startswith("distributed.")
    ]
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.CRITICAL)
    try:
        try:
            client = distributed.Client(args.scheduler, timeout=args.timeout)
        except Exception as err:
            raise UsageError(
                f"cannot reach the dask scheduler at --scheduler {args.scheduler} within "
                f"{args.timeout:g} s ({type(err).__name__}: {_one_line(err)}); check the "
                "address (e.g. tcp://host:8786) and that a scheduler runs there (`dask "
                "scheduler`), or drop --scheduler to run on this machine."
            ) from err
        try:
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.close(timeout=args.timeout)
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def _write(
    args: argparse.Namespace, pending: Any, client: Any, bins: int, label: str = ""
) -> None:
    """Compute the chunks of a pending store with a progress bar, then commit it; abort it
    on any failure or interruption."""
    bar = ProgressBar(
        pending.n_chunks, sum(pending.sizes.values()), bins, label=label,
        enabled=not args.quiet,
    )
    ok = False
    try:
        if client is None:
            with _dask_progress(bar, pending.sizes):
                pending.compute()
        else:
            _write_distributed(client, pending, bar)
        ok = True
    finally:
        bar.close(ok)


def _write_distributed(client: Any, pending: Any, bar: ProgressBar) -> None:
    from concurrent.futures import CancelledError

    from distributed import as_completed, futures_of

    futures: list[Any] = []
    try:
        futures = futures_of(client.persist(pending.writes))
        bar.show()
        for future in as_completed(futures):
            if future.status != "finished":
                try:
                    future.result()  # raises the task's error
                except CancelledError as err:
                    reason = str(err).split("\n")[0]
                    raise RunFailed(
                        f"the dask cluster at {client.scheduler.address} dropped the "
                        f"computation ({type(err).__name__}: {reason}); check that its "
                        "scheduler and workers are still running, then run again"
                    ) from err
                raise RunFailed(f"a task ended as {future.status!r} on the dask cluster")
            bar.advance(float(pending.sizes.get(future.key, 0)))
        pending.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel(futures)
        pending.abort()
        raise


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The method options given on the command line (``--power 1`` -> ``{"power": 1}``)."""
    return {
        name: getattr(args, f"option_{name}")
        for name in method_params()
        if getattr(args, f"option_{name}", None) is not None
    }


def _check_grad_options(args: argparse.Namespace, ds: Any, variables: list[str]) -> None:
    """Every option check of ``grad``, from the metadata alone (nothing is read)."""
    from .core import _field, resolve_request, resolve_selection
    from .topology import topology

    info = methods()[args.method]
    given = {
        "--selection": args.selection,
        "--selection-angle": args.selection_angle,
        "--eps": args.eps,
        **{_flag(name): value for name, value in method_options(args).items()},
    }
    bad = [opt for opt, value in given.items() if value is not None and opt not in info.options]
    if bad:
        raise UsageError(
            f"--method {args.method} takes no {' nor '.join(bad)} (its options: "
            f"{', '.join(info.options) or 'none beyond -v and --na'}); drop "
            f"{' and '.join(bad)}."
        )
    topo = topology(ds, labels=args.selection == "labels")
    try:
        if any(opt in info.options for opt in SELECTION_OPTIONS):
            resolve_selection(topo.ndim, args.selection, args.selection_angle, args.eps)
        resolve_request(topo.ndim, args.method, args.selection, args.selection_angle,
                        args.eps, args.na, method_options(args))
    except ValueError as err:  # TessellationError or ValueError: a bad option
        shown = " ".join(f"{opt} {v}" for opt, v in given.items() if v is not None)
        raise UsageError(f"{shown}: {_one_line(err)}" if shown else _one_line(err)) from err
    for name in variables:
        _field(ds, name)


def _start(args: argparse.Namespace, state: _State, source: _Input) -> Path:
    """Output checks, leftovers of earlier runs and extras, before anything is read."""
    from .errors import require
    from .io.store import check_output, clean_leftovers

    target = check_output(
        args.output, overwrite=args.overwrite, inputs=[source.path], option="--overwrite"
    )
    require("zarr", "io", "writing zarr stores")
    state.unchanged = f"nothing was written to {args.output}"
    state.finished = f"{args.output} was already complete"
    for note in clean_leftovers(target):
        _note(state, note)
    return target


def run_grad(args: argparse.Namespace, state: _State | None = None) -> int:
    """The ``grad`` subcommand."""
    from . import __version__
    from .core import grad
    from .io.store import prepare_zarr

    state = state or _State("grad")
    start = time.perf_counter()
    _positive("--chunks", args.chunks)
    if not args.timeout > 0:
        raise UsageError(f"--timeout {args.timeout}: expected a positive number of seconds.")
    variables = list(dict.fromkeys(args.variables))
    source = _check_input(args.input)
    target = _start(args, state, source)
    if args.scheduler:
        from .errors import require

        require("distributed", "distributed", "--scheduler (a dask cluster)")
    ds = _open(source)
    _check_grad_options(args, ds, variables)
    ds = _default_chunking(args, ds, source)
    with _cluster(args) as client:
        ds = _ensure_plan(args, ds, source, client)
        hint = order_hint(ds, args.input)
        if hint:
            _say(args, hint)
        try:  # builds the graph only; its checks are about the options or the data
            result = grad(
                ds,
                variables,
                method=args.method,
                selection=args.selection,
                selection_angle=args.selection_angle,
                eps=args.eps,
                na=args.na,
                **method_options(args),
            )
        except ValueError as err:
            raise UsageError(_one_line(err)) from err
        for var in result.variables.values():
            var.encoding = {}
        result.attrs["source"] = os.path.abspath(args.input)
        result.attrs["history"] = f"xtramgrad grad (xtramgrad {__version__})"
        state.started = True
        pending = state.pending = prepare_zarr(
            result, target, overwrite=args.overwrite, inputs=[source.path],
            option="--overwrite", notify=lambda m: _note(state, m),
        )
        n_tasks = len(set().union(*(w.__dask_graph__().keys() for w in pending.writes)))
        first = result[f"grad_{variables[0]}"]
        n_chunks = len(first.chunks[first.get_axis_num("bin")]) if first.chunks else 1
        _say(
            args,
            f"gradient of {', '.join(variables)} on {ds.sizes['bin']} bins in {n_chunks} "
            f"chunks along 'bin': {pending.n_chunks} chunks to write, {n_tasks} tasks"
            + (f" on {args.scheduler}" if args.scheduler else ""),
        )
        _write(args, pending, client, int(ds.sizes["bin"]))
    state.done = True
    _say(args, f"wrote {args.output} in {time.perf_counter() - start:.1f} s")
    return 0


def run_sort(args: argparse.Namespace, state: _State | None = None) -> int:
    """The ``sort`` subcommand: reorder in memory, write with the plan, atomically."""
    from .chunked import plan
    from .io.store import prepare_zarr
    from .topology import sort, topology

    state = state or _State("sort")
    start = time.perf_counter()
    _positive("--chunks", args.chunks)
    source = _check_input(args.input)
    target = _start(args, state, source)
    ds = _open(source)
    topology(ds)
    n = int(ds.sizes["bin"])
    chunks = _bin_chunks(ds)
    block = args.chunks or (chunks[0] if chunks and len(chunks) > 1 else min(n, DEFAULT_CHUNK))
    block = max(1, min(block, max(n, 1)))
    _say(args, f"sorting the {n} bins of {source.path} along a {args.curve} curve, in memory "
         f"(about {_bytes(ds.nbytes)})")
    bar = ProgressBar(0, 0, n, label="reading ", unit="tasks", enabled=not args.quiet)
    ok = False
    try:
        with _dask_progress(bar, None):
            ds = ds.load()
        ok = True
    finally:
        bar.close(ok)
    before = _plan_blocks(dict(plan(ds, block=block)["neighbours"].attrs))
    planned = plan(sort(ds, curve=args.curve), block=block)
    after = _plan_blocks(dict(planned["neighbours"].attrs))
    for var in planned.variables.values():
        var.encoding = {}
    out = planned.chunk({"bin": block})
    state.started = True
    pending = state.pending = prepare_zarr(
        out, target, overwrite=args.overwrite, inputs=[source.path], option="--overwrite",
        notify=lambda m: _note(state, m),
    )
    _write(args, pending, None, n, label="writing ")
    state.done = True
    if before is not None and after is not None:
        _say(
            args,
            f"each block of {block} bins now has neighbours in {after[0]:.1f} blocks on "
            f"average ({before[0]:.1f} before); the plan is stored with the data",
        )
    _say(args, f"wrote {args.output} in {time.perf_counter() - start:.1f} s; next: "
         f"xtramgrad grad {shlex.quote(args.output)} -v NAME -o OUT.zarr")
    return 0


def _store_plan_attrs(path: str, attrs: dict[str, Any]) -> None:
    """Replace the plan attributes of ``neighbours`` in a zarr store, data untouched."""
    import json

    import zarr

    from .chunked import HALO_ATTR, PLAN_ATTRS
    from .io.store import deferred_signals

    keys = (*PLAN_ATTRS, HALO_ATTR)
    group = zarr.open_group(path, mode="r+")
    table = group["neighbours"]
    new = {k: v for k, v in table.attrs.asdict().items() if k not in keys}
    new.update({k: attrs[k] for k in keys if k in attrs})
    root = Path(path)
    consolidated = (root / ".zmetadata").is_file()
    if (root / "zarr.json").is_file():
        meta = json.loads((root / "zarr.json").read_text())
        consolidated = consolidated or bool(meta.get("consolidated_metadata"))
    with deferred_signals():
        table.attrs.put(new)
        if consolidated:
            zarr.consolidate_metadata(path)


def run_plan(args: argparse.Namespace, state: _State | None = None) -> int:
    """The ``plan`` subcommand: store the plan in the store's attributes."""
    from .chunked import plan
    from .errors import require
    from .topology import topology

    state = state or _State("plan")
    start = time.perf_counter()
    _positive("--block", args.block)
    if args.halo is not None and args.halo < 0:
        raise UsageError(f"--halo {args.halo}: expected a number of bins >= 0.")
    if args.halo is not None and args.block is not None:
        raise UsageError("--halo declares a band and takes no --block; pass only one of them.")
    source = _check_input(args.input)
    if source.kind != "zarr":
        raise UsageError(
            "xtramgrad plan stores the plan in the attributes of a zarr store and cannot "
            f"edit the netCDF file {source.path}; write a zarr store with its plan instead: "
            f"xtramgrad sort {shlex.quote(source.path)} -o "
            f"{shlex.quote(_sorted_name(source.path))}"
        )
    require("zarr", "io", "reading zarr stores")
    node = Path(source.path) / "neighbours"
    for item in (Path(source.path), node):
        if item.exists() and not os.access(item, os.W_OK | os.X_OK):
            raise UsageError(
                f"cannot store the plan in {source.path}: no permission to write in {item}."
            )
    ds = _open(source)
    topology(ds)
    state.unchanged = f"{args.input} was not changed"
    state.finished = f"the plan was already stored in {args.input}"
    n = int(ds.sizes["bin"])
    if args.halo is not None:
        planned = plan(ds, halo=args.halo)
    else:
        _say(args, f"planning: reading the neighbour table of {source.path} once, chunk by "
             "chunk")
        bar = ProgressBar(0, 0, n, label="planning ", unit="tasks", enabled=not args.quiet)
        ok = False
        try:
            with _dask_progress(bar, None):
                planned = plan(ds, block=args.block)
            ok = True
        finally:
            bar.close(ok)
    state.started = True
    _store_plan_attrs(source.path, dict(planned["neighbours"].attrs))
    state.done = True
    stats = _plan_blocks(dict(planned["neighbours"].attrs))
    if stats is None:
        what = f"a band of {args.halo} bins"
    else:
        what = (f"{stats[1]} blocks of {stats[2]} bins, whose neighbours fall in "
                f"{stats[0]:.1f} blocks on average")
    _say(
        args,
        f"stored the plan of {source.path} ({what}) in the attributes of its 'neighbours' "
        f"variable in {time.perf_counter() - start:.1f} s; the data were not rewritten, and "
        "xtramgrad grad now reads each chunk's reach there instead of reading the table",
    )
    hint = order_hint(planned, source.path)
    if hint:
        _say(args, hint)
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace, _State], int]] = {
    "grad": run_grad,
    "sort": run_sort,
    "plan": run_plan,
}


def _stopped(state: _State, how: str) -> None:
    what = state.finished if state.complete else state.unchanged
    print(f"{state.prog}: {how}; {what or 'nothing was written'}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m xtramgrad`` and of the ``xtramgrad`` script."""
    from .errors import MissingExtraError, TessellationError
    from .io.store import OutputPathError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from xtramgrad.demo import main as demo_main

        return int(demo_main(args.names or None))
    state = _State(args.command)
    try:
        with _signals(), warnings.catch_warnings():
            # zarr 3 warns about every fixed-width string coordinate and consolidated metadata
            warnings.filterwarnings("ignore", message=".*Zarr V3 specification.*")
            warnings.filterwarnings("ignore", message="Consolidated metadata.*")
            return _COMMANDS[args.command](args, state)
    except KeyboardInterrupt:
        _stopped(state, "interrupted (SIGINT)")
        return EXIT_SIGINT
    except Terminated:
        _stopped(state, "terminated (SIGTERM)")
        return EXIT_SIGTERM
    except (UsageError, OutputPathError, TessellationError, MissingExtraError) as err:
        tail = f"; {state.unchanged}" if state.started and state.unchanged else ""
        print(f"{state.prog}: error: {_one_line(err)}{tail}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except (RunFailed, OSError) as err:
        tail = f"; {state.unchanged}" if state.unchanged else ""
        print(f"{state.prog}: error: {_one_line(err)}{tail}", file=sys.stderr, flush=True)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
