"""Cross-check eqdyn's EP step against the independent NumPy reference (benchmarks/numpy_reference.py).

Everything runs in float64 (tests/conftest.py enables x64), on a small 20-15-10 network with
random data, so the two implementations must agree to rounding: same step counts, same free
states, same gradients and the same parameters after training steps with persistent particles.
"""

from __future__ import annotations

import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from numpy_reference import NumpyEP, one_hot, time_grid  # noqa: E402

from eqdyn.dynamics import RelaxConfig  # noqa: E402
from eqdyn.learning import EP, EPConfig, TrainConfig, ep_gradient, make_optimizer  # noqa: E402
from eqdyn.training import train_chunk  # noqa: E402
from eqdyn.models import LayeredHopfield  # noqa: E402

SIZES = (20, 15, 10)
B = 8
TOL = 1e-10


def _problem(seed: int, n: int = B, scale: float = 1.0, sizes=SIZES):
    """Weights large enough that some units saturate, inputs in [0, 1], one-hot targets."""
    rng = np.random.default_rng(seed)
    weights = [scale * rng.uniform(-1, 1, (a, b)) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [0.3 * rng.standard_normal((1, m)) for m in sizes[1:]]
    x = rng.uniform(0, 1, (n, sizes[0]))
    labels = rng.integers(0, sizes[-1], n)
    return weights, biases, x, labels


def _models(weights, biases, sizes=SIZES, **kw):
    model = LayeredHopfield(sizes, key=jax.random.PRNGKey(0), weights=[jnp.asarray(w) for w in weights],
                            biases=[jnp.asarray(b) for b in biases])
    ref = NumpyEP(sizes, weights, biases, dtype=np.float64, **kw)
    return model, ref


def _relax_cfg(tol, t1, backend="diffrax"):
    return RelaxConfig(solver="euler", dt0=0.5, tol=tol, t1=t1, max_steps=4096, on_failure="ignore",
                       backend=backend)


def test_float64_is_on():
    assert jnp.zeros(1).dtype == jnp.float64


def test_time_grid_matches_diffrax():
    """diffrax's ConstantStepSize grid: uniform dt0 if t1 is a multiple of it, else uneven."""
    import diffrax

    for dtype in (np.float32, np.float64):
        g = time_grid(50.0, 0.5, dtype)
        assert g.dtype == dtype and g.shape == (100,) and np.all(g == 0.5)
    t1 = 7.3

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, a: -y), diffrax.Euler(), 0.0, t1, 0.5, jnp.ones(1),
        saveat=diffrax.SaveAt(steps=True), stepsize_controller=diffrax.ConstantStepSize(),
    )
    ts = np.asarray(sol.ts)
    ts = ts[np.isfinite(ts)]
    steps = np.diff(np.concatenate([[0.0], ts]))
    grid = time_grid(t1, 0.5, np.float64)
    assert grid.shape == steps.shape
    # first step dt0, then about t1 / n; XLA's rounding of t_k may differ by an ulp
    np.testing.assert_allclose(grid, steps, rtol=0, atol=1e-14)
    assert grid.shape == (15,) and grid[0] == 0.5 and np.all(grid[1:] < 0.5)


# One jitted EP estimate, one configuration: every distinct configuration costs a compilation.
_ep_jit = eqx.filter_jit(ep_gradient)

#: random sign with beta = 0.5 (so that the 1/(beta B) scale is tested, and with both signs),
#: converging free phases (tol 1e-6 within t1 = 50), and a nudged horizon t1 = 7.3 that is no
#: multiple of dt0 (diffrax's uneven time grid; at most 15 steps, so it often runs out).
BETA = 0.5
CFG = EPConfig(beta=BETA, variant="random-sign", free=_relax_cfg(1e-6, 50.0),
               nudged=_relax_cfg(1e-6, 7.3))


def _reference(weights, biases, **kw):
    return _models(weights, biases, beta=BETA, tol=1e-6, free_t1=50.0, nudged_t1=7.3, **kw)


