"""Tests of eqdyn.dynamics: relaxation on diffrax against analytic solutions and invariants.

Every distinct `RelaxConfig` is a separate compilation (its fields are static), so the tests
share configurations where they can.
"""

from __future__ import annotations

import warnings

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from eqdyn._errors import ConfigError, ConvergenceError
from eqdyn.dynamics import RelaxConfig, max_norm, relax, relax_core
from eqdyn.models import (
    ACTIVATIONS,
    Activation,
    LayeredHopfield,
    compile_system,
    register_activation,
)

pytestmark = pytest.mark.usefixtures("cached_derivations")

IDENTITY = "identity_test"
#: One architecture for the nonlinear tests, so SymPy derives each system once.
SIZES = (6, 5, 4, 3)


@pytest.fixture
def identity_activation():
    """A linear activation, so that the layered Hopfield field is linear in the state."""
    register_activation(
        Activation(
            IDENTITY,
            fn=lambda u: u,
            d1=lambda u: jnp.ones_like(u),
            d2=lambda u: jnp.zeros_like(u),
        ),
        overwrite=True,
    )
    yield IDENTITY
    ACTIVATIONS.pop(IDENTITY, None)


def _model(sizes, act, rng, scale=1.0, bias=0.0, formulation=None, dtype=np.float64):
    """A network with Glorot-uniform weights times `scale` and normal biases times `bias`.

    Drawn with numpy: every distinct shape drawn with `jax.random` is an XLA compilation.
    """
    weights = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        lim = np.sqrt(6.0 / (a + b))
        weights.append(jnp.asarray(scale * rng.uniform(-lim, lim, (a, b)), dtype))
    biases = [jnp.asarray(bias * rng.normal(size=(1, n)), dtype) for n in sizes[1:]]
    return LayeredHopfield(
        sizes, act, formulation, key=None, weights=weights, biases=biases, dtype=dtype
    )


def _data(rng, batch, sizes):
    x = jnp.asarray(rng.uniform(0.0, 1.0, (batch, sizes[0])))
    d = jnp.asarray(rng.uniform(0.0, 1.0, (batch, sizes[-1])))
    return x, d


def _states(rng, batch, sizes, lo=-1.0, hi=1.0):
    return tuple(jnp.asarray(rng.uniform(lo, hi, (batch, n))) for n in sizes[1:])


def _maxabs(a, b) -> float:
    return max(
        float(np.max(np.abs(np.asarray(u) - np.asarray(v))))
        for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    )


def _maxnorm(tree) -> float:
    return max(float(np.max(np.abs(np.asarray(u)))) for u in jax.tree_util.tree_leaves(tree))


# ------------------------------------------------------------------ linear: analytic solution


def _linear_problem(model, x, d, beta):
    """The per-example linear ODE  ds/dt = s M + c  (row vectors) of the identity activation."""
    sizes = model.sizes
    n = sum(sizes[1:])
    offs = np.cumsum((0,) + sizes[1:])
    A = np.zeros((n, n))
    for k, w in enumerate(model.weights[1:], start=1):  # W_{k+1} couples layer k and k+1
        w = np.asarray(w)
        A[offs[k - 1] : offs[k], offs[k] : offs[k + 1]] = w
        A[offs[k] : offs[k + 1], offs[k - 1] : offs[k]] = w.T
    P = np.zeros((n, n))
    P[offs[-2] :, offs[-2] :] = np.eye(sizes[-1])
    M = A - np.eye(n) - beta * P
    c = np.concatenate([np.asarray(b) for b in model.biases], axis=1).repeat(x.shape[0], 0)
    c[:, : sizes[1]] += np.asarray(x) @ np.asarray(model.weights[0])
    c[:, offs[-2] :] += beta * np.asarray(d)
    return M, c, offs


def _split(flat, offs):
    return tuple(flat[:, a:b] for a, b in zip(offs[:-1], offs[1:]))


