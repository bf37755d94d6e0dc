"""Fixtures shared by the tests."""

from __future__ import annotations

import pytest

from xtramgrad import kernels

BACKENDS = [
    pytest.param("numpy", id="numpy"),
    pytest.param(
        "numba",
        id="numba",
        marks=pytest.mark.skipif(
            not kernels.numba_available(), reason="numba (the 'fast' extra) not installed"
        ),
    ),
]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run a test with each kernel backend (the numpy reference and the compiled one)."""
    previous = kernels.set_backend(request.param)
    yield request.param
    kernels.set_backend(previous)