def _compare(model, ref, x, d, s0, key):
    """eqdyn's jitted `ep_gradient` vs `NumpyEP.ep_gradient` with the sign eqdyn draws."""
    grads, aux = _ep_jit(model, jnp.asarray(x), jnp.asarray(d), tuple(jnp.asarray(s) for s in s0),
                         CFG, key=key)
    sign = 1.0 if bool(jax.random.bernoulli(key)) else -1.0  # eqdyn: +beta where True
    g_ref, a_ref = ref.ep_gradient(x, d, s0, sign)
    assert int(aux.free_steps) == a_ref["free_steps"]
    assert int(aux.nudged_steps) == a_ref["nudged_steps"]
    for a, b in zip(aux.free_states, a_ref["free_states"]):
        np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=TOL)
    assert len(grads) == len(g_ref) == 2 * (len(SIZES) - 1)
    for a, b in zip(grads, g_ref):
        assert a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=TOL)
    assert float(aux.loss) == pytest.approx(a_ref["loss"], abs=TOL)
    assert int(aux.correct) == a_ref["correct"]
    return g_ref, a_ref, sign


def test_ep_gradient_matches_numpy():
    """Zero and warm (random) starts, both signs of beta: same steps, states and gradients."""
    signs = set()
    for seed in range(4):
        weights, biases, x, labels = _problem(seed)
        d = one_hot(labels, SIZES[-1], np.float64)
        model, ref = _reference(weights, biases)
        rng = np.random.default_rng(100 + seed)
        warm = seed % 2 == 1
        s0 = [rng.uniform(-0.5, 1.5, (B, n)) if warm else np.zeros((B, n)) for n in SIZES[1:]]
        g_ref, a_ref, sign = _compare(model, ref, x, d, s0, jax.random.PRNGKey(seed))
        signs.add(sign)
        assert 0 < a_ref["free_steps"] < 100  # converged within the horizon
        assert 0 < a_ref["nudged_steps"] <= 15
        # not trivially zero, and some units saturate while others do not
        assert max(float(np.max(np.abs(g))) for g in g_ref) > 1e-3
        u = np.concatenate([a.ravel() for a in a_ref["free_states"]])
        assert np.any((u < 0) | (u > 1)) and np.any((u > 0) & (u < 1))
    assert signs == {1.0, -1.0}, "choose seeds whose keys draw both signs"


def test_horizon_reached_matches_numpy():
    """Strong weights: the free phase does not reach tol by t1 = 50 and stops after 100 steps."""
    weights, biases, x, labels = _problem(0, scale=2.0)
    d = one_hot(labels, SIZES[-1], np.float64)
    model, ref = _reference(weights, biases)
    _, a_ref, _ = _compare(model, ref, x, d, ref.init_state(B), jax.random.PRNGKey(1))
    assert a_ref["free_steps"] == 100


def test_steady_initial_state_takes_zero_steps():
    """diffrax checks the event on the initial state: an equilibrium start takes no step."""
    weights, biases, x, labels = _problem(4)
    d = one_hot(labels, SIZES[-1], np.float64)
    model, ref = _reference(weights, biases)
    u, steps = ref.relax(x, ref.init_state(B), d, 0.0, 200.0, tol=1e-9)
    assert steps > 0
    _, a_ref, _ = _compare(model, ref, x, d, u, jax.random.PRNGKey(0))
    assert a_ref["free_steps"] == 0 and a_ref["nudged_steps"] > 0


def test_negative_unit_beta_settles_on_the_box():
    """With beta = -1 (the sb17 presets' negative draws) du_L/dt = -(1 + beta) u_L + ... has no
    leak, so u_L drifts at constant speed; rho(u_L) sits at 0 or 1, and the projected residual
    (which ignores potentials past a bound moving outwards) reaches the tolerance. eqdyn and
    the NumPy reference agree on the steps and the states."""
    weights, biases, x, labels = _problem(2)
    d = one_hot(labels, SIZES[-1], np.float64)
    model, ref = _reference(weights, biases)
    ref = NumpyEP(SIZES, weights, biases, dtype=np.float64, beta=1.0, tol=1e-6)
    cfg = EPConfig(beta=1.0, variant="random-sign", free=_relax_cfg(1e-6, 50.0),
                   nudged=_relax_cfg(1e-6, 50.0))
    s0 = tuple(jnp.asarray(s) for s in ref.init_state(B))
    for sign in (+1.0, -1.0):
        g_ref, a_ref = ref.ep_gradient(x, d, ref.init_state(B), sign)
        assert a_ref["nudged_steps"] < 100
        # the first key whose draw is this sign (eqdyn: +beta where bernoulli is True)
        key = next(k for k in map(jax.random.PRNGKey, range(20))
                   if bool(jax.random.bernoulli(k)) == (sign > 0))
        grads, aux = _ep_jit(model, jnp.asarray(x), jnp.asarray(d), s0, cfg, key=key)
        assert int(aux.free_steps) == a_ref["free_steps"]
        assert int(aux.nudged_steps) == a_ref["nudged_steps"]
        for a, b in zip(grads, g_ref):
            np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=TOL)
    u_free, _ = ref.relax(x, ref.init_state(B), d, 0.0, 50.0)
    u_minus, _ = ref.relax(x, u_free, d, -1.0, 50.0)
    y = np.clip(u_minus[-1], 0.0, 1.0)
    assert np.all((y == 0.0) | (y == 1.0))  # the output of a linear energy sits on the box


