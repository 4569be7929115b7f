"""Continuous-time learning: one solve for neurons, synapses and the teacher.

References: two-phase EP (`ep_gradient`) for the integrated weight change, the matrix
exponential for a linear network, and the energy's monotone descent in the free part.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from scipy.integrate import solve_ivp
from scipy.integrate import trapezoid
import sympy as sp

import eqdyn
from eqdyn import ConfigError
from eqdyn.dynamics import Custom, OnSteady, Ramp, episode
from eqdyn.learning import EPConfig, ep_gradient
from eqdyn.models import Activation, EnergyModel
from eqdyn.symbolic import Energy
from eqdyn.symbolic import terms as T

TOL = 1e-9
TIGHT = eqdyn.RelaxConfig(solver="tsit5", tol=TOL, rtol=1e-10, atol=1e-12, t1=3000.0,
                          max_steps=100_000)


def _setup(act="sigmoid", sizes=(6, 5, 3), batch=4):
    m = eqdyn.LayeredHopfield(sizes, act, key=jax.random.PRNGKey(0), dtype=jnp.float64)
    x = jax.random.uniform(jax.random.PRNGKey(1), (batch, sizes[0]), jnp.float64)
    d = jax.nn.one_hot(jnp.arange(batch) % sizes[-1], sizes[-1], dtype=jnp.float64)
    return m, x, d, m.init_state(batch, jnp.float64)


def _rel(delta, grads):
    # the accumulated change is -lr times the EP estimate (lr = 1)
    return max(float(jnp.max(jnp.abs(a + b)) / jnp.max(jnp.abs(b))) for a, b in zip(delta, grads))


@pytest.mark.parametrize(
    "act, symmetric, rule",
    [("sigmoid", False, "stdp"), ("sigmoid", True, "stdp"), ("hard_sigmoid", False, "trace"),
     ("sigmoid", True, "trace")],
)
def test_integrated_rule_equals_two_phase_ep(act, symmetric, rule):
    m, x, d, s0 = _setup(act)
    run = jax.jit(lambda m, x, d, s0: episode(
        m, x, d, s0, OnSteady(beta=0.5, symmetric=symmetric, tol=TOL), TIGHT, lr=1.0,
        learn="accumulate", rule=rule))
    res = run(m, x, d, s0)
    assert bool(res.converged)
    assert np.all(np.asarray(res.gates) == 1.0)
    g, aux = ep_gradient(m, x, d, s0, EPConfig(
        beta=0.5, variant="symmetric" if symmetric else "one-sided", free=TIGHT, nudged=TIGHT))
    assert bool(aux.free_converged) and bool(aux.nudged_converged)
    # measured 2026-12-07: 1.24e-6, 1.22e-6, 4.1e-7, 6.1e-7 (the four cases in order)
    assert _rel(res.delta, g) < 1e-5
    # the snapshot is the free fixed point; the end state is the nudged one
    np.testing.assert_allclose(res.free_states[0], aux.free_states[0], atol=1e-6)


def test_scheduled_ramp_gives_the_same_update():
    m, x, d, s0 = _setup()
    res = episode(m, x, d, s0, Ramp(beta=0.5, t_on=80.0, rise=4.0), TIGHT, learn="accumulate")
    g, _ = ep_gradient(m, x, d, s0, EPConfig(beta=0.5, variant="one-sided", free=TIGHT,
                                             nudged=TIGHT))
    assert bool(res.converged) and _rel(res.delta, g) < 1e-6  # measured 1.3e-7


def test_gates_open_only_at_rest_and_energy_descends_before():
    m, x, d, s0 = _setup()
    ts = jnp.linspace(0.0, 60.0, 121)
    res, ys = episode(m, x, d, s0, OnSteady(beta=0.5, tol=1e-6, trigger="batch"), TIGHT.__class__(
        solver="tsit5", tol=1e-6, rtol=1e-8, atol=1e-10, t1=3000.0, max_steps=100_000),
        learn="off", ts=ts)
    system, inputs = m.system, m.inputs(x, d)
    before = np.asarray(ys["g"][:, 0]) == 0.0
    assert before[:10].all() and not before[-1]  # closed at first, open by the end
    energies, residuals = [], []
    for i in np.flatnonzero(before):
        u = tuple(a[i] for a in ys["u"])
        energies.append(float(system.energy(u, m.params, inputs, 0.0)))
        residuals.append(float(system.residual(u, system.field(u, m.params, inputs, 0.0))))
    assert np.all(np.diff(energies) <= 1e-12), "F increased during the free part"
    assert min(residuals) > 3e-6 or residuals[-1] < 3e-6  # the latch waited for rest


def _four_three_two(act="sigmoid", seed=0, batch=8):
    m = eqdyn.LayeredHopfield((4, 3, 2), act, key=jax.random.PRNGKey(seed), dtype=jnp.float64)
    x = jax.random.uniform(jax.random.PRNGKey(seed + 10), (batch, 4), jnp.float64)
    d = jax.nn.one_hot(jnp.arange(batch) % 2, 2, dtype=jnp.float64)
    return m, x, d, m.init_state(batch, jnp.float64)


def _max_rel(delta, grads):
    return max(float(jnp.linalg.norm(a + b) / jnp.linalg.norm(b)) for a, b in zip(delta, grads))


@pytest.mark.parametrize("act, seed", [
    ("sigmoid", 0),
    pytest.param("sigmoid", 2, marks=pytest.mark.integration),
    pytest.param("hard_sigmoid", 0, marks=pytest.mark.integration)])
def test_default_episode_is_within_one_percent_of_two_phase_ep(act, seed):
    """The README's call, `episode(model, x, d, s0, OnSteady(beta=0.5), learn="accumulate")`,
    at its defaults (DEFAULT_CONFIG: Tsit5, tol 1e-5; each example's teacher at its own rest)
    on a 4-3-2 network: the STDP form's change is within 1 % of two-phase EP's update (tight
    float64 relaxations), per parameter in norm (measured 0.11-0.23 % with the batch trigger;
    Euler at dt0 0.5, the old default, was 8-30 % off, 0.7-3 % sigmoid / 29 % hard sigmoid with
    clipped latches), and the latches stay in [0, 1] (Euler 0.5 reached 1.23)."""
    m, x, d, s0 = _four_three_two(act, seed)
    g, _ = ep_gradient(m, x, d, s0, EPConfig(beta=0.5, variant="one-sided", free=TIGHT,
                                             nudged=TIGHT))
    res, ys = episode(m, x, d, s0, OnSteady(beta=0.5), learn="accumulate",
                      ts=jnp.linspace(0.0, 300.0, 301))
    assert bool(res.converged)
    assert _max_rel(res.delta, g) < 1e-2
    gates = np.asarray(ys["g"])
    assert gates[np.isfinite(gates)].min() >= 0.0 and gates[np.isfinite(gates)].max() <= 1.0
    old, ys = episode(m, x, d, s0, OnSteady(beta=0.5, trigger="batch"), eqdyn.RelaxConfig(),
                      learn="off", ts=jnp.linspace(0.0, 100.0, 401))
    gates = np.asarray(ys["g"])
    assert gates[np.isfinite(gates)].max() <= 1.0  # clipped where an Euler step overshoots


def test_each_example_gets_its_teacher_when_it_is_at_rest():
    """Per-example trigger: examples that settle at different times open their latches at
    different times (no detector looks at the whole batch), and the change is still EP's."""
    m, x, d, s0 = _four_three_two(batch=4)
    s0 = (s0[0].at[0].set(3.0), s0[1].at[0].set(-3.0))  # example 0 starts far from rest
    ts = jnp.linspace(0.0, 60.0, 241)
    res, ys = episode(m, x, d, s0, OnSteady(beta=0.5, tol=TOL), TIGHT, learn="accumulate",
                      ts=ts)
    opened = np.asarray(ys["g"][:, 0, :]) > 0.5  # (T, B): plasticity latch of each example
    first = np.array([np.argmax(opened[:, b]) if opened[:, b].any() else len(ts)
                      for b in range(4)])
    assert first[0] > first[1:].max(), first  # the slow example's teacher came last
    g, _ = ep_gradient(m, x, d, s0, EPConfig(beta=0.5, variant="one-sided", free=TIGHT,
                                             nudged=TIGHT))
    assert _max_rel(res.delta, g) < 1e-4
    with pytest.raises(ConfigError, match="trigger='batch'"):
        episode(m, x, d, s0, OnSteady(beta=0.5, trigger="example"), rule="trace")


def test_episode_matches_an_independent_scipy_integration():
    """A 2-2-1 sigmoid net, the same neuron ODE and STDP rule written by hand in NumPy and
    integrated by SciPy's solve_ivp (DOP853, rtol 1e-11), with the teacher beta(t) a smooth
    ramp: the episode's accumulated change agrees to 1e-8 (measured 1e-10)."""
    rng = np.random.default_rng(5)
    w1, w2 = rng.normal(size=(2, 2)), rng.normal(size=(2, 1))
    b1, b2 = 0.1 * rng.normal(size=(1, 2)), 0.1 * rng.normal(size=(1, 1))
    m = eqdyn.LayeredHopfield((2, 2, 1), "sigmoid", key=jax.random.PRNGKey(0),
                              weights=(jnp.asarray(w1), jnp.asarray(w2)),
                              biases=(jnp.asarray(b1), jnp.asarray(b2)), dtype=jnp.float64)
    x = rng.uniform(size=(1, 2))
    d = np.array([[1.0]])
    bmax, t_on, rise, t_end = 0.5, 20.0, 4.0, 60.0

    def beta(t):
        z = np.clip((t - t_on) / rise, 0.0, 1.0)
        return bmax * z * z * (3 - 2 * z), bmax * 6 * z * (1 - z) / rise

    sig = lambda u: 1 / (1 + np.exp(-u))  # noqa: E731
    dsig = lambda u: sig(u) * (1 - sig(u))  # noqa: E731

    def rhs(t, y):
        h, yy = y[:2].reshape(1, 2), y[2:3].reshape(1, 1)
        b, db = beta(t)
        fh = -h + dsig(h) * (x @ w1 + b1 + sig(yy) @ w2.T)
        fy = -yy + dsig(yy) * (sig(h) @ w2 + b2) + b * (d - yy)
        # dF/dW_1 = -x^T rho(h), dF/dW_2 = -rho(h)^T rho(y), dF/db = -rho(s); STDP rate:
        # -(1/bmax) d/dt dF/dtheta
        rate_w1 = (x.T @ (dsig(h) * fh)) / bmax
        rate_w2 = ((dsig(h) * fh).T @ sig(yy) + sig(h).T @ (dsig(yy) * fy)) / bmax
        rate_b1, rate_b2 = dsig(h) * fh / bmax, dsig(yy) * fy / bmax
        return np.concatenate([fh.ravel(), fy.ravel(), rate_w1.ravel(), rate_w2.ravel(),
                               rate_b1.ravel(), rate_b2.ravel()])

    sol = solve_ivp(rhs, (0.0, t_end), np.zeros(3 + 4 + 2 + 2 + 1), method="DOP853",
                    rtol=1e-11, atol=1e-13)
    want = sol.y[3:, -1]

    def fn(t):
        z = jnp.clip((t - t_on) / rise, 0.0, 1.0)
        return bmax * z * z * (3 - 2 * z)

    cfg = eqdyn.RelaxConfig(solver="dopri8", tol=1e-12, rtol=1e-12, atol=1e-14, t1=t_end,
                            max_steps=100_000)
    res = episode(m, jnp.asarray(x), jnp.asarray(d), m.init_state(1, jnp.float64),
                  Custom(fn, beta_max=bmax, t_done=t_end), cfg, learn="accumulate")
    got = np.concatenate([np.asarray(a).ravel() for a in res.delta])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-8 * np.abs(want).max())


