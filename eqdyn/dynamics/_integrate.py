"""Relaxation by `diffrax.diffeqsolve`, stopped by a steady-state `diffrax.Event` (`Integrate`)."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from .._errors import ConfigError
from ._base import (RESULTS, AbstractRelaxation, RelaxProblem, RelaxResult, as_dtype,
                    check_count, check_number, leaf, status)

__all__ = ["Integrate"]


class _Steady(eqx.Module):
    """Steady-state event condition: the system's residual of the (masked) field below `tol`."""

    field: object
    tol: Array

    def __call__(self, t, y, args, **kwargs):
        r = self.field.residual(y, self.field(t, y, args))
        return r < as_dtype(self.tol, r.dtype)


class Integrate(AbstractRelaxation):
    """Integrate the field with any diffrax solver until the residual is below `tol`.

    **Arguments:**

    - `solver`: a diffrax solver instance (`diffrax.Tsit5()`, `diffrax.Euler()` (default),
      `diffrax.Kvaerno5()`, ...).
    - `stepsize_controller`: a diffrax controller instance (`diffrax.PIDController(rtol=1e-4,
      atol=1e-6)`, `diffrax.ConstantStepSize()`).
    - `dt0`: the first (adaptive) or every (constant) step; with a constant step choose `t1` a
      multiple of `dt0`, so that diffrax takes exactly `dt0` per step.
    - `t1`: the horizon.
    - `tol`: steady state when the residual is below it (a `diffrax.Event`; 0: the whole
      horizon, status `fixed_horizon`).
    - `max_steps`: diffrax's step budget (static).

    `dt0`, `t1` and `tol` are array leaves (a new value does not recompile). Looser local-error
    tolerances than `tol` make an explicit adaptive solver hover at its stability limit near
    the fixed point, with a residual that never falls below `tol` (measured: Tsit5 with rtol
    1e-3 on a sigmoid 784-256-256-10 net stalls at residual 5e-3; with rtol 1e-4, atol 1e-6 it
    converges to 1e-4 in 10 steps). diffrax's result maps to `RESULTS`: the event (or a final
    residual below `tol`) is `successful`, reaching `t1` or `max_steps` first is
    `max_steps_reached`, any other failure `solver_failed`, and a non-finite residual
    `nonfinite`.
    """

    solver: diffrax.AbstractSolver
    stepsize_controller: diffrax.AbstractStepSizeController
    dt0: Array
    t1: Array
    tol: Array
    max_steps: int = eqx.field(static=True)

    def __init__(self, solver=None, stepsize_controller=None, dt0=0.5, t1=500.0, tol=1e-4,
                 max_steps: int = 4096):
        self.solver = diffrax.Euler() if solver is None else solver
        self.stepsize_controller = (diffrax.ConstantStepSize() if stepsize_controller is None
                                    else stepsize_controller)
        self.dt0, self.t1, self.tol = leaf(dt0), leaf(t1), leaf(tol)
        self.max_steps = max_steps

    def __check_init__(self):
        if not isinstance(self.solver, diffrax.AbstractSolver):
            raise ConfigError(f"`Integrate`: `solver`={self.solver!r} must be a diffrax solver "
                              "instance, e.g. diffrax.Tsit5().")
        if not isinstance(self.stepsize_controller, diffrax.AbstractStepSizeController):
            raise ConfigError(
                f"`Integrate`: `stepsize_controller`={self.stepsize_controller!r} must be a "
                "diffrax controller instance, e.g. diffrax.PIDController(rtol=1e-4, atol=1e-6) "
                "or diffrax.ConstantStepSize().")
        check_number("Integrate", "dt0", self.dt0)
        check_number("Integrate", "t1", self.t1)
        check_number("Integrate", "tol", self.tol, allow_zero=True)
        check_count("Integrate", "max_steps", self.max_steps)

    def solve(self, problem: RelaxProblem, *, key: PRNGKeyArray | None = None) -> RelaxResult:
        field, args, s0 = problem.field, problem.args, tuple(problem.y0)
        dtype = s0[0].dtype  # times in the state's dtype: float32 stays float32 under x64
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            self.solver,
            t0=jnp.asarray(0.0, dtype),
            t1=as_dtype(self.t1, dtype),
            dt0=as_dtype(self.dt0, dtype),
            y0=s0,
            args=args,
            saveat=diffrax.SaveAt(t1=True),
            stepsize_controller=self.stepsize_controller,
            event=diffrax.Event(_Steady(field, self.tol)),
            max_steps=self.max_steps,
            throw=False,
        )
        states = tuple(a[-1] for a in sol.ys)
        residual = problem.residual(states)
        tol = as_dtype(self.tol, residual.dtype)
        dr = sol.result
        ended = (dr == diffrax.RESULTS.successful) | (dr == diffrax.RESULTS.max_steps_reached)
        # tol 0: no steady-state test (the event never fires), success is reaching t1
        reached = (dr == diffrax.RESULTS.event_occurred) | (residual < tol) | (
            (tol == 0) & (dr == diffrax.RESULTS.successful))
        converged, result = status(
            residual, self.tol, reached,
            RESULTS.where(ended, RESULTS.max_steps_reached, RESULTS.solver_failed))
        return RelaxResult(states, sol.stats["num_steps"], residual, converged, sol.ts[-1],
                           result)

    def describe(self) -> str:
        return (f"Integrate({type(self.solver).__name__}, "
                f"{type(self.stepsize_controller).__name__}, dt0={float(self.dt0):g}, "
                f"t1={float(self.t1):g})")
