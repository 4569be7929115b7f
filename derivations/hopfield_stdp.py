"""Derive the STDP form of the layered Hopfield learning rule and write it up as Markdown.

    python derivations/hopfield_stdp.py            # (re)write derivations/hopfield_stdp.md
    python derivations/hopfield_stdp.py --check    # exit 1 if the committed file is stale
    python derivations/hopfield_stdp.py --output /tmp/stdp.md

The STDP form of Equilibrium Propagation (Scellier & Bengio 2017; Bengio et al. 2015) updates
the parameters continuously during the nudged relaxation, `dtheta/dt = -(eta/beta) d/dt dF/dtheta`.
`eqdyn.symbolic.derive` gives `d/dt dF/dtheta` along the trajectory (`Derivation.param_rates`, in
terms of the state velocities `ds_k/dt` and `dbeta/dt`); every equation in the output is printed
by eqdyn from it (`Derivation.stdp_latex()`, `eqdyn.symbolic.to_latex`), never typed by hand.
The output is deterministic, so `tests/test_derivations.py` regenerates it and compares it with
the committed copy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import sympy as sp

from eqdyn.symbolic import Derivation, derive, layered_hopfield_energy, to_latex, to_text

if str(Path(__file__).resolve().parent) not in sys.path:  # derivations/ is not a package
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    EP_UPDATE, HERE, HOPFIELD_LAYERS, NOTATION, cli, display, finish, header, is_rho_prime, neg,
    plain_text,
)

DEFAULT_OUTPUT = HERE / "hopfield_stdp.md"
COMMAND = "python derivations/hopfield_stdp.py"

#: The architectures written up: one and two hidden layers (Scellier & Bengio 2017, Table 2).
ARCHITECTURES: tuple[tuple[int, ...], ...] = ((784, 500, 10), (784, 500, 500, 10))


# ------------------------------------------------------------------ expression helpers


def _rho_of(rho_prime, arg):
    """`rho(arg)`, for the `rho'(.)` node `rho_prime` (same function, no derivative)."""
    fn = rho_prime.function  # Lambda(u, Derivative(rho(u), u))
    return type(rho_prime)(sp.Lambda(fn.variables, fn.expr.expr), arg)


def activity_rates(derivation: Derivation) -> tuple[dict, dict]:
    """Replacements of `rho'(s_k) ⊙ ds_k/dt` (and of its transpose) by a symbol `d rho(s_k)/dt`.

    The chain rule `d rho(s)/dt = rho'(s) ⊙ ds/dt`, applied to the derived `param_rates` for
    display; returns one map whose symbols print as LaTeX and one whose symbols print as text.
    """
    velocities = derivation.velocities
    latex, text = {}, {}
    for rate in derivation.param_rates.values():
        for node in sp.preorder_traversal(rate):
            if not isinstance(node, sp.HadamardProduct) or len(node.args) != 2:
                continue
            primes = [a for a in node.args if is_rho_prime(a)]
            others = [a for a in node.args if not is_rho_prime(a)]
            if len(primes) != 1 or len(others) != 1:
                continue
            arg = primes[0].expr
            transposed = isinstance(arg, sp.Transpose)
            state = arg.arg if transposed else arg
            if state not in velocities:
                continue
            v = velocities[state]
            if others[0] != (sp.Transpose(v) if transposed else v):
                continue
            rho = _rho_of(primes[0], state)
            name_l, name_t = rf"\frac{{d {to_latex(rho)}}}{{dt}}", f"d{to_text(rho)}/dt"
            if transposed:
                name_l, name_t = rf"\left({name_l}\right)^{{T}}", f"({name_t}).T"
            latex[node] = sp.MatrixSymbol(name_l, *node.shape)
            text[node] = sp.MatrixSymbol(name_t, *node.shape)
    return latex, text


def stdp_rules(derivation: Derivation) -> list[tuple[str, str]]:
    """(LaTeX, text) of `dtheta/dt = -(eta/beta) d/dt dF/dtheta` per parameter, in `d rho/dt`."""
    as_latex, as_text = activity_rates(derivation)
    out = []
    for p, rate in derivation.param_rates.items():
        pl = sp.latex(p)
        body_l = to_latex(neg(rate.xreplace(as_latex)))  # -d/dt dF/dtheta
        latex = (
            rf"\frac{{d {pl}}}{{dt}} = -\frac{{\eta}}{{\beta}} \frac{{d}}{{dt}} "
            rf"\frac{{\partial F}}{{\partial {pl}}} = \frac{{\eta}}{{\beta}}\left[{body_l}\right]"
        )
        text = f"d{p.name}/dt = (eta/beta) [{to_text(neg(rate.xreplace(as_text)))}]"
        out.append((latex, text))
    return out


# ------------------------------------------------------------------ document

REASONING = r"""With `s^0` the free fixed point and `s^beta` the nudged one, EP updates a parameter
`theta` by"""

FTC = r"""The *STDP form* spreads this update over the nudged relaxation. The nudged phase starts
at `s(0) = s^0` and relaxes, at fixed `beta`, to `s(T) = s^beta` (`T` long enough to settle);
during it every parameter follows"""

FTC_AFTER = r"""Integrated over the phase, the right-hand side is a total time derivative, so by the
fundamental theorem of calculus the accumulated change is exactly the EP update (times the
learning rate `eta`), whatever path the states take and whatever the time constants:"""

LOCALITY = r"""Nothing has to be stored from the free phase: each parameter only needs the current
activities and their rates of change at its two ends. For the layered Hopfield energy
`dF/dW_k = -rho(s_{k-1})^T rho(s_k)`, and the chain rule `d rho(s)/dt = rho'(s) ⊙ ds/dt` gives

    dW_k/dt = (eta/beta) [ (rho'(s_{k-1}) ⊙ ds_{k-1}/dt)^T rho(s_k) + rho(s_{k-1})^T (rho'(s_k) ⊙ ds_k/dt) ],

