"""Tests of eqdyn.learning._references: RBP, BPTT, CHL and feedforward backprop.

RBP (implicit differentiation of the free fixed point) is checked against central finite
differences of `J(theta) = mean C(s*(theta))` and against the Hessian formula in the gradient
formulation; BPTT, EP and CHL are then checked against RBP. All on a 5-4-3 net (one hidden
layer), batch 4, float64: one compilation per (function, formulation).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from eqdyn._errors import ConfigError
from eqdyn.dynamics import RelaxConfig
from eqdyn.learning import EPConfig, ep_gradient
from eqdyn.learning import (
    bptt_gradient,
    chl_gradient,
    feedforward_backprop_gradient,
    rbp_gradient,
)
from eqdyn.models import LayeredHopfield

SIZES = (5, 4, 3)
BATCH = 4
#: Euler's fixed points are exactly the ODE's and it contracts by about 1/2 per step here, so
#: it reaches a residual of 1e-13 in about 100-200 steps: the fixed point is exact to ~1e-13.
TIGHT = RelaxConfig(solver="euler", dt0=0.5, tol=1e-13, t1=4000.0, max_steps=8192,
                    on_failure="raise")
#: Seeds of the two cases. For the hard sigmoid (leaky formulation), seed 1 puts 20 of the 28
#: unit potentials past a bound (11 of 12 outputs), and the nearest potential is 0.031 from a
#: bound: no unit changes side under a nudge of beta = 1e-3 or a finite-difference step.
SEEDS = {"sigmoid": 1234, "hard_sigmoid": 1}

_rbp = eqx.filter_jit(rbp_gradient)
_bptt = eqx.filter_jit(bptt_gradient)
_chl = eqx.filter_jit(chl_gradient)
_ep = eqx.filter_jit(ep_gradient)


def _make(activation, seed):
    # numpy draws: every distinct shape drawn with jax.random is an XLA compilation
    rng = np.random.default_rng(seed)
    weights = []
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        lim = np.sqrt(6.0 / (a + b))
        weights.append(jnp.asarray(rng.uniform(-lim, lim, (a, b))))
    biases = [jnp.asarray(0.5 * rng.normal(size=(1, n))) for n in SIZES[1:]]
    model = LayeredHopfield(SIZES, activation, key=None, weights=weights, biases=biases,
                            dtype=jnp.float64)
    x = jnp.asarray(rng.uniform(size=(BATCH, SIZES[0])))
    d = jnp.asarray(np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], BATCH)])
    return model, x, d, model.init_state(BATCH)


class Case:
    def __init__(self, activation):
        self.activation = activation
        self.model, self.x, self.d, self.s0 = _make(activation, SEEDS[activation])
        self.grads, self.aux = _rbp(self.model, self.x, self.d, self.s0, TIGHT)
        assert bool(self.aux.converged) and bool(self.aux.adjoint_converged)

    def loss(self, params):
        """J(theta) at the free fixed point (warm-started at s*; same compiled function)."""
        _, aux = _rbp(self.model.with_params(params), self.x, self.d, self.aux.free_states, TIGHT)
        assert bool(aux.converged)
        return float(aux.loss)


_CASES: dict[str, Case] = {}


def _case(activation) -> Case:
    """One `Case` per activation for the whole module (built on first use)."""
    if activation not in _CASES:
        _CASES[activation] = Case(activation)
    return _CASES[activation]


@pytest.fixture(scope="module", params=["sigmoid", "hard_sigmoid"])
def case(request):
    return _case(request.param)


@pytest.fixture(scope="module")
def sigmoid_case():
    return _case("sigmoid")


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(a).ravel() for a in jax.tree_util.tree_leaves(tree)])


def _rel(a, b) -> float:
    a, b = _flat(a), _flat(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ------------------------------------------------------------------ RBP


def test_rbp_shapes_and_aux(case):
    model = case.model
    assert len(case.grads) == len(model.params)
    for g, p in zip(case.grads, model.params):
        assert g.shape == p.shape and g.dtype == p.dtype
        assert np.all(np.isfinite(np.asarray(g)))
    assert np.linalg.norm(_flat(case.grads)) > 1e-2
    want = 0.5 * np.sum((np.asarray(model.output(case.aux.free_states)) - np.asarray(case.d)) ** 2)
    assert float(case.aux.loss) == pytest.approx(want / BATCH, rel=1e-12)
    assert int(case.aux.correct) == int(np.sum(
        np.argmax(np.asarray(model.output(case.aux.free_states)), -1) == np.argmax(case.d, -1)))


def test_rbp_matches_finite_differences(case):
    params = case.model.params
    flat, unravel = ravel_pytree(params)
    g = _flat(case.grads)
    rng = np.random.default_rng(0)
    # three random entries whose gradient is not negligible, and two random directions
    big = np.flatnonzero(np.abs(g) > 1e-2 * np.max(np.abs(g)))
    directions = [np.eye(flat.size)[i] for i in rng.choice(big, 3, replace=False)]
    directions += [rng.normal(size=flat.size) for _ in range(2)]
    h = 1e-4
    errors = []
    for v in directions:
        plus = case.loss(unravel(flat + h * v))
        minus = case.loss(unravel(flat - h * v))
        fd = (plus - minus) / (2 * h)
        exact = float(g @ v)
        errors.append(abs(fd - exact) / abs(exact))
    # measured: <= 1.6e-8 (sigmoid), <= 4.1e-8 (hard sigmoid, 28 of its 39 entries exactly 0)
    assert max(errors) < 1e-6, errors


def test_rbp_is_almeida_pineda_in_gradient_formulation(sigmoid_case):
    """In the gradient formulation the generic adjoint is `H lambda' = dC/ds`, H = d2F/ds2."""
    c = sigmoid_case
    system, params, inputs = c.model.system, c.model.params, c.model.inputs(c.x, c.d)
    flat, unravel = ravel_pytree(c.aux.free_states)

    @jax.jit
    def almeida_pineda(flat, params):
        hess = jax.hessian(lambda f: system.energy(unravel(f), params, inputs, 0.0))(flat)
        dc = jax.grad(lambda f: system.cost(unravel(f), params, inputs) / BATCH)(flat)
        lam = jnp.linalg.solve(hess, dc)

        def coupling(p):
            return jnp.vdot(ravel_pytree(system.state_grads(unravel(flat), p, inputs, 0.0))[0], lam)

        return tuple(-g for g in jax.grad(coupling)(params)), lam

    ref, lam = almeida_pineda(flat, params)
    assert _rel(c.grads, ref) < 1e-10
    np.testing.assert_allclose(_flat(c.aux.adjoint), -np.asarray(lam), rtol=1e-9, atol=1e-13)


def test_rbp_gmres_matches_dense():
    # the leaky (hard-sigmoid) Jacobian is not symmetric: a real test of the transpose solve
    c = _case("hard_sigmoid")
    grads, aux = _rbp(c.model, c.x, c.d, c.s0, TIGHT, solver="gmres")
    assert bool(aux.adjoint_converged)
    assert _rel(grads, c.grads) < 1e-9
    assert _rel(aux.adjoint, c.aux.adjoint) < 1e-9


def test_rbp_bad_solver(sigmoid_case):
    c = sigmoid_case
    with pytest.raises(ConfigError, match="`solver`='lu' is not known"):
        rbp_gradient(c.model, c.x, c.d, c.s0, TIGHT, solver="lu")


# ------------------------------------------------------------------ BPTT


def test_bptt_converges_to_rbp(sigmoid_case):
    c = sigmoid_case
    errors = []
    for n in (5, 20, 400):
        grads, aux = _bptt(c.model, c.x, c.d, c.s0, dt=0.5, n_steps=n)
        errors.append(_rel(grads, c.grads))
    # measured: 3.5e-2, 1.9e-6, 1e-13
    assert errors[0] > 1e-2  # a short horizon is a different computation...
    assert errors[0] > errors[1] > errors[2]  # ...whose gradient converges to RBP's
    assert errors[2] < 1e-6, errors
    assert float(aux.residual) < 1e-12
    assert float(aux.loss) == pytest.approx(float(c.aux.loss), rel=1e-10)


@pytest.mark.parametrize("kw, match", [(dict(dt=0.0, n_steps=10), "`dt`=0.0 must be a positive"),
                                        (dict(dt=0.5, n_steps=0), "`n_steps`=0 must be")])
def test_bptt_bad_options(sigmoid_case, kw, match):
    c = sigmoid_case
    with pytest.raises(ConfigError, match=match):
        bptt_gradient(c.model, c.x, c.d, c.s0, **kw)


# ------------------------------------------------------------------ EP -> RBP


def _keys_by_sign():
    """PRNG keys whose random sign is +1 and -1: random-sign EP is then one-sided EP at +beta
    and -beta, from one compilation; their mean is the symmetric estimate."""
    plus = minus = None
    for i in range(64):
        if bool(jax.random.bernoulli(jax.random.PRNGKey(i))):
            plus = plus if plus is not None else i
        else:
            minus = minus if minus is not None else i
        if plus is not None and minus is not None:
            return jax.random.PRNGKey(plus), jax.random.PRNGKey(minus)
    raise AssertionError("no keys of both signs")


def test_ep_tends_to_rbp(case):
    beta = 1e-3
    if case.activation == "hard_sigmoid":
        # EP and RBP agree only while no unit changes side of a bound under the nudge
        u = _flat(case.aux.free_states)
        assert np.min(np.minimum(np.abs(u), np.abs(u - 1.0))) > 10 * beta
        assert np.sum((u < 0) | (u > 1)) >= 10  # and saturated units are really exercised
    cfg = EPConfig(beta=beta, variant="random-sign", free=TIGHT, nudged=TIGHT)
    plus, minus = _keys_by_sign()
    g_plus, aux = _ep(case.model, case.x, case.d, case.s0, cfg, key=plus)
    g_minus, _ = _ep(case.model, case.x, case.d, case.s0, cfg, key=minus)
    symmetric = tuple((a + b) / 2 for a, b in zip(g_plus, g_minus))
    one_sided = _rel(g_plus, case.grads)
    sym = _rel(symmetric, case.grads)
    # measured: one-sided 8.7e-4 / 1.3e-3, symmetric 6.4e-7 / 1.6e-6 (sigmoid / hard sigmoid)
    assert one_sided < 1e-2, one_sided
    assert sym < (1e-4 if case.activation == "sigmoid" else 1e-3), sym
    assert sym < one_sided
    assert float(aux.loss) == pytest.approx(float(case.aux.loss), rel=1e-10)


# ------------------------------------------------------------------ CHL


def test_chl_clamps_output_and_aligns_with_rbp(sigmoid_case):
    cosines = []
    for seed in range(4):  # random data and weights, same shapes: one compilation
        model, x, d, s0 = _make("sigmoid", 100 + seed)
        grads, aux = _chl(model, x, d, s0, TIGHT)
        assert bool(aux.free_converged) and bool(aux.clamped_converged)
        np.testing.assert_array_equal(np.asarray(model.output(aux.clamped_states)), np.asarray(d))
        assert float(model.system.cost(aux.clamped_states, model.params, model.inputs(x, d))) == 0
        for g, p in zip(grads, model.params):
            assert g.shape == p.shape and np.all(np.isfinite(np.asarray(g)))
        ref, _ = _rbp(model, x, d, s0, TIGHT)
        a, b = _flat(grads), _flat(ref)
        cosines.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    assert min(cosines) > 0, cosines  # measured: 0.9996-0.9999


def test_chl_leaky_output_is_exactly_the_target():
    c = _case("hard_sigmoid")
    grads, aux = _chl(c.model, c.x, c.d, c.s0, TIGHT)
    assert bool(aux.clamped_converged)
    # u_y = d, and rho(d) = d for targets in [0, 1]
    np.testing.assert_array_equal(np.asarray(aux.clamped_states[-1]), np.asarray(c.d))
    np.testing.assert_array_equal(np.asarray(c.model.output(aux.clamped_states)), np.asarray(c.d))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
    # the free phase is the one RBP differentiates
    for a, b in zip(aux.free_states, c.aux.free_states):
        np.testing.assert_allclose(a, b, atol=1e-12)


# ------------------------------------------------------------------ feedforward backprop


@pytest.mark.parametrize("activation", ["sigmoid", "hard_sigmoid"])
def test_feedforward_backprop_is_mlp_backprop(activation):
    model, x, d, _ = _make(activation, 7)
    rho = jax.nn.sigmoid if activation == "sigmoid" else (lambda z: jnp.clip(z, 0.0, 1.0))

    def mlp_loss(w1, w2, b1, b2):
        h = rho(x @ w1 + b1)
        y = rho(h @ w2 + b2)
        return jnp.mean(0.5 * jnp.sum((y - d) ** 2, axis=1))

    want = jax.jit(jax.grad(mlp_loss, argnums=(0, 1, 2, 3)))(*model.params)
    grads, aux = eqx.filter_jit(feedforward_backprop_gradient)(model, x, d)
    assert len(grads) == 4
    for g, w in zip(grads, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)
    assert float(aux.loss) == pytest.approx(float(jax.jit(mlp_loss)(*model.params)), rel=1e-14)
    assert aux.output.shape == (BATCH, SIZES[-1])
