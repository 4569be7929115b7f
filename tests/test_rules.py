"""Learning rules as objects: one interface, beta as data, rules written outside eqdyn."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqdyn
from helpers import Momentum  # a relaxation written outside eqdyn
from eqdyn import ConfigError, RelaxConfig
from eqdyn.learning import (BPTT, CHL, EP, RBP, AbstractRule, Backprop, ClockFree,
                            ContinualEP, EPConfig, Holomorphic, OneSided, RandomSign, Stats,
                            Symmetric, bptt_gradient, chl_gradient, continual_ep_step,
                            ep_gradient, feedforward_backprop_gradient, free_phase_stats,
                            rbp_gradient)
from eqdyn.dynamics import OnSteady, episode

RC = RelaxConfig(backend="fused", tol=1e-6, t1=200.0, on_failure="ignore")


@pytest.fixture(scope="module")
def problem():
    model = eqdyn.LayeredHopfield("6-5-3", "sigmoid", "gradient", key=jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 6), jnp.float32)
    d = jax.nn.one_hot(jnp.arange(4) % 3, 3, dtype=jnp.float32)
    return model, x, d, model.init_state(4, jnp.float32)


@eqx.filter_jit
def _call(rule, model, x, d, s0, key=None):
    """The rule as one compiled program: the functional forms (`ep_gradient`, `rbp_gradient`,
    ...) compile theirs, and the two programs are the same computation, bit for bit."""
    return rule(model, x, d, s0, key=key)


def _same(a, b):
    return all(bool(jnp.array_equal(u, v)) for u, v in zip(a, b))


@pytest.mark.parametrize("variant,nudging", [("one-sided", OneSided()),
                                             ("random-sign", RandomSign()),
                                             ("symmetric", Symmetric())])
def test_ep_objects_are_the_configured_estimate(problem, variant, nudging):
    model, x, d, s0 = problem
    key = jax.random.PRNGKey(7)
    g_old, a = ep_gradient(model, x, d, s0, EPConfig(beta=0.2, variant=variant, free=RC,
                                                      nudged=RC), key=key)
    g_new, st = _call(EP(0.2, nudging, RC, RC), model, x, d, s0, key)
    assert isinstance(st, Stats)
    assert _same(g_old, g_new)
    assert int(st.free_steps) == int(a.free_steps) > 0
    assert int(st.free_result) == 0 and int(st.nudged_result) == 0


def test_every_rule_has_one_interface(problem):
    """Each rule returns the gradient its function computes, and a Stats."""
    model, x, d, s0 = problem
    cases = [
        (CHL(RC), chl_gradient(model, x, d, s0, RC)[0]),
        (RBP(RC), rbp_gradient(model, x, d, s0, RC)[0]),
        (BPTT(dt=0.5, n_steps=40), bptt_gradient(model, x, d, s0, dt=0.5, n_steps=40)[0]),
        (Backprop(), feedforward_backprop_gradient(model, x, d)[0]),
    ]
    for rule, want in cases:
        grads, st = _call(rule, model, x, d, s0, jax.random.PRNGKey(0))
        assert isinstance(st, Stats), rule
        assert _same(grads, want), rule
        loss, _ = free_phase_stats(model, x, d, st.free_states)
        if not isinstance(rule, Backprop):
            assert float(st.loss) == pytest.approx(float(loss), rel=1e-6)


def test_symmetric_ep_approaches_rbp(problem):
    """float64: symmetric EP's O(beta^2) bias at beta 1e-3 is far below the gradient's size."""
    # float64: the test session enables jax_enable_x64 (tests/conftest.py)
    model, x, d, _ = problem
    model = model.with_params(tuple(jnp.asarray(p, jnp.float64) for p in model.params))
    x, d = jnp.asarray(x, jnp.float64), jnp.asarray(d, jnp.float64)
    s0 = model.init_state(4, jnp.float64)
    rc = RelaxConfig(backend="fused", tol=1e-12, t1=2000.0, max_steps=100000,
                     on_failure="ignore")
    g_ep, _ = _call(EP(1e-3, Symmetric(), rc), model, x, d, s0)
    g_rbp, _ = _call(RBP(rc), model, x, d, s0)
    num = sum(float(jnp.sum((a - b) ** 2)) for a, b in zip(g_ep, g_rbp)) ** 0.5
    den = sum(float(jnp.sum(b ** 2)) for b in g_rbp) ** 0.5
    # measured 2026-12-07: 7.3e-7 (the bias is O(beta^2) = O(1e-6) relative)
    assert num / den < 3e-6


def test_a_beta_sweep_compiles_once(problem):
    model, x, d, s0 = problem
    traces = []

    @eqx.filter_jit
    def estimate(rule, model, x, d, s0, key):
        traces.append(1)
        return rule(model, x, d, s0, key=key)

    norms = []
    for beta in np.geomspace(1e-3, 1.0, 12):
        g, _ = estimate(EP(beta, RandomSign(), RC, RC), model, x, d, s0,
                        jax.random.PRNGKey(0))
        norms.append(float(jnp.linalg.norm(g[0])))
    assert len(traces) == 1
    assert len(set(norms)) > 1  # the betas were used, not one constant


def test_holomorphic_needs_a_holomorphic_activation():
    model = eqdyn.LayeredHopfield("4-3-2", "hard_sigmoid", key=jax.random.PRNGKey(0))
    x = jnp.ones((2, 4), jnp.float32)
    d = jnp.eye(2, dtype=jnp.float32)
    with pytest.raises(ConfigError, match="holomorphic activation"):
        EP(0.1, Holomorphic(4), RC)(model, x, d, model.init_state(2))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_ep_refuses_a_bad_beta(bad):
    with pytest.raises(ConfigError, match="`beta`"):
        EP(bad)


def test_random_sign_needs_a_key(problem):
    model, x, d, s0 = problem
    with pytest.raises(ConfigError, match="`key` is required"):
        EP(0.1, RandomSign(), RC)(model, x, d, s0)


def test_continual_ep_rule_is_the_step(problem):
    model, x, d, s0 = problem
    key = jax.random.PRNGKey(3)
    rates = (0.1, 0.05, 0.1, 0.05)
    rule = ContinualEP(0.5, rates, RandomSign(), RC, dt=0.5, n_steps=6, tol=1e-3)
    grads, st = rule(model, x, d, s0, key=key)
    cfg = EPConfig(beta=0.5, variant="random-sign", free=RC,
                   nudged=RelaxConfig(dt0=0.5, t1=3.0, tol=1e-3))
    new, _ = continual_ep_step(model, x, d, s0, cfg, rates, key=key)
    for p, g, q in zip(model.params, grads, new.params):
        np.testing.assert_allclose(p - g, q, rtol=0, atol=1e-7)  # p - (p - q): one rounding
    assert int(st.nudged_steps) == 6
    with pytest.raises(ConfigError, match="not available for continual EP"):
        ContinualEP(0.5, 0.1, Symmetric())


def test_clock_free_rule_is_the_episode(problem):
    model, x, d, s0 = problem
    teacher = OnSteady(beta=0.5, tol=1e-3)
    rc = RelaxConfig(dt0=0.5, tol=1e-3, t1=600.0, max_steps=4096, on_failure="ignore")
    # jitted, as the trainer runs it (the rates are traced leaves then)
    grads, st = eqx.filter_jit(lambda r, *a: r(*a))(ClockFree(teacher, rc, 0.1), model, x, d, s0)
    res = episode(model, x, d, s0, teacher, rc, lr=0.1, learn="accumulate", rule="trace")
    # jitted against eager: the same arithmetic up to XLA's fusion (measured max 3.7e-9 of
    # changes up to ~1e-2)
    for g, dp in zip(grads, res.delta):
        np.testing.assert_allclose(g, -dp, rtol=0, atol=2e-8)
    assert bool(st.free_converged)
    with pytest.raises(ConfigError, match="`plasticity`"):
        ClockFree(teacher, rc, 0.1, plasticity="sometimes")


class FiniteDifferences(AbstractRule):
    """A rule written outside eqdyn: central differences of the loss at the free fixed point,
    for every parameter entry (a test-sized oracle, not a practical rule)."""

    relaxation: RelaxConfig
    h: float = eqx.field(static=True, default=1e-3)

    def __call__(self, model, x, d, s0, *, key=None, labels=None):
        def loss(params):
            m = model.with_params(params)
            res = eqdyn.dynamics.relax_core(m, x, s0, 0.0, d, self.relaxation)
            return free_phase_stats(m, x, d, res.states)[0]

        flat, unravel = jax.flatten_util.ravel_pytree(tuple(model.params))
        eye = jnp.eye(flat.size, dtype=flat.dtype)
        diff = jax.vmap(lambda e: (loss(unravel(flat + self.h * e))
                                   - loss(unravel(flat - self.h * e))) / (2 * self.h))(eye)
        grads = unravel(diff)
        res = eqdyn.dynamics.relax_core(model, x, s0, 0.0, d, self.relaxation)
        loss0, correct = free_phase_stats(model, x, d, res.states, labels)
        zero = jnp.zeros((), jnp.int32)
        return tuple(grads), Stats(loss0, correct, tuple(res.states), res.steps, zero,
                                   res.converged, jnp.asarray(True), zero, zero)


def test_a_rule_written_outside_eqdyn_matches_rbp():
    # float64: the test session enables jax_enable_x64 (tests/conftest.py)
    model = eqdyn.LayeredHopfield("4-3-2", "sigmoid", "gradient",
                                  key=jax.random.PRNGKey(0), dtype=jnp.float64)
    x = jax.random.uniform(jax.random.PRNGKey(1), (3, 4), jnp.float64)
    d = jax.nn.one_hot(jnp.arange(3) % 2, 2, dtype=jnp.float64)
    s0 = model.init_state(3, jnp.float64)
    rc = RelaxConfig(backend="fused", tol=1e-12, t1=2000.0, max_steps=100000,
                     on_failure="ignore")
    g_fd, _ = FiniteDifferences(rc)(model, x, d, s0)
    g_rbp, _ = _call(RBP(rc), model, x, d, s0)
    for a, b in zip(g_fd, g_rbp):
        # measured 2026-12-07: max |difference| 3.2e-9 of gradients up to 0.18 (O(h^2))
        np.testing.assert_allclose(a, b, atol=2e-8)


def _separable(n, seed):
    """Two classes of 4-d inputs in [0, 1]: input c is high (0.7-1) for class c, the rest
    low (0-0.3)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int32)
    x = rng.uniform(0, 0.3, (n, 4))
    x[np.arange(n), y] = rng.uniform(0.7, 1.0, n)
    return x.astype(np.float32), y


