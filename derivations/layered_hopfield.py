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

import argparse
import difflib
import sys
from pathlib import Path

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from eqdyn.symbolic import Derivation, derive, layered_hopfield_energy, to_latex, to_text

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "layered_hopfield.md"
COMMAND = "python derivations/layered_hopfield.py"

#: The architectures written up: one and two hidden layers (Scellier & Bengio 2017, Table 2).
ARCHITECTURES: tuple[tuple[int, ...], ...] = ((784, 500, 10), (784, 500, 500, 10))


# ------------------------------------------------------------------ expression helpers


def _is_rho_prime(m) -> bool:
    """True for the elementwise application of a first derivative `rho'(.)`."""
    if not isinstance(m, ElementwiseApplyFunction):
        return False
    fn = m.function
    return (
        isinstance(fn, sp.Lambda)
        and isinstance(fn.expr, sp.Derivative)
        and len(fn.expr.variables) == 1
    )


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
            if _is_rho_prime(m):
                coeff *= c
            else:
                keep.append(a)
        if not keep:
            raise ValueError(f"a Hadamard product of rho' factors only: {expr}")
        body = keep[0] if len(keep) == 1 else sp.HadamardProduct(*keep)
        return body if coeff == 1 else sp.MatMul(coeff, body)
    return expr.func(*args)


def _neg(expr):
    out = -expr
    return out.doit() if hasattr(out, "doit") else out


def _renamed(states, fmt: str) -> dict:
    """Map each state symbol to a same-shaped symbol named by `fmt` (e.g. '{}^beta')."""
    return {s: sp.MatrixSymbol(fmt.format(s.name), *s.shape) for s in states}


def _potential_name(name: str) -> str:
    """The membrane potential of a state: h_k -> u_k, y -> u_y."""
    return "u_" + (name[2:] if name.startswith("h_") else name)


def _paren_latex(expr) -> str:
    s = to_latex(expr)
    return rf"\left({s}\right)" if isinstance(expr, sp.MatAdd) else s


def _paren_text(expr) -> str:
    s = to_text(expr)
    return f"({s})" if isinstance(expr, sp.MatAdd) else s


# ------------------------------------------------------------------ equation lists


def energy_parts_latex(derivation: Derivation) -> tuple[str, str]:
    """LaTeX of `E` (internal terms) and of `C` (cost terms), separately."""
    e = derivation.energy
    parts = []
    for i, t in enumerate(e.internal):
        s = to_latex(t)
        parts.append(s if i == 0 or s.startswith("-") else "+ " + s)
    cost = " + ".join(to_latex(c) for c in e.cost)
    return "E = " + " ".join(parts), "C = " + cost


def energy_parts_text(derivation: Derivation) -> tuple[str, str]:
    e = derivation.energy
    internal = " + ".join(to_text(t) for t in e.internal).replace("+ -", "- ")
    return "E = " + internal, "C = " + " + ".join(to_text(c) for c in e.cost)


def _split_equations(derivation: Derivation, lines: list[str]) -> tuple[list[str], list[str]]:
    n = len(derivation.state_grads)
    return lines[:n], lines[n:]


def ep_updates(derivation: Derivation) -> list[tuple[str, str]]:
    """(LaTeX, text) of `Delta theta = -(1/beta)[dF/dtheta(s^beta) - dF/dtheta(s^0)]` per parameter.

    The two `dF/dtheta` are the derived ones with every state replaced by its value at the
    nudged (`^beta`) and at the free (`^0`) fixed point.
    """
    states = derivation.energy.states
    nudged, free = _renamed(states, "{}^beta"), _renamed(states, "{}^0")
    out = []
    for p, g in derivation.param_grads.items():
        a = _neg(g.xreplace(nudged))  # -dF/dtheta(s^beta)
        b = _neg(g.xreplace(free))  # -dF/dtheta(s^0)
        pl = sp.latex(p)
        latex = (
            rf"\Delta {pl} = -\frac{{1}}{{\beta}}\left[\frac{{\partial F}}{{\partial {pl}}}(s^{{\beta}})"
            rf" - \frac{{\partial F}}{{\partial {pl}}}(s^{{0}})\right]"
            rf" = \frac{{1}}{{\beta}}\left[{_paren_latex(a)} - {_paren_latex(b)}\right]"
        )
        text = f"Delta {p.name} = (1/beta) [{_paren_text(a)} - {_paren_text(b)}]"
        out.append((latex, text))
    return out


def leaky_equations(derivation: Derivation) -> list[tuple[str, str]]:
    """(LaTeX, text) of the leaky-integrator field `du_k/dt = -dF/ds_k |_{rho' = 1, s = u}`."""
    states = derivation.energy.states
    pot = {s: sp.MatrixSymbol(_potential_name(s.name), *s.shape) for s in states}
    out = []
    for s, g in derivation.state_grads.items():
        field = _neg(drop_rho_prime(g)).xreplace(pot)
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


def _display(lines: list[str]) -> list[str]:
    """Each LaTeX line as its own `$$ ... $$` display block."""
    out = []
    for line in lines:
        out += ["$$", line, "$$", ""]
    return out


