"""The entry points: `relax` (checked, jitted once per relaxation type and static settings),
`relax_core` (jittable) and `trajectory`.

A relaxation integrates or iterates the derived field (`-dF/ds`, or its leaky-integrator form)
from an initial state until the residual `max |ds/dt|` over the batch falls below `tol` (see
`CompiledSystem.residual`), or until its horizon runs out, in which case the result says so
(`RelaxResult.result`). The teacher enters only through `beta`. How to relax is an
`AbstractRelaxation` (`Integrate`, `FusedEuler`, `BlockSweeps`, `Langevin`, or a user's own);
a 0.1 `RelaxConfig` is accepted wherever a relaxation is, and converted.
"""

from __future__ import annotations

import warnings

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import ConfigError, ConvergenceError
from ._base import RESULTS, AbstractRelaxation, RelaxProblem, RelaxResult, _Field, _PairField
from ._base import max_norm  # noqa: F401  (0.1 import path)
from ._config import SOLVERS, RelaxConfig, as_relaxation  # noqa: F401  (0.1 import path)
from ._integrate import Integrate

__all__ = ["relax", "relax_core", "relax_problem", "trajectory", "Trajectory"]


def relax_problem(model, x, s0, beta, d=None, clamped=None) -> RelaxProblem:
    """The `RelaxProblem` of relaxing `model` with input `x`, target `d` and nudging `beta`
    from `s0` (jittable). A complex `beta` or `s0` gives a paired problem (real and imaginary
    parts as real states); `clamped` (one bool per state) holds states at their start."""
    system = model.system
    field = _Field(system, None if clamped is None else tuple(bool(c) for c in clamped))
    params = model.params
    inputs = model.inputs(x, d)
    real_dtype = jnp.real(jnp.asarray(s0[0])).dtype
    if jnp.iscomplexobj(beta) or jnp.iscomplexobj(s0[0]):
        cdtype = jnp.result_type(real_dtype, jnp.complex64)
        beta = jnp.asarray(beta, dtype=cdtype)
        s0 = tuple(jnp.asarray(a, cdtype) for a in s0)
        consts = system.constants(s0, params, inputs, beta)
        y0 = tuple(jnp.real(a) for a in s0) + tuple(jnp.imag(a) for a in s0)
        args = _PairField.pair_args((params, inputs, beta, consts))
        return RelaxProblem(_PairField(field), args, y0)
    free_phase = _python_zero(beta)
    beta = jnp.asarray(beta, dtype=s0[0].dtype)
    consts = system.constants(s0, params, inputs, beta)
    return RelaxProblem(field, (params, inputs, beta, consts), tuple(s0), free_phase)


def relax_core(model, x, s0, beta, d, relaxation: AbstractRelaxation | RelaxConfig | None,
               clamped=None, key: PRNGKeyArray | None = None) -> RelaxResult:
    """Jittable relaxation of `model` with input `x`, target `d` and nudging `beta` from `s0`.

    `relaxation`: an `AbstractRelaxation` (or a `RelaxConfig`, converted; `None`: the default
    `RelaxConfig()`'s). `clamped` (optional, one bool per state) holds the flagged states at
    their values in `s0` (their field is masked to zero), e.g. the output in contrastive
    Hebbian learning. `key`: for relaxations that draw noise (`Langevin`).

    A complex `beta` (holomorphic EP) relaxes the holomorphic extension of the dynamics: the
    states are complex (real parts and imaginary parts integrated as real arrays) and so are
    the returned ones; the activation must be holomorphic.
    """
    relaxation = as_relaxation(relaxation)
    problem = relax_problem(model, x, s0, beta, d, clamped)
    res = relaxation.solve(problem, key=key)
    if problem.paired:
        return RelaxResult(problem.observe(res.states), res.steps, res.residual,
                           res.converged, res.t, res.result)
    return res


