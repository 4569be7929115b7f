"""The studies of `eqdyn analyze`: build the network and inputs a study needs from the command
line's options, run it, draw its figure and summarise it in a few lines.

The command line only parses; `run_study` does the rest. The options are those of
`eqdyn analyze --help` (an `argparse.Namespace` or any object with those attributes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ConfigError
from . import plots
from ._bias import bias_vs_beta
from ._convergence import convergence_study
from ._early import early_inference_sweep
from ._gdu import gdu_study
from ._noise import noise_study
from ._stdp import RULES as STDP_RULES
from ._stdp import stdp_window
from ._training import training_dynamics

__all__ = ["STUDIES", "StudyOutput", "run_study"]

#: The studies `run_study` knows, in the order `eqdyn analyze --help` lists them.
STUDIES = ("early-inference", "bias", "convergence", "training", "gdu", "noise", "stdp")


class StudyOutput(NamedTuple):
    """What `run_study` returns: the study's `record` (with `to_json()`), its matplotlib
    `figure`, and the name of the `activation` it used."""

    record: Any
    figure: Any
    activation: str


def run_study(study: str, options, say: Callable[[str], None] = print) -> StudyOutput:
    """Run one study of `eqdyn analyze` in float64 (the caller enables x64).

    **Arguments:**

    - `study`: one of `STUDIES`.
    - `options`: the command line's options (attributes `arch`, `activation`, `beta`, `batch`,
      `seed`, and each study's own; see `eqdyn analyze --help`).
    - `say`: called with the study's header and summary lines.

    **Returns:** a `StudyOutput` `(record, figure, activation)`.
    """
    if study not in _RUNNERS:
        raise ConfigError(f"`study`={study!r} is not known; choose one of {STUDIES}.")
    if options.batch < 1:
        raise ConfigError(f"`--batch`={options.batch} must be a positive integer.")
    return _RUNNERS[study](options, say)


def _activation(o, default):
    from ..models import get_activation

    return get_activation(o.activation or default)


def _random_batch(rng, sizes, batch):
    x = jnp.asarray(rng.uniform(size=(batch, sizes[0])))
    d = jax.nn.one_hot(jnp.asarray(rng.integers(0, sizes[-1], batch)), sizes[-1],
                       dtype=jnp.float64)
    return x, d


def _archs(text):
    from ..models import parse_arch

    archs = [a for a in text.split(",") if a]
    for a in archs:
        parse_arch(a)
    return archs


def _training(o, say):
    from ..data import load_dataset
    from ..models import LayeredHopfield, parse_arch

    act = _activation(o, "steep_sigmoid")
    data = load_dataset("digits")
    sizes = parse_arch(o.arch or "64-32-10")
    model = LayeredHopfield(sizes, act.name, key=jax.random.PRNGKey(o.seed), dtype=jnp.float64)
    say(f"eqdyn analyze training: digits {'-'.join(map(str, sizes))} ({act.name}), "
        f"{o.steps} steps")
    beta = 0.1 if o.beta == 1e-3 else o.beta
    record = training_dynamics(
        model, np.asarray(data.x_train, np.float64), data.y_train, n_steps=o.steps,
        lr=o.lr, beta=beta, batch_size=20, seed=o.seed)
    say(f"  final loss EP {record.loss_ep[-10:].mean():.4f}, RBP "
        f"{record.loss_rbp[-10:].mean():.4f}; cosine EP vs gradient: min "
        f"{record.cosine.min():.6f}, mean {record.cosine.mean():.6f}")
    return StudyOutput(record, plots.plot_training(record), act.name)


def _gdu(o, say):
    act = _activation(o, "sigmoid")
    archs = _archs(o.arch or "10-12-4,10-12-12-4,10-12-12-12-4")
    try:
        dts = tuple(float(v) for v in o.dts.split(","))
        free_times = tuple(float(v) for v in o.free_times.split(","))
    except ValueError:
        raise ConfigError(f"`--dts`={o.dts!r} and `--free-times`={o.free_times!r} must be "
                          "comma-separated numbers, e.g. 1,0.1 and 4,100.") from None
    say(f"eqdyn analyze gdu: {', '.join(archs)} ({act.name}), dt {dts}, free phase "
        f"{free_times} tau, nudged {o.horizon:g} tau")
    record = gdu_study(archs, activation=act.name, dts=dts, free_times=free_times,
                       horizon=o.horizon, batch=o.batch, seed=o.seed)
    for r in record.rows:
        i = int(np.nanargmin(np.asarray(r["error_neurons"]) + r["error_params"]))
        say(f"  {r['arch']:<16} dt {r['dt']:<4g} T {r['n_free']:<5} residual "
            f"{r['free_residual']:.1e}: best beta {record.betas[i]:.0e}, relative error "
            f"neurons {r['error_neurons'][i]:.1e} weights {r['error_params'][i]:.1e}, "
            f"sign agreement {r['sign_neurons'][i]:.4f} / {r['sign_params'][i]:.4f}")
    return StudyOutput(record, plots.plot_gdu_study(record), act.name)


def _noise(o, say):
    from ..models import EnergyModel, parse_arch
    from ..symbolic import layered_hopfield_energy

    estimators = []
    for item in o.estimators.split(","):
        parts = item.strip().split(":")
        try:
            variant, beta = parts[0], float(parts[1])
            n = int(parts[2]) if len(parts) > 2 else 2
        except (IndexError, ValueError):
            raise ConfigError(f"`--estimators` item {item!r}: write VARIANT:BETA[:N], e.g. "
                              "one-sided:0.1 or holomorphic:0.4:10.") from None
        estimators.append((variant, beta, n))
    if len(o.run) > 1:
        raise ConfigError(f"`--run` given {len(o.run)} times; the noise study takes one "
                          "trained network.")
    if o.run:
        model, x, d, what, act_name = _trained_batch(o.run[0], o.batch)
    else:
        sizes = parse_arch(o.arch or "20-16-16-5")
        act = _activation(o, "steep_sigmoid")
        model = EnergyModel(layered_hopfield_energy(sizes, cost="cross_entropy"), act.name,
                            "leaky", key=jax.random.PRNGKey(o.seed), dtype=jnp.float64)
        x, d = _random_batch(np.random.default_rng(o.seed), sizes, o.batch)
        what = f"{'-'.join(map(str, sizes))} ({act.name}, softmax readout), batch {o.batch}"
        act_name = act.name
    say(f"eqdyn analyze noise: {what}, T = {o.temperature:g}, {o.n_keys} draws")
    record = noise_study(model, x, d, temperature=o.temperature, estimators=estimators,
                         n_keys=o.n_keys, seed=o.seed)
    for lab in record.labels:
        say(f"  {lab:<30} error per draw {np.mean(record.errors[lab]):.3f} (cos "
            f"{np.mean(record.cosines[lab]):.4f}); of the average "
            f"{record.mean_error[lab]:.3f}; noiseless {record.noiseless_error[lab]:.4f}")
    return StudyOutput(record, plots.plot_noise(record), act_name)


def _convergence(o, say):
    from ..dynamics import SOLVERS

    act = _activation(o, "sigmoid")
    default = "" if o.run else "20-32-10,20-32-32-10,20-32-32-32-10,20-128-10"
    archs = _archs(o.arch or default)
    solvers = tuple(v.strip() for v in o.solvers.split(",") if v.strip())
    unknown = [v for v in solvers if v != "blocks" and v not in SOLVERS]
    if unknown:
        raise ConfigError(f"`--solvers` {unknown} not known; use {sorted(SOLVERS)} or blocks.")
    say(f"eqdyn analyze convergence: {', '.join(archs + list(o.run))} ({act.name})")
    record = convergence_study(archs, activation=act.name, batch=o.batch, seed=o.seed,
                               solvers=solvers, run_dirs=tuple(o.run))
    for r in record.rows:
        pred = "-" if r["predicted_t"] is None else f"{r['predicted_t']:.1f}"
        if r["trained"]:
            say(f"  trained {r['trained']['run_dir']} ({r['trained']['epochs']} epochs):")
        say(f"  {r['arch']:<18} steps {r['steps']}  t* {r['t_settle']:.1f}  slowest rate "
            f"{r['slowest_rate']:.3f} -> predicted {pred}  energy "
            f"max increase {r['energy_increase']:.1e}")
    return StudyOutput(record, plots.plot_convergence(record), act.name)


def _random_model(o, default_arch, say, study):
    from ..models import LayeredHopfield, parse_arch

    act = _activation(o, "sigmoid")
    sizes = parse_arch(o.arch or default_arch)
    model = LayeredHopfield(sizes, act.name, key=jax.random.PRNGKey(o.seed), dtype=jnp.float64)
    x, d = _random_batch(np.random.default_rng(o.seed), sizes, o.batch)
    say(f"eqdyn analyze {study}: {'-'.join(map(str, sizes))} ({act.name}), batch {o.batch}")
    return model, act, x, d


def _trained_batch(run_dir, batch):
    """A trained network (float64), its first `batch` test images with one-hot targets, a
    description and the activation's name."""
    from ..data import load_dataset
    from ..training import load_trained

    model, cfg, epoch = load_trained(run_dir, dtype=jnp.float64)
    data = load_dataset(cfg.dataset, cfg.data_dir)
    x = jnp.asarray(data.x_test[:batch], jnp.float64)
    d = jax.nn.one_hot(jnp.asarray(data.y_test[:batch]), model.n_outputs, dtype=jnp.float64)
    what = f"{run_dir} ({cfg.arch}, {epoch} epochs), {batch} test images"
    return model, x, d, what, str(cfg.activation or "the energy file's")


