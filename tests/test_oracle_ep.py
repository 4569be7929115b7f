"""Finite-beta EP in the gradient formulation against an independent SciPy computation.

The oracle below is written from the equations of ../shared/REFERENCE.md ("The model", "Learning
rules") and eqdyn's documented energy (`layered_hopfield_energy`: the clamped input enters as
`x W_1`, the squared error acts on the output potential), not from eqdyn's code: a 3-4-2
sigmoid network in float64,

    F = 1/2 (|h|^2 + |y|^2) - x W1 rho(h)^T - rho(h) W2 rho(y)^T - b1 rho(h)^T - b2 rho(y)^T
        + beta/2 |y - d|^2,      ds/dt = -dF/ds,

integrated by `scipy.integrate.solve_ivp` from eqdyn's initial state to rest (free phase, then
the nudged phase from the free fixed point), polished by `scipy.optimize.root`, and the EP
estimates written by hand from dF/dW at the two (three) fixed points, averaged over the batch.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import root

import eqdyn
from eqdyn.learning import EPConfig, ep_gradient

SIZES = (3, 4, 2)
BATCH = 5
# fixed-step Euler: its fixed points are the ODE's, and it compiles in a fraction of Tsit5's time
TIGHT = eqdyn.RelaxConfig(solver="euler", dt0=0.5, tol=1e-12, t1=5000.0, max_steps=10_000,
                          backend="fused")


def _rho(u):
    return 1.0 / (1.0 + np.exp(-u))


def _drho(u):
    r = _rho(u)
    return r * (1.0 - r)


def _field(s, x, d, beta, w1, w2, b1, b2):
    """-dF/ds for the stacked state s = (h, y), one example per row."""
    n_h = w1.shape[1]
    h, y = s[:, :n_h], s[:, n_h:]
    dh = -h + _drho(h) * (x @ w1 + _rho(y) @ w2.T + b1)
    dy = -y + _drho(y) * (_rho(h) @ w2 + b2) + beta * (d - y)
    return np.concatenate([dh, dy], axis=1)


def _fixed_point(s0, x, d, beta, params):
    shape = s0.shape

    def rhs(_, flat):
        return _field(flat.reshape(shape), x, d, beta, *params).ravel()

    sol = solve_ivp(rhs, (0.0, 200.0), s0.ravel(), method="LSODA", rtol=1e-12, atol=1e-14)
    assert sol.success
    polished = root(lambda f: rhs(0.0, f), sol.y[:, -1], tol=1e-15)
    assert polished.success
    # the ODE got near the point that the root finder polished (the same fixed point)
    assert np.max(np.abs(polished.x - sol.y[:, -1])) < 1e-6
    return polished.x.reshape(shape)


def _df_dparams(s, x, w1):
    """dF/d(W1, W2, b1, b2) at state s, summed over the batch."""
    n_h = w1.shape[1]
    rh, ry = _rho(s[:, :n_h]), _rho(s[:, n_h:])
    return [-x.T @ rh, -rh.T @ ry, -rh.sum(0, keepdims=True), -ry.sum(0, keepdims=True)]


def _oracle(x, d, s0, beta, params, symmetric):
    free = _fixed_point(s0, x, d, 0.0, params)
    plus = _df_dparams(_fixed_point(free, x, d, beta, params), x, params[0])
    if symmetric:
        minus = _df_dparams(_fixed_point(free, x, d, -beta, params), x, params[0])
        return [(p - m) / (2 * beta * len(x)) for p, m in zip(plus, minus)]
    base = _df_dparams(free, x, params[0])
    return [(p - b) / (beta * len(x)) for p, b in zip(plus, base)]


@pytest.mark.parametrize("variant", ["one-sided", "symmetric"])
def test_ep_gradient_matches_a_scipy_integration_of_the_neuron_odes(variant):
    m = eqdyn.LayeredHopfield(SIZES, "sigmoid", "gradient", key=jax.random.PRNGKey(3),
                              dtype=jnp.float64)
    # stronger weights than Glorot's, and biases, so that the fixed points are far from 0
    m = m.with_params([2.0 * w for w in m.weights] + [jnp.full_like(b, 0.3) for b in m.biases])
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (BATCH, SIZES[0]))
    d = np.eye(SIZES[-1])[np.arange(BATCH) % SIZES[-1]]
    s0 = np.concatenate([np.asarray(s) for s in m.init_state(BATCH, jnp.float64)], axis=1)
    params = [np.asarray(p) for p in (*m.weights, *m.biases)]
    beta = 0.5  # finite: the estimate, not its beta -> 0 limit, is compared
    want = _oracle(x, d, s0, beta, params, variant == "symmetric")

    config = EPConfig(beta=beta, variant=variant, free=TIGHT, nudged=TIGHT)
    # one compilation (eager, each of the loop's operations compiles apart: 4x slower)
    g, aux = eqx.filter_jit(lambda m, x, d, s0: ep_gradient(m, x, d, s0, config))(
        m, jnp.asarray(x), jnp.asarray(d), m.init_state(BATCH, jnp.float64))
    assert bool(aux.free_converged) and bool(aux.nudged_converged)
    scale = max(float(np.max(np.abs(w))) for w in want)
    assert scale > 1e-2  # not trivially zero
    err = max(float(np.max(np.abs(np.asarray(a).reshape(b.shape) - b))) for a, b in zip(g, want))
    # measured 2026-12-07: 3.3e-13 (one-sided, scale 0.12) and 3.1e-13 (symmetric, 0.21)
    assert err < 3e-12, (err, scale)
