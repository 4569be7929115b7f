"""What every relaxation shares: the problem it solves, its base class, its result and status.

A relaxation takes a `RelaxProblem` (the system's field with its arguments and a start) and
returns a `RelaxResult` whose `result` is one of `RESULTS`, in the spirit of diffrax's
`RESULTS`. `relax`/`relax_core` build the problem from a model; a user's relaxation
subclasses `AbstractRelaxation` and implements `solve`.
"""

from __future__ import annotations

import abc
import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .._errors import ConfigError

__all__ = ["RESULTS", "RelaxProblem", "AbstractRelaxation", "RelaxResult", "max_norm"]


class RESULTS(eqx.Enumeration):
    """How a relaxation ended (an `equinox.Enumeration`, as diffrax's `RESULTS`)."""

    successful = "the residual fell below `tol`"
    max_steps_reached = ("the horizon or the step budget was spent before the residual fell "
                         "below `tol`; increase the horizon (`t1`, `max_steps`, `max_sweeps`) "
                         "or loosen `tol`")
    nonfinite = ("the states or the residual are not finite; reduce the step, or check the "
                 "weights for divergence")
    fixed_horizon = ("the relaxation ran its whole horizon by design (`tol=0`, or a noisy "
                     "relaxation); the residual is the deterministic field's at the end")
    solver_failed = "the diffrax solver failed (e.g. its step size fell below its minimum)"


def max_norm(tree) -> Array:
    """The largest absolute entry of a pytree of arrays (the residual norm)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.max(jnp.stack([jnp.max(jnp.abs(a)) for a in leaves]))


def leaf(v):
    """A number setting as an array leaf (traced under `jit`, so a new value does not
    recompile). Python numbers are stored as float64 NumPy scalars, so that a relaxation
    built outside an `enable_x64` scope keeps its exact value inside one; arrays and tracers
    are kept as they are."""
    if isinstance(v, (jax.Array, np.ndarray, jax.core.Tracer)):
        return v
    return np.asarray(v, np.float64)


def concrete(v):
    """`v` as a Python float when it is known at trace time, else `None`."""
    if isinstance(v, jax.core.Tracer):
        return None
    try:
        return float(v)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return None


def check_number(owner: str, name: str, v, *, positive=True, allow_zero=False):
    """Raise a `ConfigError` when the concrete number `v` is not finite, or not positive
    (`allow_zero`: `>= 0`). Traced values are not checked."""
    c = concrete(v)
    if c is None:
        return
    bad = not np.isfinite(c) or (positive and (c < 0 if allow_zero else c <= 0))
    if bad:
        want = "a finite number >= 0" if allow_zero else "a positive finite number"
        raise ConfigError(f"`{owner}`: `{name}`={c!r} must be {want}.")


def check_count(owner: str, name: str, v):
    if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0):
        raise ConfigError(f"`{owner}`: `{name}`={v!r} must be a positive integer.")


def as_dtype(v, dtype):
    """A leaf in the states' dtype (the value a Python float would take there)."""
    return jnp.asarray(v).astype(dtype)


class _Field(eqx.Module):
    """The system's field as a diffrax vector field, with the components of clamped states set
    to zero (a Module, so equal across calls: diffrax does not retrace)."""

    system: object = eqx.field(static=True)
    clamped: tuple[bool, ...] | None = eqx.field(static=True, default=None)

    def __call__(self, t, y, args):
        f = self.system.ode(t, y, args)
        if self.clamped is None:
            return f
        return tuple(jnp.zeros_like(a) if c else a for a, c in zip(f, self.clamped))

    def residual(self, y, f):
        return self.system.residual(y, f)

    def observe(self, y):
        return tuple(y)


class _PairField(eqx.Module):
    """A complex relaxation (holomorphic EP: complex `beta`) as a real one.

    The state is `(Re s_1, ..., Re s_n, Im s_1, ..., Im s_n)`; the field is the holomorphic
    extension of the system's field evaluated on `s = Re s + i Im s`, split the same way. Real
    pairs keep diffrax's times, step control and events real.
    """

    inner: _Field

    @property
    def system(self):
        return self.inner.system

    def observe(self, y):
        n = len(y) // 2
        return tuple(jax.lax.complex(a, b) for a, b in zip(y[:n], y[n:]))

    @staticmethod
    def pair_args(args):
        params, inputs, beta, consts = args
        split = lambda a: (jnp.real(a), jnp.imag(a))  # noqa: E731
        return params, inputs, split(beta), tuple(split(c) for c in consts)

    @staticmethod
    def unpair_args(args):
        params, inputs, beta, consts = args
        join = lambda p: jax.lax.complex(*p)  # noqa: E731
        return params, inputs, join(beta), tuple(join(c) for c in consts)

    def __call__(self, t, y, args):
        f = self.inner(t, self.observe(y), self.unpair_args(args))
        return tuple(jnp.real(a) for a in f) + tuple(jnp.imag(a) for a in f)

    def residual(self, y, f):
        return self.inner.system.residual(self.observe(y), self.observe(f))


