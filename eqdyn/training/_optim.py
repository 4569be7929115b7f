"""The optimiser of a run: per-group learning rates and schedules, built with optax."""

from __future__ import annotations

import functools
import math

import optax

from .._errors import ConfigError
from ._registry import LOCAL_RULES, OPTIMIZERS, SCHEDULES

__all__ = ["make_optimizer", "LOCAL_OPTIMIZER"]

#: The optimiser of a rule that moves the weights itself (`eqdyn.learning.AbstractLocalRule`):
#: it returns minus its change as `grads`, which plain SGD at rate 1 applies.
LOCAL_OPTIMIZER = optax.sgd(1.0)


def make_optimizer(cfg, groups, steps_per_epoch: int | None = None) -> optax.GradientTransformation:
    """Per-group optax optimiser: parameters in group k share the k-th learning rate.

    **Arguments:**

    - `cfg`: the run's `TrainConfig` (`optimizer`, `lr`, `momentum`, `weight_decay`,
      `schedule`, `lr_decay`, `cosine_hold`, `epochs`).
    - `groups`: the group of each parameter (`model.lr_groups`: layer k's weight and bias share
      group k), or an int `n_layers` for a layered network's `(W_1..W_L, b_1..b_L)`.
    - `steps_per_epoch`: the time scale of `cfg.schedule` ("cosine" holds the full rate for
      the first `cfg.cosine_hold` of the `cfg.epochs * steps_per_epoch` updates and decays to
      0 over the rest, "exponential" multiplies by `cfg.lr_decay` per epoch).

    **Returns:** an `optax.GradientTransformation` (`LOCAL_OPTIMIZER` for the rules that move
    the weights themselves, `cfg.algo` in `LOCAL_RULES`). Cached per setting: the optimiser is a
    static argument of the compiled training step, so an equal one must be the same object for
    repeated `train` calls not to recompile.
    """
    if cfg.algo in LOCAL_RULES:
        return LOCAL_OPTIMIZER
    if isinstance(groups, int):
        groups = tuple(range(groups)) * 2
    if steps_per_epoch is None:
        if cfg.schedule != "constant":
            raise ConfigError(
                f"`schedule`={cfg.schedule!r} needs `steps_per_epoch` (optimiser updates per "
                "epoch, e.g. the number of batches) to set its time scale; pass it to "
                "make_optimizer."
            )
        steps_per_epoch = 1
    schedule = (cfg.schedule, cfg.lr_decay, int(steps_per_epoch),
                int(cfg.epochs) if cfg.schedule == "cosine" else 0, float(cfg.cosine_hold))
    return _optimizer(cfg.optimizer, tuple(cfg.lr), cfg.momentum, cfg.weight_decay,
                      tuple(groups), schedule)


@functools.lru_cache(maxsize=32)
def _optimizer(name, lr, momentum, weight_decay, groups,
               schedule=("constant", 1.0, 1, 0, 0.0)) -> optax.GradientTransformation:
    n_groups = len(set(groups))
    lrs = lr * n_groups if len(lr) == 1 else lr
    kind, decay, per_epoch, epochs, hold = schedule

    def rate(lr):
        if kind == "cosine":
            total = max(1, epochs * per_epoch)
            held = min(int(round(hold * total)), total - 1)  # at least one decayed step
            if not held:
                return optax.cosine_decay_schedule(lr, decay_steps=total)
            # the same step count as plain cosine in the optimiser state, so the checkpoint
            # layout does not depend on the hold
            return optax.join_schedules(
                [optax.constant_schedule(lr),
                 optax.cosine_decay_schedule(lr, decay_steps=max(1, total - held))], [held])
        if kind == "exponential":
            return optax.exponential_decay(lr, transition_steps=per_epoch, decay_rate=decay)
        return lr

    def one(lr):
        lr = rate(lr)
        if name == "adamw":
            return optax.adamw(lr, weight_decay=weight_decay)
        opt = optax.adam(lr) if name == "adam" else optax.sgd(lr, momentum=momentum or None)
        if weight_decay:
            opt = optax.chain(optax.add_decayed_weights(weight_decay), opt)
        return opt

    labels = tuple(str(g) for g in groups)
    return optax.multi_transform({str(k): one(lr) for k, lr in enumerate(lrs)}, labels)


def check_optimizer(cfg) -> None:
    """The optimiser's settings: `optimizer`, `schedule`, `lr_decay`, `cosine_hold`,
    `momentum`, `weight_decay` (the rates `lr` are checked against the model's groups)."""
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"`optimizer`={cfg.optimizer!r} is not known; use one of {OPTIMIZERS}.")
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"`schedule`={cfg.schedule!r} is not known; use one of {SCHEDULES}.")
    if not (math.isfinite(cfg.lr_decay) and 0 < cfg.lr_decay <= 1):
        raise ConfigError(f"`lr_decay`={cfg.lr_decay} must be in (0, 1] (the per-epoch factor "
                          "of schedule='exponential').")
    if not (math.isfinite(cfg.cosine_hold) and 0 <= cfg.cosine_hold < 1):
        raise ConfigError(f"`cosine_hold`={cfg.cosine_hold} must be in [0, 1): the fraction of "
                          "the run at the full rate before schedule='cosine' decays, e.g. 0.6.")
    if cfg.cosine_hold and cfg.schedule != "cosine":
        raise ConfigError(f"`cosine_hold`={cfg.cosine_hold} holds the rate before a cosine "
                          f"decay, but `schedule`={cfg.schedule!r}; set schedule='cosine' or "
                          "cosine_hold=0.")
    for name in ("momentum", "weight_decay"):
        v = getattr(cfg, name)
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(f"`{name}`={v} must be a finite number >= 0.")
