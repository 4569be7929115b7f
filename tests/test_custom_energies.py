"""Custom energies end to end: derivation vs independent references, errors, models, training.

References, all in float64:

- hand-written `jnp` energies for each variant (lateral weights, skip connections, softmax
  cross-entropy readout, time constants), differentiated by `jax.grad`;
- the STDP form `d/dt dF/dtheta` against `jax.jvp` of the derived `dF/dtheta`;
- the matrix-calculus rules against SymPy's scalar `diff` of the energy written out entry by
  entry on small explicit matrices (compared symbolically, never as printed strings).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

import eqdyn
from eqdyn import ConfigError, DerivationError
from eqdyn.learning import EPConfig, ep_gradient, rbp_gradient
from eqdyn.models import (Activation, EnergyModel, check_derivation, compile_system, load_energy_file,
                          param_groups)
from eqdyn.symbolic import BATCH, Energy, derive, layered_hopfield_energy
from eqdyn.symbolic import terms as T
from eqdyn.symbolic._calculus import trace_gradient

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "derivations" / "energies" / "lateral_skip_ce.py"

_U = sp.Symbol("u")
SOFTPLUS = Activation.from_sympy("softplus_test", sp.log(1 + sp.exp(_U)))
ACTS = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
}


def reference_energy(sizes, *, cost="squared_error", lateral=(), skip=(), rho):
    """`F` of `layered_hopfield_energy(sizes, ...)`, written by hand in `jnp` (params by name)."""
    L = len(sizes) - 1
    n_states = L if cost == "squared_error" else L - 1

    def F(states, params, inputs, beta):
        x, d = inputs
        layers = [x, *states]
        act = [x] + [rho(s) for s in states]
        e = sum(0.5 * jnp.sum(s**2) for s in states)
        for k in range(1, n_states + 1):
            e -= jnp.sum((act[k - 1] @ params[f"W_{k}"]) * act[k])
            e -= jnp.sum(params[f"b_{k}"] * act[k])
        for k in lateral:
            e -= 0.5 * jnp.sum((act[k] @ params[f"L_{k}"]) * act[k])
        for i, j in skip:
            e -= jnp.sum((act[i] @ params[f"S_{i}_{j}"]) * act[j])
        if cost == "squared_error":
            c = 0.5 * jnp.sum((layers[-1] - d) ** 2)
        else:
            z = act[-1] @ params[f"W_{L}"] + params[f"b_{L}"]
            c = jnp.sum(jax.nn.logsumexp(z, axis=1) - jnp.sum(d * z, axis=1))
        return e + beta * c

    return F


def _by_name(energy, fn):
    names = [p.name for p in energy.params]
    return lambda st, pr, inputs, beta: fn(st, dict(zip(names, pr)), inputs, beta)


VARIANTS = [
    dict(),
    dict(lateral=(1,)),
    dict(skip=((0, 2),)),
    dict(cost="cross_entropy"),
    dict(cost="cross_entropy", lateral=(1, 2), skip=((0, 2),)),
]


def _sweep(n_cases=8, seed=0):
    """Seeded sizes and depths (1-3 hidden layers, widths 1-7) for every variant."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n_cases):
        variant = VARIANTS[i % len(VARIANTS)]
        n_hidden = int(rng.integers(2 if (variant.get("skip") or variant.get("lateral") == (1, 2)
                                          or variant.get("cost")) else 1, 4))
        sizes = tuple(int(v) for v in rng.integers(1, 8, size=n_hidden + 2))
        act = ["sigmoid", "tanh", "softplus"][i % 3]
        cases.append((sizes, variant, act))
    return cases


@pytest.mark.parametrize("sizes, variant, act", _sweep())
def test_derived_gradients_match_handwritten_energies(sizes, variant, act):
    energy = layered_hopfield_energy(sizes, **variant)
    activation = SOFTPLUS if act == "softplus" else act
    system = compile_system(derive(energy), activation, "gradient")
    ref = _by_name(energy, reference_energy(sizes, **variant, rho=ACTS[act]))
    err = check_derivation(system, ref, batch=3, seed=len(sizes))
    assert err["max"] < 1e-10, err