def test_linear_network_follows_the_matrix_exponential():
    """F = 1/2|s|^2 - 1/2 s L s^T - x W s^T, identity activation, tau = 3: a linear ODE."""
    ident = Activation.from_sympy("identity_cont", sp.Symbol("u"))
    x, s, d = T.layer("x", 2), T.layer("s", 3), T.layer("d", 3)
    W, L = T.weight("W", 2, 3), T.weight("L", 3, 3)
    e = Energy(internal=(T.leak(s), T.lateral(s, L), T.coupling(x, W, s, pre_raw=True)),
               cost=(T.squared_error(s, d),), states=(s,), params=(W, L), inputs=(x, d),
               scalars=(T.BETA,), tau=(3,))
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 3))
    lat = 0.3 * rng.normal(size=(3, 3))
    model = EnergyModel(e, ident, "gradient", params=(jnp.asarray(w), jnp.asarray(lat)))
    xv = jnp.asarray(rng.normal(size=(2, 2)))
    s0 = (jnp.asarray(rng.normal(size=(2, 3))),)
    ts = np.linspace(0.0, 6.0, 13)
    cfg = eqdyn.RelaxConfig(solver="dopri8", tol=1e-12, rtol=1e-12, atol=1e-14, t1=6.0,
                            max_steps=100_000)
    _, ys = episode(model, xv, jnp.zeros((2, 3)), s0, Custom(lambda t: 0.0 * t, t_done=1e9),
                    cfg, learn="off", ts=ts)
    # 3 ds/dt = -s (I - (L + L^T)/2) + x W   =>   s(t) = s* + (s0 - s*) expm(-A t / 3)
    a = np.eye(3) - 0.5 * (lat + lat.T)
    s_star = np.asarray(xv) @ w @ np.linalg.inv(a)
    for t, got in zip(ts, np.asarray(ys["u"][0])):
        want = s_star + (np.asarray(s0[0]) - s_star) @ scipy.linalg.expm(-a * t / 3.0)
        np.testing.assert_allclose(got, want, atol=1e-9)