def _section(derivation: Derivation, sizes: tuple[int, ...]) -> list[str]:
    arch = "-".join(map(str, sizes))
    n_hidden = len(sizes) - 2
    e_latex, c_latex = energy_parts_latex(derivation)
    e_text, c_text = energy_parts_text(derivation)
    dyn_latex, grad_latex = _split_equations(derivation, derivation.equations_latex())
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
        *_display([derivation.energy.latex()]),
        "with the internal energy and the cost",
        "",
        *_display([e_latex, c_latex]),
        "### Neuron dynamics `ds_k/dt = -dF/ds_k` (gradient formulation)",
        "",
        *_display(dyn_latex),
        "### Weight and bias gradients `dF/dW_k`, `dF/db_k`",
        "",
        *_display(grad_latex),
        "### EP update",
        "",
        "Free fixed point `s^0` (`beta = 0`), nudged fixed point `s^beta`; `x` is clamped in both.",
        "",
        *_display([latex for latex, _ in ep]),
        "### Leaky-integrator formulation (hard sigmoid)",
        "",
        *_display([latex for latex, _ in leaky]),
        "### Plain text",
        "",
        "```text",
        e_text,
        c_text,
        str(derivation),
        *(text for _, text in ep),
        "# leaky-integrator formulation (hard sigmoid)",
        *(text for _, text in leaky),
        "```",
        "",
    ]
    return out


def render(architectures=ARCHITECTURES) -> str:
    """The Markdown document, as a string (deterministic)."""
    out = [
        "# The layered Hopfield energy and its Equilibrium Propagation rule",
        "",
        f"<!-- Generated by `{COMMAND}`; do not edit by hand. "
        f"`{COMMAND} --check` tells whether this file is current. -->",
        "",
        "The model of Scellier & Bengio (2017), *Equilibrium Propagation* (arXiv 1602.05179),",
        "derived with SymPy by `eqdyn.symbolic` and printed by eqdyn itself: these are the",
        "expressions compiled to the JAX code that the dynamics and the learning rule run.",
        "",
        "## Notation",
        "",
        "- Every state is a batch matrix with one row per example: the clamped input `x`",
        "  (`B x n_0`), the hidden layers `h_1, ..., h_{L-1}` and the output `y`; `d` is the target.",
        "  `W_k` (`n_{k-1} x n_k`) connects layer `k-1` to layer `k`; `b_k` (`1 x n_k`) is a bias.",
        "- `rho` is the activation, applied elementwise; `rho'` its derivative; `⊙` (`∘`) the",
        "  elementwise (Hadamard) product; `tr(A B^T)` sums `A ⊙ B` over the batch and the units.",
        "- `1` is an all-ones vector: `B x 1` in `1 b_k` (a bias broadcast over the batch) and",
        "  `1 x B` in `dF/db_k` (a sum over the batch).",
        "- The input enters as `x W_1`, without `rho` (the same as `rho(x)` for pixels in `[0, 1]`",
        "  under the hard sigmoid).",
        "- `beta` is the nudging strength: `beta = 0` is the free phase.",
        "",
        "## Equilibrium Propagation",
        "",
        "The neurons follow the gradient flow of `F`, which decreases along trajectories",
        "(`dF/dt = -||ds/dt||^2 <= 0`), so they settle at a fixed point:",
        "",
        *_display([r"\frac{d s_k}{dt} = -\frac{\partial F}{\partial s_k}, \qquad F = E + \beta C"]),
        "With `s^0` the free fixed point and `s^beta` the nudged one (started from `s^0`), the EP",
        "update of any parameter `theta` (Scellier & Bengio 2017, Theorem 1) is",
        "",
        *_display(
            [
                r"\Delta\theta = -\frac{1}{\beta}\left[\frac{\partial F}{\partial \theta}\left(s^{\beta}"
                r"\right) - \frac{\partial F}{\partial \theta}\left(s^{0}\right)\right]"
                r" \;\xrightarrow[\beta \to 0]{}\; -\frac{\partial J}{\partial \theta},"
                r" \qquad J = C\left(s^{0}\right)"
            ]
        ),
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
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def write(path: str | Path = DEFAULT_OUTPUT) -> Path:
    """Render and write the document to `path`; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Derive the layered Hopfield energy (Scellier & Bengio 2017) and write it "
        "up as Markdown with LaTeX equations."
    )
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT),
                        help="the Markdown file to write or check (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if OUTPUT differs from what would be written")
    args = parser.parse_args(argv)
    path = Path(args.output)
    if args.check:
        text = render()
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            print(f"{path} does not exist; run `{COMMAND}` to write it.", file=sys.stderr)
            return 1
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True), text.splitlines(keepends=True),
                fromfile=f"{path} (committed)", tofile=f"{path} (regenerated)", n=1,
            )
            sys.stderr.writelines(list(diff)[:60])
            print(f"\n{path} is stale; run `{COMMAND}` to regenerate it.", file=sys.stderr)
            return 1
        print(f"{path} is up to date.")
        return 0
    write(path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
