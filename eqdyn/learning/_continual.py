"""Continual Equilibrium Propagation (C-EP; Ernoult et al. 2020), in discrete time.

EP computes its update from two fixed points and applies it after the nudged phase. In C-EP
the weights move at every step of the nudged phase, by the change of `dF/dtheta` over that
step, so the rule is local in time:

    s_{t+1}     = s_t + dt * field(s_t; theta_t, beta)
    theta_{t+1} = theta_t - (eta / (beta B)) [dF/dtheta(s_{t+1}, beta) - dF/dtheta(s_t, beta_t)]

with `s_0 = s^0` the free fixed point, `beta_0 = 0` and `beta_t = beta` afterwards (both
derivatives at the current `theta_t`). If the weights did not move the sum would telescope to
the one-sided EP update of a `K`-step nudged phase, so C-EP tends to EP as `eta -> 0`;
at finite `eta` the weights move the fixed point the nudged phase is chasing, which is why the
paper's learning rates are about 100x smaller than EP's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from .._errors import ConfigError
from ..dynamics import relax_core
from ._ep import EPConfig, EPResult
from ._rule import check_batch, free_phase_stats

__all__ = ["continual_ep_step", "CEP_VARIANTS"]

#: EP variants C-EP supports (the symmetric and holomorphic estimates need several nudged
#: phases from the same weights, which C-EP changes during the first).
CEP_VARIANTS = ("one-sided", "random-sign")


def continual_ep_step(model, x, d, s0, config: EPConfig, lr, *, key: PRNGKeyArray | None = None,
                      labels=None, beta=None):
    """One C-EP episode for a batch: free relaxation, then a nudged phase of fixed Euler steps
    with a weight update at every step.

    **Arguments:**

    - `model`, `x`, `d`, `s0`: as for `ep_gradient`.
    - `config`: an `EPConfig` with `variant` in `CEP_VARIANTS`; the free phase follows
      `config.free` (stopped at steady state), the nudged phase takes
      `K = round(config.nudged.t1 / config.nudged.dt0)` Euler steps of `config.nudged.dt0`.
    - `lr`: the learning rate `eta`, one number or one per parameter (in `model.params` order).
    - `key`: PRNG key (needed for `variant="random-sign"`).
    - `beta`: the nudging strength as an array (default `config.beta`): a traced value, so
      that one compiled program serves every beta (`eqdyn.learning.ContinualEP`).

    **Returns:** `(model, aux)`: the model with the parameters after the episode, and an
    `EPResult` (`nudged_steps` = K).
    """
    if config.variant not in CEP_VARIANTS:
        raise ConfigError(
            f"`variant`={config.variant!r} is not available for continual EP; use one of "
            f"{CEP_VARIANTS}."
        )
    if config.temperature > 0:
        raise ConfigError(
            f"`temperature`={config.temperature} (neuron noise) is not implemented for "
            "continual EP; use an EPConfig with temperature=0.")
    check_batch(x, d, s0)
    params = tuple(model.params)
    lrs = tuple(lr) if isinstance(lr, (tuple, list)) else (lr,) * len(params)
    if len(lrs) != len(params):
        raise ConfigError(
            f"`lr` gives {len(lrs)} rates for {len(params)} parameters; pass one number or one "
            "rate per parameter in `model.params` order.")
    if config.variant == "random-sign" and key is None:
        raise ConfigError("`key` is required for variant='random-sign' (e.g. jax.random.PRNGKey(0)).")
    system = model.system
    inputs = model.inputs(x, d)
    batch = x.shape[0]
    free = relax_core(model, x, s0, 0.0, d, config.free)
    beta = jnp.asarray(config.beta if beta is None else beta, x.dtype)
    if config.variant == "random-sign":
        beta = jnp.where(jax.random.bernoulli(key), beta, -beta)
    n_steps = max(1, int(round(config.nudged.t1 / config.nudged.dt0)))
    dt = jnp.asarray(config.nudged.dt0, x.dtype)

    def step(carry, t):
        s, theta = carry
        f = system.field(s, theta, inputs, beta)
        s_next = tuple(a + dt * b for a, b in zip(s, f))
        beta_t = jnp.where(t > 0, beta, jnp.zeros_like(beta))
        g_now = system.param_grads(s, theta, inputs, beta_t)
        g_next = system.param_grads(s_next, theta, inputs, beta)
        theta = tuple(p - (eta / (beta * batch)) * (a - b)
                      for p, eta, a, b in zip(theta, lrs, g_next, g_now))
        return (s_next, theta), None

    (s_end, new_params), _ = jax.lax.scan(step, (free.states, params), jnp.arange(n_steps))
    f_end = system.field(s_end, new_params, inputs, beta)
    residual = system.residual(s_end, f_end)  # tol 0: the n_steps are the horizon, by design
    conv = ((residual < config.nudged.tol) | (config.nudged.tol == 0)) & jnp.isfinite(residual)
    loss, correct = free_phase_stats(model, x, d, free.states, labels)
    aux = EPResult(free.states, free.steps, free.converged, jnp.asarray(n_steps, jnp.int32),
                   conv, loss, correct)
    return model.with_params(new_params), aux
