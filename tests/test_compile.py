"""The cheaply compiled one-off programs (eqdyn._compile) give the same bits as the default."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqdyn._compile import cheap_jit
from eqdyn.training import epoch_order
from eqdyn.training._loop import _all_finite
from eqdyn.models import LayeredHopfield
from eqdyn.models._network import glorot_uniform


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_glorot_uniform_matches_op_by_op_draws(dtype):
    # (float64 is float32 unless x64 is on, as in the op-by-op draw)
    key = jax.random.PRNGKey(3)
    spec = ((784, 500, True), (1, 500, False), (500, 10, True), (7, 7, True))
    got = glorot_uniform(key, spec, jnp.dtype(dtype))
    keys = jax.random.split(key, len(spec))
    for g, k, (m, n, draw) in zip(got, keys, spec):
        lim = np.sqrt(6.0 / (m + n))
        want = (jax.random.uniform(k, (m, n), dtype, -lim, lim) if draw
                else jnp.zeros((m, n), dtype))
        assert g.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(g), np.asarray(want))


def test_epoch_order_matches_permutation():
    key = jax.random.PRNGKey(0)
    for epoch in (0, 7):
        got = epoch_order(key, epoch, 1003, 1000)
        want = jax.random.permutation(jax.random.fold_in(key, epoch), 1003)[:1000]
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_all_finite():
    ok = (jnp.ones((3, 2)), jnp.zeros((1, 2)))
    assert bool(_all_finite(ok))
    assert not bool(_all_finite((ok[0], ok[1].at[0, 1].set(jnp.nan))))
    assert not bool(_all_finite((ok[0].at[2, 0].set(-jnp.inf), ok[1])))
    assert bool(_all_finite(()))  # no parameters: nothing is non-finite


def test_cheap_programs_run_inside_other_transformations():
    # JAX takes no compiler options below the top level: the plain jit serves there
    key = jax.random.PRNGKey(0)
    spec = ((8, 5, True), (1, 5, False))
    want = glorot_uniform(key, spec, jnp.dtype(jnp.float32))
    got = jax.jit(lambda k: glorot_uniform(k, spec, jnp.dtype(jnp.float32)))(key)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))
    shapes = jax.eval_shape(lambda k: LayeredHopfield("64-16-10", key=k).weights, key)
    assert [s.shape for s in shapes] == [(64, 16), (16, 10)]
    model = eqx.filter_jit(lambda k: LayeredHopfield("6-4-3", key=k))(key)
    assert model.weights[0].shape == (6, 4)
    assert bool(jax.jit(_all_finite)((jnp.ones(3),)))


def test_cheap_jit_keeps_jit_arguments():
    f = cheap_jit(lambda x, n: jnp.tile(x * 2.0 + 1.0, n), static_argnums=(1,))
    np.testing.assert_array_equal(np.asarray(f(jnp.arange(2.0), 2)), [1.0, 3.0, 1.0, 3.0])
