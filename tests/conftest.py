"""Shared pytest setup: float64 everywhere (the trainer and data code pin float32 themselves),
and a reproducible per-test PRNG key."""

from __future__ import annotations

import functools
import zlib

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key(request) -> jax.Array:
    """A fresh `jax.random.PRNGKey`, seeded from the test's node id (stable across runs)."""
    return jax.random.PRNGKey(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def rng(key) -> np.random.Generator:
    """A numpy generator seeded like `key` (cheaper for test data: no XLA compilation)."""
    return np.random.default_rng(np.asarray(key))


@pytest.fixture(scope="module")
def cached_derivations():
    """Memoise SymPy derivations while a module runs (opt in with `usefixtures`).

    `hopfield_system` derives every `(sizes, activation, formulation)` afresh, although the
    derivation depends on the sizes only; SymPy then dominates the test time.
    """
    import eqdyn.models._system as system_mod

    mp = pytest.MonkeyPatch()
    mp.setattr(system_mod, "derive", functools.lru_cache(maxsize=None)(system_mod.derive))
    yield
    mp.undo()