@pytest.mark.parametrize("tau", [(1, 1, 1), (2.0, 0.5, 3.0)])
def test_time_constants_scale_the_field_not_the_fixed_points(tau):
    energy = layered_hopfield_energy((3, 4, 3, 2), tau=tau)
    system = compile_system(derive(energy), "tanh", "gradient")
    err = check_derivation(system, _by_name(energy, reference_energy((3, 4, 3, 2), rho=jnp.tanh)))
    assert err["max"] < 1e-10 and err["field"] < 1e-12, err
    assert system.tau == tuple(float(t) for t in tau)
    text = "\n".join(system.derivation.equations_text())
    if tau[1] != 1:
        assert "1/2 dh_2/dt" in text and "3 dy/dt" in text and "2 dh_1/dt" in text


def test_time_constants_slow_a_linear_relaxation_exactly():
    # F = 1/2 |s|^2 - x W s^T with identity activation: s(t) = s* (1 - exp(-t / tau))
    ident = Activation.from_sympy("identity_test", _U)
    x, s, d = T.layer("x", 2), T.layer("s", 2), T.layer("d", 2)
    W = T.weight("W", 2, 2)
    e = Energy(internal=(T.leak(s), T.coupling(x, W, s, pre_raw=True)),
               cost=(T.squared_error(s, d),), states=(s,), params=(W,), inputs=(x, d),
               scalars=(T.BETA,), tau=(4,))
    model = EnergyModel(e, ident, "gradient", params=(jnp.asarray([[1.0, 0.5], [0.0, 2.0]]),))
    xv = jnp.asarray([[1.0, -1.0]])
    cfg = eqdyn.RelaxConfig(solver="tsit5", t1=2.0, tol=1e-12, rtol=1e-10, atol=1e-12,
                            on_failure="ignore", max_steps=10_000)
    res = eqdyn.relax(model, xv, config=cfg)
    s_star = xv @ model.params[0]
    np.testing.assert_allclose(res.states[0], s_star * (1 - np.exp(-2.0 / 4)), rtol=1e-7)


# ----------------------------------------------------------------- symbolic references


def _explicit_scalar(term, n_batch=2):
    t = term.subs(BATCH, n_batch)
    return t.replace(lambda e: isinstance(e, sp.Trace), lambda e: e.arg.as_explicit().trace())


def _explicit_gradient(term, X, n_batch=2):
    f = _explicit_scalar(term, n_batch)
    Xs = X.subs(BATCH, n_batch)
    r, c = (int(v) for v in Xs.shape)
    return sp.Matrix(r, c, lambda i, j: sp.diff(f, Xs[i, j]))


def test_matrix_rules_equal_entrywise_sympy_derivatives():
    """Every term of a lateral + skip + cross-entropy energy, every state and parameter."""
    e = layered_hopfield_energy((2, 2, 2, 2), cost="cross_entropy", lateral=(1,), skip=[(0, 2)])
    checked = 0
    for term in e.terms:
        for X in (*e.states, *e.params):
            g = trace_gradient(term, X)
            ref = _explicit_gradient(term, X)
            mine = sp.zeros(*ref.shape) if g is None else g.subs(BATCH, 2).as_explicit()
            diff = (mine - ref).applyfunc(lambda v: sp.simplify(v.doit()))
            assert diff == sp.zeros(*ref.shape), (term, X, diff)
            checked += g is not None
    assert checked >= 15


# ----------------------------------------------------------------- errors


def test_gradient_that_cancels_where_the_symbol_occurs_raises():
    h, W = T.layer("h", 3), T.weight("W", 3, 3)
    e = Energy(internal=(T.leak(h), sp.Trace(h * W * h.T) - sp.Trace(h * W.T * h.T)),
               cost=(), states=(h,), params=(W,))
    with pytest.raises(DerivationError, match="`W` occurs in .*identically zero"):
        derive(e)


def test_product_of_traces_is_refused_naming_the_term():
    h, W = T.layer("h", 3), T.weight("W", 3, 3)
    e = Energy(internal=(T.leak(h), sp.Trace(h * W * h.T) * sp.Trace(h * h.T)), cost=(),
               states=(h,), params=(W,))
    with pytest.raises(DerivationError, match="multiplies 2 traces"):
        derive(e)


