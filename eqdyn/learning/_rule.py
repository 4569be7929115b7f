"""The interface every learning rule implements, and the one statistics type they return.

A learning rule is an `equinox.Module` called as

    grads, stats = rule(model, x, d, s0, *, key=None, labels=None)

`grads` is a tuple in the order of `model.params`: the rule's estimate of the gradient of the
mean cost over the batch (descend it, e.g. with an optax optimiser). `stats` is a `Stats`.
Numbers a rule uses (`beta`, rates, temperatures) are array leaves, so one compiled training
step serves every value; settings that change the program (a nudging scheme, a relaxation's
type, a step count) are static. Write a new rule by subclassing `AbstractRule`: the trainer,
`eqdyn.training.train(cfg, rule=...)`, takes it like any built-in one.

Rules that move the weights themselves (continual EP, the clock-free learner) return
`grads = params - new_params`, i.e. minus the weight change they made; applied with
`optax.sgd(1.0)` that change is reproduced (to one rounding: `p + (q - p)` may differ from `q`
in the last bit). `AbstractLocalRule` marks them, so a trainer can pair them with that
optimiser.
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

__all__ = ["AbstractRule", "AbstractLocalRule", "Stats", "free_phase_stats", "status_code",
           "as_leaf", "check_batch", "worst_status"]


def as_leaf(v):
    """A number as an array leaf of a rule: kept exact (a float64 NumPy array) until it meets
    the data's dtype, so that a rule built with `beta=0.1` nudges by the same float32 number
    as `jnp.asarray(0.1, jnp.float32)`, and by 0.1 exactly in float64. Arrays pass through."""
    return v if isinstance(v, (jax.Array, np.ndarray)) else np.asarray(v, np.float64)


class Stats(eqx.Module):
    """What every learning rule reports about one batch.

    **Fields:**

    - `loss`: the mean cost over the batch at the free state the rule predicts from.
    - `correct`: the number of correct predictions there.
    - `free_states`: that free state (one `(B, n_k)` array per state; a trainer keeps it as the
      examples' persistent particles).
    - `free_steps`, `nudged_steps`: steps (or sweeps) of the free and of the second phase(s)
      (nudged, clamped, adjoint...; 0 where a rule has none).
    - `free_converged`, `nudged_converged`: whether each phase reached its steady state (a
      rule with no such phase reports `True`).
    - `free_result`, `nudged_result`: the phases' status codes as integers (those of
      `eqdyn.dynamics.RESULTS`: 0 is success; the worst of several phases), so that a trainer
      can count failures by kind.
    """

    loss: Float[Array, ""]
    correct: Int[Array, ""]
    free_states: tuple[Array, ...]
    free_steps: Int[Array, ""]
    nudged_steps: Int[Array, ""]
    free_converged: Bool[Array, ""]
    nudged_converged: Bool[Array, ""]
    free_result: Int[Array, ""]
    nudged_result: Int[Array, ""]


def status_code(res) -> Array:
    """The status of a relaxation result as an int32 array: `res.result`'s code where the
    result carries one (0 = successful), else 0 where it converged and 1 where not."""
    result = getattr(res, "result", None)
    if result is not None:
        value = getattr(result, "_value", result)
        return jnp.asarray(value, jnp.int32)
    return jnp.where(res.converged, 0, 1).astype(jnp.int32)


def check_batch(x, d, s0=None) -> None:
    """Refuse a rule's batch whose rows do not line up, or (outside a trace) that holds
    non-finite values, which would otherwise come back as silently NaN gradients.

    **Arguments:**

    - `x`, `d`: input `(B, n_in)` and target `(B, n_out)`.
    - `s0`: the initial states (a tuple of `(B, n_k)` arrays), or `None`.
    """
    states = s0 if isinstance(s0, (tuple, list)) else ([] if s0 is None else [s0])
    named = [("x", x), ("d", d)] + [(f"s0[{i}]", s) for i, s in enumerate(states)]
    rows = {name: jnp.shape(a)[0] if jnp.ndim(a) else None for name, a in named}
    if len(set(rows.values())) > 1:
        raise ConfigError(
            "the batch's arrays must have one row per example, but their first dimensions are "
            + ", ".join(f"`{n}`: {r}" for n, r in rows.items())
            + "; pass inputs, targets and initial states of the same batch."
        )
    for name, a in named:
        if isinstance(a, jax.core.Tracer) or not jnp.issubdtype(jnp.result_type(a), jnp.inexact):
            continue
        bad = int(np.count_nonzero(~np.isfinite(np.asarray(a))))  # no XLA op to compile
        if bad:
            raise ConfigError(
                f"`{name}` has {bad} non-finite values (NaN/inf); the relaxation would carry them "
                "into every state and gradient. Pass finite inputs, targets and initial states."
            )


#: how bad each `RESULTS` code is (successful 0, max_steps_reached 1, nonfinite 2,
#: fixed_horizon 3, solver_failed 4): a phase that ran its horizon by design is no failure, a
#: non-finite one is the worst
_SEVERITY = (0, 2, 4, 1, 3)


def worst_status(*codes) -> Array:
    """The most severe of several status codes (int32 arrays of `RESULTS` codes): nonfinite
    over solver_failed over max_steps_reached over fixed_horizon over successful."""
    sev = jnp.asarray(_SEVERITY, jnp.int32)
    out = jnp.asarray(codes[0], jnp.int32)
    for c in codes[1:]:
        c = jnp.asarray(c, jnp.int32)
        out = jnp.where(sev[c] > sev[out], c, out)
    return out


def free_phase_stats(model, x, d, free_states, labels=None):
    """`(loss, correct)` at the free fixed point: the mean cost over the batch and the number
    of correct predictions (against `labels`, default the argmax of `d`)."""
    loss = model.system.cost(free_states, model.params, model.inputs(x, d)) / x.shape[0]
    labels = jnp.argmax(d, axis=-1) if labels is None else labels
    return loss, jnp.sum(model.predict(free_states, x) == labels)


class AbstractRule(eqx.Module):
    """A learning rule: `rule(model, x, d, s0, *, key=None, labels=None) -> (grads, stats)`.

    **Arguments** of a call:

    - `model`: an `eqdyn.AbstractEnergyModel`.
    - `x`, `d`: the input `(B, n_in)` and the target `(B, n_out)`.
    - `s0`: the initial state of the free phase (zeros, or persistent particles).
    - `key`: a PRNG key, for rules that draw (random-sign nudging, neuron noise).
    - `labels`: integer labels to count correct predictions (default: the argmax of `d`).

    **Returns:** `(grads, stats)`: `grads` a tuple in the order of `model.params` (the gradient
    of the mean cost to descend), `stats` a `Stats`.
    """

    def __repr__(self):
        # the numbers a user set (beta=0.5, rates=(0.1, 0.05)), not `f64[](numpy)`
        def show(v):
            if isinstance(v, np.ndarray) and v.ndim == 0:
                return v.item()
            return tuple(show(a) for a in v) if isinstance(v, tuple) else v

        fields = ", ".join(f"{f.name}={show(getattr(self, f.name))!r}"
                           for f in dataclasses.fields(self))
        return f"{type(self).__name__}({fields})"

    @abc.abstractmethod
    def __call__(self, model, x: Float[Array, "B n_in"], d: Float[Array, "B n_out"], s0, *,
                 key: PRNGKeyArray | None = None, labels: Int[Array, " B"] | None = None
                 ) -> tuple[tuple[Array, ...], Stats]:
        raise NotImplementedError


class AbstractLocalRule(AbstractRule):
    """A rule that changes the weights itself, by its own per-parameter rates, during its
    phases (continual EP, the clock-free learner). It returns `params - new_params` as its
    `grads`; a trainer applies them with `optax.sgd(1.0)` and no schedule."""
