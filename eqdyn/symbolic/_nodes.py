"""Row-wise reductions that SymPy's matrix algebra lacks: log-sum-exp and softmax.

A softmax readout with a cross-entropy cost (Laborieux et al. 2021) needs
`sum_b log sum_j exp(z_bj)`, a reduction over each row of a matrix. These two nodes keep it at
the matrix level: `RowLogSumExp(Z)` is the `(rows, 1)` column of row log-sum-exps and
`RowSoftmax(Z)` the row-normalised exponentials, its gradient. They print as `lse` and
`softmax`, expand entrywise for symbolic checks on explicit matrices (`as_explicit`), and
compile to the numerically stable `jax.nn.logsumexp` / `jax.nn.softmax`.
"""

from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixExpr

from .._errors import DerivationError

__all__ = ["RowLogSumExp", "RowSoftmax", "row_logsumexp", "row_softmax"]


class _RowOp(MatrixExpr):
    _latex_name = ""

    def __new__(cls, arg):
        arg = sp.sympify(arg)
        if not getattr(arg, "is_Matrix", False):
            raise DerivationError(f"`{cls.__name__}` needs a matrix expression, got `{arg}`.")
        return sp.Basic.__new__(cls, arg)

    @property
    def arg(self):
        return self.args[0]

    def doit(self, **hints):
        arg = self.arg.doit(**hints) if hints.get("deep", True) else self.arg
        return type(self)(arg)

    def _latex(self, printer):
        return rf"\operatorname{{{self._latex_name}}}\left({printer._print(self.arg)}\right)"

    def _sympystr(self, printer):
        return f"{self._latex_name}({printer._print(self.arg)})"

    def _row(self, i):
        n = self.arg.cols
        if not sp.sympify(n).is_Integer:
            raise DerivationError(f"`{self}` has a symbolic number of columns; cannot expand it.")
        return [self.arg[i, k] for k in range(int(n))]


class RowLogSumExp(_RowOp):
    """`log sum_j exp(Z_ij)` for every row `i`: a `(rows, 1)` matrix."""

    _latex_name = "lse"

    @property
    def shape(self):
        return (self.arg.rows, sp.Integer(1))

    def _entry(self, i, j, **kwargs):
        return sp.log(sp.Add(*[sp.exp(z) for z in self._row(i)]))


class RowSoftmax(_RowOp):
    """`exp(Z_ij) / sum_k exp(Z_ik)`: the softmax of every row; the gradient of `RowLogSumExp`."""

    _latex_name = "softmax"

    @property
    def shape(self):
        return self.arg.shape

    def _entry(self, i, j, **kwargs):
        row = self._row(i)
        return sp.exp(self.arg[i, j]) / sp.Add(*[sp.exp(z) for z in row])


def row_logsumexp(z) -> RowLogSumExp:
    """The row-wise log-sum-exp of `z` (for a softmax cross-entropy cost)."""
    return RowLogSumExp(z)


def row_softmax(z) -> RowSoftmax:
    """The row-wise softmax of `z`."""
    return RowSoftmax(z)
