"""Readable LaTeX and plain-text printing of matrix-level energies and their derivatives.

SymPy's default printers show an elementwise activation as a lambda (`(d -> rho(d))_o(h)`), the
batch ones-vector as `1`, and keep nested minus signs. These printers render `rho(h_1)`,
`rho'(h_1)`, `\\mathbf{1}` and `\\odot`, after a tidy pass that pulls scalar factors out of
Hadamard products. Printing never changes the expressions used for code generation.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

__all__ = ["tidy", "to_latex", "to_text"]


def _split_scalar(m):
    """Return (scalar coefficient, matrix part) of a MatMul/MatrixExpr."""
    if isinstance(m, sp.MatMul):
        scalars = [a for a in m.args if not getattr(a, "is_Matrix", False)]
        mats = [a for a in m.args if getattr(a, "is_Matrix", False)]
        if scalars and mats:
            coeff = sp.Mul(*scalars)
            rest = mats[0] if len(mats) == 1 else sp.MatMul(*mats)
            return coeff, rest
    return sp.Integer(1), m


def tidy(expr):
    """Pull scalar factors out of Hadamard products, bottom-up, for display."""
    if not isinstance(expr, sp.Basic) or not expr.args:
        return expr
    args = [tidy(a) for a in expr.args]
    if isinstance(expr, sp.HadamardProduct):
        coeff = sp.Integer(1)
        mats = []
        for a in args:
            c, m = _split_scalar(a)
            coeff *= c
            mats.append(m)
        had = sp.HadamardProduct(*mats)
        return had if coeff == 1 else sp.MatMul(coeff, had)
    if isinstance(expr, ElementwiseApplyFunction):
        return expr
    if isinstance(expr, sp.MatMul):
        coeff, mats = sp.Integer(1), []
        for a in args:
            c, m = _split_scalar(a)
            if getattr(m, "is_Matrix", False):
                coeff *= c
                mats.extend(m.args if isinstance(m, sp.MatMul) else [m])
            else:
                coeff *= a
        body = mats[0] if len(mats) == 1 else sp.MatMul(*mats)
        return body if coeff == 1 else sp.MatMul(coeff, body)
    try:
        return expr.func(*args)
    except Exception:  # pragma: no cover - defensive: keep the original on exotic nodes
        return expr


def _function_name(fn) -> tuple[str, int] | None:
    """For `Lambda(d, f(d))` return ("f", 0); for `Lambda(d, f'(d))` return ("f", 1)."""
    if not isinstance(fn, sp.Lambda) or len(fn.variables) != 1:
        return None
    (v,) = fn.variables
    body = fn.expr
    if isinstance(body, sp.Derivative) and len(body.variables) >= 1:
        inner = body.expr
        if isinstance(inner, sp.core.function.AppliedUndef) and inner.args == (v,):
            if all(var == v for var in body.variables):
                return str(inner.func), len(body.variables)
    if isinstance(body, sp.core.function.AppliedUndef) and body.args == (v,):
        return str(body.func), 0
    return None


class _Latex(LatexPrinter):
    def _print_ElementwiseApplyFunction(self, expr):
        fn = _function_name(expr.function)
        arg = self._print(expr.expr)
        if fn is None:
            return super()._print_ElementwiseApplyFunction(expr)
        name, order = fn
        name = self._print(sp.Symbol(name))
        primes = "'" * order if order <= 3 else f"^{{({order})}}"
        return rf"{name}{primes}\left({arg}\right)"

    def _print_OneMatrix(self, expr):
        return r"\mathbf{1}"

    def _print_HadamardProduct(self, expr):
        from sympy.printing.precedence import PRECEDENCE

        return r" \odot ".join(
            self.parenthesize(a, PRECEDENCE["Mul"], strict=True) for a in expr.args
        )


_DOT = re.compile(r"\\dot\{\\?(\w+)\}(?:_\{(\w+)\})?")


def _dot_text(name: str) -> str:
    """`\\dot{h}_{1}` -> `dh_1/dt`, `\\dot{\\beta}` -> `dbeta/dt` (velocity symbols in text)."""
    def sub(m):
        return f"d{m.group(1)}" + (f"_{m.group(2)}" if m.group(2) else "") + "/dt"

    return _DOT.sub(sub, name)


class _Text(StrPrinter):
    def _print_MatrixSymbol(self, expr):
        return _dot_text(expr.name)

    def _print_Symbol(self, expr):
        return _dot_text(expr.name)

    def _print_ElementwiseApplyFunction(self, expr):
        fn = _function_name(expr.function)
        arg = self._print(expr.expr)
        if fn is None:
            return super()._print_ElementwiseApplyFunction(expr)
        name, order = fn
        return f"{name}{chr(39) * order}({arg})"

    def _print_OneMatrix(self, expr):
        return "1"

    def _print_HadamardProduct(self, expr):
        from sympy.printing.precedence import PRECEDENCE

        return " ∘ ".join(self.parenthesize(a, PRECEDENCE["Mul"], strict=True) for a in expr.args)


def to_latex(expr) -> str:
    """LaTeX for a (tidied) energy term or derivative."""
    return _Latex().doprint(tidy(expr))


def to_text(expr) -> str:
    """Plain text for a (tidied) energy term or derivative."""
    return _Text().doprint(tidy(expr))
