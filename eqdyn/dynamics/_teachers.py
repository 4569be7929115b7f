"""How the teacher `beta(t)` of a continuous-time episode arrives (`eqdyn.dynamics.episode`).

A teacher owns a few *gates* `g` in `[0, 1]`, continuous variables of the episode's ODE, and
says how they move (`gate_field`), what `beta(t)` they make (`__call__`) and its rate
(`beta_rate`), and when the episode is over (`done`). `OnSteady` opens its latches when the
network is at rest (no clock), `Ramp` follows a schedule and `Custom` any function `beta(t)`.
A new teacher subclasses `AbstractTeacher`; the latch mechanics are described in
`eqdyn/dynamics/_continuous.py`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ConfigError

__all__ = ["AbstractTeacher", "OnSteady", "Ramp", "Custom"]

_OPEN = 1e-6  # a latch counts as open when 1 - g < _OPEN


def _latch(g, trigger, rate):
    return rate * (1.0 - g) * (trigger + g)


def _clip(g):
    """A latch as every consumer sees it: in [0, 1] even where a step overshot."""
    return jnp.clip(g, 0.0, 1.0)


def _ramp_below(v, level, width):
    """0 for `v >= width * level`, 1 for `v <= level`, linear in `log v` between: continuous,
    and exactly zero above the band (a latch is autocatalytic, so any positive trigger, however
    small, would eventually open it)."""
    z = (jnp.log(width * level) - jnp.log(jnp.maximum(v, 1e-30))) / jnp.log(width)
    return jnp.clip(z, 0.0, 1.0)


def _settled(residual, tol):
    """1 once `residual <= tol`, 0 above `3 tol`."""
    return _ramp_below(residual, tol, 3.0)


def _opened(g):
    """1 once `1 - g <= _OPEN`, 0 while `1 - g >= 10 _OPEN`."""
    return _ramp_below(1.0 - g, _OPEN, 10.0)


def _smoothstep(z):
    z = jnp.clip(z, 0.0, 1.0)
    return z * z * (3.0 - 2.0 * z)


class AbstractTeacher(eqx.Module):
    """How `beta(t)` and the plasticity gate evolve during an episode.

    Concrete teachers define `n_gates`, `beta_max` (the rule is normalised by `scale`), and
    `__call__(t, gates) -> (beta, plasticity)`, `gate_field(t, gates, residual)`,
    `beta_rate(t, gates, gate_rates)` and `done(t, gates)`.
    """

    @property
    @abc.abstractmethod
    def n_gates(self) -> int:
        ...

    @property
    def per_example(self) -> bool:
        """Whether each example has its own gates (shape `(n_gates, B)`), beta and plasticity."""
        return False

    @property
    @abc.abstractmethod
    def scale(self) -> float:
        """`1/beta_max` (one-sided) or `1/(2 beta_max)` (symmetric)."""

    @abc.abstractmethod
    def __call__(self, t, gates, sign=1.0):
        ...

    @abc.abstractmethod
    def gate_field(self, t, gates, residual):
        ...

    @abc.abstractmethod
    def beta_rate(self, t, gates, gate_rates, sign=1.0):
        ...

    @abc.abstractmethod
    def done(self, t, gates):
        ...


class OnSteady(AbstractTeacher):
    """Event-driven teacher: it arrives when the network has come to rest.

    **Fields:** `beta` (`beta_max` > 0), `symmetric` (sweep `-beta -> +beta` instead of
    `0 -> beta`), `tol` (the steady-state residual that opens a latch; `None`: that of the
    episode's config), `rate` (latch speed, in units of the neurons' time constant),
    `trigger`: `"example"` (each example has its own latches, opened when *that* example is
    at rest, and its own teacher and plasticity; no detector looks at the whole batch) or
    `"batch"` (one set of latches, opened when the largest residual of the batch is below
    `tol`); `None` (default): `"example"` with the STDP-form rule, `"batch"` with the trace
    rule (one eligibility trace per synapse for the batch needs one teacher).
    """

    beta: float = eqx.field(static=True, default=1.0)
    symmetric: bool = eqx.field(static=True, default=False)
    tol: float | None = eqx.field(static=True, default=None)
    rate: float = eqx.field(static=True, default=2.0)
    trigger: str | None = eqx.field(static=True, default=None)

    @property
    def per_example(self):
        return self.trigger == "example"

    def __check_init__(self):
        for name in ("beta", "tol", "rate"):
            v = getattr(self, name)
            if name == "tol" and v is None:
                continue
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ConfigError(f"`{name}`={v!r} of OnSteady must be a positive number.")
        if self.trigger not in ("example", "batch", None):
            raise ConfigError(f"`trigger`={self.trigger!r} of OnSteady must be 'example' "
                              "(each example's teacher arrives when it is at rest) or 'batch'.")

    @property
    def n_gates(self):
        return 4 if self.symmetric else 2

    @property
    def scale(self):
        return 1.0 / (2.0 * self.beta) if self.symmetric else 1.0 / self.beta

    def __call__(self, t, g, sign=1.0):
        b = sign * self.beta
        g = _clip(g)
        if self.symmetric:
            a, p, q = g[1], g[2], g[3]
            return b * (2.0 * q - a), p
        p, q = g[0], g[1]
        return b * q, p

    def gate_field(self, t, g, residual):
        settled = _settled(residual, self.tol)
        g = _clip(g)
        if self.symmetric:
            rest, a, p, q = g[0], g[1], g[2], g[3]
            return jnp.stack([
                _latch(rest, settled, self.rate),
                _latch(a, _opened(rest), self.rate),
                _latch(p, settled * _opened(a), self.rate),
                _latch(q, _opened(p), self.rate),
            ])
        p, q = g[0], g[1]
        return jnp.stack([_latch(p, settled, self.rate), _latch(q, _opened(p), self.rate)])

    def beta_rate(self, t, g, dg, sign=1.0):
        b = sign * self.beta
        if self.symmetric:
            return b * (2.0 * dg[3] - dg[1])
        return b * dg[1]

    def done(self, t, g):
        return jnp.all((1.0 - _clip(g[-1])) < _OPEN)


class Ramp(AbstractTeacher):
    """A scheduled teacher: `beta` ramps smoothly from 0 to `beta` over `[t_on, t_on + rise]`.

    Plasticity switches on smoothly over `[t_on - rise, t_on]`, before the teacher. A schedule
    is a clock; `OnSteady` is the event-driven alternative.
    """

    beta: float = eqx.field(static=True, default=1.0)
    t_on: float = eqx.field(static=True, default=50.0)
    rise: float = eqx.field(static=True, default=5.0)

    def __check_init__(self):
        if not (self.beta > 0 and self.rise > 0 and self.t_on >= self.rise):
            raise ConfigError(
                f"Ramp needs beta > 0, rise > 0 and t_on >= rise; got beta={self.beta}, "
                f"t_on={self.t_on}, rise={self.rise}."
            )

    @property
    def n_gates(self):
        return 0

    @property
    def scale(self):
        return 1.0 / self.beta

    def __call__(self, t, g, sign=1.0):
        return (sign * self.beta * _smoothstep((t - self.t_on) / self.rise),
                _smoothstep((t - self.t_on + self.rise) / self.rise))

    def gate_field(self, t, g, residual):
        return g

    def beta_rate(self, t, g, dg, sign=1.0):
        return jax.grad(lambda tt: self(tt, g, sign)[0])(jnp.asarray(t, jnp.result_type(float)))

    def done(self, t, g):
        return t >= self.t_on + self.rise


class Custom(AbstractTeacher):
    """`beta(t)` given by a function (plasticity always on; normalised by `beta_max`)."""

    fn: Callable = eqx.field(static=True)
    beta_max: float = eqx.field(static=True, default=1.0)
    t_done: float = eqx.field(static=True, default=0.0)

    @property
    def n_gates(self):
        return 0

    @property
    def scale(self):
        return 1.0 / self.beta_max

    def __call__(self, t, g, sign=1.0):
        return sign * self.fn(t), jnp.asarray(1.0)

    def gate_field(self, t, g, residual):
        return g

    def beta_rate(self, t, g, dg, sign=1.0):
        return sign * jax.grad(self.fn)(jnp.asarray(t, jnp.result_type(float)))

    def done(self, t, g):
        return t >= self.t_done