def test_online_plasticity_matches_consolidation_for_small_rates():
    m, x, d, s0 = _setup()
    lr = 1e-3
    acc = episode(m, x, d, s0, OnSteady(beta=0.5, tol=TOL), TIGHT, lr=lr, learn="accumulate")
    app = episode(m, x, d, s0, OnSteady(beta=0.5, tol=TOL), TIGHT, lr=lr, learn="apply")
    for p, dp, q in zip(m.params, acc.delta, app.params):
        np.testing.assert_allclose(q - p, dp, rtol=0, atol=1e-2 * float(jnp.max(jnp.abs(dp))))


def test_bad_episode_arguments():
    m, x, d, s0 = _setup()
    with pytest.raises(ConfigError, match="`learn`='sometimes' is not known"):
        episode(m, x, d, s0, OnSteady(), learn="sometimes")
    with pytest.raises(ConfigError, match="`rule`='hebb' is not known"):
        episode(m, x, d, s0, OnSteady(), rule="hebb")
    with pytest.raises(ConfigError, match="`teacher`=.*must be OnSteady"):
        episode(m, x, d, s0, 1.0)
    with pytest.raises(ConfigError, match="`beta`=-1 of OnSteady must be a positive number"):
        OnSteady(beta=-1)
    with pytest.raises(ConfigError, match="`lr` has 2 rates; the model has 4 parameters"):
        episode(m, x, d, s0, OnSteady(), lr=(1.0, 2.0))


