"""Matrix calculus on SymPy matrix expressions, restricted to what compiles to matrix-level code.

`derive` needs two derivatives of an energy term, both as SymPy matrix expressions:

- the gradient `d tr(M) / dX` of a scalar term with respect to a matrix symbol (reverse mode:
  an adjoint is pushed from the trace down to every occurrence of `X`), and
- the directional (time) derivative of a matrix expression along given tangents, e.g.
  `d/dt dF/dW` along a trajectory with velocities `ds_k/dt` (forward mode), which is the
  spike-timing-dependent (STDP) form of the learning rule.

Why not `sympy.Expr.diff`? SymPy's matrix derivative is correct on simple products but fails on
row reductions (the log-sum-exp of a softmax readout raises "index is larger than expression
shape"), builds large array expressions slowly, and in some versions returns a silent zero for
`(Trace(A) + Trace(B)).diff(X)`. The rules here cover exactly the grammar the code generator
emits (matrix and Hadamard products, sums, transposes, elementwise functions, traces, ones
matrices, the row-wise log-sum-exp / softmax of `_nodes`, and nodes that declare their own
`_vjp`/`_jvp` rules: the convolutions and pooling of `_conv`), so an energy is either derived and
compiled at the matrix level or refused with a `DerivationError` naming the term and the node.
The tests check these rules against SymPy's own `diff` (on explicit small matrices) and against
`jax.grad`.
"""

from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from .._errors import DerivationError
from ._nodes import RowLogSumExp, RowSoftmax

__all__ = ["trace_gradient", "tangent", "scalar_parts", "function_derivative"]


def _is_matrix(e) -> bool:
    return getattr(e, "is_Matrix", False)


def _mm(*factors):
    """A simplified matrix product of the non-`None` factors (scalars allowed)."""
    fs = [f for f in factors if f is not None]
    kept = [f for f in fs if not isinstance(f, sp.Identity)]
    if not any(_is_matrix(f) for f in kept):
        kept = fs  # only identities (and scalars) left: keep them for the shape
    if len(kept) == 1:
        return kept[0]
    return sp.MatMul(*kept).doit()


def _split_scalar(m):
    if isinstance(m, sp.MatMul):
        scalars = [a for a in m.args if not _is_matrix(a)]
        if scalars:
            mats = [a for a in m.args if _is_matrix(a)]
            return sp.Mul(*scalars), (mats[0] if len(mats) == 1 else sp.MatMul(*mats))
    return sp.Integer(1), m


def _scale(c, m):
    """`c * m` with scalar factors merged, without distributing over sums."""
    c2, base = _split_scalar(m)
    c = sp.sympify(c) * c2
    if c == 1:
        return base
    if isinstance(base, sp.MatMul):
        return sp.MatMul(c, *base.args)
    return sp.MatMul(c, base)


def _add(parts):
    """A sum of the non-`None`, non-zero parts, with equal matrix parts collected."""
    coeffs: dict = {}
    for p in parts:
        if p is None or isinstance(p, sp.ZeroMatrix):
            continue
        c, m = _split_scalar(p)
        coeffs[m] = coeffs.get(m, 0) + c
    out = [_scale(c, m) for m, c in coeffs.items() if c != 0]
    if not out:
        return None
    return out[0] if len(out) == 1 else sp.MatAdd(*out)


def _had(a, b):
    """Hadamard product, dropping all-ones factors."""
    if isinstance(a, sp.OneMatrix):
        return b
    if isinstance(b, sp.OneMatrix):
        return a
    return sp.HadamardProduct(a, b).doit()


def _t(a):
    return sp.Transpose(a).doit()


def function_derivative(fn):
    """The derivative of an elementwise function, as something `ElementwiseApplyFunction` takes.

    An opaque `Function('rho')` gives `Lambda(u, Derivative(rho(u), u))` (compiled to the
    activation's `d1`); a `Lambda` is differentiated symbolically.
    """
    u = sp.Dummy("u")
    if isinstance(fn, sp.Lambda):
        if len(fn.variables) != 1:
            raise DerivationError(f"elementwise function `{fn}` must take exactly one argument.")
        (v,) = fn.variables
        return sp.Lambda(u, sp.diff(fn.expr, v).subs(v, u))
    if isinstance(fn, sp.FunctionClass):
        return sp.Lambda(u, sp.diff(fn(u), u))
    raise DerivationError(f"elementwise function `{fn}` is neither a SymPy Function nor a Lambda.")


def _refuse(node, why, context):
    raise DerivationError(
        f"{context}: {why} in `{node}` ({type(node).__name__}). Write the energy with matrix "
        "products, Hadamard products, sums, transposes, traces, elementwise functions and "
        "`row_logsumexp`; other operations cannot be compiled to matrix-level code."
    )


# ------------------------------------------------------------------------ reverse mode


