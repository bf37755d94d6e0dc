"""Sphinx configuration of the xtramgrad documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (``make docs``; ``make test`` runs it
too). The notebooks (``notebooks/``, linked here as ``docs/notebooks``) and the pages written
as MyST notebooks (``methods.md``) are executed at build time by myst-nb; any error in a cell
fails the build.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import sphinx_autosummary_accessors

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
# The kernels that execute the notebooks inherit this environment; they must draw with the
# notebook's inline backend (a global MPLBACKEND=Agg would leave the pages without figures).
os.environ.pop("MPLBACKEND", None)

import xtramgrad  # noqa: E402

project = "xtramgrad"
author = "xtramgrad contributors"
copyright = "xtramgrad contributors"
version = release = xtramgrad.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_autosummary_accessors",
]

templates_path = ["_templates", sphinx_autosummary_accessors.templates_path]
exclude_patterns = ["_build", "jupyter_execute", ".jupyter_cache", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"

# autodoc / autosummary / napoleon: numpydoc-style docstrings
autosummary_generate = True
autodoc_typehints = "none"
autodoc_member_order = "bysource"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

# MyST and myst-nb: execute every notebook, fail on any error
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = "cache"
nb_execution_cache_path = str(ROOT / "docs" / "_build" / ".jupyter_cache")
nb_execution_raise_on_error = True
nb_execution_timeout = 300
nb_execution_show_tb = True
nb_merge_streams = True

html_theme = "alabaster"
html_title = "xtramgrad"
html_theme_options = {
    "description": "Spatial gradients on tessellations, on xarray and dask",
    "fixed_sidebar": True,
}
suppress_warnings = ["mystnb.unknown_mime_type"]

# Pages drawn from committed benchmark results: Sphinx re-reads such a page (and myst-nb,
# with ``execution_mode: force`` in its front matter, re-executes it) when the results change.
RESULTS = {"which_method": [ROOT / "benchmarks" / "results" / "convergence.json"]}


def _note_results(app, docname, source):
    for path in RESULTS.get(docname, ()):
        app.env.note_dependency(str(path), docname=docname)


def setup(app):
    app.connect("source-read", _note_results)
