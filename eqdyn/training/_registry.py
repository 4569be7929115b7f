"""The one map from the trainer's (and the CLI's) names to objects.

Every choice `TrainConfig` takes by name is listed here, and `eqdyn.cli` derives its argparse
`choices` from these tuples: learning rules (`ALGOS`), EP's nudging (`VARIANTS`), optimisers,
schedules, costs, formulations, relaxation backends and solvers. The functions here turn a
`TrainConfig` into the objects a run uses: the relaxation of each phase (`relax_configs`) and
the learning rule (`build_rule`: an `eqdyn.learning.AbstractRule`).
"""

from __future__ import annotations

import math

from .._errors import ConfigError
from ..dynamics import SOLVERS as _SOLVERS
from ..dynamics import OnSteady, Poisson, RelaxConfig, Spiking
from ..learning import (BPTT, CEP_VARIANTS, CHL, EP, NUDGINGS, PLASTICITY, RBP, VARIANTS,
                        AbstractRule, Backprop, ClockFree, ContinualEP, Holomorphic, SpikeTiming,
                        Symmetric, VectorFieldEP, noisy_phase, require_holomorphic)
from ..models import FORMULATIONS as FORMULATIONS

__all__ = [
    "ALGOS", "VARIANTS", "CEP_VARIANTS", "OPTIMIZERS", "SCHEDULES", "COSTS", "FORMULATIONS",
    "BACKENDS", "SOLVERS", "PLASTICITY", "LOCAL_RULES", "FEEDBACKS", "relax_configs",
    "build_rule",
]

#: Learning rules `train` can run: EP, continual EP, contrastive Hebbian learning, the exact
#: references (recurrent backprop at the fixed point, backprop through the Euler free
#: relaxation), plain backprop through the feedforward network, and clock-free continuous EP.
ALGOS = ("ep", "cep", "chl", "rbp", "bptt", "backprop", "continuous")
#: optax optimisers by name (`momentum` applies to sgd; `weight_decay` is decoupled in adamw and
#: an added `wd * theta` gradient term otherwise).
OPTIMIZERS = ("sgd", "adam", "adamw")
#: learning-rate schedules over the whole run (`lr_decay`: the per-epoch factor of
#: "exponential"; "cosine" decays to 0 at the last step, after holding the full rate for the
#: first `cosine_hold` of the run).
SCHEDULES = ("constant", "cosine", "exponential")
#: costs of the built-in layered energy
COSTS = ("squared_error", "cross_entropy")
#: relaxation backends (see `eqdyn.dynamics.RelaxConfig`)
BACKENDS = ("diffrax", "fused", "blocks")
#: ODE solvers of the relaxation (see `eqdyn.dynamics.RelaxConfig`)
SOLVERS = tuple(_SOLVERS)
#: feedback weights of the built-in layered network: one weight per coupling (the energy
#: network), or separate feedback weights (a vector field) starting at the transposed
#: feedforward weights or drawn independently (see `TrainConfig`)
FEEDBACKS = ("tied", "transposed", "independent")
#: rules that move the weights themselves (plain SGD with the per-layer rates, no optimiser)
LOCAL_RULES = ("cep", "continuous")


def relax_configs(cfg) -> tuple[RelaxConfig, RelaxConfig, RelaxConfig]:
    """The relaxations of a run: `(free, nudged, evaluation)` `RelaxConfig`s of `cfg`.

    The free and nudged phases run to the steady state (`cfg.tol`) within `cfg.free_t1` /
    `cfg.nudged_t1`, each with its backend (`cfg.nudged_backend` defaults to `cfg.backend`)
    and, for block sweeps, Anderson acceleration of memory `cfg.anderson`; evaluation from
    zero states runs up to `cfg.eval_t1` with plain sweeps (where a net has several fixed
    points an accelerated relaxation may reach another, and the scores should not depend on
    the speed-up). Failures are counted, not raised (`on_failure="ignore"`): the trainer
    reports them per epoch. Raises `ConfigError` for settings a relaxation rejects.
    """
    if cfg.anderson and "blocks" not in (cfg.backend, cfg.nudged_backend):
        raise ConfigError(
            f"`anderson`={cfg.anderson} accelerates block sweeps: it needs backend 'blocks' "
            "(or nudged_backend 'blocks'); set anderson 0 for other backends.")
    blocks = lambda b: cfg.anderson if b == "blocks" else 0  # noqa: E731
    common = dict(solver=cfg.solver, dt0=cfg.dt0, tol=cfg.tol, max_steps=cfg.max_steps,
                  on_failure="ignore", backend=cfg.backend)
    nb = cfg.nudged_backend or cfg.backend
    return (
        RelaxConfig(t1=cfg.free_t1, anderson=blocks(cfg.backend), **common),
        RelaxConfig(t1=cfg.nudged_t1, **dict(common, backend=nb, anderson=blocks(nb))),
        RelaxConfig(t1=cfg.eval_t1, **common),
    )


