"""mkdocs hooks of the documentation site (see mkdocs.yml).

- The notebooks are executed while the site builds (mkdocs-jupyter) with `EQDYN_QUICK=1`, the
  short setting the test suite uses: a build then takes minutes on two CPU cores. Set
  `EQDYN_QUICK=0` in the environment for the full runs.
- `<!-- reproduce-table -->` in a page becomes the table `benchmarks/results_table.py` makes from
  the committed `benchmarks/results/reproduce/*.json`, so the site's table cannot go stale.
- `<!-- members: eqdyn.models -->` becomes one mkdocstrings block per name the package
  re-exports (`from ._x import Name as Name` in its `__init__.py`, in that order): griffe does
  not count such re-exports as public, so `::: eqdyn.models` alone would show none of them.
- A page the navigation names but that is not written yet (`PLANNED`) is built as a short
  placeholder that says so, instead of failing the strict build.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARK = "<!-- reproduce-table -->"
#: pages of the navigation that other work writes, and what a reader can use meanwhile
PLANNED = {
    "early-inference.md": ("Early inference", "`eqdyn analyze early-inference --help` describes "
                           "the study, and the [notebook](notebooks/02_early_inference.ipynb) "
                           "runs it."),
    "relaxations.md": ("Relaxations", "[Choosing a relaxation](how-to/relaxation.md) describes "
                       "the settings."),
    "rules.md": ("Learning rules", "[Concepts](concepts.md#what-ep-estimates-and-why) "
                 "describes the rules."),
    "presets.md": ("Presets", "`eqdyn train --help` lists them; "
                   "[reproducing a paper](how-to/reproduce.md) describes them."),
}


def on_config(config, **kwargs):
    if os.environ.get("EQDYN_QUICK", "1") not in ("", "0"):
        os.environ["EQDYN_QUICK"] = "1"  # inherited by the notebooks' kernels
    else:
        os.environ.pop("EQDYN_QUICK", None)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return config


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    for name, (title, meanwhile) in PLANNED.items():
        if files.get_file_from_path(name) is None:
            files.append(File.generated(config, name, content=(
                f"# {title}\n\nThis page is not written yet. {meanwhile}\n")))
    return files


def _results_table():
    spec = importlib.util.spec_from_file_location(
        "results_table", REPO / "benchmarks" / "results_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.table(mod.load())


def _members(match) -> str:
    package = match.group(1)
    init = REPO.joinpath(*package.split("."), "__init__.py").read_text()
    names = re.findall(r"^from \.[\w.]* import (\w+) as \1$", init, re.M)
    return "\n\n".join(f"::: {package}.{name}" for name in dict.fromkeys(names))


def on_page_markdown(markdown, page, config, files, **kwargs):
    if MARK in markdown:
        markdown = markdown.replace(MARK, _results_table())
    return re.sub(r"<!-- members: ([\w.]+) -->", _members, markdown)
