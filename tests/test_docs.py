"""The documentation site builds under `mkdocs build --strict`: no broken link or anchor, no
missing page, every API page's objects found. The notebooks are rendered without running them
here (CI's build in .ci/run executes them). Skipped without the docs extras
(`pip install -e ".[docs]"`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")
pytest.importorskip("mkdocs_jupyter")

REPO = Path(__file__).resolve().parents[1]


def test_site_builds_strict(tmp_path):
    env = dict(os.environ, EQDYN_DOCS_EXECUTE="false", NO_MKDOCS_2_WARNING="1")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                          str(tmp_path / "site")], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "models" / "index.html").read_text()
    assert "LayeredHopfield" in api and "cost_rows" in api  # the re-exports are documented
    table = (tmp_path / "site" / "results" / "reproductions" / "index.html").read_text()
    assert "784-500-500-500-10" in table  # built from the result JSONs