class RelaxProblem(eqx.Module):
    """What every relaxation solves: `dy/dt = field(t, y, args)` from `y0` to a steady state.

    **Fields:**

    - `field`: the system's vector field `f(t, y, args) -> dy/dt` (clamped components zeroed;
      a complex relaxation is split into real pairs, see `paired`).
    - `args`: `(params, inputs, beta, consts)`.
    - `y0`: the start, a tuple of real `(B, n_k)` arrays.
    - `free_phase` (static): `beta` is a Python zero (block sweeps need less structure then).

    `f(y)` evaluates the field, `residual(y)` the system's steady-state residual (max-norm of
    the force, with the leaky form's outward forces at a bound not counted), `observe(y)` the
    states a caller gets back (complex for a paired problem).
    """

    field: _Field | _PairField
    args: tuple
    y0: tuple
    free_phase: bool = eqx.field(static=True, default=False)

    @property
    def system(self):
        """The `CompiledSystem` (block structure, activation bounds, time constants)."""
        return self.field.system

    @property
    def paired(self) -> bool:
        """Whether the states are complex, integrated as real pairs `(Re s, Im s)`."""
        return isinstance(self.field, _PairField)

    @property
    def beta(self):
        return self.args[2]

    def f(self, y):
        """The field at `y`."""
        return self.field(None, y, self.args)

    def residual(self, y, f=None):
        """The steady-state residual at `y` (from its field `f`, evaluated if not given)."""
        return self.field.residual(y, self.f(y) if f is None else f)

    def observe(self, y):
        return self.field.observe(y)


class RelaxResult(eqx.Module):
    """The outcome of a relaxation, whichever relaxation it was.

    **Fields:** `states` (integrated variables, one `(B, n_k)` array per layer), `steps`
    (steps, or sweeps, taken), `residual` (the steady-state residual at the end, measured:
    never NaN unless the states are), `converged` (`result == RESULTS.successful`; for
    `fixed_horizon`: at `tol = 0`, the horizon run with finite states, and for a noisy
    relaxation, `residual < tol`), `t` (time reached, or sweeps), `result` (a `RESULTS` item).

    Built without `result` (the 0.1 signature), the status is derived from `converged` and
    the residual.
    """

    states: tuple[Float[Array, "B n"], ...]
    steps: Int[Array, ""]
    residual: Float[Array, ""]
    converged: Bool[Array, ""]
    t: Float[Array, ""]
    result: RESULTS

    def __init__(self, states, steps, residual, converged, t, result=None):
        self.states = states
        self.steps = steps
        self.residual = residual
        self.converged = converged
        self.t = t
        if result is None:
            result = RESULTS.where(
                converged, RESULTS.successful,
                RESULTS.where(jnp.isfinite(residual), RESULTS.max_steps_reached,
                              RESULTS.nonfinite))
        self.result = result


def status(residual, tol, converged=None, exhausted=None):
    """`(converged, result)` of a relaxation that ended with `residual`.

    `converged` (default `residual < tol`, or with `tol == 0`, no steady-state test, the whole
    horizon run) is the success test; a non-finite residual is `nonfinite`; a success at
    `tol == 0` is `fixed_horizon`, one below a positive `tol` `successful`; anything else is
    `exhausted` (default `max_steps_reached`).
    """
    finite = jnp.isfinite(residual)
    tol = as_dtype(tol, residual.dtype)
    conv = ((residual < tol) | (tol == 0)) if converged is None else converged
    conv = conv & finite
    exhausted = RESULTS.max_steps_reached if exhausted is None else exhausted
    result = RESULTS.where(conv, RESULTS.where(tol == 0, RESULTS.fixed_horizon,
                                               RESULTS.successful), RESULTS.where(
        ~finite, RESULTS.nonfinite, exhausted))
    return conv, result


class AbstractRelaxation(eqx.Module):
    """How to relax: a strategy object, as a diffrax solver is for `diffeqsolve`.

    Subclasses set `tol` (steady state when the residual is below it; 0: run the whole
    horizon) and implement `solve`. Settings that change the compiled program are static
    fields; numbers that do not (tolerances, steps, temperatures) are array leaves, so a new
    value does not recompile.
    """

    tol: eqx.AbstractVar[Float[Array, ""] | float]

    @abc.abstractmethod
    def solve(self, problem: RelaxProblem, *, key: PRNGKeyArray | None = None) -> RelaxResult:
        """Relax `problem` from `problem.y0`; jittable.

        **Arguments:**

        - `problem`: a `RelaxProblem`.
        - `key`: a PRNG key, for relaxations that draw noise.

        **Returns:** a `RelaxResult` with states shaped like `problem.y0` (real: `relax_core`
        turns a paired problem's states back into complex ones).
        """

    def describe(self) -> str:
        """A one-line description for messages."""
        return type(self).__name__

    def __repr__(self):
        # the numbers a user set, not `f64[](numpy)`: 0-d NumPy leaves shown as values
        def show(v):
            return v.item() if isinstance(v, np.ndarray) and v.ndim == 0 else v

        fields = ", ".join(f"{f.name}={show(getattr(self, f.name))!r}"
                           for f in dataclasses.fields(self))
        return f"{type(self).__name__}({fields})"
