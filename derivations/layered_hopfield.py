"""Derive the layered Hopfield energy of Scellier & Bengio (2017) and write it up as Markdown.

    python derivations/layered_hopfield.py            # (re)write derivations/layered_hopfield.md
    python derivations/layered_hopfield.py --check    # exit 1 if the committed file is stale
    python derivations/layered_hopfield.py --output /tmp/lh.md

Every equation in the output is printed by eqdyn from the SymPy derivation
(`Derivation.equations_latex()`, `Energy.latex()`, `eqdyn.symbolic.to_latex`), never typed by
hand, so the document is exactly what the compiled JAX code computes. The output is
deterministic (no timestamps, no versions), so `tests/test_derivations.py` regenerates it and
compares it with the committed copy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from eqdyn.symbolic import Derivation, derive, layered_hopfield_energy, to_latex, to_text

if str(Path(__file__).resolve().parent) not in sys.path:  # derivations/ is not a package
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    EP_UPDATE, HERE, HOPFIELD_LAYERS, NOTATION, cli, display, energy_parts_latex,
    energy_parts_text, ep_updates, finish, header, is_rho_prime, neg, plain_text,
    split_equations,
)

DEFAULT_OUTPUT = HERE / "layered_hopfield.md"
COMMAND = "python derivations/layered_hopfield.py"

#: The architectures written up: one and two hidden layers (Scellier & Bengio 2017, Table 2).
ARCHITECTURES: tuple[tuple[int, ...], ...] = ((784, 500, 10), (784, 500, 500, 10))


# ------------------------------------------------------------------ expression helpers


def _split_scalar(m):
    """(scalar coefficient, matrix part) of a matrix product such as `-1 * rho'(h)`."""
    if isinstance(m, sp.MatMul):
        scalars = [a for a in m.args if not getattr(a, "is_Matrix", False)]
        mats = [a for a in m.args if getattr(a, "is_Matrix", False)]
        if scalars and len(mats) == 1:
            return sp.Mul(*scalars), mats[0]
    return sp.Integer(1), m


def drop_rho_prime(expr):
    """The expression with every `rho'(.)` factor of a Hadamard product set to one.

    This is the leaky-integrator field of `eqdyn.models.compile_system(..., "leaky")`, which
    binds `rho_d1` to the constant 1 in the generated code; here it is done symbolically so that
    it can be printed.
    """
    if not isinstance(expr, sp.Basic) or not expr.args or isinstance(expr, sp.MatrixSymbol):
        return expr
    if isinstance(expr, ElementwiseApplyFunction):
        return expr
    args = [drop_rho_prime(a) for a in expr.args]
    if isinstance(expr, sp.HadamardProduct):
        coeff, keep = sp.Integer(1), []
        for a in args:
            c, m = _split_scalar(a)
            if is_rho_prime(m):
                coeff *= c
            else:
                keep.append(a)
        if not keep:
            raise ValueError(f"a Hadamard product of rho' factors only: {expr}")
        body = keep[0] if len(keep) == 1 else sp.HadamardProduct(*keep)
        return body if coeff == 1 else sp.MatMul(coeff, body)
    return expr.func(*args)


def _potential_name(name: str) -> str:
    """The membrane potential of a state: h_k -> u_k, y -> u_y."""
    return "u_" + (name[2:] if name.startswith("h_") else name)


def leaky_equations(derivation: Derivation) -> list[tuple[str, str]]:
    """(LaTeX, text) of the leaky-integrator field `du_k/dt = -dF/ds_k |_{rho' = 1, s = u}`."""
    states = derivation.energy.states
    pot = {s: sp.MatrixSymbol(_potential_name(s.name), *s.shape) for s in states}
    out = []
    for s, g in derivation.state_grads.items():
        field = neg(drop_rho_prime(g)).xreplace(pot)
        u = pot[s]
        ul, sl = sp.latex(u), sp.latex(s)
        latex = (
            rf"\frac{{d {ul}}}{{dt}} = -\left.\frac{{\partial F}}{{\partial {sl}}}\right|_{{\rho' = 1,\ "
            rf"{sl} = {ul}}} = {to_latex(field)}, \qquad {sl} = \rho\left({ul}\right)"
        )
        text = f"d{u.name}/dt = {to_text(field)},   {s.name} = rho({u.name})"
        out.append((latex, text))
    return out


# ------------------------------------------------------------------ document

LEAKY_REASONING = """\
The hard sigmoid `rho(u) = min(max(u, 0), 1)` has `rho' = 0` outside `[0, 1]`, so the gradient
flow above is discontinuous at a saturated unit. eqdyn therefore relaxes hard-sigmoid networks in
the *leaky-integrator* (membrane potential) form: it integrates `u` with the derived field in
which every `rho'` factor is set to one, and reads the network state out as `s = rho(u)`.
From `eqdyn/models/_system.py`:

> For a *projection* activation (hard sigmoid: `rho' = 1` inside `[0, 1]`,
> `rho(rho(u)) = rho(u)`) the two forms agree wherever no unit is saturated, but the leaky form
> is Lipschitz: at a saturated unit the gradient form's field jumps sign across the boundary and
> adaptive solvers never settle, whereas `u` simply moves past the boundary. Its fixed points
> `u* = W rho(u*) + b` are exactly those of the paper's clipped iteration
> `s <- clip(s - eps dF/ds, 0, 1)`, i.e. the minima of `F` on the box `[0, 1]^n`, so EP's
> theorem applies to them.

The energy `F` and the parameter gradients `dF/dtheta` (hence the EP update) are always evaluated
at the observed state `s = rho(u)`. Smooth activations (sigmoid, tanh) use the gradient flow as
derived (`formulation="gradient"`)."""


def _section(derivation: Derivation, sizes: tuple[int, ...]) -> list[str]:
    arch = "-".join(map(str, sizes))
    n_hidden = len(sizes) - 2
    e_latex, c_latex = energy_parts_latex(derivation)
    e_text, c_text = energy_parts_text(derivation)
    dyn_latex, grad_latex = split_equations(derivation, derivation.equations_latex())
    ep = ep_updates(derivation)
    leaky = leaky_equations(derivation)
    call = f"eqdyn.derive(eqdyn.layered_hopfield_energy({tuple(sizes)}))"
    out = [
        f"## {arch} ({n_hidden} hidden layer{'s' if n_hidden != 1 else ''})",
        "",
        f"`{call}`",
        "",
        "### Energy `F = E + beta C`",
        "",
        *display([derivation.energy.latex()]),
        "with the internal energy and the cost",
        "",
        *display([e_latex, c_latex]),
        "### Neuron dynamics `ds_k/dt = -dF/ds_k` (gradient formulation)",
        "",
        *display(dyn_latex),
        "### Weight and bias gradients `dF/dW_k`, `dF/db_k`",
        "",
        *display(grad_latex),
        "### EP update",
        "",
        "Free fixed point `s^0` (`beta = 0`), nudged fixed point `s^beta`; `x` is clamped in both.",
        "",
        *display([latex for latex, _ in ep]),
        "### Leaky-integrator formulation (hard sigmoid)",
        "",
        *display([latex for latex, _ in leaky]),
        "### Plain text",
        "",
        *plain_text([
            e_text,
            c_text,
            str(derivation),
            *(text for _, text in ep),
            "# leaky-integrator formulation (hard sigmoid)",
            *(text for _, text in leaky),
        ]),
    ]
    return out


def render(architectures=ARCHITECTURES) -> str:
    """The Markdown document, as a string (deterministic)."""
    out = [
        *header("The layered Hopfield energy: dynamics, Equilibrium Propagation rule and "
                "leaky-integrator form", COMMAND),
        "The model of Scellier & Bengio (2017), *Equilibrium Propagation* (arXiv 1602.05179),",
        "derived with SymPy by `eqdyn.symbolic` and printed by eqdyn itself: these are the",
        "expressions compiled to the JAX code that the dynamics and the learning rule run.",
        "Besides the gradient flow it gives the leaky-integrator (membrane potential) form in",
        "which eqdyn relaxes hard-sigmoid networks. The STDP form of the learning rule is in",
        "[`hopfield_stdp.md`](hopfield_stdp.md), the softmax cross-entropy readout in",
        "[`crossentropy_readout.md`](crossentropy_readout.md).",
        "",
        "## Notation",
        "",
        *HOPFIELD_LAYERS,
        *NOTATION,
        "- The input enters as `x W_1`, without `rho` (the same as `rho(x)` for pixels in `[0, 1]`",
        "  under the hard sigmoid).",
        "",
        "## Equilibrium Propagation",
        "",
        "The neurons follow the gradient flow of `F`, which decreases along trajectories",
        "(`dF/dt = -||ds/dt||^2 <= 0`), so they settle at a fixed point:",
        "",
        *display([r"\frac{d s_k}{dt} = -\frac{\partial F}{\partial s_k}, \qquad F = E + \beta C"]),
        "With `s^0` the free fixed point and `s^beta` the nudged one (started from `s^0`), the EP",
        "update of any parameter `theta` (Scellier & Bengio 2017, Theorem 1) is",
        "",
        *display([
            EP_UPDATE + r" \;\xrightarrow[\beta \to 0]{}\; -\frac{\partial J}{\partial \theta},"
            r" \qquad J = C\left(s^{0}\right)"
        ]),
        "`eqdyn.ep_gradient` returns the gradient estimate, i.e. minus this update, divided by the",
        "batch size (a gradient of the mean cost); its `symmetric` variant uses `s^{-beta}` in",
        "place of `s^0` with `1/(2 beta)`, whose bias is `O(beta^2)` instead of `O(beta)`.",
        "",
        "## Leaky-integrator formulation",
        "",
        LEAKY_REASONING,
        "",
    ]
    for sizes in architectures:
        out += _section(derive(layered_hopfield_energy(sizes)), tuple(sizes))
    return finish(out)


def main(argv=None) -> int:
    return cli(
        argv, render=render, output=DEFAULT_OUTPUT, command=COMMAND,
        description="Derive the layered Hopfield energy (Scellier & Bengio 2017) and write it "
        "up as Markdown with LaTeX equations.",
    )


if __name__ == "__main__":
    sys.exit(main())
