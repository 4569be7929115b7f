"""Energies as SymPy matrix expressions, and their symbolic derivatives.

This module is the *symbolic* layer: it imports SymPy only (never JAX). An energy is a sum of
scalar terms over named matrix symbols of three kinds:

- **states** (`B x n` batched neuron states, e.g. hidden layers `h_1` and the output `y`),
- **parameters** (weights `W_k` of shape `n_{k-1} x n_k`, biases `b_k` of shape `1 x n_k`),
- **inputs** (clamped quantities: the input `x`, the target `d`, and the scalar nudging `beta`).

Every term is written at the matrix level so that `Trace(term).diff(M)` yields a matrix
expression (matrix products, Hadamard products, elementwise functions); no expression is ever
expanded per neuron. Derivatives are taken term by term, because SymPy silently returns zero
for `(Trace(A) + Trace(B)).diff(X)` in some versions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from .._errors import DerivationError
from ._printing import to_latex, to_text

__all__ = [
    "BATCH",
    "Energy",
    "Derivation",
    "derive",
    "layered_hopfield_energy",
    "elementwise",
]

#: The symbolic batch size: states are ``BATCH x n`` matrices (one row per example).
BATCH = sp.Symbol("B", integer=True, positive=True)


def elementwise(fn: sp.Function | sp.Lambda, m: sp.MatrixExpr) -> sp.MatrixExpr:
    """Apply the scalar function `fn` to every entry of the matrix expression `m`."""
    return ElementwiseApplyFunction(fn, m)


@dataclasses.dataclass(frozen=True)
class Energy:
    """A scalar energy `F = E + beta * C` over named matrix symbols.

    **Arguments:**

    - `internal`: scalar SymPy expressions (typically `Trace` of matrix products) whose sum is the
      internal energy `E`.
    - `cost`: scalar expressions whose sum is the cost `C` (e.g. `1/2 ||y - d||^2`).
    - `states`: the neuron states, in order; each a `MatrixSymbol` whose rows are examples.
    - `params`: the trainable parameters, in order.
    - `inputs`: clamped matrix inputs (input data, targets).
    - `scalars`: scalar inputs; the first is the nudging strength `beta` multiplying `C`.
    - `functions`: the opaque activation functions used by the terms (e.g. `rho`).
    - `name`: a short human-readable name.
    """

    internal: tuple[sp.Expr, ...]
    cost: tuple[sp.Expr, ...]
    states: tuple[sp.MatrixSymbol, ...]
    params: tuple[sp.MatrixSymbol, ...]
    inputs: tuple[sp.MatrixSymbol, ...] = ()
    scalars: tuple[sp.Symbol, ...] = ()
    functions: tuple[sp.FunctionClass, ...] = ()
    name: str = "energy"

    @property
    def beta(self) -> sp.Symbol:
        """The nudging strength (the first scalar)."""
        return self.scalars[0]

    @property
    def terms(self) -> tuple[sp.Expr, ...]:
        """All terms of `F`: the internal ones, then `beta` times each cost term."""
        return tuple(self.internal) + tuple(self.beta * c for c in self.cost)

    def __post_init__(self):
        if self.cost and not self.scalars:
            raise DerivationError(
                f"`{self.name}` has cost terms but no scalars; declare the nudging strength "
                "`beta` as the first entry of `scalars`."
            )
        known = {*self.states, *self.params, *self.inputs}
        names = [s.name for s in known] + [s.name for s in self.scalars]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise DerivationError(
                f"`{self.name}` declares the symbol name(s) {sorted(dup)} more than once; "
                "give every state, parameter and input a distinct name."
            )
        for i, term in enumerate(self.terms):
            term = sp.sympify(term)
            if getattr(term, "is_Matrix", False) or isinstance(term, sp.MatrixExpr):
                raise DerivationError(
                    f"term {i} of `{self.name}` is a matrix of shape {term.shape}, not a scalar: "
                    f"{term}. Wrap it in `sympy.Trace(...)` (e.g. Trace(A*B.T) for sum_ij A_ij B_ij)."
                )
            for m in term.atoms(sp.MatrixSymbol):
                if m not in known:
                    raise DerivationError(
                        f"term {i} of `{self.name}` uses the matrix symbol `{m.name}` "
                        f"(shape {m.shape}) that is neither a state, a parameter nor an input; "
                        "declare it in `states`, `params` or `inputs`."
                    )
            free = {s for s in term.free_symbols if not isinstance(s, sp.MatrixSymbol)}
            free -= {BATCH, *self.scalars}
            # symbols that only appear as shapes of matrix symbols are fine
            shape_syms = set()
            for m in term.atoms(sp.MatrixSymbol):
                for dim in m.shape:
                    shape_syms |= sp.sympify(dim).free_symbols
            free -= shape_syms
            free = {s for s in free if not _is_dummy(s)}
            if free:
                raise DerivationError(
                    f"term {i} of `{self.name}` uses the scalar symbol(s) "
                    f"{sorted(s.name for s in free)} that are not declared; add them to `scalars`."
                )

    @property
    def expr(self) -> sp.Expr:
        """The whole energy as one (unevaluated) SymPy sum."""
        return sp.Add(*self.terms, evaluate=False)

    def latex(self) -> str:
        """LaTeX for `F = E + C` (the cost terms carry their `beta` factor)."""
        e = " ".join(_signed_latex(t, i == 0) for i, t in enumerate(self.internal))
        c = " ".join(_signed_latex(t, False) for t in self.terms[len(self.internal):])
        return f"F = {e} {c}".strip()

    def _repr_latex_(self) -> str:
        return f"$\\displaystyle {self.latex()}$"


def _is_dummy(s) -> bool:
    return isinstance(s, sp.Dummy)


def _signed_latex(term: sp.Expr, first: bool) -> str:
    s = to_latex(term)
    if first or s.startswith("-"):
        return s
    return "+ " + s


@dataclasses.dataclass(frozen=True)
class Derivation:
    """The symbolic derivatives of an energy.

    **Fields:**

    - `energy`: the `Energy` derived.
    - `state_grads`: for each state `s_k`, the matrix expression `dF/ds_k` (shape of `s_k`).
      The neuron dynamics are `ds_k/dt = -dF/ds_k`.
    - `param_grads`: for each parameter `theta`, `dF/dtheta` (shape of `theta`). The EP update
      is `-(1/beta) [dF/dtheta(s^beta) - dF/dtheta(s^0)]`.
    """

    energy: Energy
    state_grads: Mapping[sp.MatrixSymbol, sp.MatrixExpr]
    param_grads: Mapping[sp.MatrixSymbol, sp.MatrixExpr]

    def equations_latex(self) -> list[str]:
        """One LaTeX line per equation: the dynamics of each state, then each parameter gradient."""
        lines = []
        for s, g in self.state_grads.items():
            lines.append(
                rf"\frac{{d {sp.latex(s)}}}{{dt}} = -\frac{{\partial F}}{{\partial {sp.latex(s)}}}"
                rf" = {to_latex(_neg(g))}"
            )
        for p, g in self.param_grads.items():
            lines.append(rf"\frac{{\partial F}}{{\partial {sp.latex(p)}}} = {to_latex(g)}")
        return lines

    def equations_text(self) -> list[str]:
        """The same equations as plain text."""
        lines = []
        for s, g in self.state_grads.items():
            lines.append(f"d{s.name}/dt = -dF/d{s.name} = {to_text(_neg(g))}")
        for p, g in self.param_grads.items():
            lines.append(f"dF/d{p.name} = {to_text(g)}")
        return lines

    def latex(self) -> str:
        body = " \\\\\n".join(self.equations_latex())
        return "\\begin{aligned}\n" + self.energy.latex() + " \\\\\n" + body + "\n\\end{aligned}"

    def _repr_latex_(self) -> str:
        return f"$\\displaystyle {self.latex()}$"

    def __str__(self) -> str:
        terms = " + ".join(to_text(t) for t in self.energy.terms).replace("+ -", "- ")
        return "\n".join([f"F = {terms}", *self.equations_text()])


def _neg(g: sp.MatrixExpr) -> sp.MatrixExpr:
    return (-g).doit() if hasattr(-g, "doit") else -g


def _diff_term(term: sp.Expr, wrt: sp.MatrixSymbol, energy: Energy, index: int) -> sp.MatrixExpr:
    if not term.has(wrt):
        return sp.ZeroMatrix(*wrt.shape)
    try:
        d = term.diff(wrt)
    except Exception as exc:  # SymPy raises many types here
        raise DerivationError(
            f"SymPy could not differentiate term {index} of `{energy.name}` with respect to "
            f"`{wrt.name}`: {term}\n  ({type(exc).__name__}: {exc}). Rewrite the term as a Trace of "
            "matrix products, Hadamard products and elementwise functions."
        ) from exc
    d = d.doit() if hasattr(d, "doit") else d
    unevaluated = [a for a in sp.preorder_traversal(d)
                   if isinstance(a, sp.Derivative) and a.expr.has(wrt)]
    if unevaluated:
        raise DerivationError(
            f"SymPy left an unevaluated derivative when differentiating term {index} of "
            f"`{energy.name}` with respect to `{wrt.name}`: {term}. Rewrite the term at the matrix "
            "level (Trace of products)."
        )
    shape = getattr(d, "shape", None)
    if shape is None or tuple(shape) != tuple(wrt.shape):
        raise DerivationError(
            f"the derivative of term {index} of `{energy.name}` with respect to `{wrt.name}` has "
            f"shape {shape}, but `{wrt.name}` has shape {wrt.shape}: the symbol is used with "
            "inconsistent shapes. Check the term's products and transposes."
        )
    return d


def derive(energy: Energy) -> Derivation:
    """Differentiate `energy` with respect to every state and parameter, term by term.

    **Arguments:**

    - `energy`: an `Energy`.

    **Returns:**

    A `Derivation` with `dF/ds_k` for every state and `dF/dtheta` for every parameter, as
    SymPy matrix expressions.

    **Raises:**

    `DerivationError` naming the term and symbol when SymPy cannot differentiate a term or
    the result is not a matrix of the symbol's shape.
    """

    def grad(wrt):
        parts = [_diff_term(t, wrt, energy, i) for i, t in enumerate(energy.terms)]
        parts = [p for p in parts if not isinstance(p, sp.ZeroMatrix)]
        if not parts:
            return sp.ZeroMatrix(*wrt.shape)
        total = sp.MatAdd(*parts).doit() if len(parts) > 1 else parts[0]
        return total

    return Derivation(
        energy=energy,
        state_grads={s: grad(s) for s in energy.states},
        param_grads={p: grad(p) for p in energy.params},
    )


def layered_hopfield_energy(sizes: Sequence[int], *, cost: str = "squared_error") -> Energy:
    """The layered Hopfield energy of Scellier & Bengio (2017), `F = E + beta C`.

    With the input `x` clamped, hidden layers `h_1..h_{L-1}` and output `y` (batched, one row per
    example), weights `W_k` between adjacent layers and biases `b_k`:

        E = 1/2 sum_k ||s_k||^2 - sum_k rho(s_{k-1}) W_k rho(s_k)^T - sum_k b_k rho(s_k)^T
        C = 1/2 ||y - d||^2

    The input enters as `x W_1` (no activation on the clamped input; identical to the paper's
    `rho(x)` for the hard sigmoid on pixels in [0, 1]).

    **Arguments:**

    - `sizes`: layer sizes, input first, e.g. `(784, 500, 10)`; at least two.
    - `cost`: only `"squared_error"` here.

    **Returns:**

    An `Energy` whose states are `(h_1, ..., y)` and parameters `(W_1, ..., b_1, ...)`.
    """
    sizes = tuple(int(n) for n in sizes)
    if len(sizes) < 2 or any(n < 1 for n in sizes):
        raise DerivationError(
            f"`sizes`={sizes} must list at least two positive layer sizes, input first "
            "(e.g. (784, 500, 10))."
        )
    if cost != "squared_error":
        raise DerivationError(f"`cost`={cost!r} is not known; use 'squared_error'.")
    B = BATCH
    rho = sp.Function("rho")
    R = lambda m: elementwise(rho, m)  # noqa: E731
    L = len(sizes) - 1
    x = sp.MatrixSymbol("x", B, sizes[0])
    states = [sp.MatrixSymbol(f"h_{k}", B, sizes[k]) for k in range(1, L)]
    states.append(sp.MatrixSymbol("y", B, sizes[L]))
    W = [sp.MatrixSymbol(f"W_{k}", sizes[k - 1], sizes[k]) for k in range(1, L + 1)]
    b = [sp.MatrixSymbol(f"b_{k}", 1, sizes[k]) for k in range(1, L + 1)]
    d = sp.MatrixSymbol("d", B, sizes[L])
    beta = sp.Symbol("beta", real=True)
    ones = sp.OneMatrix(B, 1)

    terms: list[sp.Expr] = []
    for s in states:
        terms.append(sp.Rational(1, 2) * sp.Trace(s * s.T))
    for k in range(L):
        below = x if k == 0 else R(states[k - 1])
        terms.append(-sp.Trace(below * W[k] * R(states[k]).T))
    for k in range(L):
        terms.append(-sp.Trace(ones * b[k] * R(states[k]).T))
    y = states[-1]
    return Energy(
        internal=tuple(terms),
        cost=(sp.Rational(1, 2) * sp.Trace((y - d) * (y - d).T),),
        states=tuple(states),
        params=tuple(W) + tuple(b),
        inputs=(x, d),
        scalars=(beta,),
        functions=(rho,),
        name=f"layered_hopfield{tuple(sizes)}",
    )
