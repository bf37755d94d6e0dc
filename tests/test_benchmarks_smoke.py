"""Each benchmark script runs with --quick and prints its ratio lines.

The figures themselves are measured by running the scripts in full (see benchmarks/README.md);
this only keeps the scripts from rotting.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = {
    "bench_vs_tramway.py": ["TRamWAy grad1", "TRamWAy gradn"],
    "bench_floor.py": ["grad1 numpy / floor"],
    "bench_many_fields.py": ["per-field operator cost / floor"],
    "bench_memory.py": ["peak RSS delta / (inputs + output)"],
    "bench_scaling.py": ["max/min time per bin"],
    "bench_geometry.py": ["voronoi_geometry 2d", "grid_geometry"],
    "bench_hub.py": ["grad1 chunked peak RSS / 1 GiB", "gradn chunked time, hub / no hub"],
    "bench_methods.py": ["lsq eager / grad1 eager", "local chunked / eager"],
    "convergence.py": ["order lsq 2D random interior", "noise local auto random"],
    "calculus.py": ["order curl(grad f) lsq2 random trimmed", "penalty two_point u random"],
}
RATIO = re.compile(r"^RATIO (?P<label>.+) = (?P<value>[0-9.e+-]+)x", re.MULTILINE)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_benchmark_quick_run(script):
    res = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=600,  # with a cold numba cache the first scripts compile the kernels (minutes)
        cwd=BENCH.parent,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("# bench_")
    ratios = {m["label"]: float(m["value"]) for m in RATIO.finditer(res.stdout)}
    assert ratios, res.stdout
    for expected in SCRIPTS[script]:
        assert any(expected in label for label in ratios), (expected, sorted(ratios))
    # a peak RSS delta can be 0 at --quick sizes (the gradient fits in pages already
    # resident); every other ratio is a positive measurement
    assert all(v > 0 or (v == 0 and "peak RSS delta" in label)
               for label, v in ratios.items()), ratios
