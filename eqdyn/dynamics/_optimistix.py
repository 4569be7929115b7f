"""A fixed point of the dynamics as a root of the field, by optimistix (`OptimistixRoot`)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, PRNGKeyArray

from .._errors import ConfigError
from ._base import (RESULTS, AbstractRelaxation, RelaxProblem, RelaxResult, check_count,
                    check_number, leaf, status)

__all__ = ["OptimistixRoot"]


class OptimistixRoot(AbstractRelaxation):
    """Solve `f(y) = 0` (the field) with an optimistix root finder, example by example.

    **Arguments:**

    - `solver`: an optimistix root finder instance, e.g. `optx.Newton(rtol=1e-10,
      atol=1e-10)` or `optx.Chord(...)` (its own tolerances stop its iteration).
    - `tol`: the steady-state test on the system's residual at the root found (an array
      leaf): `successful` when below it.
    - `max_steps`: the root finder's step budget (static).

    Each example is its own root problem (`jax.vmap` over the batch: the inputs and
    state-independent constants whose leading axis is the batch are mapped), so a Newton
    Jacobian is `n x n` per example, not `Bn x Bn`. `steps` is the most any example took.
    Not every fixed point is a root: where the leaky form's potential drifts beyond a bound
    (`beta = -1` on the paper's energy) there is none, and the result says the solver failed.

    When to use it: exact fixed points of small networks in a few steps (a reference, a
    check). Measured by `python benchmarks/bench_roots.py 64-64-10` (and `784-500-10`):
    float64, batch 20, zero start, residual 1e-8, hard sigmoid, best of 5 on a shared 2-core
    CPU. On 64-64-10, `FusedEuler` 79 steps 1.3 ms, `BlockSweeps` 18 sweeps 0.22 ms, Newton 6
    steps 24 ms to residual 2e-16 (the whole batch as one root problem: 4.1 s), Chord 34 steps
    9.4 ms; on 784-500-10, `FusedEuler` 57 steps 3.6 ms, `BlockSweeps` 12 sweeps 2.0 ms,
    Newton 5 steps 19 s (dense 510 x 510 Jacobians), Chord 20 steps 3.7 s. Every fixed point
    agrees with `FusedEuler`'s to 3e-8 (the tolerance's scale). So the training relaxations
    stay hand-written.
    """

    solver: optx.AbstractRootFinder
    tol: Array
    max_steps: int = eqx.field(static=True)

    def __init__(self, solver: optx.AbstractRootFinder, tol=1e-8, max_steps: int = 256):
        self.solver, self.tol, self.max_steps = solver, leaf(tol), max_steps

    def __check_init__(self):
        if not isinstance(self.solver, optx.AbstractRootFinder):
            raise ConfigError(f"`OptimistixRoot`: `solver`={self.solver!r} must be an "
                              "optimistix root finder, e.g. optx.Newton(rtol=1e-10, atol=1e-10).")
        check_number("OptimistixRoot", "tol", self.tol, allow_zero=True)
        check_count("OptimistixRoot", "max_steps", self.max_steps)

    def solve(self, problem: RelaxProblem, *, key: PRNGKeyArray | None = None) -> RelaxResult:
        params, inputs, beta, consts = problem.args
        field, y0 = problem.field, tuple(problem.y0)
        b = y0[0].shape[0]

        def batched(a):
            return b > 1 and jnp.ndim(a) >= 1 and jnp.shape(a)[0] == b

        row = lambda a: a[None]  # noqa: E731  one example as a batch of one
        axes = jax.tree_util.tree_map(lambda a: 0 if batched(a) else None, (inputs, consts))

        in_inputs, in_consts = axes

        def per_example(y, inp, con):
            y = tuple(row(a) for a in y)
            inp = jax.tree_util.tree_map(lambda a, ax: a if ax is None else row(a), inp,
                                         in_inputs)
            con = jax.tree_util.tree_map(lambda a, ax: a if ax is None else row(a), con,
                                         in_consts)
            value, steps, code = _root(self.solver, field, params, beta, y, inp, con,
                                       self.max_steps)
            return tuple(a[0] for a in value), steps, code

        y, steps, codes = jax.vmap(per_example, in_axes=(0, in_inputs, in_consts))(
            y0, inputs, consts)
        residual = problem.residual(y)
        ok = codes == 0
        maxed = codes == 1
        converged, result = status(
            residual, self.tol, None,
            RESULTS.where(jnp.all(ok | maxed), RESULTS.max_steps_reached, RESULTS.solver_failed))
        dtype = y0[0].dtype
        steps = jnp.max(steps).astype(jnp.int32)
        return RelaxResult(y, steps, residual, converged, steps.astype(dtype), result)


def _root(solver, field, params, beta, y, inputs, consts, max_steps):
    """`(root, steps, code)` of one example's field: code 0 successful, 1 out of steps, 2
    another failure of the root finder."""
    args = (params, inputs, beta, consts)
    sol = optx.root_find(lambda u, _: field(None, u, args), solver, y, max_steps=max_steps,
                         throw=False)
    code = jnp.where(sol.result == optx.RESULTS.successful, 0,
                     jnp.where(sol.result == optx.RESULTS.max_steps_reached, 1, 2))
    return sol.value, sol.stats["num_steps"], code