def _early(o, say):
    """The early-inference sweep over `--gamma` on a random network (either formulation; a
    leaky one with a smooth activation reads out through a softmax) or a trained one."""
    from ..models import EnergyModel, LayeredHopfield, parse_arch
    from ..symbolic import layered_hopfield_energy

    try:
        gammas = tuple(float(v) for v in str(o.gamma).split(","))
    except ValueError:
        raise ConfigError(f"`--gamma`={o.gamma!r} must be comma-separated numbers, e.g. "
                          "1,0.3,0.1,0.01,1e-4.") from None
    if len(o.run) > 1:
        raise ConfigError(f"`--run` given {len(o.run)} times; early-inference takes one.")
    if o.run:
        model, x, d, what, act_name = _trained_batch(o.run[0], o.batch)
    else:
        sizes = parse_arch(o.arch or "20-16-14-12-5")
        act = _activation(o, "sigmoid")
        form = o.formulation or ("leaky" if act.projection else "gradient")
        key = jax.random.PRNGKey(o.seed)
        if form == "leaky" and not act.projection:
            model = EnergyModel(layered_hopfield_energy(sizes, cost="cross_entropy"), act.name,
                                "leaky", key=key, dtype=jnp.float64)
        else:
            model = LayeredHopfield(sizes, act.name, form, key=key, dtype=jnp.float64)
        x, d = _random_batch(np.random.default_rng(o.seed), sizes, o.batch)
        what = f"{'-'.join(map(str, sizes))} ({act.name}, {form}), batch {o.batch}"
        act_name = act.name
    say(f"eqdyn analyze early-inference: {what}, gamma {gammas}")
    record = early_inference_sweep(model, x, d, gammas)
    say(record.table())
    return StudyOutput(record, plots.plot_early_inference_sweep(record), act_name)