def test_train_continuous_on_digits(tmp_path):
    from eqdyn.learning import resolve_config, train

    cfg = resolve_config(algo="continuous", epochs=2, seed=0)
    assert cfg.plasticity == "consolidate"
    metrics = train(cfg, run_dir=tmp_path / "run", progress=None)
    assert metrics["test_accuracy"] > 0.8  # ~0.9 after 2 epochs; chance is 0.1
    with pytest.raises(ConfigError, match="`algo`='continuous' changes the weights inside"):
        resolve_config(algo="continuous", optimizer="adam")
    with pytest.raises(ConfigError, match="`plasticity`='sometimes' is not known"):
        resolve_config(algo="continuous", plasticity="sometimes")


# ----------------------------------------------------------------- Langevin noise


def _quadratic_model(tau=2):
    ident = Activation.from_sympy("identity_sde", sp.Symbol("u"))
    x, s, d = T.layer("x", 1), T.layer("s", 2), T.layer("d", 2)
    W, L = T.weight("W", 1, 2), T.weight("L", 2, 2)
    e = Energy(internal=(T.leak(s), T.lateral(s, L), T.coupling(x, W, s, pre_raw=True)),
               cost=(T.squared_error(s, d),), states=(s,), params=(W, L), inputs=(x, d),
               scalars=(T.BETA,), tau=(tau,))
    w, lat = np.array([[1.0, -0.5]]), np.array([[0.0, 0.4], [0.4, 0.0]])
    return EnergyModel(e, ident, "gradient", params=(jnp.asarray(w), jnp.asarray(lat))), w, lat