def test_train_with_a_rule_written_outside_eqdyn(tmp_path):
    """The trainer takes a rule defined in this file (no change to eqdyn), learns with it, and
    follows the run the built-in RBP rule makes from the same start."""
    from eqdyn.data import Dataset

    splits = [_separable(n, s) for n, s in ((256, 0), (64, 1), (256, 2))]
    data = Dataset("separable", *splits[0], *splits[1], *splits[2], n_classes=2,
                   input_shape=(4,))
    cfg = eqdyn.resolve_config(dataset="digits", arch="4-8-2", activation="sigmoid",
                               formulation="gradient", algo="rbp", lr=4.0, epochs=6,
                               batch_size=8, persistent=False, backend="fused", tol=1e-5)
    rule = FiniteDifferences(RelaxConfig(backend="fused", tol=1e-5, t1=200.0,
                                         on_failure="ignore"), h=1e-2)
    fd = eqdyn.train(cfg, rule=rule, dataset=data, run_dir=tmp_path / "run", progress=None)
    rbp = eqdyn.train(cfg, dataset=data, progress=None)
    # measured 2026-12-07: train accuracy 0.53 -> 1.0 over 6 epochs, test 1.0 (chance 0.5),
    # epoch by epoch the same as RBP's
    assert fd["test_accuracy"] > 0.95
    for a, b in zip(fd["history"], rbp["history"]):
        assert abs(a["train_accuracy"] - b["train_accuracy"]) <= 2 / 256
    assert "FiniteDifferences" in (tmp_path / "run" / "config.json").read_text()


