"""Building blocks for energies: layers, parameters and the usual terms, as SymPy expressions.

Every block returns a plain SymPy object, so a custom energy is just a tuple of them (mix in any
term you write yourself). States are `B x n` matrices with one row per example.

```python
from eqdyn.symbolic import Energy, terms as T
x, h, y, d = T.layer("x", 784), T.layer("h", 500), T.layer("y", 10), T.layer("d", 10)
W1, W2, L = T.weight("W_1", 784, 500), T.weight("W_2", 500, 10), T.weight("L_1", 500, 500)
E = (T.leak(h), T.leak(y), T.coupling(x, W1, h, pre_raw=True), T.coupling(h, W2, y),
     T.lateral(h, L))
energy = Energy(internal=E, cost=(T.squared_error(y, d),), states=(h, y),
                params=(W1, W2, L), inputs=(x, d), scalars=(T.BETA,))
```
"""

from __future__ import annotations

import sympy as sp

from ._conv_energy import channel_bias as channel_bias
from ._conv_energy import conv as conv
from ._conv_energy import conv_coupling as conv_coupling
from ._conv_energy import feature_map as feature_map
from ._conv_energy import kernel as kernel
from ._conv_energy import pool as pool
from ._energy import BATCH, elementwise
from ._nodes import RowLogSumExp

__all__ = [
    "RHO", "BETA", "layer", "weight", "bias", "leak", "coupling", "bias_term", "lateral",
    "readout", "squared_error", "cross_entropy", "act", "feature_map", "kernel", "conv", "pool",
    "conv_coupling", "channel_bias",
]

#: The default opaque activation function, bound to a numeric activation when compiling.
RHO = sp.Function("rho")
#: The nudging strength (declare it first in `Energy.scalars`).
BETA = sp.Symbol("beta", real=True)


def layer(name: str, n: int) -> sp.MatrixSymbol:
    """A batched layer (state or input): a `B x n` matrix symbol."""
    return sp.MatrixSymbol(name, BATCH, int(n))


def weight(name: str, n_in: int, n_out: int) -> sp.MatrixSymbol:
    """A weight matrix `n_in x n_out` (rows: the pre-synaptic layer)."""
    return sp.MatrixSymbol(name, int(n_in), int(n_out))


def bias(name: str, n: int) -> sp.MatrixSymbol:
    """A bias row vector `1 x n`."""
    return sp.MatrixSymbol(name, 1, int(n))


def act(s, rho=None):
    """`rho(s)` elementwise."""
    return elementwise(rho or RHO, s)


def leak(s, scale=sp.Rational(1, 2)) -> sp.Expr:
    """`1/2 ||s||^2` summed over the batch: the leak that makes `ds/dt = -s + ...`."""
    return scale * sp.Trace(s * s.T)


def coupling(pre, w, post, rho=None, *, pre_raw: bool = False, post_raw: bool = False) -> sp.Expr:
    """`- rho(pre) W rho(post)^T`: a symmetric synaptic coupling between two layers.

    `pre_raw` / `post_raw` use the layer itself instead of `rho` of it (for a clamped input).
    """
    a = pre if pre_raw else act(pre, rho)
    b = post if post_raw else act(post, rho)
    return -sp.Trace(a * w * b.T)


def bias_term(b, s, rho=None) -> sp.Expr:
    """`- b rho(s)^T` for every example."""
    return -sp.Trace(sp.OneMatrix(BATCH, 1) * b * act(s, rho).T)


def lateral(s, w, rho=None, scale=sp.Rational(1, 2)) -> sp.Expr:
    """`- 1/2 rho(s) L rho(s)^T`: lateral connections inside one layer (`L` square)."""
    return -scale * sp.Trace(act(s, rho) * w * act(s, rho).T)


def readout(s, w, b=None, rho=None) -> sp.MatrixExpr:
    """Logits `rho(s) W + b` of a readout layer (not a state)."""
    z = act(s, rho) * w
    if b is not None:
        z = z + sp.OneMatrix(BATCH, 1) * b
    return z


def squared_error(y, d) -> sp.Expr:
    """`1/2 ||y - d||^2` summed over the batch."""
    return sp.Rational(1, 2) * sp.Trace((y - d) * (y - d).T)


def cross_entropy(logits, d) -> tuple[sp.Expr, sp.Expr]:
    """Softmax cross-entropy `sum_b [logsumexp(z_b) - d_b . z_b]` as two cost terms.

    Equal to `-sum_b sum_j d_bj log softmax(z_b)_j` when every row of `d` sums to one
    (one-hot targets). Its gradient with respect to `z` is `softmax(z) - d`.
    """
    rows = logits.rows
    return (
        sp.Trace(sp.OneMatrix(1, rows) * RowLogSumExp(logits)),
        -sp.Trace(d * logits.T),
    )
