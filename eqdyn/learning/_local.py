"""Rules that move the weights themselves: continual EP and the clock-free learner.

Both change the parameters during their phases by their own per-parameter rates, and return
`params - new_params` as their `grads` (see `AbstractLocalRule`): a trainer applies that with
`optax.sgd(1.0)` and no schedule.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .._errors import ConfigError
from ..dynamics import AbstractTeacher, RelaxConfig, episode
from ._continual import CEP_VARIANTS, continual_ep_step
from ._ep import EPConfig
from ._nudging import AbstractNudging, OneSided, RandomSign
from ._rule import AbstractLocalRule, Stats, as_leaf, free_phase_stats

__all__ = ["ContinualEP", "ClockFree", "PLASTICITY"]

#: how the clock-free learner's synapses change: "consolidate" integrates the change during the
#: episode (a synaptic tag) and adds it when the episode ends; "online" moves them in the solve
PLASTICITY = ("consolidate", "online")


def _rates(rates) -> tuple[Array, ...]:
    if isinstance(rates, (int, float)):
        rates = (rates,)
    out = tuple(as_leaf(r) for r in rates)
    if any(np.ndim(r) != 0 for r in out):
        raise ConfigError(f"`rates`={rates!r} must be numbers: one, or one per parameter in "
                          "`model.params` order.")
    return out


def _per_param(rates, params) -> tuple:
    if len(rates) == 1:
        return rates * len(params)
    if len(rates) != len(params):
        raise ConfigError(f"`rates` gives {len(rates)} rates for {len(params)} parameters; pass "
                          "one number or one rate per parameter in `model.params` order.")
    return rates


def _minus_change(old, new) -> tuple:
    return tuple(o - n for o, n in zip(old, new))


def _code(conv):
    return jnp.where(conv, 0, 1).astype(jnp.int32)


class ContinualEP(AbstractLocalRule):
    """Continual EP (Ernoult et al. 2020): a free relaxation, then `n_steps` Euler steps of
    `dt` of the nudged dynamics with a weight update at every step (`continual_ep_step`).

    **Arguments:** `beta` (> 0, a leaf), `rates` (one learning rate, or one per parameter:
    leaves), `nudging` (`OneSided()` or `RandomSign()`), `free` (the free phase's relaxation),
    `dt`, `n_steps` (the nudged phase), `tol` (the nudged state counts as at rest below it).
    """

    beta: Array = eqx.field(converter=as_leaf)
    rates: tuple = eqx.field(converter=_rates)
    nudging: AbstractNudging = RandomSign()
    free: object = eqx.field(default_factory=RelaxConfig)
    dt: float = eqx.field(static=True, default=0.5)
    n_steps: int = eqx.field(static=True, default=8)
    tol: float = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        if not isinstance(self.nudging, (OneSided, RandomSign)):
            raise ConfigError(
                f"`nudging`={self.nudging!r} is not available for continual EP (the symmetric "
                "and holomorphic estimates need several nudged phases from the same weights, "
                "which C-EP changes during the first); use OneSided() or RandomSign().")
        if not (isinstance(self.n_steps, int) and self.n_steps > 0):
            raise ConfigError(f"`n_steps`={self.n_steps!r} must be a positive integer.")

    def __call__(self, model, x, d, s0, *, key=None, labels=None):
        variant = "random-sign" if isinstance(self.nudging, RandomSign) else "one-sided"
        assert variant in CEP_VARIANTS
        nudged = RelaxConfig(dt0=self.dt, t1=self.dt * self.n_steps, tol=self.tol)
        cfg = EPConfig(beta=1.0, variant=variant, free=self.free, nudged=nudged)
        params = tuple(model.params)
        lrs = _per_param(self.rates, params)
        dtype = jnp.real(jnp.asarray(x)).dtype
        new, a = continual_ep_step(model, x, d, s0, cfg, tuple(jnp.asarray(r, dtype) for r in lrs),
                                   key=key, labels=labels, beta=jnp.asarray(self.beta, dtype))
        return _minus_change(params, new.params), Stats(
            a.loss, a.correct, tuple(a.free_states), a.free_steps, a.nudged_steps,
            a.free_converged, a.nudged_converged, _code(a.free_converged),
            _code(a.nudged_converged))


class ClockFree(AbstractLocalRule):
    """The clock-free learner: one continuous-time episode per batch (`eqdyn.dynamics.episode`),
    the teacher arriving when the network is at rest, the synapses following the local rule.

    **Arguments:** `teacher` (e.g. `OnSteady(beta)`), `relaxation` (a `RelaxConfig` for the
    episode's solve: solver, step, steady-state `tol`, horizon), `rates` (one learning rate or
    one per parameter: leaves), `plasticity` (one of `PLASTICITY`), `random_sign` (draw the
    teacher's sign per batch), `rule` (`"trace"`, exact under fixed steps, or `"stdp"`).
    """

    teacher: AbstractTeacher
    relaxation: RelaxConfig = eqx.field(static=True)
    rates: tuple = eqx.field(converter=_rates)
    plasticity: str = eqx.field(static=True, default="consolidate")
    random_sign: bool = eqx.field(static=True, default=False)
    rule: str = eqx.field(static=True, default="trace")

    def __check_init__(self):
        if self.plasticity not in PLASTICITY:
            raise ConfigError(f"`plasticity`={self.plasticity!r} is not known; use one of "
                              f"{PLASTICITY}.")

    def __call__(self, model, x, d, s0, *, key=None, labels=None):
        if self.random_sign and key is None:
            raise ConfigError("`key` is required with random_sign=True (e.g. "
                              "jax.random.PRNGKey(0)).")
        sign = (jnp.where(jax.random.bernoulli(key), 1.0, -1.0) if self.random_sign else 1.0)
        params = tuple(model.params)
        dtype = jnp.real(jnp.asarray(x)).dtype
        lrs = tuple(jnp.asarray(r, dtype) for r in _per_param(self.rates, params))
        learn = "apply" if self.plasticity == "online" else "accumulate"
        res = episode(model, x, d, s0, self.teacher, self.relaxation, lr=lrs, learn=learn,
                      sign=sign, rule=self.rule)
        loss, correct = free_phase_stats(model, x, d, res.free_states, labels)
        if self.plasticity == "online":
            grads = _minus_change(params, res.params)
        else:
            grads = tuple(-dp for dp in res.delta)
        steps = jnp.asarray(res.steps, jnp.int32)
        return grads, Stats(loss, correct, tuple(res.free_states), steps,
                            jnp.zeros((), jnp.int32), res.converged, res.converged,
                            _code(res.converged), _code(res.converged))
