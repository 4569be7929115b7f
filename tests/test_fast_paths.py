"""Every faster path against the plain one, in float64: same fixed points, same estimates.

`backend="blocks"` (exact layer-by-layer updates) against fixed-step Euler, and the midpoint
form of EP's parameter-gradient difference against the two evaluations it replaces. Speed is
measured by `benchmarks/`, never here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqdyn._errors import ConfigError
from eqdyn.dynamics import RelaxConfig, relax, relax_core
from eqdyn.learning import EPConfig, ep_gradient
from eqdyn.models import EnergyModel, LayeredHopfield
from eqdyn.symbolic import layered_hopfield_energy

SIZES = (7, 6, 5, 4, 3)


def _model(rng, act="hard_sigmoid", scale=1.5, sizes=SIZES):
    weights = [jnp.asarray(scale * rng.uniform(-1, 1, (a, b)) / np.sqrt(a))
               for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [jnp.asarray(0.3 * rng.normal(size=(1, n))) for n in sizes[1:]]
    return LayeredHopfield(sizes, act, key=None, weights=weights, biases=biases,
                           dtype=jnp.float64)


def _data(rng, batch=5, sizes=SIZES):
    x = jnp.asarray(rng.uniform(0, 1, (batch, sizes[0])))
    d = jax.nn.one_hot(jnp.arange(batch) % sizes[-1], sizes[-1], dtype=jnp.float64)
    return x, d


def _cfg(backend, tol=1e-11):
    return RelaxConfig(backend=backend, dt0=0.5, tol=tol, t1=20000.0, max_steps=100000,
                       on_failure="ignore")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("beta", [0.0, 0.7, 1.0, -1.0])
def test_blocks_reach_the_fixed_points_of_the_dynamics(rng, beta):
    model = _model(rng)
    x, d = _data(rng)
    s0 = tuple(jnp.asarray(rng.uniform(-0.5, 1.5, (5, n))) for n in SIZES[1:])
    euler = relax_core(model, x, s0, beta, d, _cfg("fused"))
    blocks = relax_core(model, x, s0, beta, d, _cfg("blocks"))
    assert bool(euler.converged) and bool(blocks.converged)
    # a sweep evaluates each class once: about one field evaluation, against one per step
    assert int(blocks.steps) < int(euler.steps) / 2
    obs = model.system.observe
    for a, b in zip(obs(euler.states), obs(blocks.states)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)
    if beta == -1.0:  # the output's leak cancels: it sits on the bound its force points to
        y = obs(blocks.states)[-1]
        assert np.all((np.asarray(y) == 0.0) | (np.asarray(y) == 1.0))


@pytest.mark.parametrize("beta", [0.0, 0.7])
def test_anderson_block_sweeps_reach_the_same_fixed_points(rng, beta):
    """Anderson-accelerated sweeps converge to the fixed point of plain sweeps (unique here:
    a small, contracting net); `anderson=0` is the plain sweep bit for bit."""
    model = _model(rng, scale=0.8)
    x, d = _data(rng)
    s0 = tuple(jnp.asarray(rng.uniform(-0.5, 1.5, (5, n))) for n in SIZES[1:])
    plain = relax_core(model, x, s0, beta, d, _cfg("blocks"))
    for m in (1, 3, 5):
        cfg = RelaxConfig(backend="blocks", anderson=m, dt0=0.5, tol=1e-11, t1=20000.0,
                          max_steps=100000, on_failure="ignore")
        acc = relax_core(model, x, s0, beta, d, cfg)
        assert bool(acc.converged), (m, float(acc.residual))
        for a, b in zip(plain.states, acc.states):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    again = relax_core(model, x, s0, beta, d, RelaxConfig(
        backend="blocks", anderson=0, dt0=0.5, tol=1e-11, t1=20000.0, max_steps=100000,
        on_failure="ignore"))
    assert int(again.steps) == int(plain.steps)
    for a, b in zip(plain.states, again.states):
        np.testing.assert_array_equal(a, b)


def test_anderson_mixing_accelerates_a_slow_linear_iteration():
    """On a linear map with spectral radius 0.99 (per example), Anderson mixing with memory 5
    reaches 1e-9 where the plain iteration is still far after the same number of steps."""
    from eqdyn.dynamics._anderson import _anderson_history, _anderson_mix

    rng = np.random.default_rng(1)
    n, b, m = 30, 3, 5
    q = np.linalg.qr(rng.normal(size=(n, n)))[0]
    a = q @ np.diag(np.linspace(-0.3, 0.99, n)) @ q.T
    c = rng.normal(size=(b, n))
    fixed = np.linalg.solve(np.eye(n) - a, c.T).T
    plain = (jnp.zeros((b, n)),)
    x = (jnp.zeros((b, n)),)
    hist = _anderson_history(x, m)
    step = jax.jit(lambda x, hist, k: _anderson_mix(x, (x[0] @ a.T + c,), hist, k, m))
    for k in range(200):  # one compiled step (op by op, the loop took 17 s at load ~4)
        plain = (plain[0] @ a.T + c,)
        x, hist = step(x, hist, jnp.asarray(k))
    assert np.max(np.abs(np.asarray(x[0]) - fixed)) < 1e-7
    assert np.max(np.abs(np.asarray(plain[0]) - fixed)) > 1.0


def test_spd_solve_matches_lapack():
    """The unrolled Cholesky solve of Anderson's small normal equations equals LAPACK's, in
    float64, for every memory size and for badly scaled matrices."""
    from eqdyn.dynamics._anderson import _spd_solve

    rng = np.random.default_rng(2)
    for m in range(1, 7):
        v = rng.normal(size=(7, m, 12)) * np.logspace(-3, 3, 7)[:, None, None]
        a = v @ np.swapaxes(v, 1, 2) + 1e-9 * np.eye(m)
        b = rng.normal(size=(7, m))
        got = np.asarray(_spd_solve(jnp.asarray(a), jnp.asarray(b)))
        want = np.linalg.solve(a, b[..., None])[..., 0]
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=0)


def test_spd_solve_float32_and_large_memory():
    """In float32 the unrolled solve agrees with LAPACK to float32 accuracy on well-conditioned
    systems; memories above `_UNROLLED_SOLVE_MAX` take LAPACK; a singular matrix gives a
    non-finite or finite answer, never an exception (the mix then takes a plain step)."""
    from eqdyn.dynamics._anderson import _UNROLLED_SOLVE_MAX, _spd_solve

    rng = np.random.default_rng(3)
    for m in (3, 5, _UNROLLED_SOLVE_MAX + 2):
        v = rng.normal(size=(5, m, 40))
        a = (v @ np.swapaxes(v, 1, 2)).astype(np.float32)
        b = rng.normal(size=(5, m)).astype(np.float32)
        got = np.asarray(_spd_solve(jnp.asarray(a), jnp.asarray(b)))
        assert got.dtype == np.float32
        want = np.linalg.solve(a.astype(np.float64), b.astype(np.float64)[..., None])[..., 0]
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)
    # singular: the zero matrix's pivots are floored at float32's tiny (1.2e-38), so the answer
    # is huge (measured 8.5e37 = 1/tiny in every entry), not an exception nor a plausible value
    zero = np.asarray(_spd_solve(jnp.zeros((2, 4, 4), jnp.float32), jnp.ones((2, 4), jnp.float32)))
    assert zero.shape == (2, 4) and zero.dtype == np.float32
    assert np.all(~np.isfinite(zero) | (np.abs(zero) > 1e30)), zero
    # a consistent singular system (rank 1) gets one of its exact solutions (measured e_1)
    ones = np.ones((2, 4, 4), np.float32)
    x = np.asarray(_spd_solve(jnp.asarray(ones), jnp.ones((2, 4), jnp.float32)))
    np.testing.assert_allclose(ones @ x[..., None], np.ones((2, 4, 1)), rtol=0, atol=1e-6)


def test_anderson_forgets_a_nonfinite_slot():
    """A restart masks the forgotten slots; a non-finite difference left in one of them does
    not reach the next iterate (it is selected away, not multiplied by zero)."""
    from eqdyn.dynamics._anderson import _anderson_history, _anderson_mix

    b, n, m = 3, 6, 4
    x = (jnp.ones((b, n)),)
    h_g, h_r, g_prev, r_prev, gram, _, valid = _anderson_history(x, m)
    h_g = h_g.at[0, 1].set(jnp.nan)
    h_r = h_r.at[0, 1].set(jnp.nan)
    gram = gram.at[0, 1, :].set(jnp.nan).at[0, :, 1].set(jnp.nan)
    # example 0's residual grows a lot: it restarts, forgetting slot 1 (and the rest)
    hist = (h_g, h_r, g_prev, r_prev + 0.01, gram, jnp.full((b,), 1e-6), valid)
    gx = (jnp.ones((b, n)) * 2.0,)
    out, hist = _anderson_mix(x, gx, hist, jnp.asarray(6), m)
    assert np.all(np.isfinite(np.asarray(out[0])))
    np.testing.assert_array_equal(np.asarray(out[0][0]), np.asarray(gx[0][0]))  # plain step
    assert float(np.asarray(hist[6])[0].sum()) == 0.0


def test_anderson_carried_gram_matches_its_history():
    """The Gram matrices `_anderson_mix` carries (one new row per step, restarts masking
    slots) equal those recomputed from the stored residual differences at every step, on a
    nonlinear map with kinks where examples restart, with two states of different sizes."""
    from eqdyn.dynamics._anderson import _anderson_history, _anderson_mix

    rng = np.random.default_rng(0)
    b, m, sizes = 6, 4, (7, 3)
    mats = [rng.normal(size=(n, n)) * 0.4 for n in sizes]
    offs = [rng.normal(size=(b, n)) for n in sizes]

    def g_map(x):
        return tuple(jnp.clip(jnp.tanh(xi @ a.T) * 1.6 + c, -1, 1)
                     for xi, a, c in zip(x, mats, offs))

    x = tuple(jnp.zeros((b, n)) for n in sizes)
    hist = _anderson_history(x, m)
    restarted = False
    for k in range(40):
        x, hist = _anderson_mix(x, g_map(x), hist, jnp.asarray(k), m)
        h_r, gram, valid = np.asarray(hist[1]), np.asarray(hist[4]), np.asarray(hist[6])
        full = np.einsum("bin,bjn->bij", h_r, h_r)
        mask = valid[:, :, None] * valid[:, None, :]
        np.testing.assert_allclose(gram * mask, full * mask, rtol=1e-12, atol=1e-14)
        restarted |= k >= m + 2 and bool(np.any(valid.sum(1) < m))
    assert restarted  # the safeguard was exercised
    res = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(g_map(x), x))
    assert res < 1e-10, res


def test_anderson_training_learns_as_well_in_fewer_sweeps():
    """The same training (digits, hard sigmoid, block sweeps, same seed) with Anderson
    acceleration: fewer free sweeps per batch, the same accuracy to within a few test
    examples (the relaxations stop at the same residual, not on the same bits)."""
    from eqdyn.data import load_dataset
    from eqdyn.learning import resolve_config, train

    data = load_dataset("digits", val_size=200)
    runs = {}
    for m in (0, 5):
        cfg = resolve_config(arch="64-64-10", epochs=2, batch_size=20, backend="blocks",
                             chunk=1000, eval_batch=500, seed=3, anderson=m)
        runs[m] = train(cfg, progress=None, dataset=data)
    plain, acc = runs[0], runs[5]
    assert acc["mean_free_steps"] < 0.9 * plain["mean_free_steps"], (
        acc["mean_free_steps"], plain["mean_free_steps"])
    assert plain["test_accuracy"] > 0.5, plain["test_accuracy"]  # chance is 0.1
    assert abs(acc["test_accuracy"] - plain["test_accuracy"]) < 0.03, (
        acc["test_accuracy"], plain["test_accuracy"])


def test_anderson_is_refused_outside_block_sweeps():
    with pytest.raises(ConfigError, match="needs backend='blocks'"):
        RelaxConfig(backend="fused", anderson=3)
    with pytest.raises(ConfigError, match="integer memory"):
        RelaxConfig(backend="blocks", anderson=-1)
    from eqdyn.learning import resolve_config

    with pytest.raises(ConfigError, match="accelerates block sweeps"):
        resolve_config(dataset="digits", backend="fused", anderson=3)
    cfg = resolve_config(dataset="digits", backend="blocks", nudged_backend="fused", anderson=3)
    from eqdyn.training import relax_configs

    free, nudged, evaluate = relax_configs(cfg)
    assert (free.anderson, nudged.anderson, evaluate.anderson) == (3, 0, 0)


def test_blocks_descend_the_energy_sweep_by_sweep(rng):
    model = _model(rng, scale=2.5)
    x, d = _data(rng)
    s0 = model.init_state(5, jnp.float64)
    energies = []
    one_sweep = RelaxConfig(backend="blocks", dt0=1.0, t1=1.0, tol=1e-14).relaxation()
    s = s0
    for _ in range(11):  # a sweep at a time, from where the last one ended: one compilation
        s = relax(model, x, s, beta=0.5, d=d, relaxation=one_sweep,
                        on_failure="ignore").states
        energies.append(float(model.system.energy(s, model.params, model.inputs(x, d), 0.5)))
    assert np.all(np.diff(energies) <= 1e-12 * (1 + abs(energies[0])))
    assert energies[-1] < energies[0]


def test_blocks_hold_a_clamped_output(rng):
    model = _model(rng)
    x, d = _data(rng)
    s0 = model.init_state(5, jnp.float64)[:-1] + (d,)
    clamped = (False,) * (len(SIZES) - 2) + (True,)
    a = relax_core(model, x, s0, 0.0, d, _cfg("fused"), clamped=clamped)
    b = relax_core(model, x, s0, 0.0, d, _cfg("blocks"), clamped=clamped)
    np.testing.assert_array_equal(b.states[-1], d)
    for u, v in zip(a.states, b.states):
        np.testing.assert_allclose(u, v, rtol=0, atol=1e-8)


@pytest.mark.parametrize("variant", ["one-sided", "symmetric"])
def test_ep_estimate_is_the_same_with_blocks(rng, variant):
    model = _model(rng)
    x, d = _data(rng)
    s0 = model.init_state(5, jnp.float64)
    grads = {}
    for backend in ("fused", "blocks"):
        cfg = EPConfig(beta=0.3, variant=variant, free=_cfg(backend), nudged=_cfg(backend))
        grads[backend], aux = ep_gradient(model, x, d, s0, cfg)
        assert bool(aux.free_converged) and bool(aux.nudged_converged)
    for a, b in zip(grads["fused"], grads["blocks"]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_blocks_refuse_energies_without_closed_form_layers(rng):
    x, d = _data(rng, sizes=(7, 6, 5, 3))
    smooth = _model(rng, act="sigmoid", sizes=(7, 6, 5, 3))
    with pytest.raises(ConfigError, match="leaky formulation"):
        relax_core(smooth, x, smooth.init_state(5), 0.0, d, _cfg("blocks"))
    lateral = EnergyModel(layered_hopfield_energy((7, 6, 5, 3), lateral=(1,)), "hard_sigmoid",
                          key=jax.random.PRNGKey(0), dtype=jnp.float64)
    with pytest.raises(ConfigError, match="lateral or nonlinear self-coupling"):
        relax_core(lateral, x, lateral.init_state(5), 0.0, d, _cfg("blocks"))
    skip = EnergyModel(layered_hopfield_energy((7, 6, 5, 3), skip=((1, 3),)), "hard_sigmoid",
                       key=jax.random.PRNGKey(0), dtype=jnp.float64)
    with pytest.raises(ConfigError, match="odd cycle"):
        relax_core(skip, x, skip.init_state(5), 0.0, d, _cfg("blocks"))
    with pytest.raises(ConfigError, match="solver='euler'"):
        RelaxConfig(solver="tsit5", backend="blocks")


@pytest.mark.parametrize("act", ["hard_sigmoid", "sigmoid"])
def test_midpoint_difference_equals_two_evaluations(rng, act):
    model = _model(rng, act=act)
    system = model.system
    x, d = _data(rng)
    inputs = model.inputs(x, d)
    a = tuple(jnp.asarray(rng.uniform(-0.3, 1.3, (5, n))) for n in SIZES[1:])
    b = tuple(jnp.asarray(rng.uniform(-0.3, 1.3, (5, n))) for n in SIZES[1:])
    # exact for the hard sigmoid's leaky read-out (polynomial in rho(u)), not for the sigmoid
    assert system.midpoint_is_exact(model.params, inputs) == (act == "hard_sigmoid")
    delta = system.param_grads_delta(a, b, model.params, inputs, 0.4, -0.4)
    ga = system.param_grads(a, model.params, inputs, 0.4)
    gb = system.param_grads(b, model.params, inputs, -0.4)
    for g, p, q in zip(delta, ga, gb):
        np.testing.assert_allclose(g, p - q, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", ["fused", "blocks"])
def test_relax_compiles_once_per_configuration(rng, backend, monkeypatch):
    """New values of the input, start, target and beta reuse the compiled relaxation; a
    Python zero beta (a free phase, where block sweeps need less structure) is compiled once
    on its own."""
    import eqdyn.dynamics._relax as relax_mod
    from eqdyn.dynamics import relax

    traces = []
    original = relax_mod.relax_core
    monkeypatch.setattr(relax_mod, "_relax_jit", relax_mod.eqx.filter_jit(
        lambda *a, **k: traces.append(1) or original(*a, **k)))
    model = _model(rng)
    cfg = RelaxConfig(backend=backend, tol=1e-6, on_failure="ignore")
    for beta in (0.0, 0.3, -1.0, 0.7, 0.0):
        x, d = _data(rng)
        s0 = tuple(jnp.asarray(rng.uniform(0, 1, (5, n))) for n in SIZES[1:])
        relax(model, x, s0, beta=beta, d=d, config=cfg)
    assert len(traces) == 2


def test_training_compiles_once_across_runs(tmp_path):
    """Two `train` calls with equal settings (a compare, a notebook, a resumed run) trace
    the training step once: the optimiser and the relaxation settings compare equal."""
    import eqdyn.learning._ep as ep_mod
    from eqdyn.data import load_dataset
    from eqdyn.learning import resolve_config, train

    import eqdyn.training._loop as loop_mod

    # an earlier test of the session may have compiled this very step: start from no cache,
    # so that the count is this test's own
    loop_mod._train_chunk_donating._cached.clear_cache()
    traces = []  # the EP rule's free phase, once per trace of the rule
    original = ep_mod.run_phase
    mp = pytest.MonkeyPatch()
    mp.setattr(ep_mod, "run_phase", lambda *a, **k: traces.append(1) or original(*a, **k))
    try:
        data = load_dataset("digits", val_size=200)
        cfg = resolve_config(arch="64-64-10", epochs=1, batch_size=20, backend="blocks",
                             chunk=1000, eval_batch=500, seed=3)
        a = train(cfg, progress=None, dataset=data)
        b = train(cfg, progress=None, dataset=data)
    finally:
        mp.undo()
    assert len(traces) == 1
    assert a["test_accuracy"] == b["test_accuracy"] > 0.2  # chance is 0.1


def test_blocks_with_a_smooth_activation_is_refused_before_training():
    from eqdyn.learning import resolve_config

    for flag in ("backend", "nudged_backend"):
        with pytest.raises(ConfigError, match=f"`{flag}`='blocks' needs the leaky formulation"):
            resolve_config(activation="sigmoid", **{flag: "blocks"})
    assert resolve_config(preset="sb17-1h").backend == "blocks"