def _python_zero(beta) -> bool:
    """Whether `beta` is a zero known at trace time (a Python or NumPy number, not a traced
    array): a free phase, whose block structure may hold where a nudged one's does not (a
    softmax readout couples the last layer to itself)."""
    return (isinstance(beta, (int, float, np.number)) and not isinstance(beta, bool)
            and beta == 0)


_relax_jit = eqx.filter_jit(relax_core)


class Trajectory(eqx.Module):
    """States and field of a relaxation saved at given times (see `trajectory`).

    **Fields:** `ts` `(T,)`; `states` and `field` one `(T, B, n_k)` array per state
    (integrated variables and their time derivatives); `steps` (solver steps taken).
    """

    ts: Array
    states: tuple[Array, ...]
    field: tuple[Array, ...]
    steps: Array


def trajectory(model, x, s0, ts, *, beta=0.0, d=None,
               config: Integrate | RelaxConfig | None = None):
    """Integrate the dynamics from `s0` at nudging `beta` and save the state at the times `ts`.

    No steady-state event: the solve runs to `ts[-1]` (one compiled program per shape).
    `config` (an `Integrate`, or a `RelaxConfig` whose solver settings are used whatever its
    backend) gives the solver, step-size controller, `dt0` and `max_steps` (its `t1` and `tol`
    are not used). Returns a `Trajectory`.
    """
    config = config or RelaxConfig()
    if isinstance(config, RelaxConfig):
        config = Integrate(*config.solver_and_controller(), dt0=config.dt0, t1=config.t1,
                           tol=config.tol, max_steps=config.max_steps)
    if not isinstance(config, Integrate):
        raise ConfigError(f"`config`={config!r}: a trajectory integrates with diffrax; pass "
                          "an Integrate(...) or a RelaxConfig.")
    dtype = s0[0].dtype
    # beta and the times as arrays: Python floats would be static and recompile per value
    return _trajectory(model, x, tuple(s0), jnp.asarray(ts, dtype), jnp.asarray(beta, dtype),
                       d, config)


@eqx.filter_jit
def _trajectory(model, x, s0, ts, beta, d, config):
    system = model.system
    field = _Field(system)
    params = model.params
    inputs = model.inputs(x, d)
    dtype = s0[0].dtype
    beta = jnp.asarray(beta, dtype)
    ts = jnp.asarray(ts, dtype)
    args = (params, inputs, beta, system.constants(s0, params, inputs, beta))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), config.solver, t0=jnp.asarray(0.0, dtype), t1=ts[-1],
        dt0=jnp.asarray(config.dt0).astype(dtype), y0=tuple(s0), args=args,
        saveat=diffrax.SaveAt(ts=ts), stepsize_controller=config.stepsize_controller,
        max_steps=config.max_steps,
    )
    f = jax.vmap(lambda y: field(0.0, y, args))(sol.ys)
    return Trajectory(ts, tuple(sol.ys), tuple(f), sol.stats["num_steps"])


def _check_batch(name, a, shape_tail, hint):
    a = jnp.asarray(a)
    if a.ndim != 2 or a.shape[1:] != shape_tail:
        raise ConfigError(f"`{name}` has shape {a.shape}; expected (batch, {shape_tail[0]}). {hint}")
    if not bool(jnp.all(jnp.isfinite(a))):
        raise ConfigError(f"`{name}` contains NaN or inf; clean the data before relaxing.")
    return a


