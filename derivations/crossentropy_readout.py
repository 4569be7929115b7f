"""Derive the softmax cross-entropy readout of Laborieux et al. (2021) and write it up as Markdown.

    python derivations/crossentropy_readout.py            # (re)write crossentropy_readout.md
    python derivations/crossentropy_readout.py --check    # exit 1 if the committed file is stale
    python derivations/crossentropy_readout.py --output /tmp/ce.md

The layered energy with `cost="cross_entropy"` (`eqdyn.symbolic.layered_hopfield_energy`): the
output is read out of the last hidden layer through logits that are not a state, with a softmax
cross-entropy cost; and a custom variant of it from `derivations/energies/lateral_skip_ce.py`
(lateral weights, a skip connection from the input to the readout, two time constants). Every
equation in the output is printed by eqdyn from the SymPy derivation, never typed by hand; the
output is deterministic, so `tests/test_derivations.py` regenerates it and compares it with the
committed copy.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import sympy as sp

from eqdyn.models import load_energy_file
from eqdyn.symbolic import Derivation, derive, layered_hopfield_energy, to_latex, to_text

if str(Path(__file__).resolve().parent) not in sys.path:  # derivations/ is not a package
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    EP_UPDATE, HERE, NOTATION, cli, display, energy_parts_latex, energy_parts_text, ep_updates,
    finish, header, neg, nudged_and_free, paren_latex, paren_text, plain_text,
)

DEFAULT_OUTPUT = HERE / "crossentropy_readout.md"
COMMAND = "python derivations/crossentropy_readout.py"

#: The built-in architectures written up (two hidden layers: see the variant at VARIANT_SIZES).
ARCHITECTURES: tuple[tuple[int, ...], ...] = ((784, 500, 10),)

#: The custom variant: an energy file and the layer sizes it is derived at.
VARIANT_FILE = "derivations/energies/lateral_skip_ce.py"
VARIANT_SIZES = (784, 500, 500, 10)


# ------------------------------------------------------------------ expression helpers


def cost_derivation(derivation: Derivation) -> Derivation:
    """The derivatives of the cost `C` alone (an energy whose terms are the cost terms)."""
    e = derivation.energy
    return derive(dataclasses.replace(e, internal=tuple(e.cost), cost=(), scalars=(),
                                      name=f"{e.name} (cost)"))


def readout_params(derivation: Derivation) -> list:
    """The parameters that occur in the cost only, hence `dF/dtheta = beta dC/dtheta`.

    They are exactly those whose `dF/dtheta` vanishes in the free phase (`beta = 0`).
    """
    e = derivation.energy
    in_e = set().union(*(sp.sympify(t).atoms(sp.MatrixSymbol) for t in e.internal))
    out = []
    for p, g in derivation.param_grads.items():
        if p in in_e:
            continue
        _, free = nudged_and_free(derivation, g)
        assert isinstance(free, sp.ZeroMatrix), (p, free)
        out.append(p)
    return out


def nudging_forces(derivation: Derivation, cost: Derivation) -> list[tuple[str, str]]:
    """(LaTeX, text) of the nudging force `-beta dC/ds_k` on every state the cost reaches."""
    out = []
    for s, g in cost.state_grads.items():
        if isinstance(g, sp.ZeroMatrix):
            continue
        sl, force = sp.latex(s), neg(g)
        latex = rf"-\beta \frac{{\partial C}}{{\partial {sl}}} = \beta {paren_latex(force)}"
        out.append((latex, f"-beta dC/d{s.name} = beta {paren_text(force)}"))
    return out


def readout_updates(derivation: Derivation, cost: Derivation) -> list[tuple[str, str]]:
    """(LaTeX, text) of `Delta theta = -(1/beta) dF/dtheta(s^beta) = -dC/dtheta(s^beta)`."""
    out = []
    for p in readout_params(derivation):
        _, free = nudged_and_free(derivation, derivation.param_grads[p])
        nudged_c, _ = nudged_and_free(cost, cost.param_grads[p])
        pl, update = sp.latex(p), neg(nudged_c)
        latex = (
            rf"\Delta {pl} = -\frac{{1}}{{\beta}}\left[\frac{{\partial F}}{{\partial {pl}}}(s^{{\beta}})"
            rf" - {to_latex(free)}\right] = -\frac{{\partial C}}{{\partial {pl}}}(s^{{\beta}})"
            rf" = {to_latex(update)}"
        )
        out.append((latex, f"Delta {p.name} = -dC/d{p.name}(s^beta) = {to_text(update)}"))
    return out


# ------------------------------------------------------------------ document

READOUT = r"""The output is not a neuron: the logits `z = rho(h_{L-1}) W_L + 1 b_L` are read out of the
last hidden layer (`energy.output`), and the cost is the softmax cross-entropy

    C = sum_b [ lse(z_b) - d_b . z_b ] = - sum_b sum_j d_bj log softmax(z_b)_j   (one-hot d),

