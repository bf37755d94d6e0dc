"""Command line: ``python -m xtramgrad`` (also installed as the ``xtramgrad`` script).

``xtramgrad grad IN.zarr -v D -o OUT.zarr``
    The out-of-core job: open a tessellation Dataset from a zarr store lazily, compute the
    gradient of one or more measurements chunk by chunk (see :mod:`xtramgrad.chunked`), and
    write it to another zarr store, with a progress bar. Memory is bounded by a few chunks
    per worker thread. ``--scheduler ADDRESS`` runs it on a running dask.distributed
    cluster instead of the local threaded scheduler.

``xtramgrad demo``
    The demo on the sample maps shipped with the package.

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
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "build_parser", "run_grad"]


def build_parser() -> argparse.ArgumentParser:
    """The ``xtramgrad`` argument parser (subcommands ``grad`` and ``demo``)."""
    from .core import METHODS
    from .kernels import SELECTION_KINDS

    parser = argparse.ArgumentParser(
        prog="xtramgrad",
        description="Spatial gradients of measurements on tessellations (TRamWAy's methods "
        "on xarray and dask).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    g = sub.add_parser(
        "grad",
        help="gradient of measurements in a zarr store, chunk by chunk, written to zarr",
        description="Open a tessellation Dataset from a zarr store lazily, compute the "
        "gradient of the given measurement(s) chunk by chunk and write it to a zarr store.",
    )
    g.add_argument("input", metavar="IN.zarr", help="input zarr store (tessellation Dataset)")
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
        "--selection", choices=SELECTION_KINDS,
        help="neighbour selection rule (quadrants and labels take no value)",
    )
    g.add_argument("--method", default="grad1", choices=METHODS, help="gradient method")
    g.add_argument(
        "--na", type=float, default=math.nan,
        help="value of a component with no neighbour on either side (default NaN)",
    )
    g.add_argument(
        "--chunks", type=int, metavar="N",
        help="bins per chunk (default: the store's chunks along 'bin')",
    )
    g.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="address of a running dask.distributed scheduler, e.g. tcp://10.0.0.1:8786",
    )
    g.add_argument("-o", "--output", required=True, metavar="OUT.zarr", help="output store")
    g.add_argument("--overwrite", action="store_true", help="replace OUT.zarr if it exists")
    g.add_argument("--quiet", action="store_true", help="no progress bar nor summary")
    d = sub.add_parser("demo", help="gradient maps of the shipped TRamWAy samples")
    d.add_argument("names", nargs="*", help="sample names (default: all)")
    return parser


def _log(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr, flush=True)


def _uniform_chunks(ds: Any) -> Any:
    """Zarr needs regular chunks: rechunk ``bin`` to its largest chunk where needed."""
    sizes = {}
    for var in ds.variables.values():
        if var.chunks is not None and "bin" in var.dims:
            c = var.chunks[var.get_axis_num("bin")]
            if len(set(c[:-1])) > 1 or (len(c) > 1 and c[-1] > c[0]):
                sizes["bin"] = max(c)
    return ds.chunk(sizes) if sizes else ds


def _execute(args: argparse.Namespace, collections: list[Any]) -> Any:
    """Compute dask collections with a progress bar, locally or on a cluster."""
    if args.scheduler:
        from distributed import Client, progress

        with Client(args.scheduler) as client:
            futures = client.compute(collections)
            if not args.quiet:
                progress(futures)
                print(file=sys.stderr)
            return client.gather(futures)
    import dask

    if args.quiet:
        return dask.compute(*collections)
    from dask.diagnostics import ProgressBar

    with ProgressBar(out=sys.stderr):
        return dask.compute(*collections)


def run_grad(args: argparse.Namespace) -> int:
    """The ``grad`` subcommand."""
    import xarray as xr

    from . import __version__, chunked
    from .core import grad
    from .topology import NEIGHBOURS, TessellationError

    start = time.perf_counter()
    if not os.path.exists(args.input):
        raise TessellationError(f"input store {args.input!r} does not exist.")
    if os.path.exists(args.output) and not args.overwrite:
        raise TessellationError(
            f"output store {args.output!r} exists; pass --overwrite to replace it."
        )
    # inline_array: every chunk read is its own root task, so dask streams through the
    # chunks instead of reading a whole variable first (see xtramgrad.chunked)
    ds = xr.open_dataset(args.input, engine="zarr", chunks={}, inline_array=True)
    if args.chunks is not None:
        if args.chunks < 1:
            raise TessellationError(f"--chunks {args.chunks}; expected a positive number.")
        ds = ds.chunk({"bin": args.chunks})
    if NEIGHBOURS in ds.variables:
        attrs = ds[NEIGHBOURS].attrs
        lazy = ds[NEIGHBOURS].chunks is not None
        declared = chunked.HALO_ATTR in attrs or all(a in attrs for a in chunked.PLAN_ATTRS)
        if lazy and not declared:
            _log(args, "planning: reading the neighbour table once, chunk by chunk "
                 "(save xtramgrad.plan(ds) with the store to skip this step)")
            ds = chunked.plan(ds)
    result = grad(
        ds,
        list(args.variables),
        method=args.method,
        selection=args.selection,
        selection_angle=args.selection_angle,
        eps=args.eps,
        na=args.na,
    )
    assert isinstance(result, xr.Dataset)
    for var in result.variables.values():
        var.encoding = {}
    result.attrs["source"] = os.path.abspath(args.input)
    result.attrs["history"] = f"xtramgrad grad (xtramgrad {__version__})"
    result = _uniform_chunks(result)
    from .chunked import store_zarr

    write = store_zarr(result, args.output)
    n_tasks = len(set().union(*(part.__dask_graph__().keys() for part in write)))
    chunks = result[f"grad_{args.variables[0]}"].chunks
    n_chunks = len(chunks[result[f"grad_{args.variables[0]}"].get_axis_num("bin")])
    _log(
        args,
        f"gradient of {', '.join(args.variables)} on {ds.sizes['bin']} bins in {n_chunks} "
        f"chunks: {n_tasks} tasks" + (f" on {args.scheduler}" if args.scheduler else ""),
    )
    _execute(args, write)
    _log(args, f"wrote {args.output} in {time.perf_counter() - start:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m xtramgrad`` and of the ``xtramgrad`` script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from xtramgrad.demo import main as demo_main

        return int(demo_main(args.names or None))
    from .topology import TessellationError

    try:
        with warnings.catch_warnings():
            # zarr 3 warns about every fixed-width string coordinate and consolidated metadata
            warnings.filterwarnings("ignore", message=".*Zarr V3 specification.*")
            warnings.filterwarnings("ignore", message="Consolidated metadata.*")
            return run_grad(args)
    except TessellationError as err:
        print(f"xtramgrad grad: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