def _backprop(node, adj, wrt, out: list, context: str):
    """Accumulate into `out` the contributions `d <adj, node> / d wrt`."""
    if node == wrt:
        out.append(adj)
        return
    if not node.has(wrt):
        return
    if isinstance(node, sp.MatAdd):
        for a in node.args:
            if _is_matrix(a):
                _backprop(a, adj, wrt, out, context)
            elif a.has(wrt):
                _refuse(a, "a scalar inside a matrix sum that depends on the variable", context)
        return
    if isinstance(node, sp.MatMul):
        scalars = [a for a in node.args if not _is_matrix(a)]
        mats = [a for a in node.args if _is_matrix(a)]
        coeff = sp.Mul(*scalars)
        if coeff.has(wrt):
            _refuse(node, "a scalar factor (e.g. a trace) that depends on the variable", context)
        for i, m in enumerate(mats):
            if not m.has(wrt):
                continue
            left = _t(_mm(*mats[:i])) if i > 0 else None
            right = _t(_mm(*mats[i + 1:])) if i + 1 < len(mats) else None
            a = _scale(coeff, _mm(left, adj, right))
            _backprop(m, a, wrt, out, context)
        return
    if isinstance(node, sp.HadamardProduct):
        for i, m in enumerate(node.args):
            if not m.has(wrt):
                continue
            others = [o for j, o in enumerate(node.args) if j != i]
            a = adj
            for o in others:
                a = _had(a, o)
            _backprop(m, a, wrt, out, context)
        return
    if isinstance(node, sp.HadamardPower):
        if node.exp.has(wrt):
            _refuse(node, "an exponent that depends on the variable", context)
        e = node.exp
        a = _had(adj, _mm(e, sp.HadamardPower(node.base, e - 1).doit()))
        _backprop(node.base, a, wrt, out, context)
        return
    if isinstance(node, sp.Transpose):
        _backprop(node.arg, _t(adj), wrt, out, context)
        return
    if isinstance(node, ElementwiseApplyFunction):
        d = ElementwiseApplyFunction(function_derivative(node.function), node.expr)
        _backprop(node.expr, _had(adj, d), wrt, out, context)
        return
    if isinstance(node, RowLogSumExp):
        arg = node.arg
        spread = _mm(adj, sp.OneMatrix(1, arg.cols))
        _backprop(arg, _had(spread, RowSoftmax(arg)), wrt, out, context)
        return
    if isinstance(node, RowSoftmax):
        arg = node.arg
        s = RowSoftmax(arg)
        inner = _mm(_had(adj, s), sp.OneMatrix(arg.cols, 1))
        a = _add([_had(adj, s), _mm(-1, _had(_mm(inner, sp.OneMatrix(1, arg.cols)), s))])
        _backprop(arg, a, wrt, out, context)
        return
    vjp = getattr(node, "_vjp", None)  # a node with its own rules (convolutions: `_conv`)
    if vjp is not None:
        for arg, a in vjp(adj):
            if arg.has(wrt):
                _backprop(arg, a, wrt, out, context)
        return
    _refuse(node, "an operation with no matrix-level derivative rule", context)


def scalar_parts(term) -> list[tuple[sp.Expr, sp.MatrixExpr]]:
    """Split a scalar term into `[(coefficient, M), ...]` meaning `sum coefficient * tr(M)`.

    Coefficients are scalar expressions free of matrices (numbers, `beta`, time constants).
    """
    term = sp.sympify(term)
    out = []
    for add in sp.Add.make_args(sp.expand_mul(term, deep=False)):
        coeff, traces = sp.Integer(1), []
        for f in sp.Mul.make_args(add):
            if isinstance(f, sp.Trace):
                traces.append(f)
            elif f.atoms(sp.MatrixSymbol) or f.has(sp.Trace):
                raise DerivationError(
                    f"the factor `{f}` of `{add}` is a function of matrices other than a plain "
                    "trace; write each term as (coefficient) * Trace(matrix expression)."
                )
            else:
                coeff *= f
        if len(traces) != 1:
            if not traces:
                out.append((coeff, None))  # a constant: no gradient
                continue
            raise DerivationError(
                f"`{add}` multiplies {len(traces)} traces; an energy term must be linear in one "
                "trace (products of traces have no matrix-level gradient here)."
            )
        out.append((coeff, traces[0].arg))
    return out