def relax(
    model,
    x: Float[Array, "B n_in"],
    s0=None,
    *,
    beta: float = 0.0,
    d: Float[Array, "B n_out"] | None = None,
    relaxation: AbstractRelaxation | RelaxConfig | None = None,
    config: RelaxConfig | None = None,
    key: PRNGKeyArray | None = None,
    on_failure: str | None = None,
) -> RelaxResult:
    """Relax `model` to equilibrium for the input batch `x`.

    **Arguments:**

    - `model`: an `eqdyn.AbstractEnergyModel` (e.g. `LayeredHopfield`, `EnergyModel`).
    - `x`: clamped input, shape `(B, n_in)`.
    - `s0`: initial state (tuple of `(B, n_k)` arrays); zeros if `None`.
    - `beta`: nudging strength (0 for the free phase). A new value does not recompile (a
      Python zero is compiled once on its own: a free phase).
    - `d`: target for the output, shape `(B, n_out)`; required when `beta != 0`.
    - `relaxation`: how to relax, an `AbstractRelaxation` (`FusedEuler(...)`,
      `BlockSweeps(...)`, `Integrate(diffrax.Tsit5(), diffrax.PIDController(...), ...)`,
      `Langevin(...)`, a user's own) or a `RelaxConfig`; default `RelaxConfig()`'s
      (`Integrate` with Euler steps of 0.5 to `t1 = 500`, `tol = 1e-4`).
    - `config`: a `RelaxConfig` (the 0.1 keyword; give `relaxation` or `config`, not both).
    - `key`: PRNG key, for relaxations that draw noise (`Langevin`).
    - `on_failure`: `"warn"`, `"raise"` or `"ignore"` when the relaxation ends with
      `max_steps_reached` or `solver_failed`; default a `RelaxConfig`'s, else `"warn"`.

    **Returns:** a `RelaxResult`. Always raises `ConvergenceError` on non-finite states.
    """
    if relaxation is not None and config is not None:
        raise ConfigError("give `relaxation` or `config`, not both (`config` is the 0.1 name).")
    given = config if relaxation is None else relaxation
    if on_failure is None:
        on_failure = given.on_failure if isinstance(given, RelaxConfig) else "warn"
    if on_failure not in ("warn", "raise", "ignore"):
        raise ConfigError(f"`on_failure`={on_failure!r} is not known; use 'warn', 'raise' or "
                          "'ignore'.")
    relaxation = as_relaxation(given)
    x = _check_batch("x", x, (model.input_size,), "Flatten inputs to rows.")
    if d is not None:
        d = _check_batch("d", d, (model.n_outputs,), "Targets are one row per example.")
        if d.shape[0] != x.shape[0]:
            raise ConfigError(f"`d` has {d.shape[0]} rows but `x` has {x.shape[0]}.")
    elif beta != 0:
        raise ConfigError(f"`beta`={beta} nudges the output, so a target `d` is required.")
    if s0 is None:
        s0 = model.init_state(x.shape[0], x.dtype)
    else:
        s0 = tuple(jnp.asarray(s) for s in s0)
        want = tuple((x.shape[0], n) for n in model.state_sizes)
        got = tuple(s.shape for s in s0)
        if got != want:
            raise ConfigError(f"`s0` has shapes {got}; expected {want} (one array per layer).")
    # beta as an array: a Python float would be a static argument and recompile per value;
    # except zero, which tells the block sweeps they relax a free phase
    res = _relax_jit(model, x, s0, 0.0 if _python_zero(beta) else jnp.asarray(beta, x.dtype),
                     d, relaxation, None, key)
    if not np.isfinite(float(res.residual)):
        raise ConvergenceError(
            f"the relaxation produced non-finite states (residual {float(res.residual)}) with "
            f"{relaxation.describe()}; reduce the step, use an adaptive solver, or check the "
            "weights for divergence."
        )
    failed = (res.result == RESULTS.max_steps_reached) | (res.result == RESULTS.solver_failed)
    if bool(failed) and on_failure != "ignore":
        msg = (
            f"relaxation did not reach a steady state: residual {float(res.residual):.3g} > "
            f"tol {float(relaxation.tol):g} after {int(res.steps)} steps (t = "
            f"{float(res.t):g}) with {relaxation.describe()}: {RESULTS[res.result]}."
        )
        if on_failure == "raise":
            raise ConvergenceError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return res
