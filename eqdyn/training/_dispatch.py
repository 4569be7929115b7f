"""Run the learning rule `algo` on one batch, in the trainer's common format.

The one place the compiled training step branches on the rule's name: `rule_step` returns
either gradients (rules with an optimiser) or the updated model (the local rules, which move
the weights themselves), with the free states and the per-batch statistics the trainer logs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._errors import ConfigError
from ..dynamics import episode
from ..learning import (
    bptt_gradient,
    chl_gradient,
    continual_ep_step,
    ep_gradient,
    feedforward_backprop_gradient,
    rbp_gradient,
)
from ._registry import ALGOS, LOCAL_RULES

__all__ = ["rule_step"]


def _ep_stats(a) -> dict:
    """The per-batch statistics the trainer logs, from an `EPResult`."""
    return dict(loss=a.loss, correct=a.correct, free_steps=a.free_steps,
                nudged_steps=a.nudged_steps, free_converged=a.free_converged,
                nudged_converged=a.nudged_converged)


def _estimate(algo, model, xb, db, s0, key, labels, ep_cfg):
    """Run one gradient estimator; return `(grads, free_states, stats)`."""
    zero = jnp.zeros((), jnp.int32)
    if algo == "ep":
        grads, a = ep_gradient(model, xb, db, s0, ep_cfg, key=key, labels=labels)
        return grads, a.free_states, _ep_stats(a)
    if algo == "chl":
        grads, a = chl_gradient(model, xb, db, s0, ep_cfg.free, clamped_config=ep_cfg.nudged,
                                labels=labels)
        return grads, a.free_states, dict(
            loss=a.loss, correct=a.correct, free_steps=a.free_steps, nudged_steps=a.clamped_steps,
            free_converged=a.free_converged, nudged_converged=a.clamped_converged)
    if algo == "rbp":
        grads, a = rbp_gradient(model, xb, db, s0, ep_cfg.free, labels=labels)
        return grads, a.free_states, dict(
            loss=a.loss, correct=a.correct, free_steps=a.steps, nudged_steps=zero,
            free_converged=a.converged, nudged_converged=a.adjoint_converged)
    if algo == "bptt":
        n_steps = max(1, int(round(ep_cfg.free.t1 / ep_cfg.free.dt0)))
        grads, a = bptt_gradient(model, xb, db, s0, dt=ep_cfg.free.dt0, n_steps=n_steps,
                                 labels=labels)
        return grads, a.final_states, dict(
            loss=a.loss, correct=a.correct, free_steps=jnp.asarray(n_steps, jnp.int32),
            nudged_steps=zero, free_converged=a.residual < ep_cfg.free.tol,
            nudged_converged=jnp.asarray(True))
    if algo == "backprop":
        grads, a = feedforward_backprop_gradient(model, xb, db, labels=labels)
        return grads, s0, dict(
            loss=a.loss, correct=a.correct, free_steps=zero, nudged_steps=zero,
            free_converged=jnp.asarray(True), nudged_converged=jnp.asarray(True))
    raise ConfigError(f"`algo`={algo!r} is not known; use one of {ALGOS}.")


def _continuous_step(model, xb, db, s0, key, labels, variant, cont):
    """One clock-free episode for a batch (one diffrax solve; no phase switch in Python)."""
    teacher, relax_cfg, lrs, plasticity = cont
    sign = jnp.where(jax.random.bernoulli(key), 1.0, -1.0) if variant == "random-sign" else 1.0
    # the eligibility-trace form: the same EP update, exact under the fixed Euler steps
    learn = "apply" if plasticity == "online" else "accumulate"
    res = episode(model, xb, db, s0, teacher, relax_cfg, lr=lrs, learn=learn, sign=sign,
                  rule="trace")
    system = model.system
    inputs = model.inputs(xb, db)
    free = res.free_states
    stats = dict(
        loss=system.cost(free, model.params, inputs) / xb.shape[0],
        correct=jnp.sum(model.predict(free, xb) == labels),
        free_steps=res.steps, nudged_steps=jnp.zeros((), jnp.int32),
        free_converged=res.converged, nudged_converged=res.converged,
    )
    params = res.params if plasticity == "online" else tuple(
        p + dp for p, dp in zip(model.params, res.delta))
    return model.with_params(params), free, stats


def rule_step(algo: str, ep_cfg, cont, model, xb, db, s0, key, labels):
    """One batch of the learning rule `algo` (traced inside the training step).

    **Arguments:** the rule's name and settings (`ep_cfg`, `cont`: see
    `eqdyn.training.rule_settings`), the model, the batch's inputs `xb`, one-hot targets `db`
    and labels, the starting states `s0` and a PRNG `key`.

    **Returns:** `(out, free_states, stats)`: `out` is the updated model for the local rules
    (`LOCAL_RULES`) and the gradient of the mean cost (in the order of `model.params`, to
    descend) for the others; `stats` the per-batch statistics the trainer logs.
    """
    if algo == "continuous":
        return _continuous_step(model, xb, db, s0, key, labels, ep_cfg.variant, cont)
    if algo == "cep":
        model, a = continual_ep_step(model, xb, db, s0, ep_cfg, cont, key=key, labels=labels)
        return model, a.free_states, _ep_stats(a)
    assert algo not in LOCAL_RULES
    return _estimate(algo, model, xb, db, s0, key, labels, ep_cfg)