def trace_gradient(term, wrt: sp.MatrixSymbol, context: str = "derivative"):
    """`d term / d wrt` for a scalar term `sum_i c_i tr(M_i)`; `None` when it does not occur.

    **Raises:** `DerivationError` naming the node for anything outside the matrix-level grammar,
    and when `wrt` occurs in the term but its gradient comes out identically zero (the silent-zero
    pitfall of SymPy's matrix derivatives is never passed on as a result).
    """
    parts = []
    for coeff, m in scalar_parts(term):
        if m is None or not m.has(wrt):
            continue
        if m.rows != m.cols:
            raise DerivationError(f"{context}: Trace of the non-square {m.shape} matrix `{m}`.")
        acc: list = []
        _backprop(m, sp.Identity(m.rows), wrt, acc, context)
        g = _add(acc)
        if g is None:
            raise DerivationError(
                f"{context}: `{wrt.name}` occurs in `{term}` but its gradient came out "
                "identically zero; refusing a possibly silent wrong derivative. Rewrite the term."
            )
        parts.append(_scale(coeff, g))
    g = _add(parts)
    if g is None and parts:
        raise DerivationError(
            f"{context}: `{wrt.name}` occurs in `{term}` but the gradient of the term sums to "
            "identically zero; refusing a possibly silent wrong derivative. Simplify the term "
            f"so that `{wrt.name}` no longer appears, or rewrite it."
        )
    if g is not None and tuple(g.shape) != tuple(wrt.shape):
        raise DerivationError(
            f"{context}: the gradient with respect to `{wrt.name}` has shape {g.shape} but "
            f"`{wrt.name}` has shape {wrt.shape}; the symbol is used with inconsistent shapes."
        )
    return g


# ------------------------------------------------------------------------ forward mode


def _scalar_tangent(e, tangents):
    out = sp.Integer(0)
    for s, ds in tangents.items():
        if not _is_matrix(s) and e.has(s):
            out += sp.diff(e, s) * ds
    return out


def tangent(expr, tangents: dict, context: str = "time derivative"):
    """The directional derivative of a matrix (or scalar) expression along `tangents`.

    `tangents` maps matrix symbols to matrix expressions of their shape (e.g. `s -> ds/dt`) and
    scalar symbols to scalars (e.g. `beta -> dbeta/dt`). Returns `None` for an identically zero
    result.
    """
    if not _is_matrix(expr):
        if isinstance(expr, sp.Trace):
            d = tangent(expr.arg, tangents, context)
            return None if d is None else sp.Trace(d)
        if expr.atoms(sp.MatrixSymbol):
            _refuse(expr, "a scalar function of matrices", context)
        d = _scalar_tangent(expr, tangents)
        return None if d == 0 else d
    if expr in tangents:
        return tangents[expr]
    if isinstance(expr, (sp.MatrixSymbol, sp.ZeroMatrix, sp.OneMatrix, sp.Identity)):
        return None
    if isinstance(expr, sp.MatAdd):
        return _add([tangent(a, tangents, context) if _is_matrix(a) else None for a in expr.args])
    if isinstance(expr, sp.MatMul):
        scalars = [a for a in expr.args if not _is_matrix(a)]
        mats = [a for a in expr.args if _is_matrix(a)]
        coeff = sp.Mul(*scalars)
        parts = []
        dc = _scalar_tangent(coeff, tangents)
        if dc != 0:
            parts.append(_mm(dc, *mats))
        for i, m in enumerate(mats):
            dm = tangent(m, tangents, context)
            if dm is not None:
                parts.append(_mm(coeff if coeff != 1 else None, *mats[:i], dm, *mats[i + 1:]))
        return _add(parts)
    if isinstance(expr, sp.HadamardProduct):
        parts = []
        for i, m in enumerate(expr.args):
            dm = tangent(m, tangents, context)
            if dm is None:
                continue
            p = dm
            for j, o in enumerate(expr.args):
                if j != i:
                    p = _had(p, o)
            parts.append(p)
        return _add(parts)
    if isinstance(expr, sp.HadamardPower):
        db = tangent(expr.base, tangents, context)
        if expr.exp.free_symbols & set(tangents):
            _refuse(expr, "an exponent that changes in time", context)
        if db is None:
            return None
        e = expr.exp
        return _had(_mm(e, sp.HadamardPower(expr.base, e - 1).doit()), db)
    if isinstance(expr, sp.Transpose):
        d = tangent(expr.arg, tangents, context)
        return None if d is None else _t(d)
    if isinstance(expr, ElementwiseApplyFunction):
        d = tangent(expr.expr, tangents, context)
        if d is None:
            return None
        return _had(ElementwiseApplyFunction(function_derivative(expr.function), expr.expr), d)
    if isinstance(expr, RowLogSumExp):
        d = tangent(expr.arg, tangents, context)
        if d is None:
            return None
        return _mm(_had(RowSoftmax(expr.arg), d), sp.OneMatrix(expr.arg.cols, 1))
    if isinstance(expr, RowSoftmax):
        d = tangent(expr.arg, tangents, context)
        if d is None:
            return None
        s = RowSoftmax(expr.arg)
        n = expr.arg.cols
        mean = _mm(_mm(_had(s, d), sp.OneMatrix(n, 1)), sp.OneMatrix(1, n))
        return _add([_had(s, d), _mm(-1, _had(s, mean))])
    jvp = getattr(expr, "_jvp", None)
    if jvp is not None:
        ds = [tangent(a, tangents, context) if _is_matrix(a) else None for a in expr.args]
        return None if all(d is None for d in ds) else jvp(ds)
    _refuse(expr, "an operation with no matrix-level derivative rule", context)
