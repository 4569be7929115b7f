"""Relaxations as objects: every one reaches the closed-form fixed point of a linear system,
reports its status, and a relaxation written here (outside eqdyn) plugs into `eqdyn.relax`.

Float64 throughout (conftest enables x64); small networks, so each compile is cheap.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest

import eqdyn
from eqdyn._errors import ConfigError, ConvergenceError
from eqdyn.dynamics import (
    RESULTS,
    Anderson,
    BlockSweeps,
    FusedEuler,
    Integrate,
    Langevin,
    OptimistixRoot,
    RelaxConfig,
    langevin,
    relax,
    relax_core,
)
from helpers import Momentum
from eqdyn.models import ACTIVATIONS, Activation, LayeredHopfield, register_activation

pytestmark = pytest.mark.usefixtures("cached_derivations")

SIZES = (5, 4, 3, 2)
IDENTITY = "identity_relaxations"
BETA = 0.5


@pytest.fixture(scope="module")
def linear():
    """A layered network with a linear activation (a quadratic energy) in the leaky form, so
    that block sweeps apply too: the field is `s M + c`, the fixed point `-c M^-1`."""
    # the identity is the projection onto the whole line (rho' = 1, no bounds)
    register_activation(Activation(IDENTITY, fn=lambda u: u, d1=lambda u: jnp.ones_like(u),
                                   d2=lambda u: jnp.zeros_like(u), projection=True),
                        overwrite=True)
    rng = np.random.default_rng(7)
    weights = [jnp.asarray(0.4 * rng.uniform(-1, 1, (a, b)))
               for a, b in zip(SIZES[:-1], SIZES[1:])]
    biases = [jnp.asarray(0.3 * rng.normal(size=(1, n))) for n in SIZES[1:]]
    model = LayeredHopfield(SIZES, IDENTITY, "leaky", key=None, weights=weights,
                            biases=biases, dtype=jnp.float64)
    x = jnp.asarray(rng.uniform(0, 1, (3, SIZES[0])))
    d = jnp.asarray(rng.uniform(0, 1, (3, SIZES[-1])))
    yield model, x, d, _fixed_point(model, x, d, BETA)
    ACTIVATIONS.pop(IDENTITY, None)


def _fixed_point(model, x, d, beta):
    """The fixed point from the field itself: `f(s) = s M + c` read off at the unit vectors
    and solved with NumPy (independent of every relaxation)."""
    n = sum(SIZES[1:])
    offs = np.cumsum((0,) + SIZES[1:])
    split = lambda a: tuple(jnp.asarray(a[:, i:j]) for i, j in zip(offs[:-1], offs[1:]))  # noqa: E731

    def f(s):
        out = model.system.field(split(s), model.params, model.inputs(x, d), beta)
        return np.concatenate([np.asarray(a) for a in out], axis=1)

    c = f(np.zeros((x.shape[0], n)))
    rows = np.stack([f(np.tile(e, (x.shape[0], 1)))[0] - c[0] for e in np.eye(n)])
    assert np.max(np.linalg.eigvals(rows).real) < -0.1  # a stable linear system
    return np.linalg.solve(rows.T, -c.T).T


def _flat(states):
    return np.concatenate([np.asarray(s) for s in states], axis=1)


TOL = 1e-11
RELAXATIONS = {
    "integrate-tsit5-pid": Integrate(diffrax.Tsit5(), diffrax.PIDController(rtol=1e-10,
                                     atol=1e-12), dt0=0.1, t1=500.0, tol=TOL),
    "fused-euler": FusedEuler(dt=0.5, t1=1000.0, tol=TOL),
    "block-sweeps": BlockSweeps(max_sweeps=2000, tol=TOL),
    "block-sweeps-anderson": BlockSweeps(max_sweeps=2000, tol=TOL, acceleration=Anderson(3)),
    "optimistix-newton": OptimistixRoot(optx.Newton(rtol=1e-13, atol=1e-13), tol=TOL),
    "user-momentum": Momentum(lr=0.2, momentum=0.5, tol=TOL),
}


@pytest.mark.parametrize("name", list(RELAXATIONS))
def test_every_relaxation_reaches_the_closed_form_fixed_point(linear, name):
    model, x, d, s_star = linear
    res = eqdyn.relax(model, x, beta=BETA, d=d, relaxation=RELAXATIONS[name],
                      on_failure="raise")
    assert bool(res.converged) and res.result == RESULTS.successful
    assert float(res.residual) < TOL and int(res.steps) > 0
    # |s - s*| <= |M^-1| residual; |M^-1| < 10 here (eigenvalues below -0.1); measured at
    # most 3.7e-11 (FusedEuler, Momentum), 4e-16 for Newton
    np.testing.assert_allclose(_flat(res.states), s_star, rtol=0, atol=10 * TOL)


def test_newton_solves_the_linear_system_in_one_step(linear):
    model, x, d, s_star = linear
    res = relax_core(model, x, model.init_state(3, jnp.float64), BETA, d,
                     RELAXATIONS["optimistix-newton"])
    assert int(res.steps) <= 2  # one Newton step, one to see the update vanish
    np.testing.assert_allclose(_flat(res.states), s_star, rtol=0, atol=1e-13)


def test_relax_config_is_a_factory_of_the_same_relaxations(linear):
    model, x, d, _ = linear
    cases = [
        (RelaxConfig(backend="fused", dt0=0.25, t1=100.0, tol=1e-6), FusedEuler(0.25, 100.0,
                                                                                 1e-6)),
        (RelaxConfig(backend="blocks", dt0=0.5, t1=10.0, tol=1e-6, anderson=2),
         BlockSweeps(20, 1e-6, Anderson(2))),
        (RelaxConfig(solver="tsit5", tol=1e-6), Integrate(
            diffrax.Tsit5(), diffrax.PIDController(rtol=1e-6, atol=1e-8), tol=1e-6)),
    ]
    s0 = model.init_state(3, jnp.float64)
    for cfg, obj in cases:
        made = cfg.relaxation()
        assert type(made) is type(obj)
        a = relax_core(model, x, s0, BETA, d, cfg)
        b = relax_core(model, x, s0, BETA, d, obj)
        for u, v in zip(a.states, b.states):
            np.testing.assert_array_equal(u, v)
        assert int(a.steps) == int(b.steps) and float(a.residual) == float(b.residual)


def test_fused_euler_is_diffrax_euler_step_for_step(linear):
    model, x, d, _ = linear
    s0 = model.init_state(3, jnp.float64)
    a = relax_core(model, x, s0, BETA, d, FusedEuler(0.5, 50.0, 1e-9))
    b = relax_core(model, x, s0, BETA, d, Integrate(diffrax.Euler(), diffrax.ConstantStepSize(),
                                                    0.5, 50.0, 1e-9))
    assert int(a.steps) == int(b.steps) > 10
    for u, v in zip(a.states, b.states):
        np.testing.assert_allclose(u, v, rtol=0, atol=1e-14)


# ------------------------------------------------------------------ status codes


def test_a_short_horizon_is_max_steps_reached(linear):
    model, x, d, _ = linear
    for r in (FusedEuler(0.5, 2.0, 1e-9), BlockSweeps(2, 1e-12),
              Integrate(diffrax.Tsit5(), diffrax.PIDController(rtol=1e-6, atol=1e-8), t1=1.0,
                        tol=1e-9), Integrate(diffrax.Euler(), diffrax.ConstantStepSize(),
                                             max_steps=3, tol=1e-9)):
        res = relax_core(model, x, model.init_state(3, jnp.float64), BETA, d, r)
        assert res.result == RESULTS.max_steps_reached, RESULTS[res.result]
        assert not bool(res.converged) and np.isfinite(float(res.residual))
    with pytest.warns(RuntimeWarning, match="did not reach a steady state"):
        relax(model, x, beta=BETA, d=d, relaxation=FusedEuler(0.5, 2.0, 1e-9))


def test_tol_zero_runs_the_whole_horizon(linear):
    model, x, d, _ = linear
    res = relax(model, x, beta=BETA, d=d, relaxation=FusedEuler(0.5, 10.0, 0.0))
    assert res.result == RESULTS.fixed_horizon and int(res.steps) == 20
    assert bool(res.converged)  # tol = 0: no steady-state test; the horizon ran, finite
    assert float(res.residual) > 1e-3  # measured 1.8e-2: not at rest


def test_divergence_is_nonfinite(linear):
    model, x, d, _ = linear
    # Euler far beyond its stability limit: the states overflow to inf, then nan
    bad = FusedEuler(dt=50.0, t1=1e6, tol=1e-9)
    res = relax_core(model, x, model.init_state(3, jnp.float64), BETA, d, bad)
    assert res.result == RESULTS.nonfinite and not bool(res.converged)
    with pytest.raises(ConvergenceError, match="non-finite"):
        relax(model, x, beta=BETA, d=d, relaxation=bad, on_failure="ignore")


def test_an_integrator_failure_is_solver_failed(linear):
    model, x, d, _ = linear
    r = Integrate(diffrax.Tsit5(), diffrax.PIDController(rtol=1e-14, atol=1e-14, dtmin=0.3,
                                                         force_dtmin=False), t1=100.0, tol=1e-13)
    res = relax_core(model, x, model.init_state(3, jnp.float64), BETA, d, r)
    assert res.result == RESULTS.solver_failed and not bool(res.converged)


def test_langevin_reports_its_fixed_horizon_and_measured_residual(linear, key):
    model, x, d, _ = linear
    s0 = model.init_state(3, jnp.float64)
    noisy = Langevin(temperature=1e-4, dt=0.5, t1=20.0, tol=1e-2)
    res = relax_core(model, x, s0, BETA, d, noisy, key=key)
    assert res.result == RESULTS.fixed_horizon and int(res.steps) == 40
    r = float(res.residual)
    # noise of scale sqrt(2 T dt) = 0.01 per step: measured 0.03 (key of another test id)
    assert np.isfinite(r) and 0 < r < 1e-1
    assert bool(res.converged) == (r < 1e-2)
    # the residual is the deterministic field's at the final state
    f = model.system.field(res.states, model.params, model.inputs(x, d), BETA)
    assert r == pytest.approx(float(model.system.residual(res.states, f)), rel=1e-12)
    # the same states as the langevin function, key for key
    ref = langevin(model, x, s0, temperature=1e-4, key=key, t1=20.0, dt=0.5, beta=BETA, d=d,
                   require_gibbs=False, backend="fused")
    for u, v in zip(res.states, ref.states):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ConfigError, match="pass a PRNG `key`"):
        relax_core(model, x, s0, BETA, d, noisy)


def test_complex_langevin_is_the_langevin_function(linear, key):
    """A complex beta (holomorphic EP's noisy phases) reaches `Langevin.solve` as real pairs;
    the states come back complex, equal to `langevin`'s for the same key."""
    model, x, d, _ = linear
    s0 = model.init_state(3, jnp.float64)
    beta = complex(0.5, 0.2)
    for backend in ("fused", "diffrax"):
        res = relax_core(model, x, s0, beta, d, Langevin(1e-4, dt=0.5, t1=5.0, backend=backend),
                         key=key)
        ref = langevin(model, x, s0, temperature=1e-4, key=key, t1=5.0, dt=0.5, beta=beta, d=d,
                       require_gibbs=False, backend=backend)
        assert res.result == RESULTS.fixed_horizon and np.isfinite(float(res.residual))
        for u, v in zip(res.states, ref.states):
            assert jnp.iscomplexobj(u)
            np.testing.assert_array_equal(u, v)


def test_langevin_at_zero_temperature_is_fused_euler(linear, key):
    model, x, d, _ = linear
    s0 = model.init_state(3, jnp.float64)
    a = relax_core(model, x, s0, BETA, d, Langevin(0.0, dt=0.5, t1=10.0), key=key)
    b = relax_core(model, x, s0, BETA, d, FusedEuler(0.5, 10.0, 0.0))
    for u, v in zip(a.states, b.states):
        np.testing.assert_array_equal(u, v)


# ------------------------------------------------------------------ compilation


def test_a_sweep_over_beta_and_tol_compiles_once(linear, monkeypatch):
    """New values of beta (traced) and of the relaxation's numbers (array leaves) reuse the
    compiled relaxation: one trace (so one compilation) for the whole sweep."""
    import eqdyn.dynamics._relax as relax_mod

    model, x, d, _ = linear
    traces = []
    jitted = eqx.filter_jit(lambda *a: traces.append(1) or relax_mod.relax_core(*a))
    monkeypatch.setattr(relax_mod, "_relax_jit", jitted)
    for beta in np.linspace(0.1, 1.2, 12):
        relax(model, x, beta=float(beta), d=d, relaxation=FusedEuler(0.5, 100.0, 1e-6))
    relax(model, x, beta=0.3, d=d, relaxation=FusedEuler(0.25, 50.0, 1e-8),
          on_failure="ignore")
    assert len(traces) == 1 and jitted._cached._cache_size() == 1
    # a setting that changes the program (the step budget) compiles anew
    relax(model, x, beta=0.3, d=d, relaxation=FusedEuler(0.5, 100.0, 1e-6, max_steps=100))
    assert len(traces) == 2 and jitted._cached._cache_size() == 2


def test_bad_settings_name_the_argument():
    assert repr(FusedEuler(0.5, 10.0, 1e-6)) == (
        "FusedEuler(tol=1e-06, dt=0.5, t1=10.0, max_steps=4096)")
    with pytest.raises(ConfigError, match="`dt`=-1.0"):
        FusedEuler(dt=-1.0)
    with pytest.raises(ConfigError, match="`max_sweeps`"):
        BlockSweeps(max_sweeps=0)
    with pytest.raises(ConfigError, match="`m`=0"):
        Anderson(0)
    with pytest.raises(ConfigError, match="diffrax solver instance"):
        Integrate("tsit5")
    with pytest.raises(ConfigError, match="`temperature`"):
        Langevin(-1.0, dt=0.1, t1=1.0)
    with pytest.raises(ConfigError, match="not a relaxation"):
        relax_core(None, None, None, 0.0, None, "fused")
    with pytest.raises(ConfigError, match="not both"):
        relax(None, None, relaxation=FusedEuler(), config=RelaxConfig())


def test_caches_live_beside_the_frozen_system(linear):
    """Block structure and the midpoint probe are cached outside the (frozen) system."""
    from eqdyn.dynamics._blocks import _BLOCK_CACHE

    model, x, d, _ = linear
    relax_core(model, x, model.init_state(3, jnp.float64), BETA, d, BlockSweeps(5, 1e-6))
    model.system.midpoint_is_exact(model.params, model.inputs(x, d))
    assert model.system in _BLOCK_CACHE
    assert not {"_block_cache", "_midpoint_cache"} & set(vars(model.system))


def test_trajectory_takes_an_integrate(linear):
    model, x, d, _ = linear
    s0 = model.init_state(3, jnp.float64)
    ts = jnp.linspace(0.0, 5.0, 6)
    a = eqdyn.dynamics.trajectory(model, x, s0, ts, beta=BETA, d=d, config=RelaxConfig(
        solver="tsit5", rtol=1e-8, atol=1e-10, dt0=0.1))
    b = eqdyn.dynamics.trajectory(model, x, s0, ts, beta=BETA, d=d, config=Integrate(
        diffrax.Tsit5(), diffrax.PIDController(rtol=1e-8, atol=1e-10), dt0=0.1))
    assert int(a.steps) == int(b.steps) > 5
    for u, v in zip(a.states, b.states):
        np.testing.assert_array_equal(u, v)
