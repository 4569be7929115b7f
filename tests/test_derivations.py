"""The generated derivation documents under derivations/ are current and say what they should.

`derivations/layered_hopfield.py` prints the SymPy derivation of the layered Hopfield energy as
Markdown. These tests regenerate it into a temporary folder and compare it byte for byte with the
committed copy (a stale-file check: rerun the script after changing eqdyn/symbolic/), and look
for the key equations in it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "derivations" / "layered_hopfield.py"
COMMITTED = ROOT / "derivations" / "layered_hopfield.md"
REGENERATE = "python derivations/layered_hopfield.py"


@pytest.fixture(scope="module")
def script():
    """The derivation script, imported as a module (it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("_eqdyn_derivation_layered_hopfield", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(script, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("derivations") / "layered_hopfield.md"
    assert script.main(["--output", str(out)]) == 0
    return out.read_text(encoding="utf-8")


def test_committed_file_is_current(generated):
    assert COMMITTED.exists(), f"{COMMITTED} is missing; run `{REGENERATE}`."
    committed = COMMITTED.read_text(encoding="utf-8")
    assert committed == generated, (
        f"{COMMITTED.relative_to(ROOT)} is stale (it differs from what the script writes now); "
        f"run `{REGENERATE}` and commit the result."
    )


def test_check_flag(script, tmp_path, generated, capsys, monkeypatch):
    monkeypatch.setattr(script, "render", lambda: generated)  # test the comparison, not SymPy
    good = tmp_path / "good.md"
    good.write_text(generated, encoding="utf-8")
    assert script.main(["--check", "--output", str(good)]) == 0
    bad = tmp_path / "bad.md"
    bad.write_text(generated.replace(r"\frac{d h_{1}}{dt}", r"\frac{d h_{9}}{dt}", 1),
                   encoding="utf-8")
    assert script.main(["--check", "--output", str(bad)]) == 1
    assert "stale" in capsys.readouterr().err
    assert script.main(["--check", "--output", str(tmp_path / "missing.md")]) == 1
    assert not (tmp_path / "missing.md").exists()  # --check never writes


@pytest.mark.parametrize(
    "fragment",
    [
        # energy F = E + beta C (Energy.latex())
        r"\frac{\operatorname{tr}\left(h_{1} h_{1}^{T} \right)}{2}",
        r"- \operatorname{tr}\left(x W_{1} \rho\left(h_{1}^{T}\right) \right)",
        r"- \operatorname{tr}\left(\rho\left(h_{1}\right) W_{2} \rho\left(h_{2}^{T}\right) \right)",
        r"\frac{\beta \operatorname{tr}\left(\left(- d + y\right) \left(- d^{T} + y^{T}\right) \right)}{2}",
        # neuron dynamics ds_k/dt = -dF/ds_k (Derivation.equations_latex())
        r"\frac{d h_{1}}{dt} = -\frac{\partial F}{\partial h_{1}} =",
        r"\frac{d h_{2}}{dt} = -\frac{\partial F}{\partial h_{2}} =",
        r"\frac{d y}{dt} = -\frac{\partial F}{\partial y} =",
        r"\rho'\left(h_{1}\right)",
        # weight and bias gradients
        r"\frac{\partial F}{\partial W_{1}} = - x^{T} \rho\left(h_{1}\right)",
        r"\frac{\partial F}{\partial W_{3}} = - \rho\left(h_{2}^{T}\right) \rho\left(y\right)",
        r"\frac{\partial F}{\partial b_{2}} = - \mathbf{1} \rho\left(y\right)",
        # EP update
        r"\Delta\theta = -\frac{1}{\beta}\left[\frac{\partial F}{\partial \theta}\left(s^{\beta}\right)"
        r" - \frac{\partial F}{\partial \theta}\left(s^{0}\right)\right]",
        r"\Delta W_{1} = -\frac{1}{\beta}",
        r"x^{T} \rho\left(h^{\beta}_{1}\right) - x^{T} \rho\left(h^{0}_{1}\right)",
        # leaky-integrator form: no rho' and s = rho(u)
        r"\frac{d u_{1}}{dt} = -\left.\frac{\partial F}{\partial h_{1}}\right|_{\rho' = 1",
        r"h_{1} = \rho\left(u_{1}\right)",
        r"y = \rho\left(u_{y}\right)",
        # plain text
        "dh_1/dt = -dF/dh_1 = ",
        "dF/dW_1 = -(x.T*rho(h_1))",
        "du_1/dt = ",
    ],
)
def test_key_fragments(generated, fragment):
    assert fragment in generated


def test_structure(generated):
    assert "## 784-500-10 (1 hidden layer)" in generated
    assert "## 784-500-500-10 (2 hidden layers)" in generated
    assert generated.count("$$") % 2 == 0
    assert generated.count("```text") == 2
    assert "rho' = 1" in generated  # the leaky-integrator reasoning
    # the leaky-integrator equations carry no rho' factor
    leaky = [
        line for line in generated.splitlines()
        if line.startswith(r"\frac{d u_") or line.startswith("du_")
    ]
    assert len(leaky) == 2 * (2 + 3)  # LaTeX and text, 1 + 2 hidden layers
    for line in leaky:
        rhs = line.split("}} = ", 1)[-1]  # LaTeX: after the `|_{rho' = 1, s = u}` subscript
        assert "rho'" not in rhs, line


def test_script_runs_from_the_command_line():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "up to date" in done.stdout