def _bias(o, say):
    model, act, x, d = _random_model(o, "5-6-3", say, "bias")
    variants = ("one-sided", "symmetric") + (("holomorphic",) if act.holomorphic else ())
    record = bias_vs_beta(model, x, d, variants=variants, n_points=o.n_points)
    for v, slope in record.slopes.items():
        say(f"  {v:<12} log-log slope {slope:.3f}")
    return StudyOutput(record, plots.plot_bias(record), act.name)


def _stdp(o, say):
    say(f"eqdyn analyze stdp: pairing protocol, {o.pairs} pairs at {o.pair_rate:g} Hz, "
        f"dt {o.dt_ms:g} ms, offsets -100..100 ms")
    record = stdp_window(n_pairs=o.pairs, rate_hz=o.pair_rate, dt=o.dt_ms)
    for rule in STDP_RULES:
        f, a = record.fits[rule], record.analytic[rule]
        say(f"  {rule:<10} fitted A+ {f['a_plus']:.4f} tau+ {f['tau_plus']:.2f} ms, A- "
            f"{f['a_minus']:.4f} tau- {f['tau_minus']:.2f} ms (analytic {a['a_plus']:.4f}, "
            f"{a['tau_plus']:g}, {a['a_minus']:.4f}, {a['tau_minus']:g})")
    return StudyOutput(record, plots.plot_stdp(record), "none (LIF neurons, linear filters)")


_RUNNERS = {"early-inference": _early, "bias": _bias, "convergence": _convergence,
            "training": _training, "gdu": _gdu, "noise": _noise, "stdp": _stdp}