def test_linear_dynamics_match_matrix_exponential(identity_activation, rng):
    sizes = SIZES
    model = _model(sizes, identity_activation, rng, scale=0.3, bias=0.3, formulation="gradient")
    x, d = _data(rng, 2, sizes)
    beta = 0.5
    M, c, offs = _linear_problem(model, x, d, beta)
    assert np.allclose(M, M.T) and np.max(np.linalg.eigvalsh(M)) < -0.1  # stable
    s_star = -c @ np.linalg.inv(M)

    # the derived field is exactly s M + c
    s_any = rng.normal(size=c.shape)
    field = model.system.field(_split(jnp.asarray(s_any), offs), model.params, (x, d), beta)
    np.testing.assert_allclose(np.concatenate(field, axis=1), s_any @ M + c, atol=1e-12)

    # trajectory at a fixed time: s(T) = s* + (s0 - s*) expm(M T)
    T = 2.0
    s0 = rng.uniform(-1, 1, size=c.shape)
    exact = s_star + (s0 - s_star) @ scipy.linalg.expm(M * T)
    cfg = RelaxConfig(
        solver="tsit5", tol=1e-14, t1=T, dt0=0.05, rtol=1e-10, atol=1e-12, on_failure="ignore"
    )
    res = relax(model, x, _split(jnp.asarray(s0), offs), beta=beta, d=d, config=cfg)
    assert float(res.t) == pytest.approx(T)
    assert not bool(res.converged)
    got = np.concatenate([np.asarray(s) for s in res.states], axis=1)
    np.testing.assert_allclose(got, exact, atol=1e-6, rtol=0)

    # the relaxed fixed point solves the linear system
    tol = 1e-11
    cfg = RelaxConfig(solver="euler", dt0=0.5, tol=tol, t1=1000.0, on_failure="raise")
    res = relax(model, x, beta=beta, d=d, config=cfg)
    assert bool(res.converged) and float(res.residual) < tol
    got = np.concatenate([np.asarray(s) for s in res.states], axis=1)
    # |s - s*| <= |M^-1| * residual (per row, in the max norm up to sqrt(n))
    bound = np.linalg.norm(np.linalg.inv(M), 2) * tol * np.sqrt(M.shape[0])
    np.testing.assert_allclose(got, s_star, atol=max(bound, 1e-12), rtol=0)


# ------------------------------------------------------------------ energy decreases


def test_energy_is_non_increasing_along_trajectories(rng):
    sizes = SIZES
    model = _model(sizes, "sigmoid", rng, scale=1.5, bias=0.5)
    system = model.system
    x, d = _data(rng, 4, sizes)
    params, inputs = model.params, model.inputs(x, d)
    s0 = tuple(jnp.asarray(rng.normal(size=(4, n))) for n in sizes[1:])
    ts = jnp.linspace(0.0, 30.0, 151)

    @jax.jit
    def energies(beta):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, s, args: system.field(s, params, inputs, beta)),
            diffrax.Tsit5(),
            t0=0.0,
            t1=30.0,
            dt0=0.05,
            y0=s0,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.PIDController(rtol=1e-9, atol=1e-11),
            max_steps=10_000,
        )
        f = jax.vmap(lambda s: system.energy(s, params, inputs, beta))(sol.ys)
        res = jax.vmap(lambda s: max_norm(system.field(s, params, inputs, beta)))(sol.ys)
        return f, res

    for beta in (0.0, 0.8):
        f, res = (np.asarray(a) for a in energies(jnp.asarray(beta)))
        steps = np.diff(f)
        assert np.all(steps <= 1e-12 * max(1.0, np.max(np.abs(f)))), steps.max()
        assert f[-1] < f[0] - 1.0  # it really moved
        assert res[-1] < 1e-4 * res[0]  # and settled


# ------------------------------------------------------------------ convergence


@pytest.fixture
def sigmoid_case(rng):
    model = _model(SIZES, "sigmoid", rng, bias=0.3)
    x, d = _data(rng, 4, SIZES)
    return model, x, d


TOL = 1e-8
SIGMOID_SOLVERS = [
    RelaxConfig(solver="euler", dt0=0.5, tol=TOL, t1=500.0, on_failure="raise"),
    RelaxConfig(solver="tsit5", dt0=0.5, tol=TOL, t1=500.0, rtol=1e-8, atol=1e-10,
                on_failure="raise"),
]


def _check_converged(model, x, d, beta, cfg):
    res = relax(model, x, beta=beta, d=d, config=cfg)
    assert bool(res.converged)
    assert float(res.residual) < cfg.tol
    assert 0 < int(res.steps) < cfg.max_steps and 0 < float(res.t) < cfg.t1
    # independent residual from the system's exact gradient
    g = model.system.state_grads(res.states, model.params, model.inputs(x, d), beta)
    assert _maxnorm(g) < cfg.tol
    return res


