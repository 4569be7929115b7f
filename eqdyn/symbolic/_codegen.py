"""SymPy matrix expressions to vectorised JAX source code.

The generator walks a matrix expression and emits one line of Python that uses matrix products
(`_matmul(a, b)`), elementwise products and elementwise activations. It never expands an
expression into per-neuron scalars: a node it does not know how to emit at the matrix level is
refused with a `DerivationError`. This module produces *source text* only and imports no JAX; the
numeric layer (`eqdyn.models`) executes it once, outside `jit`, with `_matmul` bound to
`eqdyn.models._binding.matmul`: `a @ b`, except that a complex array times a real one (the
complex states of holomorphic EP times the real weights) is taken as one real product of the
stacked real and imaginary parts instead of promoting the real operand to complex.

Two patterns are rewritten for speed and memory:

- `OneMatrix(B, 1) * M` (a bias broadcast over the batch) becomes `jnp.broadcast_to(M, ...)`, and
  `OneMatrix(1, B) * M` (a sum over the batch) becomes `jnp.sum(M, axis=0, keepdims=True)`.
- `Trace(P * Q)` becomes `jnp.sum(P * Q.T)`, so no `B x B` matrix is ever formed.
"""

from __future__ import annotations

import dataclasses
import keyword

import sympy as sp
from sympy.core.function import AppliedUndef
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from .._errors import DerivationError
from ._energy import BATCH, BETA_RATE, Derivation, Energy
from ._conv import HELPERS as CONV_HELPERS
from ._nodes import RowLogSumExp, RowSoftmax

__all__ = ["GeneratedCode", "generate_code", "python_name", "scalar_function_source"]

_SCALAR_FUNCS = {
    sp.exp: "jnp.exp",
    sp.log: "jnp.log",
    sp.tanh: "jnp.tanh",
    sp.sin: "jnp.sin",
    sp.cos: "jnp.cos",
    sp.Abs: "jnp.abs",
    sp.sqrt: "jnp.sqrt",
    sp.Max: "jnp.maximum",
    sp.Min: "jnp.minimum",
    sp.sign: "jnp.sign",
    sp.cosh: "jnp.cosh",
    sp.sinh: "jnp.sinh",
    sp.erf: "jax.scipy.special.erf",
}


def python_name(name: str) -> str:
    """A valid Python identifier for a SymPy symbol name (`h_1` stays `h_1`; `W^1` -> `W_1`)."""
    out = "".join(c if (c.isalnum() or c == "_") else "_" for c in name)
    if not out or out[0].isdigit() or keyword.iskeyword(out):
        out = "s_" + out
    return out