@pytest.mark.parametrize("backend", ["diffrax", "fused"])
def test_langevin_samples_the_gibbs_distribution_of_a_quadratic_energy(backend):
    """F = 1/2 s A s^T - x W s^T: Gibbs is N(x W A^-1, T A^-1), whatever tau."""
    from eqdyn.dynamics import langevin

    model, w, lat = _quadratic_model()
    temp, n = 0.3, 4000
    res = jax.jit(lambda m, k: langevin(m, jnp.ones((n, 1)), temperature=temp, key=k, t1=30.0,
                                        dt=0.01, backend=backend))(model, jax.random.PRNGKey(0))
    assert int(res.steps) == 3000
    smp = np.asarray(res.states[0])
    a = np.eye(2) - lat
    mean, cov = (w @ np.linalg.inv(a))[0], temp * np.linalg.inv(a)
    se = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(smp.mean(0) - mean) < 4 * se), (smp.mean(0), mean)
    np.testing.assert_allclose(np.cov(smp.T), cov, rtol=0.06, atol=0.01)


def test_fused_langevin_has_the_stationary_law_of_the_diffrax_path():
    """The linear (Ornstein-Uhlenbeck) system above, tau = 2, lateral coupling: the fused and
    diffrax Euler-Maruyama chains (different noise draws) have the same stationary covariance
    within sampling error (standard error of an entry sqrt((C_ii C_jj + C_ij^2) / n)), that of
    the Euler-Maruyama recursion (C = M C M^T + 2 T h I, M = I - h A, h = dt / tau: the Gibbs
    law T A^-1 up to O(h), 1 % here), and T A^-1 within that bias."""
    from eqdyn.dynamics import langevin

    model, _, lat = _quadratic_model(tau=2)
    temp, n, dt = 0.3, 8000, 0.02
    covs = {}
    for backend in ("diffrax", "fused"):
        res = jax.jit(lambda m, k, b=backend: langevin(m, jnp.ones((n, 1)), temperature=temp,
                                                       key=k, t1=40.0, dt=dt, backend=b))(
            model, jax.random.PRNGKey(3))
        covs[backend] = np.cov(np.asarray(res.states[0]).T)
    a, h = np.eye(2) - lat, dt / 2
    gibbs = temp * np.linalg.inv(a)
    euler = scipy.linalg.solve_discrete_lyapunov(np.eye(2) - h * a, 2 * temp * h * np.eye(2))
    assert np.max(np.abs(euler - gibbs) / np.abs(gibbs)) < 0.02
    se = np.sqrt((np.outer(np.diag(euler), np.diag(euler)) + euler**2) / n)
    assert np.all(np.abs(covs["fused"] - covs["diffrax"]) < 4 * np.sqrt(2) * se), covs
    for c in covs.values():
        assert np.all(np.abs(c - euler) < 4 * se), (c, euler)
        assert np.all(np.abs(c - gibbs) < 4 * se + np.abs(euler - gibbs)), (c, gibbs)


