"""Spiking units as a relaxation (`Spiking`): the derived leaky-integrator dynamics with every
rate `rho(u_j)` replaced by the synaptic trace of unit `j`'s spike train.

Each unit `j` emits spikes from its potential `u_j` (a `Poisson` unit at rate
`rho(u_j) max_rate`, or an `LIF` unit driven by `rho(u_j)`); its synapses filter them into an
exponential trace `r_j` (time constant `tau_syn`) whose mean is the unit's rate over
`max_rate`; the potentials integrate the derived field at the traces,
`du/dt = field(u, rho(u) -> r)` (`CompiledSystem.field_at_rates`). Averaged, the network
follows the rate model: its traces approach `rho(u*)` as the firing rates grow and the step
shrinks (tested). Fixed step, one `lax.fori_loop`, vectorised over the batch, deterministic
for a key.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._errors import ConfigError
from ._base import (AbstractRelaxation, RelaxProblem, RelaxResult, as_dtype, check_count,
                    check_number, concrete, leaf, status)
from ._fused import horizon_steps
from ._relax import relax_problem

__all__ = ["AbstractUnit", "Poisson", "LIF", "Spiking", "SpikeRecord", "record_spikes"]


class AbstractUnit(eqx.Module):
    """How a unit turns its rate `rho(u)` (dimensionless) into spikes, one step at a time.

    Subclasses set `max_rate` (spikes per unit time at `rho = 1`) and implement `init`
    (the unit's own state, a pytree) and `step`.
    """

    max_rate: eqx.AbstractVar[Array]

    @abc.abstractmethod
    def init(self, rate: Array):
        """The unit's state before the first step, for rates shaped like `rate`."""

    @abc.abstractmethod
    def step(self, state, rate: Array, dt, key: PRNGKeyArray) -> tuple:
        """One step of `dt` at `rate`: returns `(state, spikes)`, `spikes` a bool array."""

    def check_step(self, dt) -> None:
        """Raise a `ConfigError` when the step `dt` does not suit the unit."""

    def expected_rate(self, rho):
        """The mean firing rate (spikes per unit time) at `rho`, in the limit `dt -> 0`."""
        return jnp.clip(rho, 0.0, None) * self.max_rate


def _check_rate(owner, max_rate):
    check_number(owner, "max_rate", max_rate)


class Poisson(AbstractUnit):
    """A stochastic unit: in each step of `dt` it fires with probability
    `clip(rho(u), 0, 1) max_rate dt` (a Bernoulli draw per step, Poisson as `dt -> 0`).

    **Arguments:** `max_rate`: the rate at `rho = 1`, spikes per unit of time (`tau = 1`);
    positive, with `max_rate dt <= 1` (checked by `Spiking`).
    """

    max_rate: Array

    def __init__(self, max_rate=100.0):
        self.max_rate = leaf(max_rate)

    def __check_init__(self):
        _check_rate("Poisson", self.max_rate)

    def init(self, rate):
        return ()

    def step(self, state, rate, dt, key):
        p = jnp.clip(rate, 0.0, 1.0) * as_dtype(self.max_rate * dt, rate.dtype)
        return state, jax.random.uniform(key, rate.shape, rate.dtype) < p

    def check_step(self, dt):
        m, h = concrete(self.max_rate), concrete(dt)
        if m is not None and h is not None and m * h > 1.0:
            raise ConfigError(
                f"`Poisson`: `max_rate`={m!r} with `dt`={h!r} gives a firing probability "
                f"{m * h:g} > 1 per step; take dt <= {1.0 / m:g} or a lower max_rate.")


class LIF(AbstractUnit):
    """A leaky integrate-and-fire unit driven by its rate:
    `dv/dt = -(v - reset) / tau_m + (threshold - reset) max_rate rho(u)`; it fires when `v`
    reaches `threshold`, then `v = reset` for `refractory`.

    **Arguments:** `threshold`, `reset` (`threshold > reset`), `refractory` (> 0, at least the
    step), `tau_m` (membrane time constant; `None`: a perfect integrator, which fires at
    `max_rate rho` apart from the refractory period), `max_rate` (> 0). Times in units of the
    network's `tau`.

    Its mean rate is the f-I curve `expected_rate(rho) = 1 / (refractory + T)`,
    `T = tau_m log(1 / (1 - 1 / (max_rate rho tau_m)))` (no spikes when
    `max_rate rho tau_m <= 1`), `T = 1 / (max_rate rho)` for `tau_m=None`.
    """

    threshold: Array
    reset: Array
    refractory: Array
    tau_m: Array | None
    max_rate: Array

    def __init__(self, threshold=1.0, reset=0.0, refractory=1e-3, tau_m=None, max_rate=100.0):
        self.threshold, self.reset = leaf(threshold), leaf(reset)
        self.refractory, self.max_rate = leaf(refractory), leaf(max_rate)
        self.tau_m = None if tau_m is None else leaf(tau_m)

    def __check_init__(self):
        for name in ("threshold", "reset"):
            check_number("LIF", name, getattr(self, name), positive=False)
        th, re = concrete(self.threshold), concrete(self.reset)
        if th is not None and re is not None and th <= re:
            raise ConfigError(f"`LIF`: `threshold`={th!r} must be above `reset`={re!r}.")
        check_number("LIF", "refractory", self.refractory)
        if self.tau_m is not None:
            check_number("LIF", "tau_m", self.tau_m)
        _check_rate("LIF", self.max_rate)

    def check_step(self, dt):
        r, h = concrete(self.refractory), concrete(dt)
        if r is not None and h is not None and h > r * (1 + 1e-9):
            raise ConfigError(f"`LIF`: the step `dt`={h!r} is larger than the refractory "
                              f"period `refractory`={r!r}; take dt <= {r:g}.")

    def init(self, rate):
        return jnp.full_like(rate, as_dtype(self.reset, rate.dtype)), jnp.zeros_like(rate)

    def step(self, state, rate, dt, key):
        v, left = state  # membrane, refractory time left
        dtype = rate.dtype
        th, re = as_dtype(self.threshold, dtype), as_dtype(self.reset, dtype)
        drive = (th - re) * as_dtype(self.max_rate, dtype) * jnp.clip(rate, 0.0, None)
        dv = drive if self.tau_m is None else drive - (v - re) / as_dtype(self.tau_m, dtype)
        # refractory as brian2 counts it: held while the time since the spike is under
        # `refractory`, i.e. for round(refractory / dt) - 1 steps after the spike's
        left = jnp.maximum(left - dt, 0.0)
        v = jnp.where(left <= as_dtype(dt, dtype) * 0.5, v + dt * dv, re)
        spikes = v >= th
        v = jnp.where(spikes, re, v)
        left = jnp.where(spikes, as_dtype(self.refractory, dtype), left)
        return (v, left), spikes

    def expected_rate(self, rho):
        drive = jnp.clip(rho, 0.0, None) * self.max_rate
        if self.tau_m is None:
            charge = 1.0 / drive
        else:
            x = drive * self.tau_m
            charge = jnp.where(x > 1, self.tau_m * jnp.log(x / jnp.where(x > 1, x - 1, 1.0)),
                               jnp.inf)
        return 1.0 / (self.refractory + charge)


class SpikeRecord(eqx.Module):
    """What a `Spiking` simulation saw.

    **Fields:** `states` (the potentials at the end, one `(B, n_k)` array per state),
    `traces` (the synaptic traces at the end), `mean_traces` (their time average from
    `average_from` of the horizon on: the estimate of `rho(u*)`), `spike_counts` (spikes of
    each unit over the whole horizon), `steps`, `t`, and with `Spiking(stdp=True)`, `stdp`:
    the STDP form of the rule accumulated along the traces, `int_0^t d/dt dF/dtheta(r) dt'`
    (summed over the batch, one array per parameter), averaged over `t` in the same window
    as `mean_traces`.
    """

    states: tuple[Float[Array, "B n"], ...]
    traces: tuple[Float[Array, "B n"], ...]
    mean_traces: tuple[Float[Array, "B n"], ...]
    spike_counts: tuple[Int[Array, "B n"], ...]
    steps: Int[Array, ""]
    t: Float[Array, ""]
    stdp: tuple | None = None


class Spiking(AbstractRelaxation):
    """Spiking units relaxing the derived leaky-integrator dynamics for a fixed horizon.

    **Arguments:**

    - `unit`: an `AbstractUnit` (`Poisson(max_rate)`, `LIF(...)`), the same for every unit.
    - `dt`: the step (an array leaf).
    - `t1`: the horizon: `ceil(t1 / dt)` steps (at most `max_steps`).
    - `tau_syn`: the synaptic trace's time constant (> 0). Each spike adds
      `(1 - exp(-dt / tau_syn)) / (max_rate dt)` to its trace, which decays by
      `exp(-dt / tau_syn)` per step, so the trace's mean is exactly the unit's rate over
      `max_rate` (`rho(u)` for a `Poisson` unit).
    - `average_from`: the fraction of the horizon after which `mean_traces` averages (static).
    - `readout` (static): what `solve` returns as the states: `"potentials"` (at `t1`) or
      `"traces"` (the time-averaged traces as potentials, so that `rho(states)` is the rate
      the synapses carried: EP's update from spike traces; projection activations only).
    - `stdp` (static): also accumulate the STDP form of the rule along the traces
      (`SpikeRecord.stdp`; one parameter-sized product per step).
    - `tol`: steady-state test of the deterministic field at the end (0: none; the status is
      `fixed_horizon` either way unless the states are not finite).
    - `max_steps`: step budget (static).

    `solve` returns a `RelaxResult` whose `states` are the potentials at `t1` (or, with
    `readout="traces"`, the averaged traces); `simulate`
    returns the whole `SpikeRecord` (traces, their time average, spike counts). The traces
    start at `rho(u0)`. Needs the leaky formulation (potentials read out as rates) and a
    real problem. Deterministic for a `key` (required).
    """

    unit: AbstractUnit
    dt: Array
    t1: Array
    tau_syn: Array
    tol: Array
    average_from: float = eqx.field(static=True)
    readout: str = eqx.field(static=True)
    stdp: bool = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)

    def __init__(self, unit: AbstractUnit, dt=1e-3, t1=20.0, tau_syn=0.1, *,
                 average_from: float = 0.5, readout: str = "potentials", stdp: bool = False,
                 tol=0.0, max_steps: int = 10**7):
        self.unit = unit
        self.readout = readout
        self.stdp = bool(stdp)
        self.dt, self.t1, self.tau_syn, self.tol = leaf(dt), leaf(t1), leaf(tau_syn), leaf(tol)
        self.average_from = float(average_from)
        self.max_steps = max_steps

    def __check_init__(self):
        if not isinstance(self.unit, AbstractUnit):
            raise ConfigError(f"`Spiking`: `unit`={self.unit!r} must be a unit model such as "
                              "Poisson(max_rate) or LIF(threshold, reset, refractory, tau_m).")
        for name in ("dt", "t1", "tau_syn"):
            check_number("Spiking", name, getattr(self, name))
        check_number("Spiking", "tol", self.tol, allow_zero=True)
        check_count("Spiking", "max_steps", self.max_steps)
        if not 0.0 <= self.average_from < 1.0:
            raise ConfigError(f"`Spiking`: `average_from`={self.average_from!r} must be in "
                              "[0, 1) (a fraction of the horizon).")
        if self.readout not in ("potentials", "traces"):
            raise ConfigError(f"`Spiking`: `readout`={self.readout!r} is not known; use "
                              "'potentials' or 'traces'.")
        self.unit.check_step(self.dt)

    def simulate(self, problem: RelaxProblem, *, key: PRNGKeyArray | None = None
                 ) -> SpikeRecord:
        """Run the spiking network on `problem` (jittable); see the class docstring."""
        if key is None:
            raise ConfigError("`Spiking` draws spikes: pass a PRNG `key` (e.g. "
                              "jax.random.PRNGKey(0)) to relax / relax_core.")
        if problem.paired:
            raise ConfigError("`Spiking` relaxes real states; a complex beta or state "
                              "(holomorphic EP) has no spiking counterpart.")
        system = problem.system
        params, inputs, beta, consts = problem.args
        clamped = problem.field.clamped
        y0 = tuple(problem.y0)
        dtype = y0[0].dtype
        dt = as_dtype(self.dt, dtype)
        decay = jnp.exp(-dt / as_dtype(self.tau_syn, dtype))
        jump = (1 - decay) / (as_dtype(self.unit.max_rate, dtype) * dt)
        n = horizon_steps(self.t1, self.dt, self.max_steps)
        n_avg = jnp.floor(n * self.average_from).astype(jnp.int32)
        r0 = tuple(system.observe(y0))
        unit0 = tuple(self.unit.init(r) for r in r0)
        zeros = tuple(jnp.zeros_like(a) for a in y0)
        counts0 = tuple(jnp.zeros(a.shape, jnp.int32) for a in y0)

        stdp0 = (tuple(jnp.zeros_like(p) for p in params),) * 2 if self.stdp else ()

        def body(k, carry):
            u, r, us, acc, counts, stdp = carry
            r_old = r
            keys = jax.random.split(jax.random.fold_in(key, k), len(u))
            out = [self.unit.step(s, rho, dt, kk)
                   for s, rho, kk in zip(us, system.observe(u), keys)]
            us = tuple(o[0] for o in out)
            spikes = tuple(o[1] for o in out)
            r = tuple(decay * a + jump * s.astype(dtype) for a, s in zip(r, spikes))
            f = system.field_at_rates(u, r, params, inputs, beta, consts)
            if clamped is not None:
                f = tuple(jnp.zeros_like(a) if c else a for a, c in zip(f, clamped))
            u = tuple(a + dt * b for a, b in zip(u, f))
            w = (k >= n_avg).astype(dtype)
            acc = tuple(a + w * b for a, b in zip(acc, r))
            counts = tuple(c + s.astype(jnp.int32) for c, s in zip(counts, spikes))
            if self.stdp:  # the running integral of d/dt dF/dtheta, and its window sum
                rates = system.param_rates_at_rates(
                    r_old, tuple((a - b) / dt for a, b in zip(r, r_old)), params, inputs, beta)
                run = tuple(a + dt * g for a, g in zip(stdp[0], rates))
                stdp = (run, tuple(a + w * b for a, b in zip(stdp[1], run)))
            return u, r, us, acc, counts, stdp

        u, r, _, acc, counts, stdp = jax.lax.fori_loop(
            0, n, body, (y0, r0, unit0, zeros, counts0, stdp0))
        m = jnp.maximum(n - n_avg, 1).astype(dtype)
        return SpikeRecord(u, r, tuple(a / m for a in acc), counts, n, n.astype(dtype) * dt,
                           tuple(a / m for a in stdp[1]) if self.stdp else None)

    def solve(self, problem: RelaxProblem, *, key: PRNGKeyArray | None = None) -> RelaxResult:
        rec = self.simulate(problem, key=key)
        states = rec.states
        if self.readout == "traces":
            act = problem.system.activation
            if not act.projection:
                raise ConfigError(
                    f"`Spiking(readout='traces')` returns the averaged traces as potentials, "
                    f"which needs a projection activation (rho(r) = r on its range); "
                    f"{act.name!r} is not one: use readout='potentials'.")
            states = rec.mean_traces
        residual = problem.residual(states)
        finite = jnp.isfinite(residual)
        converged, result = status(residual, 0.0)  # fixed_horizon or nonfinite
        tol = as_dtype(self.tol, residual.dtype)
        converged = finite & ((tol == 0) | (residual < tol))
        return RelaxResult(states, rec.steps, residual, converged, rec.t, result)

    def describe(self) -> str:
        return (f"Spiking({type(self.unit).__name__}, dt={float(self.dt):g}, "
                f"t1={float(self.t1):g}, tau_syn={float(self.tau_syn):g})")


def record_spikes(model, x, spiking: Spiking, *, key: PRNGKeyArray, s0=None, beta=0.0,
                  d=None) -> SpikeRecord:
    """Simulate `model`'s spiking network on the batch `x` (jitted once per shapes and
    `spiking`'s static settings): `spiking.simulate` on the problem `relax` would build.

    **Arguments:** `model` (leaky formulation), `x` `(B, n_in)`, `spiking` a `Spiking`,
    `key` (required), `s0` (default the model's initial state), `beta` and `d` (nudging).

    **Returns:** a `SpikeRecord`.
    """
    if not isinstance(spiking, Spiking):
        raise ConfigError(f"`spiking`={spiking!r} must be a Spiking(...) relaxation.")
    x = jnp.asarray(x)
    if s0 is None:
        s0 = model.init_state(x.shape[0], x.dtype)
    if beta != 0 and d is None:
        raise ConfigError(f"`beta`={beta} nudges the output, so a target `d` is required.")
    return _record(model, x, tuple(s0), jnp.asarray(beta, x.dtype), d, spiking, key)


@eqx.filter_jit
def _record(model, x, s0, beta, d, spiking, key):
    return spiking.simulate(relax_problem(model, x, s0, beta, d), key=key)