class _Emitter:
    def __init__(self, energy: Energy | None, context: str):
        self.energy = energy
        self.context = context
        self.used_functions: set[str] = set()
        self.helpers = False

    # -- helpers -------------------------------------------------------------------------
    def fail(self, node, why: str):
        name = self.energy.name if self.energy is not None else "expression"
        raise DerivationError(
            f"cannot compile {self.context} of `{name}` to matrix-level JAX code: "
            f"{why} in `{node}` ({type(node).__name__}). Write the energy with matrix products, "
            "Hadamard products, transposes, traces and elementwise functions."
        )

    def dim(self, d) -> str:
        d = sp.sympify(d)
        if d == BATCH:
            return "_B"
        if d.is_Integer:
            return str(int(d))
        self.fail(d, "a symbolic dimension other than the batch size")

    # -- scalars -------------------------------------------------------------------------
    def scalar(self, e, var=None, var_code=None) -> str:
        if var is not None and e == var:
            return var_code
        if isinstance(e, sp.Symbol):
            if e == BATCH:
                return "_B"
            return python_name(e.name)
        if e.is_Integer:
            return f"{int(e)}.0"
        if e.is_Rational:
            return f"({int(e.p)}.0 / {int(e.q)}.0)"
        if e.is_Float:
            return repr(float(e))
        if e in (sp.pi, sp.E):
            return repr(float(e))
        if isinstance(e, sp.Add):
            return "(" + " + ".join(self.scalar(a, var, var_code) for a in e.args) + ")"
        if isinstance(e, sp.Mul):
            return "(" + " * ".join(self.scalar(a, var, var_code) for a in e.args) + ")"
        if isinstance(e, sp.Pow):
            return f"({self.scalar(e.base, var, var_code)} ** {self.scalar(e.exp, var, var_code)})"
        if isinstance(e, AppliedUndef):
            name = str(e.func)
            self.used_functions.add(name)
            return f"{python_name(name)}(" + ", ".join(
                self.scalar(a, var, var_code) for a in e.args
            ) + ")"
        if isinstance(e, sp.Derivative) and isinstance(e.expr, AppliedUndef):
            f = e.expr
            if len(f.args) != 1 or any(v != f.args[0] for v in e.variables):
                self.fail(e, "a derivative of a multi-argument function")
            name = f"{str(f.func)}_d{len(e.variables)}"
            self.used_functions.add(name)
            return f"{python_name(name)}({self.scalar(f.args[0], var, var_code)})"
        if isinstance(e, sp.Trace):
            return self.trace(e)
        if isinstance(e, sp.DiracDelta):  # zero almost everywhere (the kinks of clip, abs)
            return f"(0.0 * {self.scalar(e.args[0], var, var_code)})"
        if isinstance(e, sp.Heaviside):
            return f"jnp.where({self.scalar(e.args[0], var, var_code)} > 0, 1.0, 0.0)"
        if isinstance(e, sp.Piecewise):
            out = "jnp.nan"
            for expr, cond in reversed(e.args):
                val = self.scalar(expr, var, var_code)
                if cond == sp.true:
                    out = val
                else:
                    out = f"jnp.where({self.condition(cond, var, var_code)}, {val}, {out})"
            return out
        if e.func in _SCALAR_FUNCS:
            return f"{_SCALAR_FUNCS[e.func]}(" + ", ".join(
                self.scalar(a, var, var_code) for a in e.args
            ) + ")"
        self.fail(e, "an unsupported scalar operation")

    def condition(self, c, var=None, var_code=None) -> str:
        ops = {sp.StrictLessThan: "<", sp.LessThan: "<=", sp.StrictGreaterThan: ">",
               sp.GreaterThan: ">=", sp.Equality: "==", sp.Unequality: "!="}
        for cls, op in ops.items():
            if isinstance(c, cls):
                return (f"({self.scalar(c.lhs, var, var_code)} {op} "
                        f"{self.scalar(c.rhs, var, var_code)})")
        if isinstance(c, sp.And):
            return "(" + " & ".join(self.condition(a, var, var_code) for a in c.args) + ")"
        if isinstance(c, sp.Or):
            return "(" + " | ".join(self.condition(a, var, var_code) for a in c.args) + ")"
        self.fail(c, "an unsupported condition")

    def trace(self, e: sp.Trace) -> str:
        m = e.arg
        if isinstance(m, sp.MatMul):
            coeff = [a for a in m.args if not getattr(a, "is_Matrix", False)]
            mats = [a for a in m.args if getattr(a, "is_Matrix", False)]
            if len(mats) >= 2:
                p = mats[0] if len(mats) == 2 else sp.MatMul(*mats[:-1])
                q = mats[-1]
                body = f"jnp.sum({self.matrix(p)} * ({self.matrix(q)}).T)"
                if coeff:
                    body = f"({self.scalar(sp.Mul(*coeff))} * {body})"
                return body
        return f"jnp.trace({self.matrix(m)})"

    # -- matrices ------------------------------------------------------------------------
    def matrix(self, e) -> str:
        if isinstance(e, sp.MatrixSymbol):
            return python_name(e.name)
        if isinstance(e, sp.ZeroMatrix):
            return f"jnp.zeros(({self.dim(e.rows)}, {self.dim(e.cols)}))"
        if isinstance(e, sp.OneMatrix):
            return f"jnp.ones(({self.dim(e.rows)}, {self.dim(e.cols)}))"
        if isinstance(e, sp.Identity):
            return f"jnp.eye({self.dim(e.rows)})"
        if isinstance(e, sp.MatAdd):
            return "(" + " + ".join(self.matrix_or_scalar(a) for a in e.args) + ")"
        if isinstance(e, sp.MatMul):
            return self.matmul(e)
        if isinstance(e, sp.HadamardProduct):
            return "(" + " * ".join(self.matrix(a) for a in e.args) + ")"
        if isinstance(e, sp.HadamardPower):
            return f"({self.matrix(e.base)} ** {self.scalar(e.exp)})"
        if isinstance(e, sp.Transpose):
            return f"({self.matrix(e.arg)}).T"
        if isinstance(e, ElementwiseApplyFunction):
            return self.elementwise(e)
        if isinstance(e, RowLogSumExp):
            return f"jax.nn.logsumexp({self.matrix(e.arg)}, axis=1, keepdims=True)"
        if isinstance(e, RowSoftmax):
            return f"jax.nn.softmax({self.matrix(e.arg)}, axis=1)"
        code = getattr(e, "_code", None)  # a node that emits its own call (`_conv`)
        if code is not None:
            self.helpers = True
            return code(self.matrix)
        self.fail(e, "an unsupported matrix operation")

    def matrix_or_scalar(self, e) -> str:
        return self.matrix(e) if getattr(e, "is_Matrix", False) else self.scalar(e)

    def matmul(self, e: sp.MatMul) -> str:
        scalars = [a for a in e.args if not getattr(a, "is_Matrix", False)]
        mats = list(a for a in e.args if getattr(a, "is_Matrix", False))
        code = None
        prev_rows = self.dim(mats[0].rows) if mats else None
        i = 0
        while i < len(mats):
            m = mats[i]
            if isinstance(m, sp.OneMatrix) and i + 1 < len(mats):
                nxt = mats[i + 1]
                rest = self.matrix(nxt)
                if m.cols == 1 and nxt.rows == 1:  # broadcast a row over the batch
                    part = f"jnp.broadcast_to({rest}, ({self.dim(m.rows)}, {self.dim(nxt.cols)}))"
                else:  # sum over rows, repeated m.rows times
                    part = f"jnp.sum({rest}, axis=0, keepdims=True)"
                    if m.rows != 1:
                        part = f"jnp.broadcast_to({part}, ({self.dim(m.rows)}, {self.dim(nxt.cols)}))"
                code = part if code is None else f"_matmul({code}, {part})"
                i += 2
                continue
            if isinstance(m, sp.OneMatrix) and code is not None and m.rows != 1:
                # a row sum (times a row of ones): never multiply by a ones matrix
                part = f"jnp.sum({code}, axis=1, keepdims=True)"
                if m.cols != 1:
                    part = f"jnp.broadcast_to({part}, ({prev_rows}, {self.dim(m.cols)}))"
                code = part
                i += 1
                continue
            part = self.matrix(m)
            code = part if code is None else f"_matmul({code}, {part})"
            i += 1
        if code is None:
            self.fail(e, "a matrix product without matrices")
        if scalars:
            code = f"({self.scalar(sp.Mul(*scalars))} * {code})"
        return code

    def elementwise(self, e: ElementwiseApplyFunction) -> str:
        fn = e.function
        arg = self.matrix(e.expr)
        if isinstance(fn, sp.Lambda) and len(fn.variables) == 1:
            (v,) = fn.variables
            return self.scalar(fn.expr, var=v, var_code=arg)
        if isinstance(fn, sp.FunctionClass):
            name = str(fn)
            self.used_functions.add(name)
            return f"{python_name(name)}({arg})"
        self.fail(e, "an elementwise function that is not a one-argument Lambda")


