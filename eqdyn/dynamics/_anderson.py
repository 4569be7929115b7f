"""Anderson acceleration of a fixed-point map, per example of a batch (`Anderson(m)`).

`BlockSweeps(acceleration=Anderson(m))` mixes each sweep's class-A result with the last `m`
(see `_anderson_mix`); the mixing is written for small batches on a CPU.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._errors import ConfigError

__all__ = ["Anderson"]


class Anderson(eqx.Module):
    """Anderson acceleration (type II) with memory `m` of a fixed-point iteration.

    **Arguments:** `m`: how many past iterates are mixed (1..32; 3-8 is usual).

    Each iterate is mixed with the last `m` (per example, a least-squares fit of the
    residuals), restarting an example whose residual grew. The fixed points are those of the
    plain iteration; where a network has several, an accelerated relaxation may settle in
    another (seen from zero states on an untrained 784-500-500-500-10 net). Measured in
    training (`benchmarks/bench_cost.py --anderson 5`, MNIST, hard sigmoid, warm particles
    after 200 batches, quiet run of 2026-12-03): free sweeps per batch 9.1 -> 6.4 (784-500-10),
    18.0 -> 8.8 (784-500-500-10), 19.6 -> 10.3 (784-128-128-10); the mixing adds about 110-130
    us to a sweep at batch 20 on a 2-core CPU, so per batch it is about even with plain
    sweeps: 0.68-1.11x over five networks.

    optimistix has no Anderson solver (0.1.0); its `FixedPointIteration` is the plain
    iteration, with one convergence test for the whole batch, where this mixes every example
    with its own coefficients.
    """

    m: int = eqx.field(static=True)

    def __check_init__(self):
        if not (isinstance(self.m, int) and not isinstance(self.m, bool) and 1 <= self.m <= 32):
            raise ConfigError(f"`Anderson`: `m`={self.m!r} must be an integer memory in 1..32 "
                              "(3-8 is usual; no acceleration: acceleration=None).")

    def init(self, x):
        """The empty history for iterates shaped like `x` (a tuple of `(B, n_i)` arrays)."""
        return _anderson_history(x, self.m)

    def __call__(self, x, gx, hist, k, tol=0.0):
        """`(x_next, hist)`: one mixing step of the map's value `gx = G(x)` at step `k`."""
        return _anderson_mix(x, gx, hist, k, self.m, tol)


#: an example restarts its Anderson history when its residual norm grows by more than this
_ANDERSON_RESTART = 1.0


def _anderson_history(x, m):
    """The empty history of `_anderson_mix` for iterates shaped like `x` (a tuple of `(B, n_i)`
    arrays, handled as one `(B, n)` state, `n = sum n_i`): the differences of the last `m`
    values of `G` and of the residual (`(B, m, n)`, the slot axis after the batch), the
    previous `G` and residual, the Gram matrices of the residual differences (`(B, m, m)`),
    the previous squared residual norm `(B,)` and which slots hold a difference `(B, m)`."""
    b, n = x[0].shape[0], sum(a.shape[1] for a in x)
    dt = jnp.result_type(*(a.dtype for a in x))
    z = jnp.zeros((b, m, n), dt)
    return (z, z, jnp.zeros((b, n), dt), jnp.zeros((b, n), dt), jnp.zeros((b, m, m), dt),
            jnp.zeros((b,), dt), jnp.zeros((b, m), bool))


#: memories above this solve Anderson's normal equations with LAPACK (the unrolled
#: factorisation traces ~m^3/6 operations)
_UNROLLED_SOLVE_MAX = 8


def _spd_solve(a, b):
    """Solve `a x = b` for a batch of small symmetric positive definite matrices (`a`
    `(B, m, m)`, `b` `(B, m)`) by a Cholesky factorisation unrolled over `m`: a few dozen
    elementwise operations on `(B,)` lanes, which XLA fuses, instead of a LAPACK call (and its
    copies) per sweep. Pivots are floored at the dtype's smallest normal number (a round-off
    pivot then gives a huge, non-finite or merely poor solution, which `_anderson_mix` turns
    into a plain step). Above `_UNROLLED_SOLVE_MAX` it is `jnp.linalg.solve`."""
    m = a.shape[-1]
    if m > _UNROLLED_SOLVE_MAX:
        return jnp.linalg.solve(a, b[..., None])[..., 0]
    zero = jnp.zeros_like(b[:, 0])
    floor = jnp.finfo(b.dtype).tiny
    low = [[None] * m for _ in range(m)]
    for j in range(m):
        low[j][j] = jnp.sqrt(jnp.maximum(
            a[:, j, j] - sum((low[j][k] ** 2 for k in range(j)), zero), floor))
        for i in range(j + 1, m):
            low[i][j] = (a[:, i, j] - sum((low[i][k] * low[j][k] for k in range(j)), zero)) \
                / low[j][j]
    y = []
    for i in range(m):  # L y = b
        y.append((b[:, i] - sum((low[i][k] * y[k] for k in range(i)), zero)) / low[i][i])
    x = [None] * m
    for i in reversed(range(m)):  # L^T x = y
        x[i] = (y[i] - sum((low[k][i] * x[k] for k in range(i + 1, m)), zero)) / low[i][i]
    return jnp.stack(x, axis=-1)


