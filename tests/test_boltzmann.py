"""Boltzmann machines (issue 27): binary units derived from the energy, block Gibbs sampling,
mean field, CD/PCD, AIS; each checked against exact enumeration in float64."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqdyn._errors import ConfigError, DerivationError
from eqdyn.analysis import (ais_log_partition, autocorrelation, base_rate_bias,
                            effective_sample_size, exact_log_partition, free_energy)
from eqdyn.dynamics import RESULTS, BlockGibbs, MeanField, binary_problem, sample_chain
from eqdyn.learning import CD, PCD, positive_phase
from eqdyn.models import BoltzmannMachine, binary_system
from eqdyn.symbolic import binary_units, boltzmann_energy, layered_hopfield_energy


def _random_params(energy, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(scale * rng.normal(size=(int(p.rows), int(p.cols))))
                 for p in energy.params)


def _all_states(sizes, low=0.0):
    allstates = np.array(list(itertools.product([low, 1.0], repeat=sum(sizes))))
    cuts = np.cumsum((0,) + tuple(sizes))
    return [allstates[:, a:b] for a, b in zip(cuts[:-1], cuts[1:])]


# ----------------------------------------------------------------------- the derived gaps

def _hand_dbm_energy(states, params, leak):
    """F of a layered machine written by hand (numpy), independent of the derivation."""
    v, h1, h2 = states
    W1, W2, b0, b1, b2 = (np.asarray(p) for p in params)
    f = -np.sum((v @ W1) * h1, 1) - np.sum((h1 @ W2) * h2, 1) - v @ b0[0] - h1 @ b1[0] - h2 @ b2[0]
    if leak:
        f = f + 0.5 * sum(np.sum(s * s, 1) for s in states)
    return f


@pytest.mark.parametrize("units,leak", [("01", True), ("01", False), ("pm1", True)])
def test_gaps_match_brute_force_energy_differences(units, leak):
    energy = boltzmann_energy((3, 4, 2), leak=leak)
    system = binary_system(energy, units)
    params = _random_params(energy, 0)
    low = 0.0 if units == "01" else -1.0
    rng = np.random.default_rng(1)
    states = [np.where(rng.uniform(size=(5, n)) < 0.5, 1.0, low) for n in (3, 4, 2)]
    gaps = system.gaps(tuple(jnp.asarray(s) for s in states), params)
    for k, n in enumerate((3, 4, 2)):
        for i in range(n):
            on = [s.copy() for s in states]
            off = [s.copy() for s in states]
            on[k][:, i], off[k][:, i] = 1.0, low
            want = _hand_dbm_energy(on, params, leak) - _hand_dbm_energy(off, params, leak)
            np.testing.assert_allclose(np.asarray(gaps[k])[:, i], want, rtol=0, atol=1e-12)
    assert system.blocks == ((0, 2), (1,))  # odd and even layers


def test_hopfield_energy_on_binary_units_leak_is_a_bias_of_one_half():
    energy = layered_hopfield_energy((3, 4, 2))
    bd = binary_units(energy)
    h, y = energy.states
    assert bd.self_bias[h] == sp_half() and bd.self_bias[y] == sp_half() + energy.beta / 2
    system = binary_system(energy)
    params = _random_params(energy, 2)
    rng = np.random.default_rng(3)
    x, d = rng.uniform(size=(4, 3)), np.eye(2)[[0, 1, 1, 0]]
    states = [np.where(rng.uniform(size=(4, n)) < 0.5, 1.0, 0.0) for n in (4, 2)]
    W1, W2, b1, b2 = (np.asarray(p) for p in params)
    beta = 0.7

    def F(h, y):  # rho is the identity on {0, 1}
        return (0.5 * np.sum(h * h, 1) + 0.5 * np.sum(y * y, 1) - np.sum((x @ W1) * h, 1)
                - np.sum((h @ W2) * y, 1) - h @ b1[0] - y @ b2[0]
                + beta * 0.5 * np.sum((y - d) ** 2, 1))

    gaps = system.gaps(tuple(map(jnp.asarray, states)), params, (jnp.asarray(x), jnp.asarray(d)),
                       beta)
    for k, n in enumerate((4, 2)):
        for i in range(n):
            on = [s.copy() for s in states]
            off = [s.copy() for s in states]
            on[k][:, i], off[k][:, i] = 1.0, 0.0
            np.testing.assert_allclose(np.asarray(gaps[k])[:, i], F(*on) - F(*off), atol=1e-12)
    assert any("frac{1}{2}" in line for line in bd.gap_latex())


def sp_half():
    import sympy as sp

    return sp.Rational(1, 2)


def test_lateral_weights_are_refused_naming_the_term():
    with pytest.raises(DerivationError, match=r"term 6 .*L_1.*`h_1` depends on `h_1`"):
        binary_units(layered_hopfield_energy((3, 4, 2), lateral=[1]))
    with pytest.raises(DerivationError, match="units"):
        binary_units(boltzmann_energy((2, 2)), units="binary")


# ----------------------------------------------------------------------- sampling

@pytest.fixture(scope="module")
def rbm43():
    energy = boltzmann_energy((4, 3))
    return BoltzmannMachine(_random_params(energy, 4), energy)


def _exact_joint(machine):
    v, h = _all_states(machine.state_sizes)
    f = np.asarray(machine.energy_rows((jnp.asarray(v), jnp.asarray(h))))
    p = np.exp(-(f - f.min()))
    return p / p.sum()


def _state_index(v, h):
    n = v.shape[-1] + h.shape[-1]
    bits = np.concatenate([v, h], -1).reshape(-1, n)
    return (bits @ (2 ** np.arange(n)[::-1])).astype(int)


@pytest.fixture(scope="module")
def gibbs_samples(rbm43):
    chains = 1000
    s0 = rbm43.init_state(chains, key=jax.random.PRNGKey(1))
    run = jax.jit(lambda p, k: sample_chain(BlockGibbs(1), p, k, 40, burn_in=20, thin=2))
    return run(binary_problem(rbm43, s0), jax.random.PRNGKey(2))


def test_block_gibbs_matches_exact_enumeration(rbm43, gibbs_samples):
    (v, h), energies = gibbs_samples
    idx = _state_index(np.asarray(v), np.asarray(h))
    emp = np.bincount(idx, minlength=128) / idx.size
    exact = _exact_joint(rbm43)
    tv = 0.5 * np.abs(emp - exact).sum()
    # measured 0.011 (40,000 draws over 128 states); the sampling noise alone is ~0.01
    assert tv < 0.03
    # a wrong distribution (the machine at temperature 2) is far away: measured 0.39
    hot = np.sqrt(exact)
    assert 0.5 * np.abs(emp - hot / hot.sum()).sum() > 0.2
    # the energy trace is the energy of the kept samples
    assert energies.shape == (40, 1000)
    ess = effective_sample_size(np.asarray(energies))
    assert 10_000 < ess < 48_000  # measured 40,700: two sweeps apart, the draws are nearly independent


def test_block_gibbs_result_annealing_and_refusals(rbm43):
    s0 = rbm43.init_state(8, key=jax.random.PRNGKey(0))
    res = BlockGibbs(3, anneal=5.0).solve(binary_problem(rbm43, s0), key=jax.random.PRNGKey(1))
    assert res.result == RESULTS.fixed_horizon and bool(res.converged) and int(res.steps) == 3
    assert set(np.unique(np.asarray(res.states[0]))) <= {0.0, 1.0}
    clamped = BlockGibbs(2).solve(binary_problem(rbm43, s0, clamp=(0,)), key=jax.random.PRNGKey(1))
    np.testing.assert_array_equal(clamped.states[0], s0[0])
    with pytest.raises(ConfigError, match="temperature"):
        BlockGibbs(1, temperature=0.0)
    with pytest.raises(ConfigError, match="s0"):
        binary_problem(rbm43, (s0[0], s0[1][:, :2]))
    with pytest.raises(ConfigError, match="key"):
        BlockGibbs(1).solve(binary_problem(rbm43, s0))


def test_mean_field_fixed_point_and_statuses():
    energy = boltzmann_energy((4, 3, 2))
    dbm = BoltzmannMachine(_random_params(energy, 5), energy)
    x = jnp.asarray(np.random.default_rng(6).integers(0, 2, size=(6, 4)).astype(float))
    s0 = (x, jnp.full((6, 3), 0.5), jnp.full((6, 2), 0.5))
    res = MeanField(1e-10, 500, damping=0.5).solve(binary_problem(dbm, s0, clamp=(0,)))
    assert res.result == RESULTS.successful and float(res.residual) < 1e-10
    p = dbm.system.prob_on(res.states, dbm.params)
    for k in (1, 2):  # mu = sigmoid(-gap(mu)) at the fixed point
        np.testing.assert_allclose(res.states[k], p[k], atol=1e-9)
    short = MeanField(1e-12, 1).solve(binary_problem(dbm, s0, clamp=(0,)))
    assert short.result == RESULTS.max_steps_reached and not bool(short.converged)
    # an RBM's hidden layer given the visibles: one sweep is exact
    rbm = BoltzmannMachine(dbm.params[:1] + dbm.params[2:4], boltzmann_energy((4, 3)))
    one = MeanField(1e-10, 50).solve(binary_problem(rbm, s0[:2], clamp=(0,)))
    assert one.result == RESULTS.successful and int(one.steps) == 1
    W, b1 = np.asarray(rbm.params[0]), np.asarray(rbm.params[2])
    np.testing.assert_allclose(one.states[1], 1 / (1 + np.exp(-(np.asarray(x) @ W + b1))),
                               atol=1e-12)


# ----------------------------------------------------------------------- learning

def _exact_nll_grad(machine, data):
    """d(-mean log p(v))/dtheta by enumeration: <dF/dtheta>_data - <dF/dtheta>_model."""
    sys = machine.system
    v, h = (jnp.asarray(a) for a in _all_states(machine.state_sizes))
    p = jnp.asarray(_exact_joint(machine))
    gv = [-jnp.einsum("b,bi,bj->ij", p, v, h), -(p @ v)[None], -(p @ h)[None]]
    ph = sys.prob_on((data, jnp.zeros((data.shape[0], 3))), machine.params)[1]
    gd = [-(data.T @ ph) / data.shape[0], -jnp.mean(data, 0, keepdims=True),
          -jnp.mean(ph, 0, keepdims=True)]
    return [a - b for a, b in zip(gd, gv)]


def test_pcd_with_many_chains_matches_the_exact_gradient(rbm43):
    data = jnp.asarray(np.random.default_rng(7).integers(0, 2, size=(20, 4)).astype(float))
    exact = _exact_nll_grad(rbm43, data)
    chains = rbm43.init_state(20_000, key=jax.random.PRNGKey(3))
    grads, stats = jax.jit(lambda m, x, s, k: PCD(30)(m, x, None, s, key=k))(
        rbm43, data, chains, jax.random.PRNGKey(4))
    err = max(float(jnp.max(jnp.abs(g - e))) for g, e in zip(grads, exact))
    # measured 0.0037 with 20,000 chains (the largest entries are 0.25-0.53)
    assert err < 0.02, err
    assert stats.free_states[0].shape == (20_000, 4) and int(stats.free_result) == 3
    # CD-1 from the data is biased but correlated with the exact gradient
    cd1 = jax.jit(lambda m, x, k: CD(1)(m, x, None, None, key=k))
    g1, _ = cd1(rbm43, jnp.tile(data, (200, 1)), jax.random.PRNGKey(5))
    c = np.corrcoef(np.concatenate([np.ravel(a) for a in g1]),
                    np.concatenate([np.ravel(a) for a in exact]))[0, 1]
    assert c > 0.9  # measured 0.993


def test_rules_refuse_bad_input(rbm43):
    x = jnp.asarray([[0.0, 1.0, 0.5, 1.0]])
    with pytest.raises(ConfigError, match="not in"):
        CD(1)(rbm43, x, None, None, key=jax.random.PRNGKey(0))
    with pytest.raises(ConfigError, match="persistent chains"):
        PCD(1)(rbm43, jnp.round(x), None, None, key=jax.random.PRNGKey(0))
    with pytest.raises(ConfigError, match="visible units"):
        CD(1)(rbm43, jnp.zeros((2, 5)), None, None, key=jax.random.PRNGKey(0))


# ----------------------------------------------------------------------- evaluation

def test_ais_log_partition_matches_exact_enumeration():
    energy = boltzmann_energy((10, 6))
    params = _random_params(energy, 8)
    params = (params[0], 0.5 * params[1], 0.5 * params[2])
    rbm = BoltzmannMachine(params, energy)
    exact = exact_log_partition(rbm)
    v = jnp.asarray(_all_states((10,))[0])
    assert abs(float(jax.scipy.special.logsumexp(-free_energy(rbm, v))) - exact) < 1e-10
    data = (jax.random.uniform(jax.random.PRNGKey(7), (200, 10)) < 0.3).astype(jnp.float64)
    res = jax.jit(lambda k: ais_log_partition(rbm, base_rate_bias(data), key=k, n_runs=100,
                                              n_betas=1000))(jax.random.PRNGKey(1))
    # measured: error -0.055, bar [-0.155, +0.036] around exact
    assert abs(float(res.log_z) - exact) < 0.2
    assert float(res.log_z_low) <= exact <= float(res.log_z_high)


def test_autocorrelation_and_ess_of_an_ar1_chain():
    rng = np.random.default_rng(9)
    phi, n, chains = 0.8, 4000, 4
    x = np.zeros((n, chains))
    for t in range(1, n):
        x[t] = phi * x[t - 1] + rng.normal(size=chains)
    rho = autocorrelation(x, 3)
    np.testing.assert_allclose(rho, phi ** np.arange(4), atol=0.05)
    want = n * chains * (1 - phi) / (1 + phi)  # 1,778
    assert abs(effective_sample_size(x) / want - 1) < 0.25


def test_dbm_pcd_negative_phase_matches_enumeration():
    """On a deep machine PCD's clamped phase is mean field (deterministic) and its free phase
    samples the model: the gradient equals MF statistics minus the exact model average."""
    energy = boltzmann_energy((3, 2, 2))
    dbm = BoltzmannMachine(_random_params(energy, 10), energy)
    data = jnp.asarray(np.random.default_rng(11).integers(0, 2, size=(8, 3)).astype(float))
    sys = dbm.system
    states = [jnp.asarray(a) for a in _all_states((3, 2, 2))]
    f = dbm.energy_rows(tuple(states))
    p = jax.nn.softmax(-f)
    rows = jax.vmap(lambda *row: sys.param_grads(tuple(r[None] for r in row), dbm.params))(
        *states)
    model = [jnp.tensordot(p, r, axes=1) for r in rows]  # sum_s p(s) dF/dtheta(s)
    pos = positive_phase(dbm, data)
    want = [g / data.shape[0] - m for g, m in zip(sys.param_grads(pos.states, dbm.params), model)]
    chains = dbm.init_state(20_000, key=jax.random.PRNGKey(12))
    grads, stats = jax.jit(lambda m, x, s, k: PCD(30)(m, x, None, s, key=k))(
        dbm, data, chains, jax.random.PRNGKey(13))
    err = max(float(jnp.max(jnp.abs(g - w))) for g, w in zip(grads, want))
    assert err < 0.02  # measured 0.0076 (entries up to 0.49)
    assert int(stats.nudged_result) == 0  # the mean-field clamped phase converged


def test_fit_boltzmann_learns_and_refuses_bad_data():
    import optax

    from eqdyn.training import fit_boltzmann

    rng = np.random.default_rng(14)
    protos = rng.integers(0, 2, size=(2, 8))
    data = protos[rng.integers(0, 2, size=200)]
    data = np.where(rng.uniform(size=data.shape) < 0.05, 1 - data, data).astype(np.float32)
    rbm = BoltzmannMachine.layered((8, 4), key=jax.random.PRNGKey(0), scale=0.1)
    base = rbm.init_state(1)
    fitted, chains, hist, _ = fit_boltzmann(rbm, data, PCD(1), optax.sgd(0.1), epochs=6,
                                         batch_size=20, key=jax.random.PRNGKey(1))
    assert len(hist) == 6 and chains[0].shape == (20, 8) and base[0].shape == (1, 8)
    # measured: reconstruction error 1.58 -> 0.77 per example over the 6 epochs
    assert hist[-1]["loss"] < 0.7 * hist[0]["loss"]
    with pytest.raises(ConfigError, match="not in"):
        fit_boltzmann(rbm, data * 0.5, PCD(1), optax.sgd(0.1), epochs=1, batch_size=20,
                      key=jax.random.PRNGKey(1))


def test_cli_rbm_train_resume_and_evaluate(tmp_path, capsys):
    from eqdyn.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    flags = ["rbm", "train", "--preset", "digits-quick", "--hidden", "8", "--quiet"]
    assert main(flags + ["--epochs", "2", "--out", str(a)]) == 0
    assert main(["rbm", "train", "--resume", str(a), "--epochs", "3", "--quiet"]) == 0
    assert main(flags + ["--epochs", "3", "--out", str(b)]) == 0
    with np.load(a / "checkpoint.npz") as za, np.load(b / "checkpoint.npz") as zb:
        for name in ("param_0", "param_1", "param_2", "chain_0"):
            np.testing.assert_array_equal(za[name], zb[name])  # resumed = uninterrupted
    assert main(["rbm", "evaluate", str(a), "--ais-betas", "200", "--ais-runs", "20"]) == 0
    import json

    ev = json.loads((a / "evaluate.json").read_text())
    assert ev["log_z_low"] <= ev["log_z"] <= ev["log_z_high"] and ev["log_likelihood"] < 0
    assert main(["rbm", "train", "--resume", str(tmp_path / "none")]) == 2
    assert "config.json" in capsys.readouterr().err


def test_rbm_cli_weight_decay_and_linear_schedule(tmp_path, capsys):
    """`eqdyn rbm train --weight-decay --schedule linear`: the decay shrinks the weights and
    not the biases, the rate falls linearly to 0 at the last update, a run with that schedule
    refuses to be extended, and bad values are refused naming the flag."""
    import json

    from eqdyn._cli_boltzmann import _build
    from eqdyn.cli import main

    cfg = dict(hidden=3, rule="cd", k=1, lr=0.1, momentum=0.0, batch=10, epochs=2, seed=0,
               weight_decay=0.5, schedule="linear")
    machine, _, opt = _build(cfg, (40, 4))  # 4 updates per epoch, 8 in all
    params = machine.params
    state = opt.init(params)
    zero = tuple(jnp.zeros_like(p) for p in params)
    for step in range(8):
        upd, state = opt.update(zero, state, params)
        w, bias = np.asarray(upd[0]), np.asarray(upd[1])
        np.testing.assert_allclose(w, -0.1 * (1 - step / 8) * 0.5 * np.asarray(params[0]),
                                   rtol=1e-6)
        assert not bias.any()
    a = tmp_path / "a"
    assert main(["rbm", "train", "--preset", "digits-quick", "--hidden", "8", "--quiet",
                 "--epochs", "1", "--schedule", "linear", "--weight-decay", "2e-4",
                 "--out", str(a)]) == 0
    assert main(["rbm", "train", "--resume", str(a), "--epochs", "2"]) == 2
    assert "decays its learning rate to 0 at epoch 1" in capsys.readouterr().err
    assert json.loads((a / "config.json").read_text())["epochs"] == 1
    assert main(["rbm", "train", "--momentum", "1", "--out", str(tmp_path / "b")]) == 2
    assert "`--momentum`=1.0 must be in [0, 1)" in capsys.readouterr().err
    assert main(["rbm", "train", "--weight-decay", "-1", "--out", str(tmp_path / "b")]) == 2
    assert "`--weight-decay`=-1.0 must be a number >= 0" in capsys.readouterr().err


def test_label_log_probs_match_enumeration():
    from eqdyn.analysis import label_log_probs

    energy = boltzmann_energy((5, 3))  # 3 input units and 2 label units
    rbm = BoltzmannMachine(_random_params(energy, 15), energy)
    x = jnp.asarray(_all_states((3,))[0])
    got = np.asarray(label_log_probs(rbm, x, 2))
    v, h = _all_states((5, 3))
    p = _exact_joint(rbm)
    for i, xi in enumerate(np.asarray(x)):
        joint = [p[np.all(v[:, :3] == xi, 1) & np.all(v[:, 3:] == np.eye(2)[c], 1)].sum()
                 for c in range(2)]
        np.testing.assert_allclose(got[i], np.log(np.array(joint) / sum(joint)), atol=1e-10)
    with pytest.raises(ConfigError, match="label units"):
        label_log_probs(rbm, x, 3)


@pytest.fixture(scope="module")
def hopfield_binary():
    energy = layered_hopfield_energy((3, 4, 2))
    params = _random_params(energy, 16, scale=0.7)
    model = BoltzmannMachine(params, energy)
    rng = np.random.default_rng(17)
    x = jnp.asarray(rng.integers(0, 2, size=(5, 3)).astype(float))
    d = jax.nn.one_hot(jnp.asarray(rng.integers(0, 2, size=5)), 2, dtype=jnp.float64)
    return model, x, d


def test_binary_ep_matches_the_gradient_of_the_mean_field_cost(hopfield_binary):
    """Mean-field EP on binary units tends, as beta -> 0, to the gradient of the expected
    cost E_q[C] = 1/2 |m - d|^2 + 1/2 sum m (1 - m) at the free mean-field fixed point
    (checked against central finite differences of that function of the parameters)."""
    from eqdyn.learning import BinaryEP

    model, x, d = hopfield_binary
    mf = MeanField(1e-13, 2000, damping=0.5)

    def expected_cost(params):
        m = model.with_params(params)
        start = tuple(jnp.full((5, n), 0.5) for n in m.state_sizes)
        res = mf.solve(binary_problem(m, start, inputs=(x, d)))
        y = res.states[-1]
        return float(jnp.sum(0.5 * (y - d) ** 2 + 0.5 * y * (1 - y)) / 5)

    grads, stats = jax.jit(lambda m: BinaryEP(1e-4, mf)(m, x, d))(model)
    assert int(stats.free_result) == 0 and int(stats.nudged_result) == 0
    h = 1e-6
    for k, p in enumerate(model.params):
        flat = np.asarray(p).ravel()
        for i in range(0, flat.size, max(1, flat.size // 4)):  # a few entries of each
            up, dn = flat.copy(), flat.copy()
            up[i] += h
            dn[i] -= h
            ps = list(model.params)
            ps[k] = jnp.asarray(up.reshape(p.shape))
            f_up = expected_cost(tuple(ps))
            ps[k] = jnp.asarray(dn.reshape(p.shape))
            fd = (f_up - expected_cost(tuple(ps))) / (2 * h)
            # measured: at most 1.1e-6 off (one-sided beta = 1e-4; entries up to 0.03)
            assert abs(float(np.asarray(grads[k]).ravel()[i]) - fd) < 1e-5, (k, i)


def test_binary_chl_is_the_large_beta_limit_of_ep(hopfield_binary):
    from eqdyn.learning import BinaryCHL, BinaryEP

    model, x, d = hopfield_binary
    chl, _ = BinaryCHL()(model, x, d)
    beta = 200.0
    ep, _ = BinaryEP(beta)(model, x, d)
    err = max(float(jnp.max(jnp.abs(a - beta * b))) for a, b in zip(chl, ep))
    assert err < 1e-9, err  # measured 8.6e-11 (the nudged outputs within exp(-100) of d)
    with pytest.raises(ConfigError, match="not in"):
        BinaryCHL()(model, x, 0.5 * d)


def test_binary_ep_with_a_softmax_readout_matches_the_exact_gradient():
    """Mean-field EP on a binary 4-5-3-3 network with the softmax readout (cost 'cross_entropy':
    h_1, h_2 binary, logits rho(m_2) W_3 + b_3) against the exact gradient of the same
    objective, the cross-entropy at the mean-field fixed point, written by hand in float64 and
    differentiated by jax.grad through 3,000 damped sweeps; and the refusals of the readout
    by block Gibbs and CHL."""
    from eqdyn.learning import BinaryCHL, BinaryEP

    energy = layered_hopfield_energy((4, 5, 3, 3), cost="cross_entropy")
    assert binary_system(energy).mean_field_states == (1,)  # the readout's gap is h_2's
    params = _random_params(energy, 23, scale=0.8)  # (W_1, W_2, b_1, b_2, W_3, b_3)
    model = BoltzmannMachine(params, energy)
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.integers(0, 2, size=(6, 4)).astype(float))
    d = jax.nn.one_hot(jnp.asarray(rng.integers(0, 3, size=6)), 3, dtype=jnp.float64)

    def objective(p):  # independent of the derivation: the gaps written out by hand
        W1, W2, b1, b2, W3, b3 = p

        def sweep(_, m):
            m1, m2 = m
            m1 = 0.5 * m1 + 0.5 * jax.nn.sigmoid(x @ W1 + m2 @ W2.T + b1 - 0.5)
            m2 = 0.5 * m2 + 0.5 * jax.nn.sigmoid(m1 @ W2 + b2 - 0.5)
            return m1, m2

        m1, m2 = jax.lax.fori_loop(0, 3000, sweep, (jnp.full((6, 5), 0.5), jnp.full((6, 3), 0.5)))
        z = m2 @ W3 + b3
        return jnp.sum(jax.nn.logsumexp(z, axis=1) - jnp.sum(d * z, 1)) / 6

    exact = jax.jit(jax.grad(objective))(params)
    mf = MeanField(1e-14, 5000, damping=0.5)
    grads, stats = jax.jit(lambda m: BinaryEP(1e-6, mf)(m, x, d))(model)
    assert int(stats.free_result) == 0 and int(stats.nudged_result) == 0
    assert abs(float(stats.loss) - float(objective(params))) < 1e-12
    err = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(grads, exact))
    scale = max(float(jnp.max(jnp.abs(b))) for b in exact)
    assert scale > 1e-2 and err < 1e-6, (err, scale)  # measured 1.3e-7 (one-sided beta 1e-6)
    with pytest.raises(ConfigError, match="MeanField"):
        BinaryEP(0.1, BlockGibbs(2))(model, x, d, key=jax.random.PRNGKey(0))
    with pytest.raises(ConfigError, match="softmax readout"):
        BinaryCHL()(model, x, d)


def test_record_rbm_run_checks_the_preset_and_the_target(tmp_path):
    """benchmarks/record_rbm_run.py: a run of `--preset sm08-cd25` and its AIS evaluations
    become one record with the gap to Salakhutdinov & Murray's -86.34 nats; a run whose
    settings are not the preset's is refused; the committed record is the preset's run."""
    import json

    from helpers import REPO, load_benchmark

    from eqdyn.cli import rbm_settings

    bench = load_benchmark("record_rbm_run")
    cfg = dict(rbm_settings("sm08-cd25"), data_dir="/data")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "metrics.json").write_text(json.dumps(
        {"history": [{"epoch": e, "loss": 10.0, "seconds": 80.0} for e in (1, 2)]}))
    ev = {"split": "test", "epoch": 2, "log_likelihood": -89.5, "log_z": 540.0}
    (tmp_path / "evaluate.json").write_text(json.dumps(ev))
    other = tmp_path / "seed1"
    other.mkdir()
    (other / "evaluate.json").write_text(json.dumps(dict(ev, log_likelihood=-89.2)))
    out = bench.record(tmp_path, [other])
    assert len(out["evaluations"]) == 2 and out["run_command"] == "eqdyn rbm train --preset sm08-cd25"
    assert abs(out["gap_nats"] - 3.16) < 1e-9 and out["target_met"] is False  # the worst one
    (tmp_path / "evaluate.json").write_text(json.dumps(dict(ev, log_likelihood=-89.0)))
    (other / "evaluate.json").unlink()
    assert bench.record(tmp_path, [other])["target_met"] is True
    (other / "evaluate.json").write_text(json.dumps(dict(ev, epoch=1)))
    with pytest.raises(SystemExit, match="scored epoch 1, but the run ended at epoch 2"):
        bench.record(tmp_path, [other])
    (tmp_path / "config.json").write_text(json.dumps(dict(cfg, weight_decay=0.0)))
    with pytest.raises(SystemExit, match="differ from --preset sm08-cd25 in \\['weight_decay'\\]"):
        bench.record(tmp_path, [])
    committed = json.loads((REPO / "benchmarks/results/rbm_sm08_cd25.json").read_text())
    want = rbm_settings("sm08-cd25")
    assert {k: committed["config"][k] for k in want if k != "data_dir"} == {
        k: v for k, v in want.items() if k != "data_dir"}