@pytest.mark.parametrize("cfg", SIGMOID_SOLVERS, ids=lambda c: c.solver)
def test_sigmoid_relaxation_converges(sigmoid_case, cfg):
    model, x, d = sigmoid_case
    assert cfg.is_adaptive == (cfg.solver != "euler")
    res = _check_converged(model, x, d, 0.5, cfg)
    # agreement with the other solver's fixed point
    other = SIGMOID_SOLVERS[1 - SIGMOID_SOLVERS.index(cfg)]
    assert _maxabs(res.states, relax(model, x, beta=0.5, d=d, config=other).states) < 1e-6


def test_sigmoid_relaxation_converges_kvaerno5(sigmoid_case):
    # implicit solver: correct but slow to compile (~10 s), hence in the integration tier
    model, x, d = sigmoid_case
    cfg = RelaxConfig(solver="kvaerno5", dt0=0.5, tol=TOL, t1=500.0, rtol=1e-8, atol=1e-10,
                      on_failure="raise")
    res = _check_converged(model, x, d, 0.5, cfg)
    ref = relax(model, x, beta=0.5, d=d, config=SIGMOID_SOLVERS[0])
    assert _maxabs(res.states, ref.states) < 1e-6


def test_leaky_hard_sigmoid_matches_clipped_iteration(rng):
    model = _model(SIZES, "hard_sigmoid", rng, scale=0.8, bias=0.5)
    assert model.formulation == "leaky"
    x, _ = _data(rng, 5, SIZES)
    cfg = RelaxConfig(solver="euler", dt0=0.5, tol=1e-9, t1=1000.0, on_failure="raise")
    res = relax(model, x, config=cfg)
    assert bool(res.converged) and float(res.residual) < 1e-9
    s_leaky = [np.asarray(s) for s in model.system.observe(res.states)]
    assert all(s.min() >= 0.0 and s.max() <= 1.0 for s in s_leaky)
    # some units saturate, so the test exercises the clipping
    assert sum(int(np.sum((s == 0.0) | (s == 1.0))) for s in s_leaky) > 0

    # the paper's iteration s <- clip(s - eps dF/ds, 0, 1), eps = 0.5, with the exact
    # gradient of the same energy (gradient formulation of the same derivation)
    grad_system = compile_system(model.system.derivation, "hard_sigmoid", "gradient")
    params, inputs = model.params, model.inputs(x)

    def step(s):
        g = grad_system.state_grads(s, params, inputs, 0.0)
        return tuple(jnp.clip(si - 0.5 * gi, 0.0, 1.0) for si, gi in zip(s, g))

    @jax.jit
    def clipped(s):
        s = jax.lax.fori_loop(0, 3000, lambda _, s: step(s), s)
        return s, tuple(a - b for a, b in zip(step(s), s))

    s_clip, last_move = clipped(model.init_state(x.shape[0]))
    assert _maxnorm(last_move) < 1e-10  # the iteration has stopped moving
    assert _maxabs(s_leaky, s_clip) < 1e-6


# ------------------------------------------------------------------ failures


def test_short_horizon_raises_or_warns(sigmoid_case):
    model, x, _ = sigmoid_case
    with pytest.raises(ConvergenceError, match="did not reach a steady state"):
        relax(model, x, config=RelaxConfig(t1=0.5, on_failure="raise"))
    with pytest.warns(RuntimeWarning, match="did not reach a steady state"):
        res = relax(model, x, config=RelaxConfig(t1=0.5, on_failure="warn"))
    assert not bool(res.converged)
    assert float(res.t) == pytest.approx(0.5)