def _anderson_mix(x, gx, hist, k, m, tol=0.0):
    """One step of Anderson acceleration (type II, memory `m`) of the fixed-point map `G`.

    `x`: the iterate `x_k` and `gx`: `G(x_k)`, tuples of `(B, n_i)` arrays (the class-A states,
    mixed as one vector per example); every example of the batch is its own fixed-point
    problem with its own mixing coefficients. Returns `x_{k+1} = G(x_k) - dG gamma` with
    `gamma` the (lightly regularised) least-squares fit `min |g_k - dg gamma|` of the residual
    `g = G(x) - x` by the last `m` residual differences `dg` (slot `(k - 1) mod m`, circular), and the
    new history (see `_anderson_history`); at `k = 0` (no history) it is the plain step
    `G(x_0)`. The fixed points are those of `G`: at one, `g = 0` and the mix returns `G(x)`.
    `tol`: an example whose residual's 2-norm is below it takes the plain step (stricter than
    the relaxation's max-norm test, so examples near rest are still mixed a little longer).

    Written for a CPU at small batches, where each XLA kernel costs microseconds whatever its
    size: the Gram matrices are carried and updated by one row per step (batched
    matrix-vector products), a restart masks slots instead of zeroing the history, the solve is
    an unrolled Cholesky (`_spd_solve`), and no row reduction is left to YNNPACK (tens of
    microseconds each here). Measured on 784-500-500-500-10 at batch 20 (fixed sweeps, quiet
    machine): about 110-130 us per sweep over a plain sweep's 320-350 us, down from ~200 us
    in commit 1888fc2 (LAPACK solve, zeroed histories, a YNNPACK row maximum) and ~450 us
    before it (Gram matrices recomputed each sweep by batched einsums over `(m, B, n)`).
    """
    h_g, h_r, g_prev, r_prev, gram, n_prev, valid = hist
    sizes = [a.shape[1] for a in x]
    dt = h_g.dtype  # the history's (carried) dtype, whatever a jump promoted G(x) to
    cat = (lambda t: t[0].astype(dt)) if len(x) == 1 else (
        lambda t: jnp.concatenate([a.astype(dt) for a in t], axis=1))
    g = cat(gx)
    r = g - cat(x)
    slot = jnp.mod(k - 1, m)
    # no differences before sweep 2: the first sweep's class-A jump used the initial class-B
    # states, not the minimisers given x_0, so (x_0, G(x_0)) is off the map's graph
    record = k >= 2
    new_r = r - r_prev
    h_g = h_g.at[:, slot].set(g - g_prev)
    h_r = h_r.at[:, slot].set(new_r)
    row = jnp.matmul(h_r, new_r[:, :, None])[..., 0]  # (B, m): the new slot against all
    rhs = jnp.matmul(h_r, r[:, :, None])[..., 0]
    gram = gram.at[:, slot, :].set(row).at[:, :, slot].set(row)
    norm = jnp.matmul(r[:, None, :], r[:, :, None])[:, 0, 0]  # |g_k|^2
    # safeguard: an example whose residual grew (the map's kinks, e.g. units crossing the
    # hard sigmoid's bounds, broke the local linear model) forgets its whole history
    keep = ~record | (norm <= _ANDERSON_RESTART * n_prev)
    valid = valid.at[:, slot].set(record) & keep[:, None]
    # slots never filled or forgotten are selected away (not multiplied by 0: a forgotten
    # slot may hold a non-finite difference)
    a = jnp.where(valid[:, :, None] & valid[:, None, :], gram, 0.0)
    rhs = jnp.where(valid, rhs, 0.0)
    scale = jnp.trace(a, axis1=1, axis2=2)[:, None, None] / m
    eps = jnp.finfo(dt).eps
    reg = (100 * eps * scale + jnp.finfo(dt).tiny) * jnp.eye(m, dtype=dt)
    gamma = _spd_solve(a + reg, rhs)  # exactly 0 on empty slots (their rhs is 0)
    # plain steps for an example whose fit failed, or whose residual's 2-norm is already
    # below `tol` (so is its max-norm, the loop's test; mixing would only amplify rounding)
    tol2 = (jnp.asarray(tol) * tol).astype(dt)  # squared in the setting's precision
    ok = jnp.all(jnp.isfinite(gamma), axis=1) & ~(norm < tol2)
    mix = sum(jnp.where(valid[:, i:i + 1], gamma[:, i:i + 1] * h_g[:, i], 0.0)
              for i in range(m))
    x_next = jnp.where(ok[:, None], g - mix, g)
    out, o = [], 0
    for a_i, n_i in zip(x, sizes):
        out.append(x_next[:, o:o + n_i].astype(a_i.dtype))
        o += n_i
    return tuple(out), (h_g, h_r, g, r, gram, norm, valid)
