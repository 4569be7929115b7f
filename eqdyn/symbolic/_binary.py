"""Stochastic binary units from an energy: the energy gap of every unit, derived at matrix level.

A Boltzmann machine samples each unit from `p(s_i = 1 | rest) = sigmoid(-dF_i / T)`, with the
*energy gap* `dF_i = F(s_i = 1) - F(s_i = lo)` (`lo` = 0 for units in {0, 1}, -1 for units in
{-1, 1}). On binary units the activation `rho` is the identity (`rho(s) = s` for s in {0, 1}),
so an energy of eqdyn (the layered Hopfield energy, or a custom one) becomes a polynomial in
the states. Where it is affine in each unit given the others, apart from a diagonal quadratic
`c/2 |s|^2`, the gap is a matrix expression of the *other* units:

- a term linear in `s_k` contributes its gradient `dF/ds_k` (times 2 on {-1, 1});
- the quadratic `c/2 |s_k|^2` contributes the constant `c/2` on {0, 1} (`s^2 = s` there) and
  nothing on {-1, 1} (`s^2 = 1`). The leak `1/2 |s|^2` of the Hopfield energy thus becomes a
  bias of 1/2 against every {0, 1} unit: `dF_k = 1/2 - s_{k-1} W_k - s_{k+1} W_{k+1}^T - b_k`
  (row-vector notation: `W^T s_below + W s_above + b` with columns).

Anything else (a lateral coupling inside a layer, a nonlinear function of a unit) makes a
unit's gap depend on the unit itself or on units of its own layer, which block Gibbs sampling
cannot use: it is refused with a `DerivationError` naming the term. The one exception is a
*cost* term (scaled by `beta`), such as the softmax cross-entropy of a readout
(`layered_hopfield_energy(sizes, cost="cross_entropy")`): its gradient `dC/ds_k` is kept in the
gap as the mean-field drive (the stationarity of `E_q[F] + beta C(m) - T H(q)` at the means
`m`), exact for `MeanField` and refused by `BlockGibbs` at `beta != 0`; the states it enters
are listed in `mean_field_states`. At `beta = 0` it vanishes and the gaps are exact. The states are split into
classes with no coupling inside a class (odd and even layers of a layered network): the blocks
that a block Gibbs sweep updates at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from .._errors import DerivationError
from ._calculus import _add, _scale, _split_scalar, tangent, trace_gradient
from ._energy import BATCH, Derivation, Energy, _grad
from ._printing import to_latex

__all__ = ["UNITS", "BinaryDerivation", "binary_units", "boltzmann_energy"]

#: the unit value sets: `"01"` (s in {0, 1}) and `"pm1"` (s in {-1, 1})
UNITS = ("01", "pm1")


@dataclasses.dataclass(frozen=True)
class BinaryDerivation:
    """The energy gaps of the binary units of an energy.

    **Fields:**

    - `source`: the energy as given.
    - `energy`: the same energy on binary units (every opaque activation the identity).
    - `units`: `"01"` or `"pm1"`.
    - `gaps`: for each state `s_k`, the matrix expression `dF_k` (shape of `s_k`), the gap of
      every unit given the others, free of `s_k`.
    - `param_grads`: `dF/dtheta` of the binary energy (the Boltzmann rule's statistics: e.g.
      `-s_{k-1}^T s_k` for `W_k`).
    - `self_bias`: per state, the constant its diagonal quadratic terms add to the gap (1/2 for
      the leak on {0, 1} units).
    - `blocks`: the states (indices) that a block Gibbs sweep updates together, in order.
    - `mean_field_states`: indices of the states whose gap holds a cost gradient that depends
      on the state itself (a softmax readout): exact under `MeanField` only.
    """

    source: Energy
    energy: Energy
    units: str
    gaps: Mapping[sp.MatrixSymbol, sp.MatrixExpr]
    param_grads: Mapping[sp.MatrixSymbol, sp.MatrixExpr]
    self_bias: Mapping[sp.MatrixSymbol, sp.Expr]
    blocks: tuple[tuple[int, ...], ...]
    mean_field_states: tuple[int, ...] = ()

    def derivation(self) -> Derivation:
        """A `Derivation` whose `state_grads` are the gaps (what the code generator compiles)."""
        return Derivation(self.energy, dict(self.gaps), dict(self.param_grads))

    def gap_latex(self) -> list[str]:
        """One LaTeX line per state: `Delta F_{s_k} = ...`."""
        lo = "0" if self.units == "01" else "-1"
        return [rf"\Delta F_{{{sp.latex(s)}}} = F({sp.latex(s)}_i{{=}}1) - "
                rf"F({sp.latex(s)}_i{{=}}{lo}) = {to_latex(g)}" for s, g in self.gaps.items()]

    def latex(self) -> str:
        body = " \\\\\n".join(self.gap_latex())
        return "\\begin{aligned}\n" + self.energy.latex() + " \\\\\n" + body + "\n\\end{aligned}"

    def _repr_latex_(self) -> str:
        return f"$\\displaystyle {self.latex()}$"


def _on_binary_units(term, functions):
    """`term` with every opaque activation of the energy replaced by the identity."""
    fns = set(functions)

    def opaque(e):
        if not isinstance(e, ElementwiseApplyFunction):
            return False
        f = e.function
        if isinstance(f, sp.Lambda) and len(f.variables) == 1:  # Lambda(u, rho(u))
            body = f.expr
            return getattr(body, "func", None) in fns and body.args == f.variables
        return f in fns

    return sp.sympify(term).replace(opaque, lambda e: e.expr)


def _parts(g):
    return list(g.args) if isinstance(g, sp.MatAdd) else [g]


def binary_units(energy: Energy, units: str = "01") -> BinaryDerivation:
    """Derive the energy gap `F(s_i = 1) - F(s_i = lo)` of every unit of `energy`'s states.

    **Arguments:**

    - `energy`: an `Energy` (e.g. `layered_hopfield_energy(...)` or `boltzmann_energy(...)`).
    - `units`: `"01"` (units in {0, 1}) or `"pm1"` (units in {-1, 1}).

    **Returns:** a `BinaryDerivation`.

    **Raises:** `DerivationError` naming the term when a unit's gap would depend on the unit
    itself or on another unit of its own layer (lateral weights, a nonlinear function of a
    state), and naming the states when no split into blocks is possible.
    """
    if units not in UNITS:
        raise DerivationError(f"`units`={units!r} is not known; use one of {UNITS}.")
    fns = energy.functions
    internal = tuple(_on_binary_units(t, fns) for t in energy.internal)
    cost = tuple(_on_binary_units(t, fns) for t in energy.cost)
    output = None if energy.output is None else _on_binary_units(energy.output, fns)
    binary = Energy(internal=internal, cost=cost, states=energy.states, params=energy.params,
                    inputs=energy.inputs, scalars=energy.scalars, functions=(),
                    name=f"{energy.name}, binary {units}", output=output)
    gaps, bias, mean_field = {}, {}, []
    n_internal = len(internal)
    for k_state, s in enumerate(energy.states):
        v = sp.MatrixSymbol(f"_V_{s.name}", *s.shape)
        parts, c_total = [], sp.Integer(0)
        for i, term in enumerate(binary.terms):
            ctx = f"term {i} of `{energy.name}` ({energy.terms[i]}), on binary units"
            g = trace_gradient(term, s, ctx)
            if g is None:
                continue
            h = tangent(g, {s: v}, ctx)
            c = sp.Integer(0)
            if h is not None:
                c, base = _split_scalar(h)
                affine = base == v and sp.sympify(c).free_symbols <= set(energy.scalars)
                if not affine and i >= n_internal:
                    # a nonlinear cost (softmax readout): its gradient is the mean-field drive
                    parts.append(g if units == "01" else _scale(2, g))
                    if k_state not in mean_field:
                        mean_field.append(k_state)
                    continue
                if not affine:
                    raise DerivationError(
                        f"{ctx}: the energy gap of the units of `{s.name}` depends on `{s.name}` "
                        f"itself (its second derivative is `{h}`, not a constant times the "
                        "identity): lateral weights inside the layer, or a nonlinear function "
                        "of it. Block Gibbs sampling needs each unit's gap to depend on other "
                        "layers only; drop the term, or move the coupling between layers."
                    )
            minus = [_scale(-c, s)] if c != 0 else []
            rest = _add(_parts(g) + minus)
            if rest is not None and rest.has(s):  # e.g. beta (y - d): distribute the product
                rest = _add(_parts(sp.expand(g)) + minus)
            if rest is not None and rest.has(s):
                raise DerivationError(
                    f"{ctx}: the energy gap of `{s.name}` still contains `{s.name}` after "
                    "removing its diagonal quadratic part; block Gibbs sampling cannot use it."
                )
            if rest is not None:
                parts.append(rest if units == "01" else _scale(2, rest))
            c_total += c
        if units == "01" and c_total != 0:
            parts.append(_scale(c_total / 2, sp.OneMatrix(*s.shape)))
        gap = _add(parts)
        gaps[s] = sp.ZeroMatrix(*s.shape) if gap is None else gap
        bias[s] = c_total / 2 if units == "01" else sp.Integer(0)
    param_grads = {p: _grad(binary, p) for p in energy.params}
    return BinaryDerivation(energy, binary, units, gaps, param_grads, bias,
                            _blocks(energy, gaps), tuple(mean_field))


def _blocks(energy: Energy, gaps) -> tuple[tuple[int, ...], ...]:
    """Colour the states so that no state's gap depends on a state of its own colour (greedy,
    in order: odd and even layers for a layered energy)."""
    states = list(energy.states)
    deps = [{j for j, t in enumerate(states) if j != k and gaps[s].has(t)}
            for k, s in enumerate(states)]
    colour: list[int] = []
    for k in range(len(states)):
        near = {colour[j] for j in range(k) if j in deps[k] or k in deps[j]}
        colour.append(min(c for c in range(len(states) + 1) if c not in near))
    return tuple(tuple(k for k in range(len(states)) if colour[k] == c)
                 for c in sorted(set(colour)))


def boltzmann_energy(sizes: Sequence[int], *, leak: bool = False) -> Energy:
    """A layered Boltzmann machine: an RBM for two sizes, a deep Boltzmann machine for more.

    Every layer is a state (the visible layer `v` first, then `h_1, ..., h_L`), so the sampler
    can clamp the visibles (positive phase) or let them run (negative phase):

        F = - sum_k s_{k-1} W_k s_k^T - sum_k b_k s_k^T   (+ 1/2 sum_k |s_k|^2 with `leak`)

    with `b_0` the visible bias. No activation: the units are binary (see `binary_units`).

    **Arguments:**

    - `sizes`: layer sizes, visible first, e.g. `(784, 500)` (an RBM) or `(784, 500, 1000)`.
    - `leak`: add the Hopfield leak `1/2 |s|^2` (a bias of 1/2 against every {0, 1} unit).

    **Returns:** an `Energy` with states `(v, h_1, ...)`, parameters `(W_1, ..., b_0, b_1, ...)`
    and no inputs.
    """
    from . import terms as T

    sizes = tuple(int(n) for n in sizes)
    if len(sizes) < 2 or any(n < 1 for n in sizes):
        raise DerivationError(
            f"`sizes`={sizes} must list at least two positive layer sizes, visible first "
            "(e.g. (784, 500) for an RBM)."
        )
    layers = [T.layer("v", sizes[0])] + [T.layer(f"h_{k}", n) for k, n in enumerate(sizes[1:], 1)]
    W = [T.weight(f"W_{k}", sizes[k - 1], sizes[k]) for k in range(1, len(sizes))]
    b = [T.bias(f"b_{k}", n) for k, n in enumerate(sizes)]
    terms = [-sp.Trace(layers[k - 1] * W[k - 1] * layers[k].T) for k in range(1, len(sizes))]
    terms += [-sp.Trace(sp.OneMatrix(BATCH, 1) * b[k] * layers[k].T) for k in range(len(sizes))]
    if leak:
        terms = [T.leak(s) for s in layers] + terms
    kind = "rbm" if len(sizes) == 2 else "dbm"
    return Energy(internal=tuple(terms), cost=(), states=tuple(layers),
                  params=tuple(W) + tuple(b), name=f"{kind}{sizes}" + (", leak" if leak else ""))