def scalar_function_source(expr, var: sp.Symbol, name: str) -> str:
    """Source of `def name(u): return <expr with var -> u>` for an elementwise function.

    Used for activations given as SymPy expressions; the numeric layer executes it with `jnp`.
    Refuses (with `DerivationError`) anything it cannot emit as array code.
    """
    expr = sp.sympify(expr)
    extra = expr.free_symbols - {var}
    if extra:
        raise DerivationError(
            f"the activation `{name}` = {expr} uses the symbol(s) {sorted(map(str, extra))} "
            f"besides its argument `{var}`; substitute numbers for them."
        )
    if expr.has(sp.Derivative, sp.Subs):
        raise DerivationError(
            f"the activation `{name}` = {expr} contains an unevaluated derivative; give it in "
            "closed form."
        )
    em = _Emitter(None, f"the activation `{name}`")
    body = em.scalar(expr, var=var, var_code="u")
    if not expr.has(var):
        body = f"({body}) + 0.0 * u"
    return f"def {python_name(name)}(u):\n    return {body}\n"


@dataclasses.dataclass(frozen=True)
class GeneratedCode:
    """Python source for the compiled functions of one derivation.

    **Fields:**

    - `source`: the module text; it defines `state_grads`, `param_grads`, `energy` and `cost`
      (each taking the keyword arguments in `arguments`) and expects `jnp`, `jax`, `_matmul`
      (the matrix product, see the module docstring) and the activation functions named in
      `functions` (e.g. `rho`, `rho_d1`) in its namespace.
    - `arguments`: argument names, in order: states, parameters, inputs, scalars.
    - `functions`: names of the elementwise functions the code calls.
    - `constants`: names of the hoisted state-independent products (`_c0`, ...).
    - `velocities`, `beta_rate`: the extra argument names of `param_rates` (`ds_k/dt` and
      `dbeta/dt`), which returns `d/dt dF/dtheta` for every parameter (the STDP form).

    The module also defines `output(...)`, the energy's prediction (e.g. the output state).
    """

    source: str
    arguments: tuple[str, ...]
    functions: tuple[str, ...]
    constants: tuple[str, ...] = ()
    velocities: tuple[str, ...] = ()
    beta_rate: str | None = None