whose gradient with respect to the logits is `dC/dz = softmax(z) - d`. The internal energy `E`
holds the hidden layers only, so the free phase (`beta = 0`) never sees the readout. In the
nudged phase the cost pulls on the last hidden layer with the force

    -beta dC/dh_{L-1} = beta (d - softmax(z)) W_L^T ⊙ rho'(h_{L-1}),

printed below for each model as eqdyn derives it (the two terms `d W_L^T ⊙ rho'` and
`softmax(z) W_L^T ⊙ rho'` are not collected)."""

READOUT_EP = r"""The hidden weights and biases follow the usual EP update. The readout parameters
`W_L`, `b_L` (and any other parameter that occurs only in `C`, like the skip weights into the
readout below) do not: `dF/dW_L = beta dC/dW_L = beta rho(h_{L-1})^T (softmax(z) - d)` vanishes
in the free phase, where `beta = 0`, so their EP update is the gradient of the cost at the
nudged state,"""

READOUT_EP_AFTER = r"""a delta rule on the readout, which tends to the exact `-dC/dW_L(s^0)` as
`beta -> 0`."""

READOUT_STDP = r"""In the STDP form `dtheta/dt = -(eta/beta) d/dt dF/dtheta` (see
[`hopfield_stdp.md`](hopfield_stdp.md)) the readout's `dF/dW_L` depends on `beta`, so its rate has
a `\dot{\beta}` term as well as the state terms. With `beta` switched on as a step at the start of
the nudged phase, the `\dot{\beta}` term contributes `beta dC/dW_L(s^0)` at the switch and the
state terms `beta [dC/dW_L(s^beta) - dC/dW_L(s^0)]` during the relaxation; their sum
`beta dC/dW_L(s^beta)` gives again `eta Delta W_L`. At fixed `beta` (within the phase) the
`\dot{\beta}` terms drop out. Time constants `tau_k` change the path, not the integral.

