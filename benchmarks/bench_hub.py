"""Skewed degrees: one hub adjacent to every other bin, eager and chunked.

The tessellation: 10^5 bins on a ring (degree 3), bin 0 adjacent to all of them (a hub of
10^5 - 1 neighbours; a padded table would be 10^5 x 10^5 = 74.5 GiB). Each case runs in a
fresh subprocess: build the table, warm up (JIT) on a small one, then time
``ds.tram.grad("D", method=...)`` eager and ``ds.chunk(bin=n // 8)`` chunked, and report
the process's peak resident memory (VmHWM). The reference: the same call on the same ring
without the hub (the ordinary cost of a 10^5-bin table). Targets (issue 10): seconds and
under 1 GB for grad1 and gradn, eager and chunked.

    python benchmarks/bench_hub.py [--quick] [--repeat N]
"""

from __future__ import annotations

import json
import subprocess
import sys

import _common as C

CHILD = r"""
import json, sys, time
import numpy as np, scipy.sparse as sp
sys.path.insert(0, {src!r})
import xtramgrad

def table(n, hub):
    ring = np.arange(1, n); nxt = np.r_[ring[1:], ring[:1]]
    rows, cols = np.r_[ring, nxt], np.r_[nxt, ring]
    if hub:
        zero = np.zeros(n - 1, int)
        rows, cols = np.r_[rows, zero, ring], np.r_[cols, ring, zero]
    A = sp.coo_array((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    c = np.random.default_rng(0).random((n, 2))
    return xtramgrad.from_adjacency(c, A, D=c[:, 0] + 2 * c[:, 1] ** 2)

def run(ds, chunked, method):
    d = ds.chunk(bin=ds.sizes["bin"] // 8) if chunked else ds
    return d.tram.grad("D", method=method).compute()

for chunked in (False, True):
    run(table(2000, True), chunked, {method!r})   # compile outside the measurement
ds = table({n}, {hub})
best = float("inf")
for _ in range({repeat}):
    t = time.perf_counter()
    g = run(ds, {chunked}, {method!r})
    best = min(best, time.perf_counter() - t)
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
finite = bool(np.isfinite(g.values[0]).all())
print(json.dumps({{"time": best, "rss": hwm * 1024, "hub_finite": finite}}))
"""


def measure(n: int, hub: bool, chunked: bool, method: str, repeat: int) -> dict:
    code = CHILD.format(src=str(C.ROOT / "src"), n=n, hub=hub, chunked=chunked, method=method,
                        repeat=repeat)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    args = C.parser(__doc__.splitlines()[0]).parse_args()
    n = 10**4 if args.quick else 10**5
    repeat = 1 if args.quick else args.repeat
    C.header(f"bench_hub: a hub of {n - 1} neighbours among {n} bins, eager and chunked")
    cols = ("hub: time", "peak RSS", "no hub: time", "peak RSS")
    print(f"{'method':8s} {'path':8s} {cols[0]:>10s} {cols[1]:>9s} {cols[2]:>13s} {cols[3]:>9s}")
    for method in ("grad1", "gradn"):
        for chunked in (False, True):
            with_hub = measure(n, True, chunked, method, repeat)
            without = measure(n, False, chunked, method, repeat)
            assert with_hub["hub_finite"], "the hub got no gradient"
            path = "chunked" if chunked else "eager"
            print(f"{method:8s} {path:8s} {with_hub['time']:9.2f}s "
                  f"{with_hub['rss'] / 2**30:8.2f}G {without['time']:12.2f}s "
                  f"{without['rss'] / 2**30:8.2f}G")
            C.ratio(f"{method} {path} time, hub / no hub", with_hub["time"] / without["time"])
            C.ratio(f"{method} {path} peak RSS / 1 GiB", with_hub["rss"] / 2**30, "<= 1")


if __name__ == "__main__":
    main()
