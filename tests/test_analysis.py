"""eqdyn.analysis: the fixed-point sensitivity, EP's bias against beta, convergence (float64,
small nets). What theory guarantees is asserted with tight thresholds (bias slopes 1, 2 and N;
the energy never increases). Early inference: tests/test_early_inference.py.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqdyn import CheckpointError, ConfigError, LayeredHopfield
from eqdyn.analysis import (
    bias_vs_beta,
    convergence_study,
    early_inference,
    fixed_point_sensitivity,
    mlp_backprop_errors,
)
from eqdyn.dynamics import RelaxConfig, relax_core

SIZES = (12, 10, 9, 8, 4)


def _net(activation, sizes=SIZES, batch=6, seed=0):
    model = LayeredHopfield(sizes, activation, key=jax.random.PRNGKey(seed), dtype=jnp.float64)
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.uniform(size=(batch, sizes[0])))
    d = jax.nn.one_hot(jnp.asarray(rng.integers(0, sizes[-1], batch)), sizes[-1],
                       dtype=jnp.float64)
    return model, x, d


def test_sensitivity_is_minus_inverse_hessian_times_cost_gradient():
    model, x, d = _net("sigmoid", sizes=(5, 4, 3), batch=3)
    cfg = RelaxConfig(dt0=0.25, tol=1e-12, t1=10000.0, max_steps=100000)
    res = relax_core(model, x, model.init_state(3), 0.0, d, cfg)
    sens = fixed_point_sensitivity(model, x, d, res.states)

    def energy(flat, beta):
        s = (flat[:, :4], flat[:, 4:])
        return model.system.energy(s, model.params, model.inputs(x, d), beta)

    flat = jnp.concatenate(res.states, axis=1)
    for b in range(3):
        h = jax.hessian(lambda f: energy(flat.at[b].set(f), 0.0))(flat[b])
        dcds = jax.grad(lambda f: jax.grad(lambda bb: energy(flat.at[b].set(f), bb))(0.0))(
            flat[b])
        want = -jnp.linalg.solve(h, dcds)
        got = jnp.concatenate([a[b] for a in sens])
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12)


def test_retracted_mlp_reference_is_minus_the_mlp_gradient():
    model, x, d = _net("sigmoid", sizes=(5, 4, 3), batch=3)
    e1, e2 = mlp_backprop_errors(model, x, d)
    w1, w2 = model.weights
    b1, b2 = model.biases
    h = jax.nn.sigmoid(x @ w1 + b1)
    y = jax.nn.sigmoid(h @ w2 + b2)
    np.testing.assert_allclose(e2, d - y, rtol=1e-12)
    np.testing.assert_allclose(e1, ((d - y) * y * (1 - y)) @ w2.T, rtol=1e-10)


def test_bias_slopes_are_one_two_and_n():
    model, x, d = _net("sigmoid", sizes=(5, 6, 3), batch=4)
    model = model.with_params(tuple(2 * p for p in model.params))
    b = bias_vs_beta(model, x, d, betas=np.geomspace(0.02, 0.3, 4), n_points=3,
                     config=RelaxConfig(dt0=0.5, tol=1e-12, t1=10000.0, max_steps=100000))
    assert 0.8 < b.slopes["one-sided"] < 1.2, b.slopes
    assert 1.8 < b.slopes["symmetric"] < 2.2, b.slopes
    assert 2.6 < b.slopes["holomorphic"] < 3.4, b.slopes
    assert np.all(b.errors["holomorphic"] < b.errors["one-sided"])


def test_convergence_study_energy_descends_and_spectrum_predicts_settling():
    c = convergence_study(["8-12-4", "8-12-12-4"], batch=3, solvers=("euler",))
    for r in c.rows:
        assert r["converged"] and r["steps"]["euler"] > 0
        assert r["energy_increase"] <= 1e-10, r["energy_increase"]
        assert 0 < r["slowest_rate"] <= r["fastest_rate"]
        # the slowest mode sets the time scale (prediction within a factor of 3)
        assert r["t_settle"] / 3 < r["predicted_t"] < 3 * r["t_settle"], r


@pytest.mark.parametrize("call, match", [
    (lambda m, x, d: early_inference(m, x, d, gamma=-1.0), "`gamma`=-1.0 must be a positive"),
    (lambda m, x, d: early_inference(m, x, d, times=[1.0, 0.5]), "must be increasing"),
    (lambda m, x, d: bias_vs_beta(m, x, d, betas=[0.1]), "`betas`"),
    (lambda m, x, d: bias_vs_beta(m, x, d, variants=("random-sign",)), "random-sign"),
    (lambda m, x, d: convergence_study([]), "`archs` is empty"),
])
def test_bad_input(call, match):
    model, x, d = _net("sigmoid", sizes=(5, 4, 3), batch=2)
    with pytest.raises(ConfigError, match=match):
        call(model, x, d)


def test_cli_analyze_writes_json_and_png(tmp_path):
    from eqdyn.cli import main

    assert main(["analyze", "convergence", "--arch", "8-12-4", "--batch", "2",
                 "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "convergence.json").read_text())
    assert data["rows"][0]["arch"] == "8-12-4"
    png = (tmp_path / "convergence.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_dynamics_symmetric_ep_follows_the_gradient():
    """Same init, same batches: symmetric EP at beta 0.1 stays aligned with the exact gradient
    along training (measured on digits 64-32-10: cosine >= 0.999997 over 60 steps)."""
    from eqdyn import load_dataset
    from eqdyn.analysis import training_dynamics

    data = load_dataset("digits")
    model, _, _ = _net("sigmoid", sizes=(64, 16, 10))
    r = training_dynamics(model, np.asarray(data.x_train, np.float64), data.y_train,
                          n_steps=8, lr=0.5, beta=0.1, batch_size=20)
    assert r.cosine.shape == (8,) and np.all(r.cosine > 0.999), r.cosine
    assert r.cosine_per_param.shape == (8, 4)
    assert r.loss_ep[-1] < r.loss_ep[0] and r.loss_rbp[-1] < r.loss_rbp[0]
    with pytest.raises(ConfigError, match="random-sign"):
        training_dynamics(model, data.x_train, data.y_train, variant="random-sign")


# ------------------------------------------------------------------------------------ GDU

GDU_BETAS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


@pytest.fixture(scope="module")
def gdu_runs():
    """One compiled program (K = 8 nudged steps) for three free phases of a 8-10-10-4
    sigmoid net: discrete time converged (T = 60), Euler dt = 0.5 converged (T = 200) and
    Euler dt = 0.5 unconverged (T = 8: 4 time units)."""
    from eqdyn.analysis import gdu

    model, x, d = _net("sigmoid", sizes=(8, 10, 10, 4), batch=6)
    runs = {name: gdu(model, x, d, betas=GDU_BETAS, n_free=t, n_nudged=8, dt=dt)
            for name, t, dt in (("discrete", 60, 1.0), ("euler", 200, 0.5),
                                ("unconverged", 8, 0.5))}
    return model, x, d, runs


@pytest.mark.parametrize("name", ["discrete", "euler"])
def test_gdu_holds_as_beta_to_zero_with_a_converged_free_phase(gdu_runs, name):
    """Ernoult et al.'s Theorem 1: with a converged free phase, EP's neural and weight
    updates equal BPTT's gradients step by step as beta -> 0. At beta = 1e-5 every layer at
    every step has > 95 % matching signs (measured: >= 98.75 %) and the relative error is
    small (measured mean 1.6e-4 neurons, 4.2e-4 weights in discrete time; 2.1e-5 both under
    Euler dt = 0.5)."""
    r = gdu_runs[3][name]
    assert r.free_residual < 1e-12
    i = GDU_BETAS.index(1e-5)
    for err, sign in ((r.error_neurons, r.sign_neurons), (r.error_params, r.sign_params)):
        assert np.nanmin(sign[i]) > 0.95, sign[i]
        assert np.nanmean(err[i]) < 1e-3 and np.nanmax(err[i]) < 1e-2, err[i]
    # every layer is reached within the horizon, so no (layer, step) row is all nan
    assert np.all(np.isfinite(r.error_neurons[i]).any(axis=1))


@pytest.mark.parametrize("name", ["discrete", "euler"])
def test_gdu_error_grows_first_order_in_beta(gdu_runs, name):
    """Above the rounding floor the mismatch is EP's O(beta) bias: log-log slope ~1 between
    beta = 1e-4 and 1e-2; at beta = 0.1 it is 10-70 % (measured 0.18 Euler, 0.70 discrete)."""
    r = gdu_runs[3][name]
    s = r.summary()
    for key in ("error_neurons", "error_params"):
        e = np.asarray(s[key])
        slope = np.polyfit(np.log(GDU_BETAS[1:4]), np.log(e[1:4]), 1)[0]
        assert 0.9 < slope < 1.1, (key, e)
        assert e[-1] > 0.1, e


def test_gdu_fails_with_an_unconverged_free_phase(gdu_runs):
    """After 4 time units (residual 2e-3) the free phase still moves: EP's updates divide
    that motion by beta, and BPTT's gradients are those of a transient. At small beta the
    relative error is ~1 and the signs agree about as often as chance (measured: 0.9998 and
    0.47 neurons / 0.59 weights); no beta of the grid brings the error below 0.2 (measured
    best 0.46 at beta = 0.1), whereas the converged runs reach 2e-5."""
    r = gdu_runs[3]["unconverged"]
    assert r.free_residual > 1e-5
    s = r.summary()
    assert s["error_neurons"][0] > 0.9 and s["error_params"][0] > 0.9, s
    assert s["sign_neurons"][0] < 0.75 and s["sign_params"][0] < 0.75, s
    assert min(s["error_neurons"]) > 0.2, s


def test_gdu_bptt_steps_sum_to_bptt_gradient(gdu_runs):
    """With K = T, BPTT's per-step parameter gradients add up to eqdyn's `bptt_gradient`
    (which returns the mean over the batch); the metrics equal `relative_mse` entry by
    entry; the record serialises."""
    from eqdyn.analysis import relative_mse
    from eqdyn.learning import bptt_gradient

    model, x, d, runs = gdu_runs
    r = runs["unconverged"]
    g, _ = bptt_gradient(model, x, d, model.init_state(x.shape[0]), dt=0.5, n_steps=8)
    for mine, ref in zip(r.bptt_params, g):
        np.testing.assert_allclose(-mine.sum(axis=0), x.shape[0] * np.asarray(ref),
                                   rtol=1e-10, atol=1e-14)
    i, k, t = 2, 1, 3
    assert r.error_params[i, k, t] == pytest.approx(
        relative_mse(r.ep_params[k][i, t], r.bptt_params[k][t]), rel=1e-12)
    assert r.error_neurons[i, 0, 0] != r.error_neurons[i, 0, 0]  # nan: h_1 not reached yet
    data = json.loads(json.dumps(r.to_json()))
    assert data["n_free"] == 8 and len(data["summary"]["error_params"]) == len(GDU_BETAS)


@pytest.mark.parametrize("kwargs, match", [
    (dict(betas=(0.0,)), "`betas`"),
    (dict(n_free=4, n_nudged=5), "exceeds `n_free`"),
    (dict(dt=-1.0), "`dt`"),
    (dict(n_nudged=0), "`n_nudged`"),
])
def test_gdu_bad_input(kwargs, match):
    from eqdyn.analysis import gdu

    model, x, d = _net("sigmoid", sizes=(5, 4, 3), batch=2)
    with pytest.raises(ConfigError, match=match):
        gdu(model, x, d, **kwargs)


def test_cli_analyze_gdu_writes_json_and_png(tmp_path):
    from eqdyn.cli import main

    assert main(["analyze", "gdu", "--arch", "6-5-3", "--batch", "2", "--dts", "1",
                 "--free-times", "3,40", "--horizon", "3", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "gdu.json").read_text())
    assert [r["free_time"] for r in data["rows"]] == [3.0, 40.0]
    assert data["rows"][1]["free_residual"] < 1e-12
    assert (tmp_path / "gdu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_convergence_study_of_a_trained_run(tmp_path):
    """`run_dirs`: the trained network of a run directory, on its first test images."""
    from eqdyn.learning import load_trained, resolve_config, train

    run = tmp_path / "run"
    cfg = resolve_config(arch="64-32-10", epochs=1, batch_size=20, backend="blocks",
                         chunk=1000, eval_batch=500)
    metrics = train(cfg, run_dir=run, progress=None)
    model, saved, epoch = load_trained(run, dtype=jnp.float64)
    assert epoch == 1 and saved == cfg and model.params[0].dtype == jnp.float64
    np.testing.assert_allclose(model.params[0], metrics["model"].params[0], rtol=0, atol=0)
    study = convergence_study([], activation="hard_sigmoid", batch=4,
                              solvers=("euler", "blocks"), tol=1e-6, run_dirs=[run])
    (row,) = study.rows
    assert row["trained"]["epochs"] == 1 and row["arch"] == "64-32-10"
    # the block sweeps reach the same tolerance in fewer steps than Euler at dt 0.5
    assert 0 < row["steps"]["blocks"] < row["steps"]["euler"]
    assert row["energy_increase"] <= 1e-9
    with pytest.raises(CheckpointError, match="no config.json"):
        load_trained(tmp_path)


# ------------------------------------------------------------------ neuron noise


@pytest.fixture(scope="module")
def noise_record():
    from eqdyn.analysis import noise_study
    from eqdyn.models import EnergyModel
    from eqdyn.symbolic import layered_hopfield_energy

    model = EnergyModel(layered_hopfield_energy((8, 6, 6, 3), cost="cross_entropy"),
                        "steep_sigmoid", "leaky", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(6, 8)))
    d = jax.nn.one_hot(jnp.asarray(rng.integers(0, 3, 6)), 3, dtype=jnp.float64)
    # |beta| 0.1: on this net the fixed point's continuation in beta is not analytic out to 0.4
    # (holomorphic EP's noiseless error there is 0.12-0.17 for N = 4, 6, 10; 6e-4 at 0.1, N 10)
    return noise_study(model, x, d, estimators=(("one-sided", 0.1, 2), ("holomorphic", 0.1, 10)),
                       n_keys=6, free_t1=10.0, nudged_t1=20.0)


def test_holomorphic_ep_holds_under_noise_where_classic_ep_does_not(noise_record):
    """Laborieux & Zenke's mechanism at their noise (std 0.04 per step), at equal |beta|: on
    this net one-sided EP at beta 0.1 errs by 0.85 (relative to recurrent backprop) per noise
    draw, holomorphic EP (N 10) by 0.20; noiseless by 0.18 and 6e-4."""
    r = noise_record
    classic, holo = r.labels
    assert np.isclose(r.noise_std, 0.04)
    assert r.noiseless_error[classic] < 0.3 and r.noiseless_error[holo] < 1e-3
    assert np.mean(r.errors[holo]) < np.mean(r.errors[classic]) / 3, (r.errors, r.labels)
    assert np.min(r.cosines[holo]) > np.max(r.cosines[classic])
    # averaging the 6 draws removes much of the noise (measured: 0.41 against 0.85 per draw;
    # the noiseless bias 0.18 stays); identical draws would not
    assert r.mean_error[classic] < 0.7 * np.mean(r.errors[classic])
    assert r.nudged_time[holo] == 10 * 20.0 and r.nudged_time[classic] == 20.0
    js = json.loads(json.dumps(r.to_json()))
    assert js["labels"] == r.labels and len(js["cosines"][holo]) == 6


def test_noise_plot_and_bad_input(noise_record, tmp_path):
    from eqdyn.analysis import noise_study, plots

    plots.save_figure(plots.plot_noise(noise_record), tmp_path / "noise.png")
    assert (tmp_path / "noise.png").stat().st_size > 1000
    model, x, d = _net("sigmoid", sizes=(5, 6, 3), batch=4)
    with pytest.raises(ConfigError, match="`temperature`=0 must be a positive number"):
        noise_study(model, x, d, temperature=0)
    with pytest.raises(ConfigError, match="estimator \\('random-sign', 0.1, 2\\)"):
        noise_study(model, x, d, estimators=(("random-sign", 0.1, 2),))
    with pytest.raises(ConfigError, match="`n_keys`=1"):
        noise_study(model, x, d, n_keys=1)