def test_fused_langevin_step_has_the_noise_of_the_sde():
    """One Euler-Maruyama step of the fused path from the fixed point of the linear system
    (tau = 2), over many chains and keys, minus the same step at T = 0: N(0, 2 T dt / tau) per
    unit, independent across units."""
    from eqdyn.dynamics import langevin

    model, w, lat = _quadratic_model(tau=2)
    temp, dt, n = 0.3, 0.05, 100
    x = jnp.ones((n, 1))
    fixed = (jnp.tile(jnp.asarray(w @ np.linalg.inv(np.eye(2) - lat)), (n, 1)),)

    def step(k, temperature):
        return langevin(model, x, fixed, temperature=temperature, key=k, t1=dt, dt=dt,
                        backend="fused").states[0]

    quiet = step(jax.random.PRNGKey(0), 0.0)
    np.testing.assert_allclose(quiet, fixed[0], atol=1e-12)  # a fixed point indeed
    noise = jax.jit(jax.vmap(lambda k: step(k, temp) - quiet))(
        jax.random.split(jax.random.PRNGKey(1), 100))
    z = np.asarray(noise).reshape(-1, 2) / np.sqrt(2 * temp * dt / 2)
    assert np.all(np.abs(z.mean(0)) < 4 / np.sqrt(len(z))), z.mean(0)
    np.testing.assert_allclose(z.std(0), 1.0, atol=0.03)  # 1e4 samples: se 0.007
    assert abs(np.corrcoef(z.T)[0, 1]) < 0.04


@pytest.mark.parametrize("beta", [0.3, 0.3 * np.exp(0.7j)])
def test_fused_langevin_at_zero_temperature_is_fused_euler(beta):
    """At T = 0 the fused path is relax_core's fused Euler loop step for step (a horizon that is
    not a multiple of dt included: both take ceil(t1 / dt) steps), real or complex beta; its
    saved states are diffrax's (linear interpolation between Euler steps)."""
    from eqdyn.dynamics import RelaxConfig, langevin, relax_core

    m, x, d, s0 = _setup("sigmoid")  # the gradient formulation
    k = jax.random.PRNGKey(0)
    for t1, steps in ((5.0, 10), (5.2, 11)):
        res = langevin(m, x, s0, temperature=0.0, key=k, t1=t1, dt=0.5, beta=beta, d=d,
                       backend="fused")
        ref = relax_core(m, x, s0, beta, d, RelaxConfig(backend="fused", tol=1e-300, dt0=0.5,
                                                        t1=t1))
        assert int(res.steps) == int(ref.steps) == steps
        for a, b in zip(res.states, ref.states):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
    ts = jnp.asarray([0.0, 0.25, 0.5, 1.3, 4.9, 5.0])
    fused = langevin(m, x, s0, temperature=0.0, key=k, t1=5.0, dt=0.5, beta=beta, d=d, ts=ts,
                     backend="fused")
    dfx = langevin(m, x, s0, temperature=0.0, key=k, t1=5.0, dt=0.5, beta=beta, d=d, ts=ts)
    for a, b, c in zip(fused.ys, dfx.ys, fused.states):
        assert a.shape == (len(ts), *c.shape)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)
        np.testing.assert_array_equal(a[-1], c)


