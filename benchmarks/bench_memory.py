"""Peak memory of an eager gradient at 10^6 bins against the size of its inputs + output.

Each measurement runs in a fresh subprocess that loads the tessellation and field from a
temporary .npz, then calls ``ds.tram.grad("D")``. Two figures per case:

* RSS: the process's peak resident set (VmHWM, reset through /proc/self/clear_refs just
  before the call) minus its resident set before the call;
* tracemalloc: the peak of Python-tracked allocations during the call (numpy arrays).

Inputs are the center, neighbour-table and field arrays; the output is the (n, d) gradient.
Target: peak <= 3x (inputs + output).

    python benchmarks/bench_memory.py [--quick]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import _common as C
import numpy as np

CHILD = r"""
import json, sys, tracemalloc
import numpy as np
sys.path.insert(0, {src!r})
import xarray as xr, xtramgrad
from xtramgrad import kernels
kernels.set_backend({backend!r})
f = np.load({path!r})
ds = xr.Dataset({{"center": (("bin", "space"), f["center"]),
                 "neighbours": (("bin", "nbr"), f["neighbours"]),
                 "D": ("bin", f["D"])}}, coords={{"space": ["x", "y"][: f["center"].shape[1]]}})
small = ds.isel(bin=slice(0, 1000))
small["neighbours"] = xr.where(small.neighbours < 1000, small.neighbours, -1)
small.tram.grad("D", method={method!r})  # compile / warm up outside the measurement
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
before = status("VmRSS:")
tracemalloc.start()
g = ds.tram.grad("D", method={method!r})
_, peak_py = tracemalloc.get_traced_memory()
tracemalloc.stop()
hwm = status("VmHWM:")
inputs = sum(ds[v].values.nbytes for v in ("center", "neighbours", "D"))
print(json.dumps({{"rss_delta": hwm - before, "tracemalloc": peak_py, "inputs": inputs,
                  "output": g.values.nbytes}}))
"""


def main() -> None:
    args = C.parser(__doc__.splitlines()[0]).parse_args()
    n = 20_000 if args.quick else 1_000_000
    C.header(f"bench_memory: peak memory of an eager gradient, {n} bins (subprocesses)")
    backends = ["numba", "numpy"] if C.have_numba() else ["numpy"]
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("voronoi-2d", C.voronoi_problem), ("grid8-2d", C.grid_problem)]
        methods = ("grad1",) if args.quick else ("grad1", "gradn")
        for name, make in cases[1:] if args.quick else cases:
            ds = make(n)
            path = str(Path(tmp) / f"{name}.npz")
            np.savez(
                path, center=ds.center.values, neighbours=ds.neighbours.values, D=ds.D.values
            )
            print(f"\n## {name}: {ds.sizes['bin']} bins, table width {ds.sizes['nbr']}")
            for be in backends:
                for method in methods:
                    code = CHILD.format(
                        src=str(C.ROOT / "src"), backend=be, path=path, method=method
                    )
                    res = subprocess.run(
                        [sys.executable, "-c", code], capture_output=True, text=True, check=True
                    )
                    r = json.loads(res.stdout.strip().splitlines()[-1])
                    io = r["inputs"] + r["output"]
                    print(
                        f"{method} {be}: inputs+output {io / 1e6:.1f} MB, peak RSS delta "
                        f"{r['rss_delta'] / 1e6:.1f} MB, tracemalloc peak "
                        f"{r['tracemalloc'] / 1e6:.1f} MB"
                    )
                    C.ratio(f"{name} {method} {be} peak RSS delta / (inputs + output)",
                            r["rss_delta"] / io, "<= 3")
                    C.ratio(f"{name} {method} {be} tracemalloc peak / (inputs + output)",
                            r["tracemalloc"] / io, "<= 3")


if __name__ == "__main__":
    main()