summed over the batch; per synapse `(i, j)` it is `rho(s_i) d rho(s_j)/dt + d rho(s_i)/dt
rho(s_j)` (`= d/dt [rho(s_i) rho(s_j)]`): the presynaptic activity times the rate of change of
the postsynaptic activity, plus the converse. This is the spike-timing-dependent plasticity
(STDP) rule "presynaptic activity times rate of change of postsynaptic activity" of Bengio et
al. (2015), in the symmetric form that Scellier & Bengio (2017) relate to the EP update in
their section on STDP. `W_1` keeps only the second term, with `x` in place of `rho(x)`, because the input is
clamped (`dx/dt = 0`); a bias follows the rate of its unit,
`db_k/dt = (eta/beta) 1 d rho(s_k)/dt`. `dF/dtheta` does not depend on `beta` here, so no
`dbeta/dt` term appears (it does for the softmax readout of
[`crossentropy_readout.md`](crossentropy_readout.md)).

The identity is exact for the rates of a trajectory at fixed parameters: accumulate `dtheta/dt`
over the phase and apply it at the end, or keep `eta` small enough that the parameters barely
move during the phase (then it holds to first order in `eta`). In eqdyn,
`eqdyn.derive(energy).param_rates` holds the derived `d/dt dF/dtheta`,
`System.param_rates(states, velocities, params, inputs, beta, beta_rate)` evaluates them (checked
against `jax.jvp` by `eqdyn derive --stdp --check`), and `eqdyn derive --stdp` prints them."""


def _section(sizes: tuple[int, ...]) -> list[str]:
    derivation = derive(layered_hopfield_energy(sizes))
    arch = "-".join(map(str, sizes))
    n_hidden = len(sizes) - 2
    rules = stdp_rules(derivation)
    call = f"d = eqdyn.derive(eqdyn.layered_hopfield_energy({tuple(sizes)}))"
    return [
        f"## {arch} ({n_hidden} hidden layer{'s' if n_hidden != 1 else ''})",
        "",
        f"`{call}`",
        "",
        "### Neuron dynamics `ds_k/dt = -dF/ds_k` (`d.dynamics_latex()`)",
        "",
        "These are the velocities `\\dot{s}_k` that enter the rates below.",
        "",
        *display(derivation.dynamics_latex()),
        "### Parameter gradients `dF/dtheta` (`d.rule_latex()`)",
        "",
        *display(derivation.rule_latex()),
        "### Their time derivatives `d/dt dF/dtheta` (`d.param_rates`, `d.stdp_latex()`)",
        "",
        *display(derivation.stdp_latex()),
        "### STDP-form rule `dtheta/dt = -(eta/beta) d/dt dF/dtheta`",
        "",
        "The same rates with `rho'(s_k) ⊙ ds_k/dt` written as `d rho(s_k)/dt`:",
        "",
        *display([latex for latex, _ in rules]),
        "### Plain text",
        "",
        *plain_text([
            *derivation.equations_text(),
            *derivation.stdp_text(),
            *(text for _, text in rules),
        ]),
    ]


def render(architectures=ARCHITECTURES) -> str:
    """The Markdown document, as a string (deterministic)."""
    out = [
        *header("The STDP form of the layered Hopfield learning rule", COMMAND),
        "The learning rule of the layered Hopfield energy of Scellier & Bengio (2017),",
        "*Equilibrium Propagation* (arXiv 1602.05179), in its continuous-time, spike-timing-",
        "dependent form. The energy, the dynamics and the two-phase EP update are in",
        "[`layered_hopfield.md`](layered_hopfield.md); every equation here is derived with SymPy by",
        "`eqdyn.symbolic` and printed by eqdyn itself.",
        "",
        "## Notation",
        "",
        *HOPFIELD_LAYERS,
        "- `\\dot{s}_k = ds_k/dt` is the velocity of state `s_k` along the trajectory, printed",
        "  `\\dot{h}_{1}`, `\\dot{y}` (`dh_1/dt` in plain text); `\\dot{\\beta} = dbeta/dt`. "
        "`eta` is the learning rate.",
        *NOTATION,
        "",
        "## From the EP update to a rule in time",
        "",
        REASONING,
        "",
        *display([EP_UPDATE]),
        FTC,
        "",
        *display([
            r"\frac{d\theta}{dt} = -\frac{\eta}{\beta} \frac{d}{dt}"
            r" \frac{\partial F}{\partial \theta}\left(s(t)\right)"
        ]),
        FTC_AFTER,
        "",
        *display([
            r"\int_{0}^{T} \frac{d\theta}{dt} \, dt = -\frac{\eta}{\beta}\left["
            r"\frac{\partial F}{\partial \theta}\left(s^{\beta}\right)"
            r" - \frac{\partial F}{\partial \theta}\left(s^{0}\right)\right] = \eta \, \Delta\theta"
        ]),
        LOCALITY,
        "",
    ]
    for sizes in architectures:
        out += _section(tuple(sizes))
    return finish(out)


def main(argv=None) -> int:
    return cli(
        argv, render=render, output=DEFAULT_OUTPUT, command=COMMAND,
        description="Derive the STDP form of the layered Hopfield learning rule and write it up "
        "as Markdown with LaTeX equations.",
    )


if __name__ == "__main__":
    sys.exit(main())
