"""The run configuration: `TrainConfig`, `resolve_config` (presets and overrides), the
network a configuration describes (`build_model`) and its validation.

Each group of settings is checked beside what it concerns: the network's here
(`_check_model`, `_check_sizes`), the rule's in `_registry.check_rule`, the optimiser's in
`_optim.check_optimizer`, the relaxations' where they are built (`_registry.relax_configs`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from .._distributed import check_devices
from .._errors import ConfigError
from ..models import (
    EnergyModel,
    LayeredHopfield,
    VectorFieldHopfield,
    get_activation,
    load_energy_file,
    param_groups,
    parse_arch,
    resolve_activations,
    resolve_formulation,
)
from ..symbolic import layered_hopfield_energy
from ._optim import check_optimizer
from ._presets import PRESETS
from ._registry import COSTS, FEEDBACKS, check_rule, relax_configs

__all__ = ["TrainConfig", "resolve_config", "build_model", "validate", "DEFAULT_ARCH"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved as `config.json` in the run directory).

    `eval_persistent` (with `persistent`): Scellier & Bengio's protocol for the errors they
    report. The validation and test examples keep persistent particles too, each relaxed from
    its last fixed point at every epoch (the test examples are relaxed, not reported, every
    epoch), and the final errors relax every example (the training ones from their training
    particles) from its particle. A deep hard-sigmoid network has several fixed points, and
    the one it tracks through training can differ from the one zero states reach (sb17-2h
    after 60 epochs, all 50,000 training examples: 99.17 % right from their particles, 97.44 %
    from zero states; `benchmarks/results/reproduce/sb17-2h-tracked.json`). `metrics` then
    also holds the from-zero numbers (`from_zero`); `eval_free_steps` / `eval_converged` stay
    those of the from-zero test pass, while each epoch's `val_free_steps` counts the steps
    from the validation particles.

    Relaxation: `solver`, `backend` (see `RelaxConfig`; `nudged_backend` gives the nudged
    phase its own, default the same), `anderson` (memory of the Anderson acceleration of block
    sweeps, 0 = off; see `RelaxConfig`), `dt0`, `tol` (steady-state residual), `free_t1` /
    `nudged_t1` (horizons of the two phases), `eval_t1` (horizon when evaluating from zero
    states).

    `spike_rate` (`algo="ep"`, one-sided, random-sign or symmetric nudging, a projection
    activation; 0 = off): both phases are spiking networks of `Poisson(spike_rate)` units
    (`eqdyn.dynamics.Spiking`, step `dt0`, horizons `free_t1` / `nudged_t1`, synaptic traces of
    time constant `spike_tau`, the update read from the averaged traces, or with `spike_stdp`
    from the spike-based STDP rule accumulated along the nudged phase, `SpikeTiming`);
    evaluation relaxes the rate model. `common_noise` (`variant="symmetric"` with spiking or
    noisy phases): the two nudged phases run on the same random numbers
    (`Symmetric(common_noise=True)`), a variance reduction a physical system would not have.

    `plasticity` (`algo="continuous"` only): `"consolidate"` integrates each synapse's change
    during the episode (a synaptic tag, the rule's integral) and adds it to the weight when the
    episode ends; `"online"` moves the weights inside the solve. Measured: online plasticity at
    the paper's learning rates (0.1 / 0.05) runs away (on digits the episode's change is 5.6x
    the EP update and accuracy collapses to 10 %; symmetric nudging survives on digits, not on
    MNIST), because a weight change during the nudged phase moves the fixed point it is chasing.

    `devices` (`None`: the default device; `"all"` or `N`): data parallelism, the batch split
    over a mesh of that many devices, parameters replicated (see `eqdyn._distributed`); the
    same numbers as one device up to floating-point summation order.

    Model: the layered Hopfield network of `arch` with the cost `cost` (`"squared_error"` on
    the output layer, or `"cross_entropy"`: a softmax readout of the last hidden layer, see
    `eqdyn.symbolic.layered_hopfield_energy`), or with `energy` the energy defined in that
    Python file (see `eqdyn.models.load_energy_file`), built for the sizes `arch`;
    `activation=None` then means the file's own activation.

    `feedback` (the built-in layered network): `"tied"` (one weight per coupling, the energy
    network), or separate feedback weights `B_k` beside the feedforward `W_k`, a network whose
    dynamics are a vector field and not the gradient of an energy (`eqdyn.models.
    VectorFieldHopfield`, trained by `eqdyn.learning.VectorFieldEP` with `algo="ep"`, or by
    RBP / BPTT on the same field): `"transposed"` starts them at `W_k^T`, `"independent"` draws
    them independently. The feedforward weights are those of the tied network of the same
    seed. Each epoch then records the angle between `W_k` and `B_k^T` (`alignment_deg`).
    `homeostasis` (> 0, with separate feedback and `algo="ep"`): the coefficient of Laborieux
    & Zenke's Jacobian homeostasis added to vector-field EP's update (`VectorFieldEP`).
    """

    dataset: str = "digits"
    data_dir: str | None = None
    arch: str | None = None
    energy: str | None = None
    activation: str | None = "hard_sigmoid"
    formulation: str | None = None
    cost: str = "squared_error"
    feedback: str = "tied"
    homeostasis: float = 0.0
    algo: str = "ep"
    variant: str = "random-sign"
    beta: float = 1.0
    lr: tuple[float, ...] = (0.1, 0.05)
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    lr_decay: float = 1.0
    cosine_hold: float = 0.0
    n_points: int = 4
    batch_size: int = 20
    epochs: int = 30
    persistent: bool = True
    eval_persistent: bool = False
    solver: str = "euler"
    backend: str = "diffrax"
    nudged_backend: str | None = None
    anderson: int = 0
    dt0: float = 0.5
    tol: float = 1e-3
    free_t1: float = 50.0
    nudged_t1: float = 50.0
    eval_t1: float = 500.0
    max_steps: int = 4096
    eval_batch: int = 1000
    val_size: int | None = None
    seed: int = 0
    chunk: int = 500
    plasticity: str = "consolidate"
    temperature: float = 0.0
    spike_rate: float = 0.0
    spike_tau: float = 0.5
    spike_stdp: bool = False
    common_noise: bool = False
    preset: str | None = None
    devices: int | str | None = None

    def to_json(self) -> dict:
        """The settings as a JSON-ready dict (what `config.json` holds)."""
        d = dataclasses.asdict(self)
        d["lr"] = list(self.lr)
        return d