def test_langevin_refuses_unknown_backends():
    from eqdyn.dynamics import langevin

    model, *_ = _quadratic_model()
    x, k = jnp.ones((2, 1)), jax.random.PRNGKey(0)
    with pytest.raises(ConfigError, match=r"`backend`='rk4' is not known.*'diffrax', 'fused'"):
        langevin(model, x, temperature=0.1, key=k, t1=1.0, backend="rk4")
    with pytest.raises(ConfigError, match="`backend`='fused' is Euler-Maruyama"):
        langevin(model, x, temperature=0.1, key=k, t1=1.0, solver="heun", backend="fused")
    with pytest.raises(ConfigError, match="`ts` must be a sorted"):
        langevin(model, x, temperature=0.1, key=k, t1=1.0, ts=[0.5, 2.0], backend="fused")


@pytest.mark.parametrize("backend", ["diffrax", "fused"])
def test_langevin_matches_quadrature_for_a_nonlinear_unit(backend):
    """One sigmoid unit, F(s) = s^2/2 - x w rho(s) - b rho(s): moments of exp(-F/T) by quadrature."""
    from eqdyn.dynamics import langevin

    x, s, d = T.layer("x", 1), T.layer("s", 1), T.layer("d", 1)
    W, b = T.weight("W", 1, 1), T.bias("b", 1)
    e = Energy(internal=(T.leak(s), T.coupling(x, W, s, pre_raw=True), T.bias_term(b, s)),
               cost=(T.squared_error(s, d),), states=(s,), params=(W, b), inputs=(x, d),
               scalars=(T.BETA,))
    w, bias, temp, n = 3.0, -1.0, 0.2, 4000
    model = EnergyModel(e, "sigmoid", "gradient", params=(jnp.full((1, 1), w),
                                                          jnp.full((1, 1), bias)))
    res = langevin(model, jnp.ones((n, 1)), temperature=temp, key=jax.random.PRNGKey(1),
                   t1=20.0, dt=0.01, backend=backend)
    smp = np.asarray(res.states[0])[:, 0]
    grid = np.linspace(-4.0, 6.0, 20001)
    f = 0.5 * grid**2 - (w + bias) / (1.0 + np.exp(-grid))
    p = np.exp(-(f - f.min()) / temp)
    p /= trapezoid(p, grid)
    mean = trapezoid(grid * p, grid)
    var = trapezoid((grid - mean) ** 2 * p, grid)
    assert abs(smp.mean() - mean) < 4 * np.sqrt(var / n)
    assert abs(smp.var() / var - 1.0) < 0.08


def test_langevin_refuses_the_leaky_formulation_and_bad_temperatures():
    from eqdyn.dynamics import langevin

    m = eqdyn.LayeredHopfield((3, 2, 2), "hard_sigmoid", key=jax.random.PRNGKey(0))
    with pytest.raises(ConfigError, match="needs the gradient formulation"):
        langevin(m, jnp.ones((2, 3)), temperature=0.1, key=jax.random.PRNGKey(0), t1=1.0)
    model, *_ = _quadratic_model()
    with pytest.raises(ConfigError, match="`temperature`=-1 must be"):
        langevin(model, jnp.ones((2, 1)), temperature=-1, key=jax.random.PRNGKey(0), t1=1.0)