def test_the_bias_study_compiles_once_per_variant():
    """12 betas, three nudgings: three compiled estimates (0.1 compiled one per beta: 36)."""
    import eqdyn.analysis._bias as bias_mod

    model = eqdyn.LayeredHopfield("5-6-3", "sigmoid", "gradient", key=jax.random.PRNGKey(0),
                                  dtype=jnp.float64)
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 5), jnp.float64)
    d = jax.nn.one_hot(jnp.arange(4) % 3, 3, dtype=jnp.float64)
    before = bias_mod._estimate._cached._cache_size()
    study = eqdyn.analysis.bias_vs_beta(
        model, x, d, betas=np.geomspace(0.01, 0.3, 12), n_points=3,
        config=RelaxConfig(dt0=0.5, tol=1e-8, t1=2000.0, max_steps=10000))
    assert bias_mod._estimate._cached._cache_size() - before == 3
    # the betas were used: each variant's error changes along the grid
    assert all(len(set(np.round(e, 12))) == 12 for e in study.errors.values())


def test_train_ep_with_a_relaxation_written_outside_eqdyn():
    """EP whose two phases relax by a relaxation defined in this file trains on the same
    problem as the built-in fused Euler relaxation does, to the same accuracy."""
    from eqdyn.data import Dataset

    splits = [_separable(n, s) for n, s in ((256, 0), (64, 1), (256, 2))]
    data = Dataset("separable", *splits[0], *splits[1], *splits[2], n_classes=2,
                   input_shape=(4,))
    cfg = eqdyn.resolve_config(dataset="digits", arch="4-8-2", activation="sigmoid",
                               formulation="gradient", lr=4.0, epochs=6, batch_size=8,
                               persistent=False, backend="fused", tol=1e-6)
    ours = Momentum(lr=0.3, momentum=0.5, tol=1e-6, max_steps=2000)
    mine = eqdyn.train(cfg, rule=EP(0.05, Symmetric(), ours, ours), dataset=data, progress=None)
    fused = eqdyn.train(cfg, rule=EP(0.05, Symmetric(), RC, RC), dataset=data, progress=None)
    assert mine["history"][-1]["free_converged"] == 1.0
    # measured 2026-12-07: test accuracy 1.0 with either relaxation (chance 0.5), train
    # accuracy 0.53 -> 1.0 epoch by epoch alike (40.7 vs 35.3 free steps per batch)
    assert mine["test_accuracy"] > 0.95
    assert abs(mine["test_accuracy"] - fused["test_accuracy"]) <= 2 / 256