#: The network of each data set when `arch` is not given.
DEFAULT_ARCH = {"digits": "64-256-10", "mnist": "784-500-10", "fashion-mnist": "784-500-10"}


def resolve_config(preset: str | None = None, **overrides) -> TrainConfig:
    """Build a validated `TrainConfig` from an optional preset and explicit overrides.

    **Arguments:**

    - `preset`: a name in `PRESETS` (see docs/presets.md), or `None`.
    - `overrides`: `TrainConfig` fields; those whose value is `None` are ignored (they mean
      "not given on the command line"). `lr` may be a number, a sequence or a string of
      comma-separated per-layer rates, input side first.

    **Returns:** the `TrainConfig`; raises `ConfigError` naming the setting that is wrong.
    """
    base: dict = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"`preset`={preset!r} is not known; choose one of {sorted(PRESETS)}.")
        base.update(PRESETS[preset])
        base["preset"] = preset
    base.update({k: v for k, v in overrides.items() if v is not None})
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(base) - fields
    if unknown:
        raise ConfigError(f"unknown option(s) {sorted(unknown)}; valid options are {sorted(fields)}.")
    if "lr" in base:
        base["lr"] = _parse_lr(base["lr"])
    if base.get("energy") is not None and overrides.get("activation") is None:
        base["activation"] = None  # the energy file's (or hard_sigmoid if it names none)
    cfg = TrainConfig(**base)
    if cfg.arch is None:
        cfg = dataclasses.replace(cfg, arch=DEFAULT_ARCH.get(cfg.dataset, "784-500-10"))
    validate(cfg)
    return cfg


def _parse_lr(lr) -> tuple[float, ...]:
    if isinstance(lr, str):
        try:
            lr = tuple(float(v) for v in lr.split(","))
        except ValueError:
            raise ConfigError(
                f"`lr`={lr!r} must be one number or comma-separated per-layer numbers, "
                "input side first (e.g. '0.1,0.05')."
            ) from None
    elif isinstance(lr, (int, float)):
        lr = (float(lr),)
    return tuple(float(v) for v in lr)


