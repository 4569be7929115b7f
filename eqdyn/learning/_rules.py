"""Contrastive Hebbian learning and the exact references as learning-rule objects.

Each wraps the function of the same name in `eqdyn.learning` (`chl_gradient`, `rbp_gradient`,
`bptt_gradient`, `feedforward_backprop_gradient`) behind the one rule interface, `rule(model, x,
d, s0, *, key=None, labels=None) -> (grads, Stats)`, so a trainer, a comparison or a study can
take any of them where it takes `EP`.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax.numpy as jnp

from .._errors import ConfigError
from ..dynamics import RelaxConfig
from ._references import (RBP_SOLVERS, bptt_gradient, chl_gradient,
                          feedforward_backprop_gradient, rbp_gradient)
from ._rule import AbstractRule, Stats

__all__ = ["CHL", "RBP", "BPTT", "Backprop"]


def _ok():
    return jnp.asarray(True), jnp.zeros((), jnp.int32)


class CHL(AbstractRule):
    """Contrastive Hebbian learning: a free phase, then a phase with the output clamped to the
    target (`chl_gradient`). `free`, `clamped`: the two phases' relaxations (default: `free`)."""

    free: object = eqx.field(default_factory=RelaxConfig)
    clamped: object = None

    def __call__(self, model, x, d, s0, *, key=None, labels=None):
        grads, a = chl_gradient(model, x, d, s0, self.free, clamped_config=self.clamped,
                                labels=labels)
        code = lambda conv: jnp.where(conv, 0, 1).astype(jnp.int32)  # noqa: E731
        return grads, Stats(a.loss, a.correct, tuple(a.free_states), a.free_steps,
                            a.clamped_steps, a.free_converged, a.clamped_converged,
                            code(a.free_converged), code(a.clamped_converged))


class RBP(AbstractRule):
    """Recurrent backprop (Almeida-Pineda): the exact gradient at the free fixed point
    (`rbp_gradient`). `free`: the free phase's relaxation; `solver`: the adjoint solve
    (`"auto"`, `"dense"`, `"gmres"`); `rtol`, `atol`: GMRES tolerances."""

    free: object = eqx.field(default_factory=RelaxConfig)
    solver: str = eqx.field(static=True, default="auto")
    rtol: float = eqx.field(static=True, default=1e-10)
    atol: float = eqx.field(static=True, default=1e-12)

    def __check_init__(self):
        if self.solver not in RBP_SOLVERS:
            raise ConfigError(f"`solver`={self.solver!r} is not known; use one of {RBP_SOLVERS}.")

    def __call__(self, model, x, d, s0, *, key=None, labels=None):
        grads, a = rbp_gradient(model, x, d, s0, self.free, solver=self.solver, rtol=self.rtol,
                                atol=self.atol, labels=labels)
        adjoint_code = jnp.where(a.adjoint_converged, 0, 1).astype(jnp.int32)
        return grads, Stats(a.loss, a.correct, tuple(a.free_states), a.steps,
                            jnp.zeros((), jnp.int32), a.converged, a.adjoint_converged,
                            jnp.where(a.converged, 0, 1).astype(jnp.int32), adjoint_code)


class BPTT(AbstractRule):
    """Backprop through time through `n_steps` Euler steps of `dt` of the free dynamics
    (`bptt_gradient`). `tol`: the free state counts as converged where its residual is below
    it (reported, not used by the gradient)."""

    dt: float = eqx.field(static=True, default=0.5)
    n_steps: int = eqx.field(static=True, default=100)
    tol: float = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        if not (isinstance(self.dt, (int, float)) and self.dt > 0 and math.isfinite(self.dt)):
            raise ConfigError(f"`dt`={self.dt!r} must be a positive finite number.")
        if not (isinstance(self.n_steps, int) and not isinstance(self.n_steps, bool)
                and self.n_steps > 0):
            raise ConfigError(f"`n_steps`={self.n_steps!r} must be a positive integer.")

    def __call__(self, model, x, d, s0, *, key=None, labels=None):
        grads, a = bptt_gradient(model, x, d, s0, dt=self.dt, n_steps=self.n_steps,
                                 labels=labels)
        conv = (a.residual < self.tol) | (self.tol == 0)  # tol 0: its n_steps are the horizon
        conv = conv & jnp.isfinite(a.residual)
        ok, zero = _ok()
        return grads, Stats(a.loss, a.correct, tuple(a.final_states),
                            jnp.asarray(self.n_steps, jnp.int32), zero, conv, ok,
                            jnp.where(conv, 0, 1).astype(jnp.int32), zero)


class Backprop(AbstractRule):
    """Plain backprop through the feedforward network with the model's weights
    (`feedforward_backprop_gradient`): no relaxation; the free state returned is `s0`
    unchanged (persistent particles are left as they are)."""

    def __call__(self, model, x, d, s0, *, key=None, labels=None):
        grads, a = feedforward_backprop_gradient(model, x, d, labels=labels)
        ok, zero = _ok()
        return grads, Stats(a.loss, a.correct, tuple(s0), zero, zero, ok, ok, zero, zero)