def test_unbound_function_and_missing_derivative_are_refused():
    phi = sp.Function("phi")
    x, h, d = T.layer("x", 2), T.layer("h", 3), T.layer("d", 3)
    W = T.weight("W", 2, 3)
    e = Energy(internal=(T.leak(h), -sp.Trace(x * W * T.act(h, phi).T)),
               cost=(T.squared_error(h, d),),
               states=(h,), params=(W,), inputs=(x, d), scalars=(T.BETA,))
    assert e.function_names == ("phi",)
    with pytest.raises(ConfigError, match=r"binds \['rho'\], which `energy` does not use"):
        compile_system(derive(e), {"rho": "sigmoid"})
    with pytest.raises(ConfigError, match=r"does not bind \['phi'\]"):
        compile_system(derive(e), {})
    with pytest.raises(ConfigError, match="has no derivative `d1`"):
        Activation("no_derivative", jnp.tanh, None)
    system = compile_system(derive(e), {"phi": "tanh"}, "gradient")
    assert check_derivation(system)["max"] < 1e-12


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tau=(1, 2)), "has 2 entries but there are 1 states"),
        (dict(tau=(-1,)), "must be positive numbers"),
        (dict(output=T.weight("W", 2, 3)), "one row per example"),
        (dict(output=T.layer("zz", 3)), "neither a state, a parameter nor an input"),
    ],
)
def test_bad_time_constants_and_outputs(kwargs, match):
    x, h, d = T.layer("x", 2), T.layer("h", 3), T.layer("d", 3)
    W = T.weight("W", 2, 3)
    with pytest.raises(DerivationError, match=match):
        Energy(internal=(T.leak(h), T.coupling(x, W, h, pre_raw=True)),
               cost=(T.squared_error(h, d),), states=(h,), params=(W,), inputs=(x, d),
               scalars=(T.BETA,), **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(cost="hinge"), "`cost`='hinge' is not known"),
        (dict(lateral=(2,)), "lateral weights join units within a hidden layer"),
        (dict(skip=((0, 1),)), "must join layers"),
    ],
)
def test_bad_layered_options(kwargs, match):
    with pytest.raises(DerivationError, match=match):
        layered_hopfield_energy((4, 3, 2), **kwargs)


def test_cross_entropy_needs_a_hidden_layer():
    with pytest.raises(DerivationError, match="at least one hidden layer"):
        layered_hopfield_energy((4, 2), cost="cross_entropy")


# ----------------------------------------------------------------- activations


def test_activation_from_sympy_matches_autodiff_and_trains_models():
    x = jnp.linspace(-3, 3, 13)
    np.testing.assert_allclose(SOFTPLUS.fn(x), jax.nn.softplus(x), atol=1e-12)
    np.testing.assert_allclose(SOFTPLUS.d1(x), jax.vmap(jax.grad(jax.nn.softplus))(x), atol=1e-12)
    np.testing.assert_allclose(SOFTPLUS.d2(x), jax.vmap(jax.grad(jax.grad(jax.nn.softplus)))(x),
                               atol=1e-12)
    hs = Activation.from_sympy("hard_sigmoid_sympy", sp.Min(sp.Max(_U, 0), 1), projection=True,
                               bounds=(0.0, 1.0))
    u = jnp.asarray([-1.0, 0.25, 0.75, 2.0])
    np.testing.assert_array_equal(hs.fn(u), jnp.clip(u, 0, 1))
    np.testing.assert_array_equal(hs.d1(u), jnp.asarray([0.0, 1.0, 1.0, 0.0]))
    with pytest.raises(ConfigError, match="free symbols"):
        Activation.from_sympy("two_vars", _U * sp.Symbol("a"))