@pytest.mark.parametrize("backend", ["diffrax", "fused"])
def test_noisy_ep_tends_to_the_deterministic_estimate_and_checks_its_inputs(backend):
    m, x, d, s0 = _setup("sigmoid")
    fixed = eqdyn.RelaxConfig(solver="euler", dt0=0.1, tol=1e-12, t1=60.0, max_steps=1000,
                              on_failure="ignore", backend=backend)
    det, _ = ep_gradient(m, x, d, s0, EPConfig(beta=0.5, variant="one-sided", free=fixed,
                                               nudged=fixed))
    noisy, aux = ep_gradient(m, x, d, s0, EPConfig(beta=0.5, variant="one-sided", free=fixed,
                                                   nudged=fixed, temperature=1e-12),
                             key=jax.random.PRNGKey(0))
    assert int(aux.free_steps) == 600
    assert _rel(tuple(-g for g in noisy), det) < 1e-3  # measured 1.3e-4 at T = 1e-12
    hot, _ = ep_gradient(m, x, d, s0, EPConfig(beta=0.5, variant="one-sided", free=fixed,
                                               nudged=fixed, temperature=0.05),
                         key=jax.random.PRNGKey(0))
    assert _rel(tuple(-g for g in hot), det) > 1e-2  # the noise is really there
    with pytest.raises(ConfigError, match="`key` is required with `temperature`"):
        ep_gradient(m, x, d, s0, EPConfig(variant="one-sided", temperature=0.1))
    with pytest.raises(ConfigError, match="`temperature`=-1 must be"):
        EPConfig(temperature=-1)
    from eqdyn.learning import resolve_config

    with pytest.raises(ConfigError, match="implemented for `algo`='ep'"):
        resolve_config(algo="rbp", temperature=0.1)


def test_noisy_ep_phases_use_the_fused_langevin_for_fused_and_blocks_configs():
    """A noisy phase whose RelaxConfig has backend "fused" or "blocks" is the fused
    Euler-Maruyama loop (blocks has no noisy counterpart), "diffrax" diffrax's: on a leaky
    hard-sigmoid network (lz22's setting: blocks free phase, fused nudged phase) the blocks and
    fused configurations give the same estimates bit for bit, and diffrax other draws of the
    same law: over 64 keys each, the two means agree within their standard errors and the
    two spreads match; the phases run their whole horizons."""
    m, x, d, s0 = _setup("hard_sigmoid")
    assert m.system.formulation == "leaky"
    n_keys = 64
    keys = jax.random.split(jax.random.PRNGKey(0), n_keys)

    def estimates(free_backend, nudged_backend):
        cfg = {"solver": "euler", "dt0": 0.5, "tol": 1e-6, "max_steps": 1000,
               "on_failure": "ignore"}
        ep = EPConfig(beta=0.5, variant="one-sided", temperature=1e-3,
                      free=eqdyn.RelaxConfig(t1=10.0, backend=free_backend, **cfg),
                      nudged=eqdyn.RelaxConfig(t1=5.0, backend=nudged_backend, **cfg))
        g, aux = jax.jit(jax.vmap(lambda k: ep_gradient(m, x, d, s0, ep, key=k)))(keys)
        assert np.all(np.asarray(aux.free_steps) == 20)
        assert np.all(np.asarray(aux.nudged_steps) == 10)
        return np.concatenate([np.asarray(a).reshape(n_keys, -1) for a in g], axis=1)

    blocks, fused, dfx = (estimates("blocks", "fused"), estimates("fused", "fused"),
                          estimates("diffrax", "diffrax"))
    np.testing.assert_array_equal(blocks, fused)
    assert np.all(np.isfinite(fused)) and np.all(np.isfinite(dfx))
    # the same key, other draws: the estimates differ
    assert np.all(np.max(np.abs(fused - dfx), axis=1) > 1e-3 * np.max(np.abs(fused)))
    moving = np.std(fused, axis=0) > 1e-12  # entries the noise reaches
    assert moving.sum() > 10
    f, g = fused[:, moving], dfx[:, moving]
    z = (f.mean(0) - g.mean(0)) / np.sqrt((f.var(0, ddof=1) + g.var(0, ddof=1)) / n_keys)
    spread = np.median(f.std(0, ddof=1) / g.std(0, ddof=1))
    # measured 2026-12-07 over 50 moving entries: max |z| 1.66, median std ratio 0.99
    assert np.max(np.abs(z)) < 5.0, np.max(np.abs(z))
    assert 0.8 < spread < 1.25, spread