def param_rates(cfg, groups) -> tuple[float, ...]:
    """The learning rate of every parameter (`cfg.lr` per group, or one rate for all)."""
    lrs = cfg.lr * (max(groups) + 1) if len(cfg.lr) == 1 else cfg.lr
    return tuple(float(lrs[g]) for g in groups)


def continuous_setup(cfg, groups) -> tuple:
    """(teacher, episode RelaxConfig, per-parameter rates, plasticity) for `algo='continuous'`."""
    teacher = OnSteady(beta=cfg.beta, symmetric=cfg.variant == "symmetric", tol=cfg.tol)
    relax_cfg = RelaxConfig(
        solver=cfg.solver, dt0=cfg.dt0, tol=cfg.tol, max_steps=cfg.max_steps,
        # the teacher waits for rest, however long the free part takes (up to the horizon of a
        # relaxation from zero, `eval_t1`), then the nudged part and the two latches
        t1=cfg.eval_t1 + cfg.nudged_t1 + 20.0 / teacher.rate, on_failure="ignore",
    )
    return teacher, relax_cfg, param_rates(cfg, groups), cfg.plasticity


def _steps(cfg: RelaxConfig) -> int:
    """The fixed step count a horizon gives (BPTT's unrolled steps, continual EP's nudged
    steps): `t1 / dt0`, at least one."""
    return max(1, int(round(cfg.t1 / cfg.dt0)))


def build_rule(cfg, groups) -> AbstractRule:
    """The learning rule `cfg` names, as an `eqdyn.learning` rule object.

    `cfg.algo` picks the rule and `cfg.variant` EP's nudging (`NUDGINGS`; with separate
    feedback weights, `cfg.feedback`, EP is `VectorFieldEP` with that nudging); the phases relax by
    `relax_configs(cfg)` (noisy with `cfg.temperature > 0`); `cfg.beta` and the per-parameter
    rates (`cfg.lr` by `groups`, the learning-rate group of each parameter, for the local
    rules) become the rule's array leaves.
    """
    free, nudged, _ = relax_configs(cfg)
    if cfg.algo == "ep" and cfg.feedback != "tied":
        return VectorFieldEP(cfg.beta, cfg.variant == "symmetric", free, nudged,
                             random_sign=cfg.variant == "random-sign",
                             homeostasis=cfg.homeostasis or None)
    if cfg.algo == "ep":
        nudging = (Holomorphic(cfg.n_points) if cfg.variant == "holomorphic"
                   else Symmetric(common_noise=cfg.common_noise) if cfg.variant == "symmetric"
                   else NUDGINGS[cfg.variant]())
        if cfg.temperature > 0:
            free, nudged = noisy_phase(free, cfg.temperature), noisy_phase(nudged, cfg.temperature)
        if cfg.spike_rate > 0:
            free, nudged = (Spiking(Poisson(cfg.spike_rate), dt=cfg.dt0, t1=t1,
                                    tau_syn=cfg.spike_tau, readout="traces", stdp=stdp)
                            for t1, stdp in ((cfg.free_t1, False),
                                             (cfg.nudged_t1, cfg.spike_stdp)))
            if cfg.spike_stdp:
                nudging = SpikeTiming(random_sign=cfg.variant == "random-sign")
        return EP(cfg.beta, nudging, free, nudged)
    if cfg.algo == "chl":
        return CHL(free, nudged)
    if cfg.algo == "rbp":
        return RBP(free)
    if cfg.algo == "bptt":
        return BPTT(dt=free.dt0, n_steps=_steps(free), tol=free.tol)
    if cfg.algo == "backprop":
        return Backprop()
    if cfg.algo == "cep":
        return ContinualEP(cfg.beta, param_rates(cfg, groups), NUDGINGS[cfg.variant](), free,
                           dt=nudged.dt0, n_steps=_steps(nudged), tol=nudged.tol)
    if cfg.algo == "continuous":
        teacher, relax_cfg, rates, plasticity = continuous_setup(cfg, groups)
        return ClockFree(teacher, relax_cfg, rates, plasticity,
                         random_sign=cfg.variant == "random-sign")
    raise ConfigError(f"`algo`={cfg.algo!r} is not known; use one of {ALGOS}.")