def hoist_constants(exprs, energy: Energy):
    """Replace every matrix product that depends on no state by a fresh symbol `_c<i>`.

    During a relaxation the inputs and parameters are fixed, so terms such as the input drive
    `x W_1` are computed once (by the generated `constants` function) instead of at every step.

    **Returns:** `(new_exprs, constants)` with `constants` a list of `(symbol, expression)`.
    """
    fixed = {*energy.params, *energy.inputs}
    inputs = set(energy.inputs)
    table: dict = {}

    def visit(e):
        if isinstance(e, sp.MatMul) or getattr(e, "_hoistable", False):
            mats = e.atoms(sp.MatrixSymbol)
            if mats and mats <= fixed and mats & inputs and sum(
                getattr(a, "is_Matrix", False) for a in e.args
            ) >= 2:
                key = e
                if key not in table:
                    table[key] = sp.MatrixSymbol(f"_c{len(table)}", *e.shape)
                return table[key]
        if not getattr(e, "args", ()) or isinstance(e, (sp.MatrixSymbol, ElementwiseApplyFunction)):
            if isinstance(e, ElementwiseApplyFunction):
                return e.func(e.function, visit(e.expr))
            return e
        new_args = [visit(a) for a in e.args]
        if all(a is b for a, b in zip(new_args, e.args)):
            return e
        return e.func(*new_args)

    new = [visit(e) for e in exprs]
    return new, [(sym, expr) for expr, sym in table.items()]


def generate_code(derivation: Derivation) -> GeneratedCode:
    """Emit vectorised JAX source for `dF/ds_k`, `dF/dtheta`, `F` and `C` of a derivation.

    The module also defines `constants(...)`, returning the state-independent products
    (`x W_1`, ...) as a tuple, and `state_grads_hoisted(..., _c0, _c1, ...)` that takes them.
    """
    energy = derivation.energy
    args = tuple(
        python_name(s.name)
        for s in (*energy.states, *energy.params, *energy.inputs, *energy.scalars)
    )
    batched = [python_name(s.name) for s in (*energy.states, *energy.inputs) if s.rows == BATCH]
    prelude = f"    _B = {batched[0]}.shape[0]\n" if batched else ""
    sig = ", ".join(args)
    used: set[str] = set()
    helpers: list[bool] = []

    def fn(name: str, exprs, kind: str, matrix: bool, extra: str = "") -> str:
        em = _Emitter(energy, kind)
        lines = []
        for e in exprs:
            lines.append(em.matrix(e) if matrix else em.scalar(e))
        used.update(em.used_functions)
        helpers.append(em.helpers)
        body = ",\n        ".join(lines)
        ret = (f"({body},)" if lines else "()") if matrix else (lines[0] if lines else "0.0")
        return f"def {name}(*, {sig}{extra}):\n{prelude}    return {ret}\n"

    hoisted, consts = hoist_constants(list(derivation.state_grads.values()), energy)
    const_names = "".join(f", {python_name(c.name)}" for c, _ in consts)

    rate_names = "".join(
        f", {python_name(v.name)}" for v in derivation.velocities.values()
    ) + (f", {python_name(BETA_RATE.name)}" if energy.scalars else "")

    def total(terms):
        return sp.Add(*terms) if terms else sp.Integer(0)

    parts = [
        fn("state_grads", list(derivation.state_grads.values()), "dF/ds", True),
        fn("constants", [e for _, e in consts], "constants", True),
        fn("state_grads_hoisted", hoisted, "dF/ds", True, const_names),
        fn("param_grads", list(derivation.param_grads.values()), "dF/dtheta", True),
        fn("energy", [total(energy.terms)], "F", False),
        fn("internal_energy", [total(energy.internal)], "E", False),
        fn("cost", [total(energy.cost)], "C", False),
        fn("output", [energy.prediction], "the output", True),
        fn("param_rates", [derivation.param_rates.get(p, sp.ZeroMatrix(*p.shape))
                           for p in energy.params], "d/dt dF/dtheta", True, rate_names),
    ]
    header = (
        f'"""Generated by eqdyn from the energy `{energy.name}`. Do not edit."""\n\n'
    )
    if any(helpers):
        header += CONV_HELPERS.lstrip() + "\n\n"
    return GeneratedCode(
        source=header + "\n\n".join(parts),
        arguments=args,
        functions=tuple(sorted(used)),
        constants=tuple(python_name(c.name) for c, _ in consts),
        velocities=tuple(python_name(v.name) for v in derivation.velocities.values()),
        beta_rate=python_name(BETA_RATE.name) if energy.scalars else None,
    )
