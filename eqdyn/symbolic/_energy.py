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
from ._calculus import _add, _scale, tangent, trace_gradient
from ._printing import to_latex, to_text

__all__ = [
    "BATCH",
    "BETA_RATE",
    "velocity_symbol",
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
    - `functions`: the opaque activation functions used by the terms (e.g. `rho`); those used
      but not listed are added automatically (see `function_names`).
    - `name`: a short human-readable name.
    - `tau`: per-state time constants `tau_k > 0` (numbers), so that
      `tau_k ds_k/dt = -dF/ds_k`; empty means all ones. Fixed points do not depend on them.
    - `output`: the network's prediction as a `B x n_out` matrix expression of states, parameters
      and the data input (e.g. the output layer `y`, or the logits `rho(h) W_out` of a softmax
      readout); `None` means the last state.

    By convention `inputs` are `(x, d)`: the data first, the target last.
    """

    internal: tuple[sp.Expr, ...]
    cost: tuple[sp.Expr, ...]
    states: tuple[sp.MatrixSymbol, ...]
    params: tuple[sp.MatrixSymbol, ...]
    inputs: tuple[sp.MatrixSymbol, ...] = ()
    scalars: tuple[sp.Symbol, ...] = ()
    functions: tuple[sp.FunctionClass, ...] = ()
    name: str = "energy"
    tau: tuple = ()
    output: sp.MatrixExpr | None = None

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
                    _unknown_symbol(self, m, f"term {i}", known)
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
        # time constants
        tau = tuple(sp.nsimplify(sp.sympify(t), rational=True) for t in self.tau)
        if tau and len(tau) != len(self.states):
            raise DerivationError(
                f"`tau` of `{self.name}` has {len(tau)} entries but there are "
                f"{len(self.states)} states; give one time constant per state (or none)."
            )
        for s_, t in zip(self.states, tau):
            if not (t.is_number and t.is_real and t > 0):
                raise DerivationError(
                    f"`tau` for state `{s_.name}` is {t}; time constants must be positive numbers."
                )
        object.__setattr__(self, "tau", tau)
        # the prediction
        if self.output is not None:
            out = self.output
            if not getattr(out, "is_Matrix", False) or out.rows != BATCH:
                raise DerivationError(
                    f"`output` of `{self.name}` is `{out}`; it must be a matrix expression with "
                    "one row per example (B x n_out), e.g. the output state `y`."
                )
            for m in out.atoms(sp.MatrixSymbol):
                if m not in known:
                    _unknown_symbol(self, m, "`output`", known)
        # opaque functions used in the terms
        found = {}
        for term in self.terms:
            for f in sp.sympify(term).atoms(sp.core.function.AppliedUndef):
                found.setdefault(str(f.func), f.func)
            for ew in sp.sympify(term).atoms(ElementwiseApplyFunction):
                if isinstance(ew.function, sp.FunctionClass) and issubclass(
                    ew.function, sp.core.function.AppliedUndef
                ):
                    found.setdefault(str(ew.function), ew.function)
        declared = {str(f): f for f in self.functions}
        extra = tuple(f for n, f in sorted(found.items()) if n not in declared)
        object.__setattr__(self, "functions", tuple(self.functions) + extra)

    @property
    def function_names(self) -> tuple[str, ...]:
        """Names of the opaque elementwise functions (activations) the energy uses."""
        return tuple(str(f) for f in self.functions)

    @property
    def data(self) -> sp.MatrixSymbol | None:
        """The data input `x` (the first input)."""
        return self.inputs[0] if self.inputs else None

    @property
    def target(self) -> sp.MatrixSymbol | None:
        """The target `d` (the last input, when there are at least two)."""
        return self.inputs[-1] if len(self.inputs) >= 2 else None

    @property
    def prediction(self) -> sp.MatrixExpr:
        """`output`, or the last state."""
        return self.output if self.output is not None else self.states[-1]

    def time_constant(self, state) -> sp.Expr:
        """`tau` of one state (1 unless given)."""
        if not self.tau:
            return sp.Integer(1)
        return self.tau[self.states.index(state)]

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


def _unknown_symbol(energy, m, where, known):
    same = [k for k in known if k.name == m.name]
    if same:
        raise DerivationError(
            f"{where} of `{energy.name}` uses `{m.name}` with shape {m.shape}, but `{m.name}` is "
            f"declared with shape {same[0].shape}: the symbol is used with inconsistent shapes."
        )
    raise DerivationError(
        f"{where} of `{energy.name}` uses the matrix symbol `{m.name}` (shape {m.shape}) that is "
        "neither a state, a parameter nor an input; declare it in `states`, `params` or `inputs`."
    )


def _is_dummy(s) -> bool:
    return isinstance(s, sp.Dummy)


def _signed_latex(term: sp.Expr, first: bool) -> str:
    s = to_latex(term)
    if first or s.startswith("-"):
        return s
    return "+ " + s


def velocity_symbol(state: sp.MatrixSymbol) -> sp.MatrixSymbol:
    """The symbol for `ds/dt` of a state, printed with a dot (`\\dot{h}_{1}` for `h_1`)."""
    base, sep, sub = state.name.partition("_")
    name = rf"\dot{{{base}}}_{{{sub}}}" if sep and sub else rf"\dot{{{state.name}}}"
    return sp.MatrixSymbol(name, *state.shape)


#: The symbol for `d beta / dt` in time derivatives of the learning rule.
BETA_RATE = sp.Symbol(r"\dot{\beta}", real=True)


@dataclasses.dataclass(frozen=True)
class Derivation:
    """The symbolic derivatives of an energy.

    **Fields:**

    - `energy`: the `Energy` derived.
    - `state_grads`: for each state `s_k`, the matrix expression `dF/ds_k` (shape of `s_k`).
      The neuron dynamics are `tau_k ds_k/dt = -dF/ds_k`.
    - `param_grads`: for each parameter `theta`, `dF/dtheta` (shape of `theta`). The EP update
      is `-(1/beta) [dF/dtheta(s^beta) - dF/dtheta(s^0)]`.
    - `param_rates`: for each parameter, `d/dt dF/dtheta` along a trajectory, in terms of the
      states, their velocities `velocities[s_k]` (`ds_k/dt`) and `dbeta/dt` (`BETA_RATE`).
      The STDP form of the learning rule is `dtheta/dt = -(eta/beta) d/dt dF/dtheta`: for the
      Hopfield weights, `dW/dt ~ rho(s_i) d rho(s_j)/dt + d rho(s_i)/dt rho(s_j)`. Integrated
      over a nudged relaxation it gives exactly the EP update (the fundamental theorem of
      calculus), with no second phase to switch to.
    - `velocities`: the velocity symbol of each state.
    """

    energy: Energy
    state_grads: Mapping[sp.MatrixSymbol, sp.MatrixExpr]
    param_grads: Mapping[sp.MatrixSymbol, sp.MatrixExpr]
    param_rates: Mapping[sp.MatrixSymbol, sp.MatrixExpr] = dataclasses.field(default_factory=dict)
    velocities: Mapping[sp.MatrixSymbol, sp.MatrixSymbol] = dataclasses.field(default_factory=dict)

    def dynamics_latex(self) -> list[str]:
        """One LaTeX line per state: `tau_k ds_k/dt = -dF/ds_k = ...`."""
        lines = []
        for s, g in self.state_grads.items():
            tau = self.energy.time_constant(s)
            lhs = rf"\frac{{d {sp.latex(s)}}}{{dt}}"
            if tau != 1:
                lhs = rf"{sp.latex(tau)} \, {lhs}"
            lines.append(
                rf"{lhs} = -\frac{{\partial F}}{{\partial {sp.latex(s)}}} = {to_latex(_neg(g))}"
            )
        return lines

    def rule_latex(self) -> list[str]:
        """One LaTeX line per parameter: `dF/dtheta = ...`."""
        return [rf"\frac{{\partial F}}{{\partial {sp.latex(p)}}} = {to_latex(g)}"
                for p, g in self.param_grads.items()]

    def stdp_latex(self) -> list[str]:
        """One LaTeX line per parameter: `d/dt dF/dtheta = ...` (the STDP form's integrand)."""
        return [
            rf"\frac{{d}}{{dt}} \frac{{\partial F}}{{\partial {sp.latex(p)}}} = {to_latex(g)}"
            for p, g in self.param_rates.items()
        ]

    def equations_latex(self) -> list[str]:
        """One LaTeX line per equation: the dynamics of each state, then each parameter gradient."""
        return self.dynamics_latex() + self.rule_latex()

    def equations_text(self) -> list[str]:
        """The same equations as plain text."""
        lines = []
        for s, g in self.state_grads.items():
            tau = self.energy.time_constant(s)
            lhs = f"d{s.name}/dt" if tau == 1 else f"{tau} d{s.name}/dt"
            lines.append(f"{lhs} = -dF/d{s.name} = {to_text(_neg(g))}")
        for p, g in self.param_grads.items():
            lines.append(f"dF/d{p.name} = {to_text(g)}")
        return lines

    def stdp_text(self) -> list[str]:
        return [f"d/dt dF/d{p.name} = {to_text(g)}" for p, g in self.param_rates.items()]

    def latex(self) -> str:
        body = " \\\\\n".join(self.equations_latex())
        return "\\begin{aligned}\n" + self.energy.latex() + " \\\\\n" + body + "\n\\end{aligned}"

    def _repr_latex_(self) -> str:
        return f"$\\displaystyle {self.latex()}$"

    def __str__(self) -> str:
        terms = " + ".join(to_text(t) for t in self.energy.terms).replace("+ -", "- ")
        return "\n".join([f"F = {terms}", *self.equations_text()])


def _neg(g: sp.MatrixExpr) -> sp.MatrixExpr:
    return _add([_scale(-1, t) for t in (g.args if isinstance(g, sp.MatAdd) else (g,))])


def _grad(energy: Energy, wrt: sp.MatrixSymbol) -> sp.MatrixExpr:
    parts = []
    for i, term in enumerate(energy.terms):
        context = f"term {i} of `{energy.name}` ({term}), differentiated by `{wrt.name}`"
        g = trace_gradient(term, wrt, context)
        if g is not None:
            parts.append(g)
    total = _add(parts)
    return sp.ZeroMatrix(*wrt.shape) if total is None else total


def derive(energy: Energy) -> Derivation:
    """Differentiate `energy` with respect to every state and parameter, term by term.

    **Arguments:**

    - `energy`: an `Energy`.

    **Returns:**

    A `Derivation` with `dF/ds_k` for every state, `dF/dtheta` for every parameter and the
    STDP form `d/dt dF/dtheta`, as SymPy matrix expressions.

    **Raises:**

    `DerivationError` naming the term and symbol when a term is outside the matrix-level
    grammar (see `eqdyn.symbolic._calculus`), when a symbol's gradient has the wrong shape, or
    when a symbol occurs in a term but its derivative comes out identically zero.
    """
    state_grads = {s: _grad(energy, s) for s in energy.states}
    param_grads = {p: _grad(energy, p) for p in energy.params}
    velocities = {s: velocity_symbol(s) for s in energy.states}
    tangents: dict = dict(velocities)
    if energy.scalars:
        tangents[energy.beta] = BETA_RATE
    rates = {}
    for p, g in param_grads.items():
        r = tangent(g, tangents, f"the STDP form of dF/d{p.name} in `{energy.name}`")
        rates[p] = sp.ZeroMatrix(*p.shape) if r is None else r
    return Derivation(energy, state_grads, param_grads, rates, velocities)


def layered_hopfield_energy(
    sizes: Sequence[int],
    *,
    cost: str = "squared_error",
    lateral: Sequence[int] = (),
    skip: Sequence[tuple[int, int]] = (),
    tau: Sequence | None = None,
    rho: sp.FunctionClass | None = None,
    gamma=None,
) -> Energy:
    """The layered Hopfield energy of Scellier & Bengio (2017), `F = E + beta C`, and variants.

    With the input `x` clamped, hidden layers `h_1..h_{L-1}` and output `y` (batched, one row per
    example), weights `W_k` between adjacent layers and biases `b_k`:

        E = 1/2 sum_k ||s_k||^2 - sum_k rho(s_{k-1}) W_k rho(s_k)^T - sum_k b_k rho(s_k)^T
        C = 1/2 ||y - d||^2

    The input enters as `x W_1` (no activation on the clamped input; identical to the paper's
    `rho(x)` for the hard sigmoid on pixels in [0, 1]). Built from the blocks in
    `eqdyn.symbolic.terms`, like any custom energy.

    **Arguments:**

    - `sizes`: layer sizes, input first, e.g. `(784, 500, 10)`; at least two.
    - `cost`: `"squared_error"` (above) or `"cross_entropy"`: the softmax readout of
      Laborieux et al. (2021). The output layer is then not a state: the logits are
      `z = rho(h_{L-1}) W_L + b_L` and `C = sum_b [logsumexp(z_b) - d_b . z_b]`, so the
      readout weights appear only in the cost (needs at least one hidden layer).
    - `lateral`: indices `k` of hidden layers (1-based) with lateral weights `L_k` (n_k x n_k):
      `- 1/2 rho(h_k) L_k rho(h_k)^T`.
    - `skip`: pairs `(i, j)`, `0 <= i < j - 1`, of layers joined by skip weights `S_i_j`
      (layer 0 is the input, layer `L` the output): `- rho(s_i) S_i_j rho(s_j)^T`.
    - `tau`: one time constant per state (`tau_k ds_k/dt = -dF/ds_k`).
    - `rho`: the opaque activation function (default `terms.RHO`, named `rho`).
    - `gamma`: the top-down feedback strength (default: none, i.e. 1). The terms owned by
      state `k` (its leak, bias and the coupling from below) and its time constant are scaled
      by `c_k = gamma^-(n-1-k)`, so the dynamics keep unit time constants and the feedback
      from layer `k+1` into layer `k` is weighted by `gamma` (see
      `eqdyn.symbolic.with_layer_scales`).

    **Returns:**

    An `Energy` whose states are `(h_1, ..., y)` (no `y` with cross-entropy) and parameters
    `(W_1, ..., b_1, ..., L_k..., S_i_j...)`.
    """
    from . import terms as T

    sizes = tuple(int(n) for n in sizes)
    if len(sizes) < 2 or any(n < 1 for n in sizes):
        raise DerivationError(
            f"`sizes`={sizes} must list at least two positive layer sizes, input first "
            "(e.g. (784, 500, 10))."
        )
    costs = ("squared_error", "cross_entropy")
    if cost not in costs:
        raise DerivationError(f"`cost`={cost!r} is not known; use one of {costs}.")
    L = len(sizes) - 1
    if cost == "cross_entropy" and L < 2:
        raise DerivationError(
            f"`cost`='cross_entropy' reads the output out of the last hidden layer, so `sizes`="
            f"{sizes} needs at least one hidden layer."
        )
    rho = rho or T.RHO
    x = T.layer("x", sizes[0])
    d = T.layer("d", sizes[L])
    n_states = L if cost == "squared_error" else L - 1
    states = [T.layer(f"h_{k}", sizes[k]) for k in range(1, min(L, n_states + 1))]
    if cost == "squared_error":
        states.append(T.layer("y", sizes[L]))
    W = [T.weight(f"W_{k}", sizes[k - 1], sizes[k]) for k in range(1, L + 1)]
    b = [T.bias(f"b_{k}", sizes[k]) for k in range(1, L + 1)]
    beta = sp.Symbol("beta", real=True)
    layers = [x, *states]  # layer k of the network is layers[k] (while it is a state)

    terms: list[sp.Expr] = [T.leak(s) for s in states]
    for k in range(1, n_states + 1):
        terms.append(T.coupling(layers[k - 1], W[k - 1], layers[k], rho, pre_raw=(k == 1)))
    for k in range(1, n_states + 1):
        terms.append(T.bias_term(b[k - 1], layers[k], rho))
    lat = []
    for k in lateral:
        if not (isinstance(k, int) and 1 <= k <= min(n_states, L - 1)):
            raise DerivationError(
                f"`lateral`={tuple(lateral)} names layer {k!r}; lateral weights join units "
                f"within a hidden layer 1..{L - 1}."
            )
        lat.append(T.weight(f"L_{k}", sizes[k], sizes[k]))
        terms.append(T.lateral(layers[k], lat[-1], rho))
    skips = []
    for pair in skip:
        i, j = pair
        if not (0 <= i < j - 1 and j <= n_states):
            raise DerivationError(
                f"`skip` pair {pair!r} must join layers 0 <= i < j - 1 with j <= {n_states} "
                "(0 is the input; adjacent layers are already coupled by W)."
            )
        skips.append(T.weight(f"S_{i}_{j}", sizes[i], sizes[j]))
        terms.append(T.coupling(layers[i], skips[-1], layers[j], rho, pre_raw=(i == 0)))
    if cost == "squared_error":
        c = (T.squared_error(states[-1], d),)
        output = None
        params = tuple(W) + tuple(b)
    else:
        logits = T.readout(states[-1], W[L - 1], b[L - 1], rho)
        c = (*T.cross_entropy(logits, d),)
        output = logits
        params = tuple(W[:-1]) + tuple(b[:-1]) + (W[-1], b[-1])
    tag = "" if cost == "squared_error" else ", cross_entropy"
    tag += f", lateral={tuple(lateral)}" if lateral else ""
    tag += f", skip={tuple(tuple(p) for p in skip)}" if skip else ""
    energy = Energy(
        internal=tuple(terms),
        cost=c,
        states=tuple(states),
        params=params + tuple(lat) + tuple(skips),
        inputs=(x, d),
        scalars=(beta,),
        functions=(rho,),
        name=f"layered_hopfield{tuple(sizes)}{tag}",
        tau=tuple(tau) if tau is not None else (),
        output=output,
    )
    if gamma is None:
        return energy
    from ._scales import with_layer_scales

    return with_layer_scales(energy, gamma)