def build_model(cfg: TrainConfig, key, dtype=jnp.float32):
    """The network `cfg` describes, with fresh parameters drawn from `key`.

    **Returns:** a `LayeredHopfield` of `cfg.arch`, the layered energy with a softmax readout
    (`cfg.cost="cross_entropy"`, an `EnergyModel`), or an `EnergyModel` of the energy file
    `cfg.energy` built for the sizes `cfg.arch`.
    """
    sizes = parse_arch(cfg.arch)
    if cfg.feedback != "tied":
        return _vector_field(cfg, sizes, key, dtype)
    if cfg.energy is None and cfg.cost == "cross_entropy":
        return EnergyModel(layered_hopfield_energy(sizes, cost="cross_entropy"), cfg.activation,
                           cfg.formulation, key=key, dtype=dtype)
    if cfg.energy is None:
        return LayeredHopfield(sizes, cfg.activation, cfg.formulation, key=key, dtype=dtype)
    spec = load_energy_file(cfg.energy, sizes)
    activation = cfg.activation if cfg.activation is not None else (
        spec.activation if spec.activation is not None else "hard_sigmoid")
    formulation = cfg.formulation if cfg.formulation is not None else spec.formulation
    return EnergyModel(spec.energy, activation, formulation, key=key, init=spec.init, dtype=dtype)


def _vector_field(cfg: TrainConfig, sizes, key, dtype) -> VectorFieldHopfield:
    """The `VectorFieldHopfield` of `cfg.feedback`: the tied network's feedforward weights and
    biases (same `key`), feedback weights `W_k^T` or drawn from `fold_in(key, 1)`."""
    tied = LayeredHopfield(sizes, cfg.activation, cfg.formulation, key=key, dtype=dtype)
    if cfg.feedback == "transposed":
        back = tuple(w.T for w in tied.weights[1:])
    else:  # the Glorot-uniform feedback weights of a fresh vector field
        other = VectorFieldHopfield(sizes, cfg.activation, key=jax.random.fold_in(key, 1),
                                    dtype=dtype)
        back = other.system.split(other.params)[1]
    return VectorFieldHopfield(sizes, cfg.activation, dtype=dtype,
                               params=(*tied.weights, *back, *tied.biases))


def validate(cfg: TrainConfig) -> None:
    """Check every setting of `cfg` against the others; raise `ConfigError` naming the first
    that is wrong, its value and the fix. `resolve_config` calls it."""
    network = _check_model(cfg)
    check_rule(cfg, network["activations"])
    check_devices(cfg.devices)
    check_optimizer(cfg)
    _check_sizes(cfg, network["names"])
    if cfg.eval_persistent and (not cfg.persistent or cfg.algo == "backprop"):
        raise ConfigError(
            f"`eval_persistent`=True evaluates every example from its own persistent particle; "
            f"it needs persistent=True (now {cfg.persistent}) and a relaxing network (algo "
            f"{cfg.algo!r}" + (" predicts feed-forward)." if cfg.algo == "backprop" else ").")
            + " Set eval_persistent False.")
    relax_configs(cfg)  # validates solver, dt0, tol, horizons
    _check_formulation(cfg, network)