def test_registered_activation_works_by_name_everywhere(tmp_path):
    act = Activation.from_sympy("softsign_test", _U / (1 + sp.Abs(_U)))
    eqdyn.register_activation(act, overwrite=True)
    model = eqdyn.LayeredHopfield((4, 3, 2), "softsign_test", key=jax.random.PRNGKey(0),
                                  dtype=jnp.float64)
    err = check_derivation(model.system if model.formulation == "gradient" else compile_system(
        derive(layered_hopfield_energy((4, 3, 2))), "softsign_test", "gradient"))
    assert err["max"] < 1e-10
    res = eqdyn.relax(model, jnp.ones((2, 4)), config=eqdyn.RelaxConfig(solver="tsit5"))
    assert bool(res.converged)


# ----------------------------------------------------------------- models and learning


def test_energy_model_layout_and_parameter_checks(key):
    e = layered_hopfield_energy((5, 4, 3, 2), cost="cross_entropy", lateral=(1,))
    m = EnergyModel(e, "sigmoid", key=key, dtype=jnp.float64)
    assert m.state_sizes == (4, 3) and m.input_size == 5 and m.n_outputs == 2
    assert m.param_names == ("W_1", "W_2", "b_1", "b_2", "W_3", "b_3", "L_1")
    assert m.lr_groups == (0, 1, 0, 1, 2, 2, 0) and not m.output_is_state
    assert m.output(m.init_state(6), jnp.zeros((6, 5))).shape == (6, 2)
    with pytest.raises(ConfigError, match=r"`params\['W_1'\]` has shape \(4, 4\)"):
        EnergyModel(e, "sigmoid", params={p.name: jnp.zeros((4, 4)) for p in e.params})
    with pytest.raises(ConfigError, match="missing"):
        EnergyModel(e, "sigmoid", params={"W_1": jnp.zeros((5, 4))})
    with pytest.raises(ConfigError, match="`key` is required"):
        EnergyModel(e, "sigmoid")
    with pytest.raises(ConfigError, match="contrastive Hebbian learning clamps the output"):
        from eqdyn.learning import chl_gradient

        chl_gradient(m, jnp.zeros((2, 5)), jnp.eye(2), m.init_state(2))


def test_default_init_zeroes_biases_and_lateral_weights(key):
    e = layered_hopfield_energy((5, 4, 3, 2), lateral=(1, 2), skip=((0, 2),))
    params = dict(zip((p.name for p in e.params), eqdyn.models.glorot_init(key, e)))
    for name in ("b_1", "b_2", "b_3", "L_1", "L_2"):
        assert not np.any(params[name]), name
    for name in ("W_1", "W_2", "W_3", "S_0_2"):
        lim = np.sqrt(6 / sum(params[name].shape))
        assert np.all(np.abs(params[name]) <= lim) and np.std(params[name]) > lim / 4, name


def test_param_groups_follow_trailing_numbers():
    assert param_groups(["W_1", "W_2", "b_1", "b_2"]) == (0, 1, 0, 1)
    assert param_groups(["W_1", "W_out", "L", "b_1", "W_out"]) == (0, 1, 2, 0, 1)


@pytest.mark.parametrize("variant", [dict(cost="cross_entropy"), dict(lateral=(1,), skip=((0, 2),))])
def test_symmetric_ep_matches_recurrent_backprop_on_custom_energies(variant):
    """EP's estimate (with the readout's beta dC/dtheta) tends to the exact gradient."""
    sizes = (4, 5, 3, 2)
    e = layered_hopfield_energy(sizes, **variant)
    m = EnergyModel(e, "sigmoid", "gradient", key=jax.random.PRNGKey(3), dtype=jnp.float64)
    m = m.with_params(tuple(2.0 * p if p.shape[0] > 1 else p + 0.1 for p in m.params))
    x = jax.random.uniform(jax.random.PRNGKey(4), (3, 4), jnp.float64)
    d = jax.nn.one_hot(jnp.asarray([0, 1, 1]), 2, dtype=jnp.float64)
    # fused Euler to a residual of 1e-11 (40 steps... 2,000 at most): the same fixed point as
    # Tsit5 at a fraction of its compile time
    tight = eqdyn.RelaxConfig(solver="euler", backend="fused", dt0=0.5, tol=1e-11, t1=20000.0,
                              max_steps=40000, on_failure="raise")
    s0 = m.init_state(3, jnp.float64)
    g_rbp, aux = rbp_gradient(m, x, d, s0, tight)
    assert bool(aux.converged) and bool(aux.adjoint_converged)
    g_ep, ep_aux = ep_gradient(m, x, d, s0, EPConfig(beta=1e-3, variant="symmetric", free=tight,
                                                     nudged=tight))
    assert bool(ep_aux.free_converged) and bool(ep_aux.nudged_converged)
    for a, b, name in zip(g_ep, g_rbp, m.param_names):
        scale = float(jnp.max(jnp.abs(b))) + 1e-12
        # measured 2026-12-07: at most 2.6e-7 (cross-entropy) and 9.2e-7 (lateral and skip)
        assert float(jnp.max(jnp.abs(a - b))) / scale < 5e-6, name
    # the readout weights have a non-zero gradient only through the cost's beta dC/dtheta
    if variant.get("cost") == "cross_entropy":
        assert float(jnp.max(jnp.abs(g_ep[m.param_names.index("W_3")]))) > 1e-3