def test_divergence_raises_even_when_ignoring_failures(sigmoid_case):
    model, x, _ = sigmoid_case
    cfg = RelaxConfig(solver="euler", dt0=10.0, t1=20_000.0, on_failure="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow inside numpy conversion
        with pytest.raises(ConvergenceError, match="non-finite"):
            relax(model, x, config=cfg)


def test_float32_model_relaxes_in_float32(rng):
    # under jax_enable_x64 the solver's times are float64; they must not promote the states
    model = _model(SIZES, "hard_sigmoid", rng, dtype=np.float32)
    x = jnp.asarray(rng.uniform(size=(2, SIZES[0])), jnp.float32)
    cfg = RelaxConfig(solver="euler", tol=1e-4, on_failure="ignore")
    # trace only (no XLA compilation): the output dtypes are all we need
    res = jax.eval_shape(lambda: relax_core(model, x, model.init_state(2), 0.0, None, cfg))
    assert [s.dtype for s in res.states] == [jnp.float32] * (len(SIZES) - 1)


def test_bad_inputs(sigmoid_case):
    model, x, d = sigmoid_case
    with pytest.raises(ConfigError, match=r"`x` has shape \(4, 7\)"):
        relax(model, jnp.zeros((4, 7)))
    with pytest.raises(ConfigError, match="`x` has shape"):
        relax(model, jnp.zeros(6))
    with pytest.raises(ConfigError, match="NaN or inf"):
        relax(model, x.at[1, 2].set(jnp.nan))
    with pytest.raises(ConfigError, match="target `d` is required"):
        relax(model, x, beta=0.5)
    with pytest.raises(ConfigError, match="`d` has 3 rows"):
        relax(model, x, beta=0.5, d=d[:3])
    with pytest.raises(ConfigError, match="`d` has shape"):
        relax(model, x, beta=0.5, d=d[:, :2])
    with pytest.raises(ConfigError, match="`s0` has shapes"):
        relax(model, x, s0=model.init_state(3))


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(solver="rk99"), r"`solver`='rk99' is not known.*tsit5"),
        (dict(tol=-1e-3), "`tol`=-0.001 must be a positive"),
        (dict(dt0=0.0), "`dt0`=0.0 must be a positive"),
        (dict(t1=float("inf")), "`t1`=inf must be a positive finite"),
        (dict(max_steps=0), "`max_steps`=0 must be a positive integer"),
        (dict(on_failure="explode"), "`on_failure`='explode' is not known"),
    ],
)
def test_bad_relax_config(kw, match):
    with pytest.raises(ConfigError, match=match):
        RelaxConfig(**kw)


# ------------------------------------------------------------------ hoisting


@pytest.mark.parametrize("act", ["sigmoid", "hard_sigmoid"])
def test_hoisted_constants_do_not_change_the_field(act, rng):
    model = _model(SIZES, act, rng, bias=0.2)
    system = model.system
    x, d = _data(rng, 3, SIZES)
    states = _states(rng, 3, SIZES, -0.5, 1.5)
    inputs = (x, d)

    @jax.jit  # one compilation instead of one per eager operation
    def both(states, params, inputs, beta):
        consts = system.constants(states, params, inputs, beta)
        hoisted = system.field(states, params, inputs, beta, constants=consts)
        return consts, hoisted, system.field(states, params, inputs, beta, constants=None)

    consts, a, b = both(states, model.params, inputs, 0.3)
    assert len(consts) == len(system.code.constants) >= 1
    np.testing.assert_allclose(consts[0], np.asarray(x) @ np.asarray(model.weights[0]), atol=1e-14)
    assert _maxabs(a, b) < 1e-14


def test_float32_divergence_raises_quickly(rng):
    # Euler at dt0 = 10 multiplies the leak by -9 per step: float32 overflows within 100 steps
    model = _model(SIZES, "sigmoid", rng, dtype=np.float32)
    x = jnp.asarray(rng.uniform(size=(2, SIZES[0])), jnp.float32)
    cfg = RelaxConfig(solver="euler", dt0=10.0, t1=1000.0, on_failure="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ConvergenceError, match="non-finite states"):
            relax(model, x, config=cfg)


@pytest.mark.parametrize("act", ["sigmoid", "hard_sigmoid"])
def test_fused_euler_backend_equals_diffrax(act, rng):
    model = _model(SIZES, act, rng, scale=2.0, bias=0.3)
    x, d = _data(rng, 4, SIZES)
    s0 = model.init_state(4)
    out = {}
    for backend in ("diffrax", "fused"):
        cfg = RelaxConfig(solver="euler", dt0=0.5, tol=1e-6, t1=100.0, on_failure="ignore",
                          backend=backend)
        out[backend] = relax_core(model, x, s0, 0.7, d, cfg)
    a, b = out["diffrax"], out["fused"]
    assert int(a.steps) == int(b.steps) > 0
    assert bool(a.converged) == bool(b.converged)
    for u, v in zip(a.states, b.states):
        np.testing.assert_allclose(u, v, rtol=0, atol=1e-12)
    np.testing.assert_allclose(float(a.residual), float(b.residual), rtol=1e-10)


def test_fused_backend_is_euler_only():
    with pytest.raises(ConfigError, match="keep solver=.euler. with it"):
        RelaxConfig(solver="tsit5", backend="fused")
    with pytest.raises(ConfigError, match="`backend`='jit' is not known"):
        RelaxConfig(backend="jit")