For the hard sigmoid eqdyn relaxes these models in the leaky-integrator form as well (every
`rho'` set to one in the dynamics; see [`layered_hopfield.md`](layered_hopfield.md))."""


def _section(title: str, call: str, derivation: Derivation, intro=()) -> list[str]:
    energy = derivation.energy
    cost = cost_derivation(derivation)
    readout = readout_params(derivation)
    hidden = [p for p in derivation.param_grads if p not in readout]
    e_latex, c_latex = energy_parts_latex(derivation)
    e_text, c_text = energy_parts_text(derivation)
    forces = nudging_forces(derivation, cost)
    ep_hidden = ep_updates(derivation, params=hidden)
    ep_readout = readout_updates(derivation, cost)
    return [
        f"## {title}",
        "",
        f"`{call}`",
        "",
        *intro,
        "### Readout logits and energy `F = E + beta C`",
        "",
        *display([f"z = {to_latex(energy.output)}", energy.latex()]),
        "with the internal energy and the cost",
        "",
        *display([e_latex, c_latex]),
        "### Neuron dynamics `tau_k ds_k/dt = -dF/ds_k` (`d.dynamics_latex()`)",
        "",
        *display(derivation.dynamics_latex()),
        "### Nudging force `-beta dC/ds_k`",
        "",
        *display([latex for latex, _ in forces]),
        "### Parameter gradients `dF/dtheta` (`d.rule_latex()`)",
        "",
        *display(derivation.rule_latex()),
        "### EP update",
        "",
        "Hidden parameters (free fixed point `s^0` at `beta = 0`, nudged fixed point `s^beta`):",
        "",
        *display([latex for latex, _ in ep_hidden]),
        "Readout parameters (in `C` only):",
        "",
        *display([latex for latex, _ in ep_readout]),
        "### STDP form `d/dt dF/dtheta` (`d.stdp_latex()`)",
        "",
        *display(derivation.stdp_latex()),
        "### Plain text",
        "",
        *plain_text([
            f"z = {to_text(energy.output)}",
            e_text,
            c_text,
            str(derivation),
            *(text for _, text in forces),
            *(text for _, text in ep_hidden),
            *(text for _, text in ep_readout),
            *derivation.stdp_text(),
        ]),
    ]


def _arch(sizes) -> str:
    n_hidden = len(sizes) - 2
    return f"{'-'.join(map(str, sizes))} ({n_hidden} hidden layer{'s' if n_hidden != 1 else ''})"


def render(architectures=ARCHITECTURES) -> str:
    """The Markdown document, as a string (deterministic)."""
    out = [
        *header("The softmax cross-entropy readout", COMMAND),
        "The readout of Laborieux et al. (2021), *Scaling Equilibrium Propagation to Deep",
        "ConvNets by Drastically Reducing its Gradient Estimator Bias*, on the layered Hopfield",
        "energy of Scellier & Bengio (2017) (see [`layered_hopfield.md`](layered_hopfield.md)),",
        "derived with SymPy by `eqdyn.symbolic` and printed by eqdyn itself: these are the",
        "expressions compiled to the JAX code that the dynamics and the learning rule run.",
        "",
        "## Notation",
        "",
        "- Every state is a batch matrix with one row per example; the states are the hidden",
        "  layers `h_1, ..., h_{L-1}` only. `x` (`B x n_0`) is the clamped input and `d`",
        "  (`B x n_L`) the one-hot target. `W_k`, `b_k` (`k < L`) feed hidden layer `k`; the",
        "  readout `W_L` (`n_{L-1} x n_L`), `b_L` (`1 x n_L`) produces the logits `z` (`B x n_L`).",
        "- `lse(z)` is the column of row-wise log-sum-exps (`B x 1`), `softmax(z)` the row-wise",
        "  softmax (`B x n_L`). In the STDP form, `(A ⊙ softmax(z)) 1` with `1` of shape",
        "  `n_L x n_L` puts each row's sum in every column (the softmax Jacobian).",
        "- `\\dot{h}_{k} = dh_k/dt` is the velocity of a state, `\\dot{\\beta} = dbeta/dt`.",
        *NOTATION,
        "",
        "## The readout in Equilibrium Propagation",
        "",
        READOUT,
        "",
        "The EP update of a parameter `theta` is, as for the layered Hopfield energy,",
        "",
        *display([EP_UPDATE]),
        READOUT_EP,
        "",
        *display([
            r"\Delta W_{L} = -\frac{1}{\beta}\left[\frac{\partial F}{\partial W_{L}}\left("
            r"s^{\beta}\right) - 0\right] = -\frac{\partial C}{\partial W_{L}}\left(s^{\beta}\right),"
        ]),
        READOUT_EP_AFTER,
        "",
        READOUT_STDP,
        "",
    ]
    for sizes in architectures:
        call = f"d = eqdyn.derive(eqdyn.layered_hopfield_energy({tuple(sizes)}, " \
               f"cost=\"cross_entropy\"))"
        energy = layered_hopfield_energy(sizes, cost="cross_entropy")
        out += _section(_arch(sizes), call, derive(energy))
    spec = load_energy_file(HERE.parent / VARIANT_FILE, VARIANT_SIZES)
    call = (f"d = eqdyn.derive(load_energy_file(\"{VARIANT_FILE}\", {VARIANT_SIZES}).energy)"
            "  # eqdyn.models._energy_file")
    intro = [
        f"[`{VARIANT_FILE}`](energies/{Path(VARIANT_FILE).name}): lateral weights `L_1` inside",
        "`h_1`, a skip connection `S_0_3` (printed `S_{0 3}`) from the input straight to the",
        "readout logits, and time constants `tau = (1, 2)`, so that `h_2` relaxes twice as slowly",
        "(`2 dh_2/dt = -dF/dh_2`). The skip weights occur only in `C`, so like the readout they",
        "learn from `-dC/dS_0_3(s^beta)`. The fixed points, hence the EP update, do not depend",
        f"on `tau`. The file sets `activation = {spec.activation!r}` (smooth: eqdyn relaxes it in",
        "the gradient form above).",
        "",
    ]
    title = f"Variant with lateral and skip weights: {_arch(VARIANT_SIZES)}"
    out += _section(title, call, derive(spec.energy), intro)
    return finish(out)


def main(argv=None) -> int:
    return cli(
        argv, render=render, output=DEFAULT_OUTPUT, command=COMMAND,
        description="Derive the softmax cross-entropy readout (Laborieux et al. 2021) and write "
        "it up as Markdown with LaTeX equations.",
    )


if __name__ == "__main__":
    sys.exit(main())