def _check_model(cfg: TrainConfig) -> dict:
    """`arch`, `cost`, `energy`, `activation`, `formulation` and the rules that need a
    layered network. Returns the parameter names, the main activation, every activation and
    the formulation."""
    sizes = parse_arch(cfg.arch)
    if cfg.cost not in COSTS:
        raise ConfigError(f"`cost`={cfg.cost!r} is not known; use one of {COSTS}.")
    if cfg.cost != "squared_error" and cfg.energy is not None:
        raise ConfigError(f"`cost`={cfg.cost!r} applies to the built-in layered energy; the energy "
                          f"file {cfg.energy!r} defines its own cost. Drop `cost`.")
    if cfg.cost == "cross_entropy" and len(sizes) < 3:
        raise ConfigError(f"`cost`='cross_entropy' reads the output out of the last hidden layer; "
                          f"`arch`={cfg.arch!r} has none. Add a hidden layer, e.g. '784-500-10'.")
    if cfg.cost == "cross_entropy" and cfg.algo in ("backprop", "chl"):
        raise ConfigError(f"`algo`={cfg.algo!r} needs the output layer to be a state (squared-error "
                          "cost); with `cost`='cross_entropy' use ep, rbp, bptt, cep or continuous.")
    _check_feedback(cfg, sizes)
    if cfg.energy is None:
        main = cfg.activation
        activations = [get_activation(main)]
        L = len(sizes)
        names = ([f"W_{k}" for k in range(1, L)]
                 + ([f"B_{k}" for k in range(2, L)] if cfg.feedback != "tied" else [])
                 + [f"b_{k}" for k in range(1, L)])
    else:
        spec = load_energy_file(cfg.energy, sizes)
        act = cfg.activation if cfg.activation is not None else (spec.activation or "hard_sigmoid")
        main, others = resolve_activations(spec.energy, act)
        activations = list(others.values())
        names = [p.name for p in spec.energy.params]
        if cfg.formulation is None and spec.formulation is not None:
            resolve_formulation(main, spec.formulation)
    if cfg.algo == "backprop" and cfg.energy is not None:
        raise ConfigError(
            "`algo`='backprop' trains the feedforward network of a layered architecture; it is "
            f"not defined for the custom energy {cfg.energy!r}. Use rbp or bptt as the exact "
            "reference for a custom energy."
        )
    return dict(names=names, main=main, activations=activations,
                formulation=resolve_formulation(main, cfg.formulation))


#: what a vector-field network (`feedback` other than "tied") cannot do, as (setting, whether
#: it is set, the fix)
_NOT_WITH_FEEDBACK = (
    ("energy", lambda c: c.energy is not None, "drop `energy` (a vector field is the built-in "
     "layered network)"),
    ("cost", lambda c: c.cost != "squared_error", "use cost='squared_error'"),
    ("algo", lambda c: c.algo not in ("ep", "rbp", "bptt"),
     "use algo 'ep' (VectorFieldEP), 'rbp' or 'bptt' (the exact gradient on the same field)"),
    ("variant", lambda c: c.algo == "ep" and c.variant == "holomorphic",
     "use 'one-sided', 'random-sign' or 'symmetric'"),
    ("temperature", lambda c: c.temperature > 0, "set temperature 0 (Langevin noise is "
     "defined on an energy's gradient)"),
    ("spike_rate", lambda c: c.spike_rate > 0, "set spike_rate 0"),
    ("backend", lambda c: c.backend == "blocks",
     "use backend 'fused' or 'diffrax' (block sweeps are coordinate descent on an energy; "
     "measured on a 6-5-3 net with independent feedback: the sweeps oscillate at residual "
     "0.81 where fused Euler converges in 30 steps)"),
    ("nudged_backend", lambda c: c.nudged_backend == "blocks",
     "use nudged_backend 'fused' or 'diffrax' (block sweeps are coordinate descent on an "
     "energy)"),
    ("formulation", lambda c: c.formulation not in (None, "leaky"),
     "use formulation 'leaky' (or leave it unset)"),
)


def _check_feedback(cfg: TrainConfig, sizes) -> None:
    """`feedback` against the network and the rule: a vector field is the built-in layered
    network in the leaky formulation with a projection activation, trained by EP, RBP or BPTT."""
    if cfg.feedback not in FEEDBACKS:
        raise ConfigError(f"`feedback`={cfg.feedback!r} is not known; use one of {FEEDBACKS}.")
    if not (math.isfinite(cfg.homeostasis) and cfg.homeostasis >= 0):
        raise ConfigError(f"`homeostasis`={cfg.homeostasis} must be a finite number >= 0.")
    if cfg.homeostasis and (cfg.feedback == "tied" or cfg.algo != "ep"):
        raise ConfigError(
            f"`homeostasis`={cfg.homeostasis} is a term of vector-field EP's update; it needs "
            f"separate feedback weights and algo 'ep' (now `feedback`={cfg.feedback!r}, `algo`="
            f"{cfg.algo!r}). Set feedback 'transposed' or 'independent' and algo 'ep', or "
            "homeostasis 0.")
    if cfg.feedback == "tied":
        return
    for name, bad, fix in _NOT_WITH_FEEDBACK:
        if bad(cfg):
            raise ConfigError(
                f"`feedback`={cfg.feedback!r} (separate feedback weights, a vector field) does "
                f"not apply with `{name}`={getattr(cfg, name)!r}: {fix}; or set feedback 'tied'.")
    if len(sizes) < 3:
        raise ConfigError(
            f"`feedback`={cfg.feedback!r}: `arch`={cfg.arch!r} has no hidden layer, so no "
            "feedback weights; add one (e.g. '784-500-10') or set feedback 'tied'.")
    if cfg.activation is not None and not get_activation(cfg.activation).projection:
        raise ConfigError(
            f"`feedback`={cfg.feedback!r}: a vector-field network runs the leaky formulation "
            f"and needs a projection activation; `activation`={cfg.activation!r} is not one. "
            "Use activation 'hard_sigmoid', or set feedback 'tied'.")