def test_train_refuses_a_rule_that_does_not_fit_the_optimiser():
    cfg = eqdyn.resolve_config(algo="ep", epochs=1)
    rule = ContinualEP(0.5, 0.1, RandomSign(), RC)
    with pytest.raises(ConfigError, match="moves the weights itself"):
        eqdyn.train(cfg, rule=rule, progress=None)
    with pytest.raises(ConfigError, match="returns a gradient"):
        eqdyn.train(eqdyn.resolve_config(algo="cep", epochs=1), rule=EP(0.5), progress=None)


def test_worst_status_ranks_by_severity():
    from eqdyn.learning import worst_status

    # successful 0, max_steps_reached 1, nonfinite 2, fixed_horizon 3, solver_failed 4
    assert int(worst_status(jnp.asarray(3), jnp.asarray(2))) == 2
    assert int(worst_status(jnp.asarray(0), jnp.asarray(3))) == 3
    assert int(worst_status(*jnp.asarray([1, 3, 0]))) == 1
    assert int(worst_status(jnp.asarray(4), jnp.asarray(1))) == 4


def test_rules_print_the_numbers_they_were_given():
    assert repr(EP(0.5, Symmetric())).startswith("EP(beta=0.5, nudging=Symmetric(), free=")
    assert "rates=(0.1, 0.05)" in repr(ContinualEP(0.25, (0.1, 0.05)))
