"""Shared helpers for eqdyn's tests."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from eqdyn.dynamics import RESULTS, AbstractRelaxation, RelaxProblem, RelaxResult

REPO = Path(__file__).resolve().parents[1]


def _find_shared_data() -> Path:
    """The project's read-only `shared/data` (real MNIST, Fashion-MNIST): `../shared` beside the
    clone (CI, /work/main) or beside a folder above it (a worktree such as /work/wt/NAME).
    Tests only read it. Falls back to `../shared/data`, which may not exist (the tests skip)."""
    for parent in REPO.parents:
        if (parent / "shared" / "data" / "mnist").is_dir():
            return parent / "shared" / "data"
    return REPO.parent / "shared" / "data"


#: Where the real data sets are (see `_find_shared_data`).
SHARED_DATA = _find_shared_data()


def load_benchmark(name: str):
    """The script `benchmarks/<name>.py` as a fresh module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def write_idx(path: str | Path, array: np.ndarray, gz: bool = True) -> Path:
    """Write `array` to `path` in the IDX format (big-endian), gzip-compressed if `gz`.

    **Arguments:**

    - `path`: the file to write (its name is used as given; add `.gz` yourself).
    - `array`: a uint8, int8, int16, int32, float32 or float64 array with at least one dimension.
    - `gz`: compress with gzip.

    **Returns:**

    The path written.
    """
    array = np.asarray(array)
    code = _IDX_CODES[f"{array.dtype.kind}{array.dtype.itemsize}"]
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


class Momentum(AbstractRelaxation):
    """Gradient descent with momentum on the field: a relaxation written outside eqdyn."""

    lr: float
    momentum: float
    tol: float
    max_steps: int = eqx.field(static=True, default=10_000)

    def solve(self, problem: RelaxProblem, *, key=None) -> RelaxResult:
        def cond(c):
            return (c[2] >= self.tol) & (c[3] < self.max_steps)

        def body(c):
            y, v, _, k = c
            v = tuple(self.momentum * a + self.lr * f for a, f in zip(v, problem.f(y)))
            y = tuple(a + b for a, b in zip(y, v))
            return y, v, problem.residual(y), k + 1

        y0 = tuple(problem.y0)
        init = (y0, tuple(jnp.zeros_like(a) for a in y0), problem.residual(y0),
                jnp.asarray(0, jnp.int32))
        y, _, r, k = jax.lax.while_loop(cond, body, init)
        ok = r < self.tol
        return RelaxResult(y, k, r, ok, k.astype(r.dtype),
                           RESULTS.where(ok, RESULTS.successful, RESULTS.max_steps_reached))