# ----------------------------------------------------------------- energy files and CLI


def test_energy_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="is not a file"):
        load_energy_file(tmp_path / "missing.py")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="defines neither `energy` nor `ENERGY`"):
        load_energy_file(empty)
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="failed to run: RuntimeError: boom"):
        load_energy_file(broken)
    wrong = tmp_path / "wrong.py"
    wrong.write_text("def energy(sizes):\n    return 3\n")
    with pytest.raises(ConfigError, match="gave int, not an eqdyn.symbolic.Energy"):
        load_energy_file(wrong, (4, 3, 2))
    with pytest.raises(ConfigError, match="failed to run|raised ValueError"):
        load_energy_file(EXAMPLE, (4, 3, 2))  # the example needs two hidden layers


def test_example_energy_file_derives_and_checks_from_the_cli():
    out = subprocess.run(
        [sys.executable, "-m", "eqdyn.cli", "derive", "--energy", str(EXAMPLE), "--arch",
         "6-5-4-3", "--check", "--stdp", "--latex"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert r"2 \, \frac{d h_{2}}{dt}" in out.stdout
    assert r"\operatorname{softmax}" in out.stdout and "-> OK" in out.stdout


def test_train_custom_energy_file_learns_digits(tmp_path):
    from eqdyn.learning import resolve_config, train

    cfg = resolve_config(dataset="digits", energy=str(EXAMPLE), arch="64-32-16-10", epochs=2,
                         lr=0.1, seed=0)
    assert cfg.activation is None  # the file's own ("sigmoid")
    metrics = train(cfg, run_dir=tmp_path / "run", progress=None)
    assert metrics["test_accuracy"] > 0.5  # chance is 0.1; 2 epochs reach ~0.8
    assert (tmp_path / "run" / "metrics.json").exists()
    with pytest.raises(ConfigError, match="form 3 groups"):
        resolve_config(dataset="digits", energy=str(EXAMPLE), arch="64-32-16-10", lr="0.1,0.2")


def test_resuming_a_custom_energy_run_refuses_a_changed_file(tmp_path):
    from eqdyn import CheckpointError
    from eqdyn.learning import resolve_config, train

    src = tmp_path / "lateral.py"
    src.write_text("from eqdyn.symbolic import layered_hopfield_energy\n\n"
                   "def energy(sizes):\n    return layered_hopfield_energy(sizes, lateral=(1,))\n")
    cfg = resolve_config(dataset="digits", energy=str(src), arch="64-16-10", epochs=1, lr=0.05,
                         seed=1)
    assert cfg.activation is None  # the file names none: hard sigmoid, leaky formulation
    m1 = train(cfg, run_dir=tmp_path / "run", progress=None)
    assert (tmp_path / "run" / "energy.py").read_text() == src.read_text()
    assert m1["test_accuracy"] > 0.15  # one epoch of a 16-unit net; chance is 0.1
    src.write_text(src.read_text().replace("lateral=(1,)", "lateral=()"))
    cfg2 = resolve_config(dataset="digits", energy=str(src), arch="64-16-10", epochs=2, lr=0.05,
                          seed=1)
    with pytest.raises(CheckpointError, match="has changed since this run started"):
        train(cfg2, run_dir=tmp_path / "run", resume=True, progress=None)
