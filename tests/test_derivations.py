"""The generated derivation documents under derivations/ are current and say what they should.

Every script `derivations/NAME.py` (not `_common.py`) prints a SymPy derivation as Markdown into
`derivations/NAME.md`. These tests regenerate each one into a temporary folder and compare it
byte for byte with the committed copy (a stale-file check: rerun the script after changing
eqdyn/symbolic/), and look for the key equations in it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DERIVATIONS = ROOT / "derivations"
#: The derivation scripts, by name (derivations/NAME.py writes derivations/NAME.md).
SCRIPTS = sorted(p.stem for p in DERIVATIONS.glob("*.py") if not p.name.startswith("_"))


def _command(name: str) -> str:
    return f"python derivations/{name}.py"


class _Documents:
    """Each script imported once (it is not part of the package) and its document written once."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.modules: dict = {}
        self.texts: dict = {}

    def module(self, name: str):
        if name not in self.modules:
            spec = importlib.util.spec_from_file_location(
                f"_eqdyn_derivation_{name}", DERIVATIONS / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self.modules[name] = module
        return self.modules[name]

    def __getitem__(self, name: str) -> str:
        if name not in self.texts:
            out = self.folder / f"{name}.md"
            assert self.module(name).main(["--output", str(out)]) == 0
            self.texts[name] = out.read_text(encoding="utf-8")
        return self.texts[name]


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> _Documents:
    return _Documents(tmp_path_factory.mktemp("derivations"))


def test_scripts_found():
    assert {"layered_hopfield", "hopfield_stdp", "crossentropy_readout"} <= set(SCRIPTS)
    readme = (DERIVATIONS / "README.md").read_text(encoding="utf-8")
    for name in SCRIPTS:
        assert f"`{_command(name)}`" in readme, f"derivations/README.md does not list {name}.py"


@pytest.mark.parametrize("name", SCRIPTS)
def test_committed_file_is_current(documents, name):
    committed = DERIVATIONS / f"{name}.md"
    assert committed.exists(), f"{committed} is missing; run `{_command(name)}`."
    assert committed.read_text(encoding="utf-8") == documents[name], (
        f"{committed.relative_to(ROOT)} is stale (it differs from what the script writes now); "
        f"run `{_command(name)}` and commit the result."
    )


@pytest.mark.parametrize("name", SCRIPTS)
def test_check_flag(documents, name, tmp_path, capsys, monkeypatch):
    script, generated = documents.module(name), documents[name]
    monkeypatch.setattr(script, "render", lambda: generated)  # test the comparison, not SymPy
    good = tmp_path / "good.md"
    good.write_text(generated, encoding="utf-8")
    assert script.main(["--check", "--output", str(good)]) == 0
    bad = tmp_path / "bad.md"
    stale = generated.replace(r"\frac{d h_{1}}{dt}", r"\frac{d h_{9}}{dt}", 1)
    assert stale != generated
    bad.write_text(stale, encoding="utf-8")
    assert script.main(["--check", "--output", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "stale" in err and _command(name) in err
    assert script.main(["--check", "--output", str(tmp_path / "missing.md")]) == 1
    assert not (tmp_path / "missing.md").exists()  # --check never writes


FRAGMENTS = {
    "layered_hopfield": [
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
    "hopfield_stdp": [
        # the argument: EP update, rule in time, fundamental theorem of calculus
        r"\frac{d\theta}{dt} = -\frac{\eta}{\beta} \frac{d}{dt}",
        r"= \eta \, \Delta\theta",
        # d/dt dF/dtheta (Derivation.stdp_latex())
        r"\frac{d}{dt} \frac{\partial F}{\partial W_{1}} = - x^{T} \left(\rho'\left(h_{1}\right)"
        r" \odot \dot{h}_{1}\right)",
        r"\frac{d}{dt} \frac{\partial F}{\partial W_{2}} = - \rho\left(h_{1}^{T}\right)"
        r" \left(\rho'\left(y\right) \odot \dot{y}\right) - \left(\rho'\left(h_{1}^{T}\right)"
        r" \odot \dot{h}_{1}^{T}\right) \rho\left(y\right)",
        r"\dot{h}_{2}",
        # the rule in terms of d rho(s)/dt: rho(s_i) d rho(s_j)/dt + d rho(s_i)/dt rho(s_j)
        r"\frac{d W_{1}}{dt} = -\frac{\eta}{\beta} \frac{d}{dt} \frac{\partial F}{\partial W_{1}}"
        r" = \frac{\eta}{\beta}\left[x^{T} \frac{d \rho\left(h_{1}\right)}{dt}\right]",
        r"\frac{\eta}{\beta}\left[\rho\left(h_{1}^{T}\right) \frac{d \rho\left(y\right)}{dt}"
        r" + \left(\frac{d \rho\left(h_{1}\right)}{dt}\right)^{T} \rho\left(y\right)\right]",
        r"\frac{d b_{3}}{dt} = -\frac{\eta}{\beta} \frac{d}{dt} \frac{\partial F}{\partial b_{3}}"
        r" = \frac{\eta}{\beta}\left[\mathbf{1} \frac{d \rho\left(y\right)}{dt}\right]",
        # plain text
        r"d/dt dF/dW_1 = -(x.T*(rho'(h_1) ∘ dh_1/dt))",
        "dW_2/dt = (eta/beta) [rho(h_1.T)*drho(y)/dt + (drho(h_1)/dt).T*rho(y)]",
    ],
    "crossentropy_readout": [
        # logits and the cross-entropy cost
        r"z = \rho\left(h_{1}\right) W_{2} + \mathbf{1} b_{2}",
        r"\beta \operatorname{tr}\left(\mathbf{1} \operatorname{lse}\left(\rho\left(h_{1}\right)"
        r" W_{2} + \mathbf{1} b_{2}\right) \right)",
        r"\operatorname{softmax}\left(\rho\left(h_{1}\right) W_{2} + \mathbf{1} b_{2}\right)",
        # the nudging force beta (d - softmax(z)) W_L^T ⊙ rho'(h)
        r"-\beta \frac{\partial C}{\partial h_{1}} = \beta \left(d W_{2}^{T} \odot"
        r" \rho'\left(h_{1}\right) - \operatorname{softmax}\left(\rho\left(h_{1}\right) W_{2}"
        r" + \mathbf{1} b_{2}\right) W_{2}^{T} \odot \rho'\left(h_{1}\right)\right)",
        # dF/dW_L = beta rho(h)^T (softmax(z) - d): the EP update of the readout is -dC/dW_L(s^beta)
        r"\frac{\partial F}{\partial W_{2}} = - \beta \left(\rho\left(h_{1}^{T}\right) d\right)",
        r"\Delta W_{2} = -\frac{1}{\beta}\left[\frac{\partial F}{\partial W_{2}}(s^{\beta}) - 0\right]"
        r" = -\frac{\partial C}{\partial W_{2}}(s^{\beta}) = - \rho\left(\left(h^{\beta}_{1}\right)^{T}"
        r"\right) \operatorname{softmax}\left(\rho\left(h^{\beta}_{1}\right) W_{2} + \mathbf{1} b_{2}"
        r"\right) + \rho\left(\left(h^{\beta}_{1}\right)^{T}\right) d",
        r"\Delta W_{1} = -\frac{1}{\beta}",
        # STDP form, with its dbeta/dt term for the readout
        r"\frac{d}{dt} \frac{\partial F}{\partial W_{2}} = ",
        r"\dot{\beta}",
        r"\dot{h}_{1}",
        # the lateral/skip/tau variant
        r"2 \, \frac{d h_{2}}{dt} = -\frac{\partial F}{\partial h_{2}} =",
        r"z = \rho\left(h_{2}\right) W_{3} + x S_{0 3} + \mathbf{1} b_{3}",
        r"\rho\left(h_{1}\right) L_{1} \odot \rho'\left(h_{1}\right)",
        r"-\frac{\partial C}{\partial S_{0 3}}(s^{\beta}) = ",
        # plain text
        "-beta dC/dh_1 = beta (d*W_2.T ∘ rho'(h_1) - ",
        "Delta W_2 = -dC/dW_2(s^beta) = ",
        "2 dh_2/dt = -dF/dh_2 = ",
    ],
}


@pytest.mark.parametrize(
    ("name", "fragment"), [(name, f) for name, fs in FRAGMENTS.items() for f in fs]
)
def test_key_fragments(documents, name, fragment):
    assert fragment in documents[name]


def test_layered_hopfield_structure(documents):
    generated = documents["layered_hopfield"]
    assert "leaky-integrator" in generated.splitlines()[0]  # the title says what is inside
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


def test_hopfield_stdp_structure(documents):
    generated = documents["hopfield_stdp"]
    assert "## 784-500-10 (1 hidden layer)" in generated
    assert "## 784-500-500-10 (2 hidden layers)" in generated
    assert generated.count("$$") % 2 == 0
    assert "fundamental theorem of calculus" in generated
    rates = [line for line in generated.splitlines()
             if line.startswith(r"\frac{d}{dt} \frac{\partial F}")]
    assert len(rates) == 4 + 6  # one per parameter
    for line in rates:
        assert r"\dot{" in line and r"\dot{\beta}" not in line, line  # dF/dtheta has no beta
    rules = [line for line in generated.splitlines()
             if line.startswith(r"\frac{d W_") or line.startswith(r"\frac{d b_")]
    assert len(rules) == 4 + 6
    for line in rules:  # every rho'(s) ⊙ ds/dt became d rho(s)/dt
        assert r"\rho'" not in line and r"\dot{" not in line, line


def test_crossentropy_readout_structure(documents):
    generated = documents["crossentropy_readout"]
    assert "## 784-500-10 (1 hidden layer)" in generated
    assert "## Variant with lateral and skip weights: 784-500-500-10" in generated
    assert generated.count("$$") % 2 == 0
    assert generated.count("```text") == 2
    assert r"\frac{d y}{dt}" not in generated  # the readout is not a state
    # the readout (W_L, b_L and the skip weights into it) learns from -dC/dtheta at s^beta
    assert generated.count(r"(s^{\beta}) - 0\right]") == 2 + 3


def test_script_runs_from_the_command_line():
    done = subprocess.run(
        [sys.executable, str(DERIVATIONS / "hopfield_stdp.py"), "--check"], cwd=ROOT,
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "up to date" in done.stdout
