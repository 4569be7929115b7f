"""Library calls leave JAX's global settings as they found them (issue 23, part 5)."""

import jax
import jax.numpy as jnp

import eqdyn
from eqdyn.models import check_derivation, check_hopfield_derivation


def test_derivation_checks_run_in_float64_without_flipping_x64():
    with jax.enable_x64(False):  # the test session enables x64 (conftest); a user's does not
        err = check_hopfield_derivation((4, 3, 2), "sigmoid")
        model = eqdyn.LayeredHopfield("4-3-2", "sigmoid", "gradient", key=jax.random.PRNGKey(0))
        err2 = check_derivation(model.system)
        assert not jax.config.jax_enable_x64
        assert jnp.ones(1).dtype == jnp.float32
    # float64 agreement (float32 would leave errors near 1e-7)
    assert err["max"] < 1e-12
    assert err2["max"] < 1e-12
