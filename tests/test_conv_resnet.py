"""Hopfield-ResNet (issue 29; Elayedam & Srinivasan 2025): the clipped ReLU, convolutions at a
stride that does not tile (PyTorch's floor), the residual energy's derivation against `jax.grad`
of a hand-written energy in float64, centered EP (symmetric nudging) against RBP, the preset.

Float64 (conftest enables x64); 3x8x8 images, two blocks of 2 and 3 channels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqdyn import DerivationError
from eqdyn.dynamics import FusedEuler
from eqdyn.learning import EP, Symmetric, rbp_gradient
from eqdyn.models import (EnergyModel, check_derivation, clipped_relu, compile_system,
                          get_activation)
from eqdyn.symbolic import conv_geometry, derive, hopfield_resnet_energy

SHAPE, CHANNELS, N_OUT = (3, 8, 8), (2, 3), 4


def test_clipped_relu_and_its_derivative():
    act = get_activation("relu6")
    assert act.projection and act.bounds == (0.0, 6.0)
    u = jnp.linspace(-2.0, 8.0, 101)
    np.testing.assert_array_equal(act.fn(u), np.minimum(np.maximum(np.asarray(u), 0.0), 6.0))
    inside = (u > 1e-9) & (u < 6.0 - 1e-9)  # away from the kinks
    autodiff = jax.vmap(jax.grad(act.fn))(u)
    np.testing.assert_array_equal(act.d1(u)[inside], autodiff[inside])
    np.testing.assert_array_equal(act.d1(u)[~((u >= 0) & (u <= 6))], 0.0)
    assert float(clipped_relu(2.5).fn(jnp.asarray(3.0))) == 2.5
    with pytest.raises(Exception, match="cap"):
        clipped_relu(0.0)


def test_floor_geometry_is_opt_in():
    with pytest.raises(DerivationError, match="floor=True"):
        conv_geometry((2, 8, 8), 3, 3, 2, 1)
    assert tuple(conv_geometry((2, 8, 8), 3, 3, 2, 1, floor=True)) == (2, 8, 8, 3, 3, 3, 2, 1)


def _conv(x, k, s, p):
    return jax.lax.conv_general_dilated(x, k, (s, s), ((p, p), (p, p)),
                                        dimension_numbers=("NCHW", "OIHW", "NCHW"))


def _reference(rho):
    """`F` of `hopfield_resnet_energy(SHAPE, CHANNELS, N_OUT)` written by hand (the layout of
    docs/conv.md, PyTorch's floor at stride 2)."""
    M = len(CHANNELS)

    def energy(states, params, inputs, beta):
        x, d = inputs
        K, S = params[:2 * M], params[2 * M:3 * M]
        A, (W, b) = params[3 * M:5 * M], params[5 * M:]
        e = sum(0.5 * jnp.sum(s ** 2) for s in states)
        prev, C, H = x.reshape(-1, *SHAPE), SHAPE[0], SHAPE[1]
        for k, c in enumerate(CHANNELS):
            a = states[2 * k].reshape(-1, c, H, H)
            bm = states[2 * k + 1].reshape(-1, c, H // 2, H // 2)
            p_in = prev if k == 0 else rho(prev)
            za = _conv(p_in, K[2 * k].reshape(c, C, 3, 3), 1, 1)
            zb = (_conv(rho(a), K[2 * k + 1].reshape(c, c, 3, 3), 2, 1)
                  + _conv(p_in, S[k].reshape(c, C, 1, 1), 2, 0))
            e = e - jnp.sum(za * rho(a)) - jnp.sum(zb * rho(bm))
            e = e - jnp.sum(A[2 * k].reshape(1, c, 1, 1) * rho(a))
            e = e - jnp.sum(A[2 * k + 1].reshape(1, c, 1, 1) * rho(bm))
            prev, C, H = bm, c, H // 2
        z = rho(states[-1]) @ W + b
        return e + beta * 0.5 * jnp.sum((z - d) ** 2)
    return energy


@pytest.fixture(scope="module")
def energy():
    return hopfield_resnet_energy(SHAPE, CHANNELS, N_OUT)


def test_resnet_energy_matches_jax_grad_of_handwritten_energy(energy):
    assert [int(s.shape[1]) for s in energy.states] == [128, 32, 48, 12]
    system = compile_system(derive(energy), "sigmoid", "gradient")
    err = check_derivation(system, _reference(jax.nn.sigmoid))
    # measured 2026-12-07: energy 1.1e-13 (of a sum of 2300 terms), parameter gradients
    # 4.3e-14, STDP form 2.2e-15
    assert err["max"] < 1e-12, err
    assert err["param_rates"] < 2e-14, err


def test_centered_ep_matches_rbp_on_the_resnet(energy):
    """Centered EP (Symmetric nudging at +-beta, the paper's CEP) on the clipped-ReLU network
    in its leaky form tends to RBP's gradient: an O(beta^2) bias."""
    m = EnergyModel(energy, "relu6", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    # at 0.4 x the initial parameters 21-56 % of each map's units are inside (0, 6) (at 1 x,
    # every unit of c_2 is clipped and the gradients of the first block vanish)
    m = m.with_params(tuple(0.4 * p for p in m.params))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0, 1, (4, 192)))
    d = jax.nn.one_hot(jnp.arange(4) % N_OUT, N_OUT, dtype=jnp.float64)
    relax_ = FusedEuler(dt=0.5, t1=400.0, tol=1e-12, max_steps=4000)
    s0 = m.init_state(4, jnp.float64)
    g_rbp, aux = rbp_gradient(m, x, d, s0, relax_)
    assert bool(aux.converged)
    g_ep, st = EP(1e-3, Symmetric(), relax_)(m, x, d, s0)
    assert bool(st.free_converged) and bool(st.nudged_converged)
    for a, b, name in zip(g_ep, g_rbp, m.param_names):
        rel = float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
        # measured 2026-12-07: at most 2.3e-7 relative (a_1; K_1 9.3e-8, W_5 6.2e-8)
        assert rel < 2e-6, (name, rel)


def test_hr25_preset_resolves_to_the_shipped_energy(tmp_path, monkeypatch):
    from pathlib import Path

    import eqdyn
    from eqdyn.training import resolve_config

    monkeypatch.chdir(tmp_path)
    cfg = resolve_config(preset="hr25-cifar10")
    assert Path(cfg.energy).resolve().is_relative_to(Path(eqdyn.__file__).resolve().parent)
    assert (cfg.variant, cfg.beta, cfg.batch_size, cfg.epochs) == ("symmetric", 0.1, 128, 300)


def test_hr25_preset_builds_and_takes_a_training_step():
    """The full Hopfield-ResNet13 (8 maps, 3x32x32 images) trains a step on random images with
    short phases: the energy file derives, the step compiles, the loss is finite."""
    from eqdyn.data import Dataset
    from eqdyn.training import resolve_config, train

    rng = np.random.default_rng(0)

    def split(k):
        return (rng.uniform(0, 1, (k, 3072)).astype(np.float32),
                (np.arange(k) % 10).astype(np.int32))

    ds = Dataset("synthetic", *split(2), *split(0), *split(2), 10, (3, 32, 32))
    cfg = resolve_config(preset="hr25-cifar10", epochs=1, batch_size=2, free_t1=3.0,
                         nudged_t1=1.0, eval_t1=3.0, eval_batch=2)
    metrics = train(cfg, progress=None, dataset=ds)
    assert np.isfinite(metrics["history"][-1]["loss"])


def test_derive_check_of_the_small_resnet_energy_file():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-m", "eqdyn.cli", "derive", "--energy",
         str(root / "derivations" / "energies" / "resnet_small.py"), "--check"],
        capture_output=True, text=True, cwd=root, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "conv(rho(c_2), S_4)" in out.stdout and "-> OK" in out.stdout


