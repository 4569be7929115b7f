"""Shared pytest setup: float64 everywhere (the trainer and data code pin float32 themselves),
a reproducible per-test PRNG key, a persistent XLA compilation cache, and the test tiers.

Tiers (README, `.ci/run`):

- default (`pytest`): unit and oracle tests on small networks and every refusal; at most
  5 minutes on 2 CPU cores.
- `pytest -m integration`: notebooks, end-to-end training runs, CLI subprocesses, studies,
  multi-device and multi-process runs: the tests listed in `INTEGRATION` below.
- `pytest -m slow`: the MNIST reproductions (marked in their files).

The integration tests are listed here, by node id, rather than marked in each file: the list
is the one place that says what the default tier leaves out and why (each entry gives its
measured time), the test files stay free to move their imports and names, and an entry
that no longer names a test is an error at collection (so a renamed test cannot slip back
into the default tier, or out of CI, unnoticed).
"""

from __future__ import annotations

import functools
import os
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

# A persistent compilation cache for the test session (the harness's setting, not the
# library's): XLA programs compiled by one run are read back by the next, here and in the
# subprocesses the tests start (they inherit the environment). An existing
# JAX_COMPILATION_CACHE_DIR is kept.
_CACHE = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax-compilation-cache"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

# Times measured 2026-12-07 on the shared 2-core machine (load 4-7 from other jobs), one file
# at a time with `pytest FILE --durations=0`.
INTEGRATION: dict[str, str] = {
}


def _entry_names(item: pytest.Item) -> tuple[str, ...]:
    """The keys of `INTEGRATION` that can name `item`: its file, file::function and node id."""
    path = Path(str(item.fspath)).name
    name = getattr(item, "originalname", None) or item.name
    return (path, f"{path}::{name}", f"{path}::{item.name}")


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    modules = {}
    for item in items:
        modules.setdefault(Path(str(item.fspath)).name, getattr(item, "module", None))
        if any(k in INTEGRATION for k in _entry_names(item)):
            item.add_marker(pytest.mark.integration)
    # an entry whose file was collected must still name one of its test functions
    for entry in INTEGRATION:
        path, _, name = entry.partition("::")
        module = modules.get(path)
        if module is not None and name and not hasattr(module, name.split("[")[0]):
            raise pytest.UsageError(
                f"tests/conftest.py INTEGRATION lists {entry!r}, but {path} has no test "
                f"{name.split('[')[0]!r}: rename or remove the entry."
            )


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