def _check_sizes(cfg: TrainConfig, names) -> None:
    """`lr` (one rate or one per parameter group), `batch_size`, `epochs`, `eval_batch`,
    `chunk`."""
    groups = param_groups(names)
    n_groups = len(set(groups))
    if len(cfg.lr) not in (1, n_groups):
        what = (f"`arch`={cfg.arch!r} has {n_groups} weight layers" if cfg.energy is None else
                f"the energy's parameters {names} form {n_groups} groups (by the trailing "
                "number of their names)")
        raise ConfigError(
            f"`lr`={','.join(map(str, cfg.lr))} gives {len(cfg.lr)} rates but {what}; give one "
            f"rate or {n_groups}, input side first."
        )
    if any(not (v > 0 and math.isfinite(v)) for v in cfg.lr):
        raise ConfigError(f"`lr`={cfg.lr} must be positive finite numbers.")
    for name in ("batch_size", "epochs", "eval_batch", "chunk"):
        v = getattr(cfg, name)
        if not (isinstance(v, int) and v > 0):
            raise ConfigError(f"`{name}`={v!r} must be a positive integer.")


def _check_formulation(cfg: TrainConfig, network: dict) -> None:
    """The formulation against the cost and the block-sweep backends."""
    main, formulation = network["main"], network["formulation"]
    if (cfg.energy is None and formulation == "leaky" and cfg.cost == "squared_error"
            and not get_activation(main).projection):
        raise ConfigError(
            f"`formulation`='leaky' with the smooth activation {cfg.activation!r} needs a cost "
            "that acts on the rates rho(s) (the continuous Hopfield network); the squared error "
            "acts on the output potential. Use cost='cross_entropy' (a softmax readout), "
            "formulation='gradient', or activation='hard_sigmoid'."
        )
    blocks = [n for n in ("backend", "nudged_backend") if getattr(cfg, n) == "blocks"]
    nudged_blocks = (cfg.nudged_backend or cfg.backend) == "blocks"
    if (cfg.cost == "cross_entropy" and cfg.algo in ("ep", "cep", "continuous")
            and nudged_blocks):
        raise ConfigError(
            "`nudged_backend`='blocks' (or `backend`='blocks' without a nudged_backend) with "
            "`cost`='cross_entropy': the softmax readout couples the last hidden layer to itself "
            "once nudged, so only the free phase has closed-form blocks. Set nudged_backend "
            "'fused' or 'diffrax'."
        )
    if blocks and cfg.energy is None and formulation != "leaky":
        raise ConfigError(
            f"`{blocks[0]}`='blocks' needs the leaky formulation, where each layer's minimiser "
            f"is closed form; `activation`={cfg.activation!r} uses formulation={formulation!r}. "
            "Use formulation 'leaky' (with a smooth activation: cost 'cross_entropy'), or "
            "backend 'fused' or 'diffrax'"
            + (f" (preset {cfg.preset!r} relaxes by blocks in its own formulation)."
               if cfg.preset else ".")
        )
    if nudged_blocks and cfg.variant == "holomorphic":
        raise ConfigError(
            "`nudged_backend`='blocks' relaxes real states; holomorphic EP's complex nudges "
            "need nudged_backend 'fused' or 'diffrax' (the free phase may keep blocks)."
        )
