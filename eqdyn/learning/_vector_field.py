"""Equilibrium Propagation for vector-field dynamics (Scellier, Goyal, Binas & Bengio 2018).

When the dynamics `du/dt = f(u, theta, beta)` are not the gradient of an energy (separate
feedforward and feedback weights, `eqdyn.models.VectorFieldHopfield`), EP's update is

    g = -(1 / (beta_a - beta_b)) (df/dtheta at u^0)^T (s^{beta_a} - s^{beta_b}) / B

(`s = rho(u)` the rates, `u^0` the free fixed point; `beta_a, beta_b` = `beta, 0` one-sided,
`beta, -beta` symmetric, or `+-beta, 0` with the sign drawn per batch (random-sign, Scellier &
Bengio 2017)): each weight moves by its presynaptic free rate times the change of
its postsynaptic rate between the phases, `dW_k ~ s_{k-1}^T (s_k^beta - s_k^0)`,
`dB_k ~ s_k^T (s_{k-1}^beta - s_{k-1}^0)`. As `beta -> 0` it tends to `(df/dtheta)^T
diag(rho') J^{-1} df/dbeta / B` (`du/dbeta = -J^{-1} df/dbeta`, `J = df/du`), where the exact
gradient (`rbp_gradient` on the same field, `df/dbeta = -dC/du`) is `(df/dtheta)^T J^{-T}
df/dbeta / B`: the two agree when the field is a gradient (`B_k = W_k^T`), where this is
symmetric EP, and drift apart as the feedback weights turn away from the transposed
feedforward ones (`eqdyn.models.alignment_angles`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import ConfigError
from ..dynamics import RelaxConfig
from ..models import VectorFieldHopfield
from ._phase import run_phase
from ._rule import (AbstractRule, Stats, as_leaf, check_batch, free_phase_stats, status_code,
                    worst_status)

__all__ = ["VectorFieldEP", "vector_field_update"]


def vector_field_update(model, x, d, free_states, states_a, states_b, span):
    """`-(df/dtheta at u^0)^T (rho(u_a) - rho(u_b)) / (span B)`: EP's update for a vector field
    from the free state `free_states` and two nudged states (`span = beta_a - beta_b`)."""
    system, params = model.system, model.params
    inputs = model.inputs(x, d)
    u0 = tuple(jax.lax.stop_gradient(a) for a in free_states)
    _, vjp = jax.vjp(lambda p: system.field(u0, p, inputs, 0.0), params)
    delta = tuple(a - b for a, b in zip(system.observe(states_a), system.observe(states_b)))
    (g,) = vjp(delta)
    scale = -1.0 / (span * x.shape[0])
    return tuple(scale * gi for gi in g)


class VectorFieldEP(AbstractRule):
    """EP's estimate for a network whose dynamics are a vector field (see the module docstring).

    **Arguments:**

    - `beta`: the nudging strength (> 0; an array leaf).
    - `symmetric`: nudge at `+beta` and `-beta` (default) or at `+beta` only (static).
    - `random_sign`: one nudged phase at `+beta` or `-beta`, the sign drawn per batch from the
      call's `key` (static; needs `symmetric=False`).
    - `free`, `nudged`: the phases' relaxations (relaxation objects or `RelaxConfig`s;
      `nudged` defaults to `free`).

    Call it as any rule: `grads, stats = rule(model, x, d, s0)` with `model` a
    `eqdyn.models.VectorFieldHopfield` (an energy model's rule is `EP`).
    """

    beta: Float[Array, ""] = eqx.field(converter=as_leaf)
    symmetric: bool = eqx.field(static=True, default=True)
    free: object = eqx.field(default_factory=RelaxConfig)
    nudged: object = None
    random_sign: bool = eqx.field(static=True, default=False, kw_only=True)

    def __check_init__(self):
        b = jnp.asarray(self.beta)
        if b.ndim != 0 or not bool(jnp.isfinite(b)) or not float(b) > 0:
            raise ConfigError(f"`beta`={self.beta!r} must be a positive finite number.")
        if self.random_sign and self.symmetric:
            raise ConfigError("`random_sign`=True draws one nudged phase's sign per batch; it "
                              "excludes `symmetric`=True (pass symmetric=False).")

    def __call__(self, model, x, d, s0, *, key: PRNGKeyArray | None = None, labels=None
                 ) -> tuple[tuple[Array, ...], Stats]:
        if not isinstance(model, VectorFieldHopfield):
            raise ConfigError(
                f"`VectorFieldEP` needs a vector-field network (eqdyn.models."
                f"VectorFieldHopfield, separate feedforward and feedback weights); `model` is a "
                f"{type(model).__name__}. Train an energy model with eqdyn.learning.EP (e.g. "
                "EP(beta, Symmetric())), or build a VectorFieldHopfield.")
        if self.random_sign and key is None:
            raise ConfigError("`key` is required with `random_sign`=True (e.g. "
                              "jax.random.PRNGKey(0)): it draws the nudging's sign.")
        check_batch(x, d, s0)
        nudged = self.free if self.nudged is None else self.nudged
        free = run_phase(self.free, model, x, s0, 0.0, d)
        beta = jnp.asarray(self.beta, x.dtype)
        if self.random_sign:
            beta = jnp.where(jax.random.bernoulli(key), beta, -beta)
        plus = run_phase(nudged, model, x, free.states, beta, d)
        if self.symmetric:
            minus = run_phase(nudged, model, x, free.states, -beta, d)
            low, span = minus.states, 2.0 * beta
            steps, conv = plus.steps + minus.steps, plus.converged & minus.converged
            code = worst_status(status_code(plus), status_code(minus))
        else:
            low, span = free.states, beta
            steps, conv, code = plus.steps, plus.converged, status_code(plus)
        grads = vector_field_update(model, x, d, free.states, plus.states, low, span)
        loss, correct = free_phase_stats(model, x, d, free.states, labels)
        return grads, Stats(loss, correct, tuple(free.states), free.steps, steps, free.converged,
                            conv, status_code(free), code)
