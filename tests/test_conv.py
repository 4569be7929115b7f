"""Convolutional energies (issue 29): the derived conv/pool dynamics and rule against `jax.grad`
of a hand-written energy in float64, relaxation by the fused Euler loop and by exact block
sweeps to the same fixed point, EP against RBP (and BPTT) on a tiny conv net, bad geometry.

Float64 throughout (conftest enables x64); 6x6 or 8x8 maps, so each compile is cheap.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp

import eqdyn
from eqdyn import DerivationError
from eqdyn.dynamics import BlockSweeps, FusedEuler, relax
from eqdyn.learning import EPConfig, bptt_gradient, ep_gradient, rbp_gradient
from eqdyn.models import EnergyModel, check_derivation, compile_system
from eqdyn.symbolic import (Conv2d, ConvKernelGrad, ConvTranspose2d, conv_geometry,
                            conv_hopfield_energy, derive, generate_code, to_latex)
from eqdyn.symbolic import terms as T


def _pool(z, kind):
    if kind == "max":
        return jax.lax.reduce_window(z, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    return jax.lax.reduce_window(z, 0.0, jax.lax.add, (1, 1, 2, 2), (1, 1, 2, 2), "VALID") / 4


def _reference(in_shape, n_maps, kind, rho=jax.nn.sigmoid, k=3, pad=1):
    """`F` of `conv_hopfield_energy(in_shape, ..., (n_out,), kernel_size=3, padding=1)` written
    by hand with `lax.conv_general_dilated` (squared error)."""
    def energy(states, params, inputs, beta):
        x, d = inputs
        K, A, (W, b) = params[:n_maps], params[n_maps:2 * n_maps], params[2 * n_maps:]
        e = sum(0.5 * jnp.sum(s ** 2) for s in states)
        prev, c = x.reshape(-1, *in_shape), in_shape[0]
        for i in range(n_maps):
            o = K[i].shape[0]
            z = jax.lax.conv_general_dilated(
                prev if i == 0 else rho(prev), K[i].reshape(o, c, k, k), (1, 1),
                ((pad, pad), (pad, pad)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
            z = _pool(z, kind)
            s = states[i].reshape(z.shape)
            e = e - jnp.sum(z * rho(s)) - jnp.sum(A[i].reshape(1, o, 1, 1) * rho(s))
            prev, c = s, o
        y = states[-1]
        e = e - jnp.sum((rho(states[n_maps - 1]) @ W) * rho(y)) - jnp.sum(b * rho(y))
        return e + beta * 0.5 * jnp.sum((y - d) ** 2)
    return energy


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_derived_conv_energy_matches_jax_grad_of_handwritten_energy(kind):
    e = conv_hopfield_energy((1, 8, 8), (2, 3), (4,), kernel_size=3, padding=1, pool_kind=kind)
    system = compile_system(derive(e), "sigmoid", "gradient")
    err = check_derivation(system, _reference((1, 8, 8), 2, kind))
    # measured 2026-12-07: max 3.6e-15 (max pooling), 1.4e-14 (average pooling; the energy)
    assert err["max"] < 1e-13, err
    assert err["param_rates"] < 5e-15  # the STDP form vs jax.jvp of dF/dtheta: 4.4e-16


def test_conv_derivatives_are_transpose_convolution_and_correlation():
    x, y = T.feature_map("x", 1, 6), T.feature_map("c", 2, 6)
    K = T.kernel("K", 1, 2, 3)
    term = T.conv_coupling(x, K, y, (1, 6, 6), padding=1, pre_raw=True, post_raw=True)
    e = eqdyn.symbolic.Energy(internal=(term,), cost=(), states=(x, y), params=(K,))
    d = derive(e)
    g = conv_geometry((1, 6, 6), 2, 3, 1, 1)
    assert d.state_grads[x] == -ConvTranspose2d(y, K, g)
    assert d.param_grads[K] == -ConvKernelGrad(x, y, g)
    assert d.state_grads[y] == -Conv2d(x, K, g)
    assert r"\operatorname{conv}^{\top}" in to_latex(d.state_grads[x])
    assert "jax.lax.conv_general_dilated" in generate_code(d).source


def test_first_convolution_of_the_input_is_hoisted_out_of_the_relaxation():
    e = conv_hopfield_energy((1, 6, 6), (2,), (3,), kernel_size=3, padding=1)
    code = generate_code(derive(e))
    assert code.constants == ("_c0",)  # conv(x, K_1): computed once per relaxation


def _np_conv_oracles(x, K, G, s, p):
    """Direct loops (NumPy, float64): the convolution of `x` (B, C, H, W) with `K` (Co, C, kh,
    kw) at stride `s` and zero padding `p`, its adjoint in `x` applied to `G` (B, Co, H', W')
    (each output pixel scattered back over its receptive field) and in `K` (the correlation)."""
    B, C, H, W = x.shape
    Co, _, kh, kw = K.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    Ho, Wo = (H + 2 * p - kh) // s + 1, (W + 2 * p - kw) // s + 1
    y, gx, gk = np.zeros((B, Co, Ho, Wo)), np.zeros_like(xp), np.zeros_like(K)
    for i in range(Ho):
        for j in range(Wo):
            patch = xp[:, :, i * s:i * s + kh, j * s:j * s + kw]  # (B, C, kh, kw)
            y[:, :, i, j] = np.einsum("bcuv,ocuv->bo", patch, K)
            gx[:, :, i * s:i * s + kh, j * s:j * s + kw] += np.einsum("bo,ocuv->bcuv",
                                                                      G[:, :, i, j], K)
            gk += np.einsum("bo,bcuv->ocuv", G[:, :, i, j], patch)
    return y, gx[:, :, p:p + H, p:p + W], gk


@pytest.mark.parametrize("stride, pad", [(1, 0), (2, 1)])
def test_conv_helpers_against_direct_loops(stride, pad):
    """The generated code's convolution, transposed convolution and kernel correlation against
    direct loops, not JAX's autodiff (the helpers take their adjoints by jax.vjp, so the
    derivation checks against jax.grad cannot catch a wrong layout or adjoint in them)."""
    from eqdyn.symbolic import CONV_HELPERS as HELPERS

    ns = {"jax": jax, "jnp": jnp}
    exec(HELPERS, ns)
    rng = np.random.default_rng(7)
    B, C, H, W, Co, kh, kw = 2, 2, 5, 6, 3, 3, 2
    g = conv_geometry((C, H, W), Co, (kh, kw), stride, pad)
    x, K = rng.normal(size=(B, C, H, W)), rng.normal(size=(Co, C, kh, kw))
    Ho, Wo = (H + 2 * pad - kh) // stride + 1, (W + 2 * pad - kw) // stride + 1
    G = rng.normal(size=(B, Co, Ho, Wo))
    y, gx, gk = _np_conv_oracles(x, K, G, stride, pad)
    geom = tuple(int(v) for v in g)
    xf, Kf, Gf = (jnp.asarray(a.reshape(a.shape[0], -1)) for a in (x, K, G))
    # measured 2026-12-07: at most 3.6e-15 (the kernel correlation; float64)
    np.testing.assert_allclose(np.asarray(ns["_conv2d"](xf, Kf, geom)), y.reshape(B, -1),
                               atol=2e-14)
    np.testing.assert_allclose(np.asarray(ns["_convtranspose2d"](Gf, Kf, geom)),
                               gx.reshape(B, -1), atol=2e-14)
    np.testing.assert_allclose(np.asarray(ns["_convkernelgrad"](xf, Gf, geom)),
                               gk.reshape(Co, -1), atol=2e-14)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_helpers_against_direct_loops(kind):
    """Pooling, its adjoint (unpool: the gradient to each window's maximum, or spread evenly)
    and its directional derivative, against loops over the 2x2 windows (no ties: normal
    draws)."""
    from eqdyn.symbolic._conv import HELPERS, POOLS

    ns = {"jax": jax, "jnp": jnp}
    exec(HELPERS, ns)
    rng = np.random.default_rng(8)
    B, C, H, W = 2, 3, 4, 6
    z, G, V = rng.normal(size=(B, C, H, W)), rng.normal(size=(B, C, 2, 3)), rng.normal(
        size=(B, C, H, W))
    y, un, jv = np.zeros((B, C, 2, 3)), np.zeros_like(z), np.zeros((B, C, 2, 3))
    for b in range(B):
        for c in range(C):
            for i in range(2):
                for j in range(3):
                    win = z[b, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                    if kind == "max":
                        u, v = np.unravel_index(np.argmax(win), (2, 2))
                        y[b, c, i, j] = win[u, v]
                        un[b, c, 2 * i + u, 2 * j + v] = G[b, c, i, j]
                        jv[b, c, i, j] = V[b, c, 2 * i + u, 2 * j + v]
                    else:
                        y[b, c, i, j] = win.mean()
                        un[b, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2] = G[b, c, i, j] / 4
                        jv[b, c, i, j] = V[b, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean()
    q = (POOLS[kind], C, H, W, 2)
    # measured 2026-12-07: equal (0.0): selections and window means of four numbers
    zf, Gf, Vf = (jnp.asarray(a.reshape(B, -1)) for a in (z, G, V))
    np.testing.assert_allclose(np.asarray(ns["_pool2d"](zf, q)), y.reshape(B, -1), atol=1e-14)
    np.testing.assert_allclose(np.asarray(ns["_poolunpool2d"](Gf, zf, q)), un.reshape(B, -1),
                               atol=1e-14)
    np.testing.assert_allclose(np.asarray(ns["_pooljvp"](zf, Vf, q)), jv.reshape(B, -1),
                               atol=1e-14)


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0, 1, (4, 36)))
    d = jax.nn.one_hot(jnp.arange(4) % 3, 3, dtype=jnp.float64)
    e = conv_hopfield_energy((1, 6, 6), (2,), (3,), kernel_size=3, padding=1, pool_kind="max")
    return e, x, d


def test_fused_euler_and_block_sweeps_reach_the_same_conv_fixed_point(tiny):
    e, x, _ = tiny
    # key 2: with PyTorch's Conv2d bounds (since 2026-12-07) keys 0, 1 and 3 leave every output
    # unit saturated at the fixed point, and the check below needs one inside (0, 1)
    m = EnergyModel(e, "hard_sigmoid", key=jax.random.PRNGKey(2), dtype=jnp.float64)
    assert m.formulation == "leaky"
    fused = relax(m, x, relaxation=FusedEuler(dt=0.5, t1=2000.0, tol=1e-10, max_steps=8000),
                  on_failure="raise")
    blocks = relax(m, x, relaxation=BlockSweeps(max_sweeps=500, tol=1e-10), on_failure="raise")
    assert float(fused.residual) < 1e-10 and float(blocks.residual) < 1e-10
    # measured 2026-12-07 (key 2): 257 Euler steps, 62 sweeps, states equal to 1.3e-10
    assert int(blocks.steps) < int(fused.steps) / 2
    for a, b in zip(fused.states, blocks.states):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-9)
    # the fixed point is a zero of the field written by hand (leaky: rho' = 1)
    # ... a stationary point of the energy written by hand, in every unit inside (0, 1) (where
    # the hard sigmoid's rho' = 1 and the leaky field is -dF/ds)
    s = m.system.observe(fused.states)
    hard = lambda u: jnp.clip(u, 0.0, 1.0)  # noqa: E731
    grads = jax.grad(lambda st: _reference((1, 6, 6), 1, "max", hard)(
        st, m.params, m.inputs(x), 0.0))(s)
    for si, gi in zip(s, grads):
        inside = (si > 1e-6) & (si < 1 - 1e-6)
        assert bool(jnp.any(inside))
        assert float(jnp.max(jnp.where(inside, jnp.abs(gi), 0.0))) < 1e-8


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_shape=(1, 4, 4), channels=(2,), dense=(3,), kernel_size=5), "larger than its"),
    (dict(in_shape=(1, 7, 7), channels=(2,), dense=(3,), kernel_size=3), "does not tile"),
    (dict(in_shape=(1, 6, 6), channels=(2,), dense=(3,), kernel_size=3, pool_size=3),
     "does not tile"),
])
def test_bad_geometry_is_refused_naming_the_sizes(kwargs, match):
    with pytest.raises(DerivationError, match=match):
        conv_hopfield_energy(**kwargs)


def test_stride_and_channel_mismatches_name_the_term_and_sizes():
    x, c = T.feature_map("x", 1, 6), T.feature_map("c", 2, 3)
    with pytest.raises(DerivationError, match=r"stride 2 does not tile the map 6x6"):
        T.conv(x, T.kernel("K", 1, 2, 3), (1, 6, 6), stride=2)
    with pytest.raises(DerivationError, match=r"`c` has 18 units.*\(2, 6, 6\) = 72"):
        T.conv_coupling(x, T.kernel("K", 1, 2, 3), c, (1, 6, 6), padding=1)
    with pytest.raises(DerivationError, match="not a multiple of the 2 channels"):
        T.conv(x, T.kernel("K", 1, 2, 3), (2, 6, 6))
    # the term is named by its maps, also when the lower map enters through rho
    with pytest.raises(DerivationError, match=r"^conv\(rho\(c\), K_2\): stride 2 does not"):
        T.conv_coupling(c, T.kernel("K_2", 2, 2, 2), T.feature_map("e", 2, 1), (2, 3, 3),
                        stride=2)
    with pytest.raises(DerivationError, match="not a square kernel over 3 input channels"):
        T.conv(x, T.kernel("K", 1, 2, 3), (3, 6, 6))
    with pytest.raises(DerivationError, match="needs 36"):
        T.conv(T.feature_map("x2", 1, 5), T.kernel("K", 1, 2, 3), (1, 6, 6))
    with pytest.raises(DerivationError, match="no entrywise expansion"):
        T.conv(x, T.kernel("K", 1, 2, 3), (1, 6, 6))[0, 0]
    assert sp.sympify(T.conv(x, T.kernel("K", 1, 2, 3), (1, 6, 6), stride=3).cols) == 8


def test_ep_matches_rbp_and_bptt_on_a_conv_energy(tiny):
    """Symmetric EP at small beta tends to RBP's exact gradient; BPTT's equals it."""
    e, x, d = tiny
    m = EnergyModel(e, "sigmoid", "gradient", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    m = m.with_params(tuple(2.0 * p if p.shape[0] > 1 else p + 0.1 for p in m.params))
    tight = eqdyn.RelaxConfig(solver="tsit5", tol=1e-11, rtol=1e-12, atol=1e-14, t1=2000.0,
                              max_steps=20000, on_failure="raise")
    s0 = m.init_state(4, jnp.float64)
    g_rbp, aux = rbp_gradient(m, x, d, s0, tight)
    assert bool(aux.converged) and bool(aux.adjoint_converged)
    g_ep, ep_aux = ep_gradient(m, x, d, s0, EPConfig(beta=1e-3, variant="symmetric", free=tight,
                                                     nudged=tight))
    assert bool(ep_aux.free_converged) and bool(ep_aux.nudged_converged)
    g_bptt, _ = bptt_gradient(m, x, d, s0, dt=0.5, n_steps=400)
    for a, b, c, name in zip(g_ep, g_rbp, g_bptt, m.param_names):
        scale = float(jnp.max(jnp.abs(b))) + 1e-12
        # measured 2026-12-07 (Conv2d-bound kernels): EP at most 1.05e-6 relative (1.0e-4 at
        # beta 1e-2: O(beta^2)), BPTT 2.6e-11
        assert float(jnp.max(jnp.abs(a - b))) / scale < 1e-5, name
        assert float(jnp.max(jnp.abs(c - b))) / scale < 2e-10, name


def test_holomorphic_ep_refuses_max_pooling_naming_the_term(tiny):
    """Complex states have no maximum: `lax.max` orders complex numbers lexicographically, so
    holomorphic EP on a max-pooled energy ran and returned a non-holomorphic estimate (before
    the fix, silently). Average pooling is linear and stays allowed."""
    from eqdyn import ConfigError
    from eqdyn.learning import EP, Holomorphic

    e, x, d = tiny
    m = EnergyModel(e, "sigmoid", "gradient", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    rule = EP(0.1, Holomorphic(4), FusedEuler(dt=0.5, t1=5.0))
    with pytest.raises(ConfigError, match=r"max pooling.*maxpool\(conv\(x, K_1\)\)"):
        rule(m, x, d, m.init_state(4, jnp.float64))
    avg = conv_hopfield_energy((1, 6, 6), (2,), (3,), kernel_size=3, padding=1, pool_kind="avg")
    from eqdyn.learning import check_holomorphic

    check_holomorphic(EnergyModel(avg, "sigmoid", "gradient", key=jax.random.PRNGKey(0)))


def test_holomorphic_ep_on_average_pooling_matches_rbp(tiny):
    """Holomorphic EP keeps the imaginary part of the cotangent routed through a pooling of the
    real input convolution: before the fix `unpool` cast it to the real dtype of `conv(x,
    K_1)`, and the kernel's estimate was half of RBP's (0.49996 relative error)."""
    from eqdyn.learning import EP, Holomorphic

    _, x, d = tiny
    e = conv_hopfield_energy((1, 6, 6), (2,), (3,), kernel_size=3, padding=1, pool_kind="avg")
    m = EnergyModel(e, "sigmoid", "gradient", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    relax_ = FusedEuler(dt=0.2, t1=400.0, tol=1e-12, max_steps=4000)
    s0 = m.init_state(4, jnp.float64)
    g_rbp, _ = rbp_gradient(m, x, d, s0, relax_)
    g_h, st = EP(0.01, Holomorphic(4), relax_)(m, x, d, s0)
    assert bool(st.nudged_converged)
    for a, b, name in zip(g_h, g_rbp, m.param_names):
        # measured 2026-12-07: at most 2.1e-8 relative (K_1 9.2e-9)
        assert float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) < 1e-7, name


def test_derive_check_of_the_example_conv_energy_file():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-m", "eqdyn.cli", "derive", "--energy",
         str(root / "derivations" / "energies" / "conv_pcnn.py"), "--check", "--latex"],
        capture_output=True, text=True, cwd=root, timeout=300)
    assert out.returncode == 0, out.stderr
    assert r"\operatorname{conv}^{\top}" in out.stdout and "-> OK" in out.stdout


# ------------------------------------------------------------------ CIFAR python archives


def _write_cifar(folder, name, n_train=6, n_test=4, corrupt=False, extra=None):
    """A small archive in the python format of `name` (every batch `n_train` images)."""
    import io
    import pickle
    import tarfile

    from eqdyn.data import CIFAR

    spec = CIFAR[name]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec["archive"]
    with tarfile.open(path, "w:gz") as tar:
        for i, member in enumerate(spec["train"] + spec["test"]):
            n = n_test if member in spec["test"] else n_train
            data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            data[:, 0] = i  # the batch's index in the first red pixel
            labels = [int(v) for v in rng.integers(0, spec["n_classes"], n)]
            if corrupt and i == 0:
                labels[0] = spec["n_classes"]
            raw = pickle.dumps({b"data": data, spec["labels"]: labels, b"batch_label": extra},
                               protocol=2)
            info = tarfile.TarInfo(f"{spec['folder']}/{member}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


@pytest.mark.parametrize("name, n_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_archive_loads_in_nchw_layout_with_validation_split(tmp_path, name, n_classes):
    from eqdyn.data import load_dataset

    _write_cifar(tmp_path, name)
    ds = load_dataset(name, tmp_path, val_size=2)
    n_train = 6 * (5 if name == "cifar10" else 1)
    assert ds.input_shape == (3, 32, 32) and ds.n_classes == n_classes
    assert ds.x_train.shape == (n_train - 2, 3072) and ds.x_val.shape == (2, 3072)
    assert ds.x_test.shape == (4, 3072) and ds.x_train.dtype == np.float32
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    if name == "cifar10":  # batches in order: the last test image comes from test_batch (5)
        assert ds.x_train[0, 0] == 0 and ds.x_test[0, 0] == np.float32(5 / 255)


def test_cifar_download_checks_md5_and_bad_files_name_the_fix(tmp_path):
    from eqdyn import DataError
    from eqdyn.data import download_dataset, load_dataset

    mirror = _write_cifar(tmp_path / "mirror", "cifar10").parent
    url = mirror.as_uri() + "/"
    with pytest.raises(DataError, match="md5 of the archive is .*not the published "
                                        "c58f30108f718f92721af3b95e74349a"):
        download_dataset("cifar10", tmp_path / "dest", base_urls=url)
    assert not list((tmp_path / "dest").iterdir())  # no partial file left
    download_dataset("cifar10", tmp_path / "dest", base_urls=url, md5=False)
    assert load_dataset("cifar10", tmp_path / "dest", val_size=3).x_val.shape == (3, 3072)
    _write_cifar(tmp_path / "bad", "cifar10", corrupt=True)
    with pytest.raises(DataError, match="labels of cifar10 .* include 10, outside 0..9"):
        load_dataset("cifar10", tmp_path / "bad")
    import datetime

    _write_cifar(tmp_path / "code", "cifar10", extra=datetime.date(2026, 12, 7))
    with pytest.raises(DataError, match="refusing to load datetime.date"):  # no code runs
        load_dataset("cifar10", tmp_path / "code")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither cifar-10-python.tar.gz nor the extracted"):
        load_dataset("cifar10", tmp_path / "empty")
    (tmp_path / "trunc").mkdir()
    (tmp_path / "trunc" / "cifar-10-python.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(DataError, match="cannot be read"):
        load_dataset("cifar10", tmp_path / "trunc")


def test_conv_energy_file_trains_on_digits_through_the_trainer():
    """End to end: `train` with the P_CNN energy file on 8x8 digits (blocks free phase, fused
    nudged phases, symmetric EP)."""
    from pathlib import Path

    from eqdyn.training import resolve_config, train

    root = Path(__file__).resolve().parents[1]
    cfg = resolve_config(dataset="digits", energy=str(root / "derivations" / "energies" /
                                                      "conv_digits.py"),
                         arch="64-128-10", epochs=15, backend="blocks", nudged_backend="fused",
                         lr=0.05, beta=0.5, variant="symmetric", free_t1=100.0, nudged_t1=100.0)
    metrics = train(cfg, progress=None)
    # measured 2026-12-07: test 90.9 % with the Conv2d-bound kernels (87.5 % with matrix Glorot
    # bounds); 15 epochs, 17 s
    assert metrics["test_accuracy"] > 0.8


@pytest.mark.parametrize("preset", ["e19-pconv-mnist", "l21-cifar10"])
def test_conv_presets_resolve_from_any_working_directory(preset, tmp_path, monkeypatch):
    """The presets' energy files ship inside eqdyn: they resolve outside the repository root
    (before the fix, `derivations/energies/...` relative to the working directory: ConfigError
    `is not a file` from anywhere else)."""
    from pathlib import Path

    from eqdyn.training import resolve_config

    monkeypatch.chdir(tmp_path)
    cfg = resolve_config(preset=preset)  # loads the energy file (0.2 s for both)
    assert Path(cfg.energy).is_absolute() and Path(cfg.energy).is_file()
    assert Path(cfg.energy).resolve().is_relative_to(Path(eqdyn.__file__).resolve().parent)


@pytest.mark.parametrize("preset, shape", [("e19-pconv-mnist", (1, 28, 28)),
                                           ("l21-cifar10", (3, 32, 32))])
def test_conv_presets_build_and_take_a_training_step(preset, shape):
    """The presets' networks train end to end on a few random images (short phases): the
    settings resolve, the energy file derives, the step compiles and the loss is finite."""
    from eqdyn.data import Dataset
    from eqdyn.training import resolve_config, train

    rng = np.random.default_rng(0)
    n = int(np.prod(shape))

    def split(k):
        return rng.uniform(0, 1, (k, n)).astype(np.float32), (np.arange(k) % 10).astype(np.int32)

    ds = Dataset("synthetic", *split(4), *split(0), *split(2), 10, shape)
    cfg = resolve_config(preset=preset, epochs=1, batch_size=2, free_t1=3.0, nudged_t1=1.0,
                         eval_t1=3.0, eval_batch=2)
    metrics = train(cfg, progress=None, dataset=ds)
    assert np.isfinite(metrics["history"][-1]["loss"])


def test_residual_conv_coupling_between_non_adjacent_maps():
    """A Hopfield-ResNet-style skip: c_1 -> c_3 besides c_1 -> c_2 -> c_3 (all 4x4x4 maps).
    It derives and matches jax.grad of the compiled energy; its coupling graph has an odd
    cycle, so block sweeps refuse it and the fused loop relaxes it."""
    from eqdyn import ConfigError

    x = T.layer("x", 64)
    c = [T.feature_map(f"c_{i}", 4, 4) for i in (1, 2, 3)]
    y, d = T.layer("y", 10), T.layer("d", 10)
    K1, K2, K3, S = (T.kernel("K_1", 1, 4, 3), T.kernel("K_2", 4, 4, 3), T.kernel("K_3", 4, 4, 3),
                     T.kernel("S_13", 4, 4, 3))
    W = T.weight("W_4", 64, 10)
    terms = (*(T.leak(s) for s in (*c, y)),
             T.conv_coupling(x, K1, c[0], (1, 8, 8), padding=1, pool_kind="avg", pre_raw=True),
             T.conv_coupling(c[0], K2, c[1], (4, 4, 4), padding=1),
             T.conv_coupling(c[1], K3, c[2], (4, 4, 4), padding=1),
             T.conv_coupling(c[0], S, c[2], (4, 4, 4), padding=1),  # the residual coupling
             T.coupling(c[2], W, y))
    e = eqdyn.symbolic.Energy(internal=terms, cost=(T.squared_error(y, d),), states=(*c, y),
                              params=(K1, K2, K3, S, W), inputs=(x, d), scalars=(T.BETA,))
    err = check_derivation(compile_system(derive(e), "sigmoid", "gradient"))
    assert err["max"] < 1e-14, err  # measured 2026-12-07: 1.3e-15
    m = EnergyModel(e, "hard_sigmoid", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    xb = jnp.asarray(np.random.default_rng(3).uniform(0, 1, (2, 64)))
    with pytest.raises(ConfigError, match="odd cycle"):
        relax(m, xb, relaxation=BlockSweeps(max_sweeps=50, tol=1e-8))
    res = relax(m, xb, relaxation=FusedEuler(dt=0.5, t1=2000.0, tol=1e-10, max_steps=8000),
                on_failure="raise")
    assert float(res.residual) < 1e-10