@pytest.mark.parametrize("backend,sizes,beta", [("diffrax", SIZES, 1.0), ("blocks", SIZES, 1.0),
                                                ("blocks", (20, 15, 12, 11, 10), 2.0)])
def test_training_steps_with_persistent_particles_match(backend, sizes, beta):
    """Two chunks of `_train_chunk` (SGD, random sign, particles revisited) vs NumpyEP.step,
    relaxing by Euler steps or by block sweeps (also on a three-hidden-layer net, whose two
    classes of layers, odd and even, `bench_epoch.py --arch` relies on, at beta 2, where the
    negative sign leaves the nudged output no leak, 1 - beta < 0, and its block jumps to the
    bound the force points to)."""
    n, n_batches = 24, 3
    weights, biases, x, labels = _problem(5, n=n, sizes=sizes)
    lr = (0.3, 0.2, 0.1, 0.05)[: len(sizes) - 1] if len(sizes) > 3 else (0.3, 0.2)
    tol, t1 = 1e-6, 50.0
    model, ref = _models(weights, biases, sizes, lr=lr, beta=beta, tol=tol, free_t1=t1,
                         nudged_t1=t1, n_examples=n,
                         relaxation="euler" if backend == "diffrax" else "blocks")
    cfg = TrainConfig(arch="-".join(map(str, sizes)), lr=lr, beta=beta)
    opt = make_optimizer(cfg, model.n_layers)
    ep_cfg = EPConfig(beta=beta, variant="random-sign", free=_relax_cfg(tol, t1, backend),
                      nudged=_relax_cfg(tol, t1, backend))
    opt_state = opt.init(model.params)
    particles = tuple(jnp.zeros((n, m)) for m in sizes[1:])
    key = jax.random.PRNGKey(7)
    xj, yj = jnp.asarray(x), jnp.asarray(labels, jnp.int32)
    rng = np.random.default_rng(0)
    all_signs, nudged_steps = [], {True: [], False: []}
    for chunk in range(2):  # the second chunk starts from the first chunk's particles
        perm = rng.permutation(n).reshape(n_batches, n // n_batches)
        signs, k = [], key
        for _ in range(n_batches):  # the trainer's key sequence: key, sub = split(key)
            k, sub = jax.random.split(k)
            signs.append(bool(jax.random.bernoulli(sub)))
        all_signs += signs
        model, opt_state, particles, key, stats = train_chunk(
            model, opt_state, particles, key, xj, yj, jnp.asarray(perm), EP.from_config(ep_cfg), opt, True
        )
        for i, idx in enumerate(perm):
            st = ref.step(x[idx], one_hot(labels[idx], sizes[-1], np.float64), idx, signs[i],
                          labels[idx])
            assert int(stats["free_steps"][i]) == st["free_steps"]
            assert int(stats["nudged_steps"][i]) == st["nudged_steps"]
            assert float(stats["loss"][i]) == pytest.approx(st["loss"], abs=TOL)
            assert int(stats["correct"][i]) == st["correct"]
            nudged_steps[signs[i]].append(st["nudged_steps"])
        for a, b in zip(model.params, ref.params):
            np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=TOL)
        for a, b in zip(particles, ref.particles):
            np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=TOL)
    # the parameters actually moved
    assert max(float(np.max(np.abs(a - w))) for a, w in zip(ref.W, weights)) > 1e-3
    assert set(all_signs) == {True, False}, "choose a key whose batches draw both signs"
    if beta == 1.0:  # both nudges settle
        assert max(nudged_steps[True]) < 100 and max(nudged_steps[False]) < 100
    else:  # at beta 2 some nudged phases stop at the cap of 100 sweeps, in both alike
        assert min(nudged_steps[True] + nudged_steps[False]) < 100
