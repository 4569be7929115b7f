"""The leaky formulation with a smooth activation: the continuous Hopfield network (issue 5).

`du/dt = -u + W rho(u) + b` with a softmax readout, the model of Laborieux & Zenke (2022). Checked
in float64 against an independent NumPy iteration of their discrete dynamics
`s <- sigma(dPhi/ds)`, against recurrent backprop (EP's bias orders), and against finite
differences of the loss; plus the block sweeps of its free phase and the refusals.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqdyn._errors import ConfigError
from eqdyn.dynamics import RelaxConfig, relax_core
from eqdyn.learning import EPConfig, ep_gradient, rbp_gradient, resolve_config, train
from eqdyn.models import EnergyModel, compile_system
from eqdyn.symbolic import layered_hopfield_energy

SIZES = (6, 5, 4, 3)
BATCH = 4
TIGHT = RelaxConfig(solver="euler", dt0=0.5, tol=1e-12, t1=4000.0, max_steps=8192,
                    backend="fused", on_failure="raise")

_ep = eqx.filter_jit(ep_gradient)
_rbp = eqx.filter_jit(rbp_gradient)


def _sig(u):  # the steep sigmoid of Laborieux & Zenke: 1 / (1 + exp(-4 u + 2))
    return 1.0 / (1.0 + np.exp(-4.0 * u + 2.0))


@pytest.fixture(scope="module")
def problem():
    energy = layered_hopfield_energy(SIZES, cost="cross_entropy")
    model = EnergyModel(energy, "steep_sigmoid", "leaky", key=jax.random.PRNGKey(0),
                        dtype=jnp.float64)
    rng = np.random.default_rng(4)
    # stronger weights than Glorot: a nontrivial recurrent fixed point
    model = model.with_params(tuple(jnp.asarray(2.0 * p + 0.1 * rng.normal(size=p.shape))
                                    for p in model.params))
    x = jnp.asarray(rng.uniform(size=(BATCH, SIZES[0])))
    d = jnp.asarray(np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], BATCH)])
    return model, x, d, model.init_state(BATCH, jnp.float64)


def _numpy_iteration(model, x, d, beta, n=3000):
    """Laborieux & Zenke's synchronous iteration, written out in NumPy: `h_k <- sigma(dPhi/dh_k)`
    with `Phi = sum_k (h_{k-1} W_k + b_k) . h_k - beta * xent(h_2 W_3 + b_3, d)`."""
    names = model.param_names
    p = {n_: np.asarray(v) for n_, v in zip(names, model.params)}
    x, d = np.asarray(x), np.asarray(d)
    h1, h2 = np.zeros((BATCH, SIZES[1])), np.zeros((BATCH, SIZES[2]))
    for _ in range(n):
        z = h2 @ p["W_3"] + p["b_3"]
        sm = np.exp(z - z.max(1, keepdims=True))
        sm /= sm.sum(1, keepdims=True)
        h1, h2 = (_sig(x @ p["W_1"] + p["b_1"] + h2 @ p["W_2"].T),
                  _sig(h1 @ p["W_2"] + p["b_2"] - beta * (sm - d) @ p["W_3"].T))
    return h1, h2


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_fixed_points_are_those_of_the_discrete_iteration(problem, beta):
    model, x, d, s0 = problem
    res = relax_core(model, x, s0, beta, d, TIGHT)
    rates = model.system.observe(res.states)
    want = _numpy_iteration(model, x, d, beta)
    for got, w in zip(rates, want):
        np.testing.assert_allclose(got, w, atol=1e-9)


def test_rule_and_cost_act_on_the_rates(problem):
    """dF/dW_1 = -x^T s_1 with s_1 = rho(u_1) (not rho(rho(u_1))), the cost on rho(h_2)."""
    model, x, d, s0 = problem
    res = relax_core(model, x, s0, 0.0, d, TIGHT)
    sys = model.system
    s1, s2 = sys.observe(res.states)
    g = dict(zip(model.param_names, sys.param_grads(res.states, model.params, model.inputs(x, d))))
    np.testing.assert_allclose(g["W_1"], -np.asarray(x).T @ np.asarray(s1), atol=1e-12)
    np.testing.assert_allclose(g["W_2"], -np.asarray(s1).T @ np.asarray(s2), atol=1e-12)
    p = dict(zip(model.param_names, model.params))
    z = np.asarray(s2) @ np.asarray(p["W_3"]) + np.asarray(p["b_3"])
    ce = np.sum(np.log(np.sum(np.exp(z), 1)) - np.sum(np.asarray(d) * z, 1))
    np.testing.assert_allclose(sys.cost(res.states, model.params, model.inputs(x, d)), ce,
                               rtol=1e-12)


def _rel(a, b):
    a = np.concatenate([np.ravel(v) for v in a])
    b = np.concatenate([np.ravel(v) for v in b])
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def rbp(problem):
    model, x, d, s0 = problem
    g, aux = _rbp(model, x, d, s0, TIGHT)
    assert bool(aux.adjoint_converged)
    return g


def test_rbp_matches_finite_differences_of_the_loss(problem, rbp):
    model, x, d, s0 = problem
    k = model.param_names.index("W_2")
    direction = np.random.default_rng(0).normal(size=model.params[k].shape)

    def loss(eps):
        params = list(model.params)
        params[k] = params[k] + eps * direction
        m = model.with_params(tuple(params))
        res = relax_core(m, x, s0, 0.0, d, TIGHT)
        return float(m.system.cost(res.states, m.params, m.inputs(x, d))) / BATCH

    h = 1e-5
    fd = (loss(h) - loss(-h)) / (2 * h)
    np.testing.assert_allclose(np.vdot(rbp[k], direction), fd, rtol=1e-6)


@pytest.mark.parametrize("variant, slope", [("one-sided", 1.0), ("symmetric", 2.0)])
def test_ep_converges_to_rbp_at_its_order(problem, rbp, variant, slope):
    model, x, d, s0 = problem
    betas = np.array([0.04, 0.02, 0.01])
    errs = [_rel(_ep(model, x, d, s0, EPConfig(beta=float(b), variant=variant, free=TIGHT,
                                                nudged=TIGHT))[0], rbp) for b in betas]
    fit = np.polyfit(np.log(betas), np.log(errs), 1)[0]
    assert abs(fit - slope) < 0.2, (errs, fit)


def test_holomorphic_ep_is_exact_at_finite_beta(problem, rbp):
    model, x, d, s0 = problem
    g, _ = _ep(model, x, d, s0, EPConfig(beta=0.1, variant="holomorphic", n_points=8,
                                         free=TIGHT, nudged=TIGHT))
    assert _rel(g, rbp) < 1e-6


def test_block_sweeps_reach_the_free_fixed_point_in_fewer_sweeps(problem):
    model, x, d, s0 = problem
    euler = relax_core(model, x, s0, 0.0, d, TIGHT)
    blocks = relax_core(model, x, s0, 0.0, d, RelaxConfig(tol=1e-12, t1=4000.0,
                                                          backend="blocks"))
    assert bool(blocks.converged)
    assert int(blocks.steps) < int(euler.steps) / 2, (int(blocks.steps), int(euler.steps))
    for a, b in zip(blocks.states, euler.states):
        np.testing.assert_allclose(a, b, atol=1e-10)
    # the softmax readout couples the last hidden layer to itself once nudged: no closed form
    with pytest.raises(ConfigError, match="'h_2' is not `-alpha u"):
        relax_core(model, x, s0, 0.3, d, RelaxConfig(tol=1e-9, backend="blocks"))


def test_the_lyapunov_energy_never_increases(problem):
    """`system.energy` of the continuous Hopfield network adds `sum int rho^{-1} - 1/2 |s|^2`:
    along the Euler trajectory and the block sweeps it never increases (the energy at the
    rates with rho the identity alone rises by ~1e-2 early on)."""
    from eqdyn.dynamics import trajectory

    model, x, d, s0 = problem
    sys_, inputs = model.system, model.inputs(x, d)
    tr = trajectory(model, x, s0, jnp.linspace(0.0, 30.0, 120))
    e = jax.vmap(lambda st: sys_.energy(st, model.params, inputs, 0.0))(tr.states)
    assert float(jnp.max(jnp.diff(e))) < 1e-10
    assert float(e[-1]) < float(e[0]) - 1.0
    u = s0
    prev = float(sys_.energy(u, model.params, inputs, 0.0))
    for _ in range(6):  # one block sweep at a time from where the last ended
        u = relax_core(model, x, u, 0.0, d, RelaxConfig(tol=1e-300, t1=1.0, backend="blocks")).states
        cur = float(sys_.energy(u, model.params, inputs, 0.0))
        assert cur <= prev + 1e-10
        prev = cur


def test_relax_and_jit_first_use(problem):
    """`eqdyn.relax` at beta 0 takes the free-phase blocks; a model first compiled inside a
    trace passes the formulation check (it runs at compile time)."""
    from eqdyn.dynamics import relax

    model, x, d, s0 = problem
    res = relax(model, x, config=RelaxConfig(tol=1e-10, t1=2000.0, backend="blocks"))
    ref = relax_core(model, x, s0, 0.0, d, TIGHT)
    for a, b in zip(res.states, ref.states):
        np.testing.assert_allclose(a, b, atol=1e-8)
    fresh = EnergyModel(layered_hopfield_energy((5, 4, 4, 2), cost="cross_entropy"),
                        "steep_sigmoid", "leaky", key=jax.random.PRNGKey(3), dtype=jnp.float64)
    xs = jnp.ones((2, 5))
    out = eqx.filter_jit(relax_core)(fresh, xs, fresh.init_state(2, jnp.float64), 0.0, None,
                                     RelaxConfig(backend="fused", t1=5.0))
    assert out.states[0].shape == (2, 4)


def test_a_cost_on_the_raw_output_potential_is_refused():
    energy = layered_hopfield_energy((4, 3, 2))  # squared error on the output state y
    with pytest.raises(ConfigError, match="state `y` with the cost switched on.*cross_entropy"):
        compile_system(energy, "sigmoid", "leaky")
    # the hard sigmoid keeps its leaky default, and smooth activations their gradient default
    assert compile_system(energy, "hard_sigmoid").formulation == "leaky"
    assert compile_system(energy, "sigmoid").formulation == "gradient"
    with pytest.raises(ConfigError, match="needs a cost that acts on the rates"):
        resolve_config(activation="sigmoid", formulation="leaky", arch="64-32-10")
    with pytest.raises(ConfigError, match="`cost`='nope' is not known"):
        resolve_config(cost="nope")
    with pytest.raises(ConfigError, match="reads the output out of the last hidden layer"):
        resolve_config(cost="cross_entropy", arch="64-10")
    with pytest.raises(ConfigError, match="`algo`='chl' needs the output layer to be a state"):
        resolve_config(cost="cross_entropy", algo="chl", arch="64-32-10")
    with pytest.raises(ConfigError, match="only the free phase has closed-form blocks"):
        resolve_config("lz22-mnist", nudged_backend="blocks")
    from eqdyn.models import LayeredHopfield

    with pytest.raises(ConfigError, match="EnergyModel\\(layered_hopfield_energy"):
        LayeredHopfield((4, 3, 2), "sigmoid", "leaky", key=jax.random.PRNGKey(0))


def test_lz22_presets_resolve():
    cfg = resolve_config("lz22-mnist")
    assert (cfg.arch, cfg.activation, cfg.formulation, cfg.cost) == (
        "784-256-256-10", "steep_sigmoid", "leaky", "cross_entropy")
    assert (cfg.variant, cfg.beta, cfg.lr, cfg.batch_size, cfg.epochs) == (
        "one-sided", 0.1, (0.05,), 20, 50)
    holo = resolve_config("lz22-mnist-holo")
    assert (holo.variant, holo.beta, holo.n_points) == ("holomorphic", 0.4, 10)


def test_the_continuous_hopfield_network_learns_digits():
    """Two epochs of the lz22 settings on the bundled digits (measured: 0.78; chance 0.1)."""
    cfg = resolve_config("lz22-mnist", dataset="digits", arch="64-32-32-10", epochs=2,
                         val_size=None, lr=(0.1,))
    m = train(cfg, progress=None)
    assert m["test_accuracy"] > 0.6, m["test_accuracy"]
    assert m["history"][-1]["free_converged"] == 1.0
