"""The notebooks in notebooks/ run top to bottom (their cells assert their own claims)."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

#: Figures each notebook must produce (the plots are part of what it shows).
MIN_FIGURES = {"tour": 4, "choosing_a_rule": 3, "tramway_force_map": 4}
NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_there():
    assert {p.name for p in NOTEBOOKS} >= {"tour.ipynb", "choosing_a_rule.ipynb",
                                           "tramway_force_map.ipynb"}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel draws inline
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        f"{path.name} is committed with outputs; clear them (they are produced by the docs)"
    )
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError with the failing cell and its traceback
    images = sum(
        "image/png" in o.get("data", {})
        for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert images >= MIN_FIGURES.get(path.stem, 0)
