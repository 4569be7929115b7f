"""Cheap compilation for the small programs a run executes once or a few times.

XLA's CPU backend spends most of a small program's compile time in LLVM's optimiser, and
programs such as the Glorot initialisation (the threefry generator, unrolled), the epoch's
shuffle or the structural probes behind the block backend run once per run or per epoch.
Compiled at a low LLVM optimisation level instead of the default, they take a fraction of
the time (the 784-500-10 initialisation: 0.5 s against 1.5 s, measured on 2 CPU cores) and
give the same bits: tests/test_compile.py checks the initialisation and the shuffle against
the default compilation. The hot programs (training chunks, relaxations, evaluation) keep XLA's
default optimisation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax


def cheap_jit(fn: Callable, *, level: int = 1, **jit_kwargs) -> Callable:
    """`jax.jit(fn)` with LLVM at optimisation `level` (for programs that run once or rarely).

    Level 1 keeps floating-point results bit-identical to the default in the cases tested
    (tests/test_compile.py); level 0 is for programs whose floats do not matter bit for bit:
    integer work (a shuffle), booleans, or probes compared against a tolerance. Called inside
    another transformation (`jit`, `eval_shape`, `scan`: any traced argument), where JAX
    accepts no compiler options, it is the plain `jax.jit(fn)`; so it is on a jax without
    `jit(compiler_options=...)`.
    """
    plain = jax.jit(fn, **jit_kwargs)
    try:
        cheap = jax.jit(fn, compiler_options={"xla_backend_optimization_level": level},
                        **jit_kwargs)
    except TypeError:  # jax before `jit(compiler_options=...)`
        return plain

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if any(isinstance(a, jax.core.Tracer)
               for a in jax.tree_util.tree_leaves((args, kwargs))):
            return plain(*args, **kwargs)
        return cheap(*args, **kwargs)

    return call


def run_once(fn: Callable, *args, level: int = 0):
    """`fn(*args)` as one XLA program compiled cheaply (not cached; for probes: level 0)."""
    return cheap_jit(fn, level=level)(*args)
