"""mkdocs hooks of the documentation site (see mkdocs.yml).

- The notebooks are executed while the site builds (mkdocs-jupyter) with `EQDYN_QUICK=1`, the
  short setting the test suite uses: a build then takes minutes on two CPU cores. Set
  `EQDYN_QUICK=0` in the environment for the full runs.
- `<!-- reproduce-table -->` in a page becomes the table `benchmarks/results_table.py` makes from
  the committed `benchmarks/results/reproduce/*.json`, so the site's table cannot go stale.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARK = "<!-- reproduce-table -->"


def on_config(config, **kwargs):
    if os.environ.get("EQDYN_QUICK", "1") not in ("", "0"):
        os.environ["EQDYN_QUICK"] = "1"  # inherited by the notebooks' kernels
    else:
        os.environ.pop("EQDYN_QUICK", None)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return config


def _results_table():
    spec = importlib.util.spec_from_file_location(
        "results_table", REPO / "benchmarks" / "results_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.table(mod.load())


def on_page_markdown(markdown, page, config, files, **kwargs):
    if MARK in markdown:
        markdown = markdown.replace(MARK, _results_table())
    return markdown