def test_conv_kernels_start_from_pytorchs_conv2d_bounds():
    """Kernels `U(-1/sqrt(C*kh*kw), +)` (PyTorch's Conv2d default, as the published code), the
    dense readout Glorot's `sqrt(6/(m+n))`, biases zero; measured on built models."""
    import math

    from eqdyn.symbolic import conv_hopfield_energy

    e = conv_hopfield_energy((1, 28, 28), (32, 64), (10,), kernel_size=5, padding=0)  # e19
    m = EnergyModel(e, "hard_sigmoid", key=jax.random.PRNGKey(0))
    p = dict(zip(m.param_names, m.params))
    for name, fan_in in (("K_1", 25), ("K_2", 32 * 25)):
        top = float(jnp.max(jnp.abs(p[name])))
        # measured 2026-12-07: K_1 0.19963 of 0.2, K_2 0.035355 of 0.035355 (matrix Glorot
        # bounds were sqrt(6/57) = 0.324 and sqrt(6/864) = 0.0833)
        assert 0.99 / math.sqrt(fan_in) < top <= 1.0 / math.sqrt(fan_in), (name, top)
    lim = math.sqrt(6.0 / (1024 + 10))
    assert 0.99 * lim < float(jnp.max(jnp.abs(p["W_3"]))) <= lim
    assert not any(float(jnp.max(jnp.abs(p[n]))) for n in ("a_1", "a_2", "b_3"))
    r = EnergyModel(hopfield_resnet_energy(SHAPE, CHANNELS, N_OUT), "relu6",
                    key=jax.random.PRNGKey(1))
    q = dict(zip(r.param_names, r.params))
    assert float(jnp.max(jnp.abs(q["S_4"]))) <= 1.0 / math.sqrt(2)  # a 1x1 kernel: fan_in 2
    assert float(jnp.max(jnp.abs(q["K_3"]))) <= 1.0 / math.sqrt(2 * 9)