def check_rule(cfg, activations) -> None:
    """The rule's settings (`algo`, `variant`, `beta`, `temperature`, `plasticity`,
    `n_points`) against each other; `activations` are the network's (for holomorphic EP)."""
    if cfg.algo not in ALGOS:
        raise ConfigError(f"`algo`={cfg.algo!r} is not known; use one of {ALGOS}.")
    if not (math.isfinite(cfg.temperature) and cfg.temperature >= 0):
        raise ConfigError(f"`temperature`={cfg.temperature} must be a finite number >= 0.")
    if cfg.temperature > 0 and cfg.algo != "ep":
        raise ConfigError(
            f"`temperature`={cfg.temperature} (neuron noise) is implemented for `algo`='ep'; "
            f"got `algo`={cfg.algo!r}."
        )
    _check_spiking(cfg, activations)
    if cfg.common_noise and not (cfg.algo == "ep" and cfg.variant == "symmetric"
                                 and cfg.feedback == "tied"
                                 and (cfg.spike_rate > 0 or cfg.temperature > 0)):
        raise ConfigError(
            f"`common_noise`=True runs symmetric EP's two nudged phases on the same random "
            f"numbers: it needs `algo`='ep', `variant`='symmetric' and noisy phases "
            f"(`spike_rate` > 0 or `temperature` > 0); got `algo`={cfg.algo!r}, `variant`="
            f"{cfg.variant!r}, `feedback`={cfg.feedback!r}, `spike_rate`={cfg.spike_rate}, "
            f"`temperature`={cfg.temperature}.")
    if cfg.plasticity not in PLASTICITY:
        raise ConfigError(
            f"`plasticity`={cfg.plasticity!r} is not known; use 'consolidate' or 'online'."
        )
    if cfg.variant not in VARIANTS:
        raise ConfigError(f"`variant`={cfg.variant!r} is not known; use one of {VARIANTS}.")
    if cfg.algo in LOCAL_RULES and (cfg.optimizer != "sgd" or cfg.momentum or cfg.weight_decay
                                    or cfg.schedule != "constant"):
        where = "inside the ODE" if cfg.algo == "continuous" else "at every nudged step"
        raise ConfigError(
            f"`algo`={cfg.algo!r} changes the weights {where} by the local rule "
            f"(plain SGD with the per-layer `lr`); `optimizer`={cfg.optimizer!r}, `momentum`="
            f"{cfg.momentum}, `weight_decay`={cfg.weight_decay}, `schedule`={cfg.schedule!r} "
            "do not apply. Use optimizer='sgd' without momentum, weight decay or schedule."
        )
    if cfg.algo == "cep" and cfg.variant not in CEP_VARIANTS:
        raise ConfigError(
            f"`variant`={cfg.variant!r} is not available with `algo`='cep'; use one of "
            f"{CEP_VARIANTS}."
        )
    if cfg.algo == "continuous" and cfg.variant == "holomorphic":
        raise ConfigError("`variant`='holomorphic' is not available with `algo`='continuous'; "
                          "use 'one-sided', 'random-sign' or 'symmetric'.")
    if cfg.algo == "ep" and cfg.variant == "holomorphic":
        require_holomorphic(activations)
    if not (isinstance(cfg.n_points, int) and cfg.n_points >= 2):
        raise ConfigError(f"`n_points`={cfg.n_points!r} must be an integer >= 2.")
    if not (math.isfinite(cfg.beta) and cfg.beta > 0):
        raise ConfigError(
            f"`beta`={cfg.beta} must be a positive finite number (EP divides by it; its sign is "
            "set by `variant`: one-sided, random-sign, symmetric or holomorphic)."
        )


def _check_spiking(cfg, activations) -> None:
    """`spike_rate` and `spike_tau` against the rule (spiking phases: `build_rule`)."""
    for name in ("spike_rate", "spike_tau"):
        v = getattr(cfg, name)
        if not (math.isfinite(v) and v >= 0 and (v > 0 or name == "spike_rate")):
            want = ">= 0" if name == "spike_rate" else "> 0"
            raise ConfigError(f"`{name}`={v} must be a finite number {want}.")
    if cfg.spike_rate == 0:
        if cfg.spike_stdp:
            raise ConfigError("`spike_stdp`=True reads EP's update from spikes: it needs "
                              "spiking phases, a `spike_rate` > 0.")
        return
    spiking_variants = ("one-sided", "random-sign", "symmetric")
    if cfg.algo != "ep" or cfg.variant not in spiking_variants or cfg.temperature:
        raise ConfigError(
            f"`spike_rate`={cfg.spike_rate} (spiking phases) is implemented for `algo`='ep' "
            f"with `variant` one of {spiking_variants} and no `temperature`; got `algo`="
            f"{cfg.algo!r}, `variant`={cfg.variant!r}, `temperature`={cfg.temperature}.")
    if cfg.spike_stdp and cfg.variant == "symmetric":
        raise ConfigError("`spike_stdp`=True accumulates the STDP rule along one nudged phase "
                          "(one-sided or random-sign); `variant`='symmetric' has two. Use "
                          "--variant random-sign, or drop --spike-stdp.")
    smooth = sorted(a.name for a in activations if not a.projection)
    if smooth:
        raise ConfigError(
            f"`spike_rate`={cfg.spike_rate}: spiking phases read the averaged traces out as "
            f"states, which needs a projection activation; {smooth[0]!r} is not one (use "
            "hard_sigmoid).")
    if cfg.spike_rate * cfg.dt0 > 1:
        raise ConfigError(
            f"`spike_rate`={cfg.spike_rate} with `dt0`={cfg.dt0} fires with probability "
            f"{cfg.spike_rate * cfg.dt0:g} > 1 per step; take dt0 <= {1 / cfg.spike_rate:g}.")
