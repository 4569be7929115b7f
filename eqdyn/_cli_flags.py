"""The flags of `eqdyn`'s subcommands: the settings of a training run, with the defaults of
`TrainConfig` shown in `--help`, and the epoch line explained (used by `eqdyn.cli`)."""

from __future__ import annotations

import argparse
import dataclasses

__all__ = ["EPOCH_LINE", "Formatter", "show_config_defaults", "arch_default", "run_flags",
           "RUN_FLAGS", "scale_flags"]

EPOCH_LINE = """\
after each epoch, one line:
  epoch   3/30          epochs done, of --epochs
  loss 0.0123           mean cost C of the training examples at their free fixed points
                        (1/2 |y - d|^2, or the cross-entropy of --cost cross_entropy),
                        during the epoch, while the weights move
  train 97.12%          training accuracy of those same free-phase predictions
  val 96.50%            validation accuracy after the epoch, relaxed from zero states
                        ("-": no validation split, --val-size 0)
  free steps 12.3       mean solver steps (block sweeps with --backend blocks) per batch of
                        the free phase
  nudged 4.1            the same for the nudged phase(s) (0 for rules without one)
  converged 100%/97%    share of free / nudged phases at steady state (max|ds/dt| < --tol)
                        within their horizon (--free-t1, --nudged-t1); with --tol 0, the
                        share that ran the full horizon with finite states; "(3 of 480
                        relaxations did not)" counts the others
  angle 12.3 deg        with --feedback transposed or independent: the angle between
                        each W_k and its transposed feedback weight B_k^T (k = 2..L)
  12.3s                 wall-clock seconds of the epoch, the validation pass included
The run directory (--out) then holds config.json, checkpoint.* (every epoch), metrics.json
(the per-epoch history and the final train/val/test scores) and curves.png (these columns
per epoch; `eqdyn plot DIR ...` overlays several runs).
"""


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Help text with each flag's default where it has one, and epilogs kept as written.

    argparse's `ArgumentDefaultsHelpFormatter` prints "(default: None)" for every flag a
    preset may set; those flags show `TrainConfig`'s default instead (`show_config_defaults`).
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if ("(default" in text or action.default in (None, False, argparse.SUPPRESS)
                or action.option_strings in (["-h", "--help"], ["--version"])):
            return text
        return text + " (default: %(default)s)"


def show_config_defaults(p) -> None:
    """Append `TrainConfig`'s default to the help of every flag that sets one of its fields
    and has no argparse default (so that a preset can tell the flag was not given): the
    defaults shown are those of the code, and cannot drift from it."""
    from .training import TrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for action in p._actions:
        value = defaults.get(action.dest)
        if action.default is not None or value is None or "(default" in (action.help or ""):
            continue
        if isinstance(value, bool):
            value = ("--" if value else "--no-") + action.dest.replace("_", "-")
        elif isinstance(value, tuple):
            value = ",".join(map(str, value))
        action.help = f"{action.help or ''} (default: {value})".lstrip()


def arch_default() -> str:
    from .training import resolve_config

    by = {name: resolve_config(dataset=name).arch for name in ("digits", "mnist")}
    return f"digits {by['digits']}, mnist and fashion-mnist {by['mnist']}"


def run_flags(p):
    """The settings of one training run (`train`; `sweep` for all that it does not vary)."""
    from .training import (ALGOS, BACKENDS, COSTS, FEEDBACKS, FORMULATIONS, OPTIMIZERS,
                           PLASTICITY, PRESETS, SCHEDULES, VARIANTS)

    g = p.add_argument_group("data")
    g.add_argument("--preset", choices=sorted(PRESETS), help="named settings (flags override)")
    g.add_argument("--dataset", help="digits (bundled with scikit-learn), mnist or "
                   "fashion-mnist (IDX files: --download them, or name their folder with "
                   "--data-dir)")
    g.add_argument("--data-dir", metavar="DIR",
                   help="folder with the IDX .gz files (or set EQDYN_DATA_DIR)")
    g.add_argument("--download", action="store_true",
                   help="fetch missing MNIST / Fashion-MNIST files into --data-dir (default "
                   "~/.cache/eqdyn)")
    g.add_argument("--val-size", type=int,
                   help="validation examples carved from the training data (default: digits "
                   "150, MNIST 10000; 0: none)")
    g = p.add_argument_group("model")
    g.add_argument("--arch", help="layer sizes, input first, e.g. 784-500-10 (default: "
                   f"{arch_default()})")
    g.add_argument("--energy", metavar="FILE.py",
                   help="train the network of a custom energy defined in this Python file "
                   "(see derivations/energies/); built for --arch")
    g.add_argument("--activation", help="hard_sigmoid, sigmoid, tanh, steep_sigmoid or a "
                   "registered one (with --energy: overrides the file's)")
    g.add_argument("--formulation", choices=FORMULATIONS,
                   help="ds/dt=-dF/ds, or the leaky-integrator form du/dt = -u + W rho(u) + b "
                   "(default for hard_sigmoid; with a smooth activation the continuous Hopfield "
                   "network, which needs --cost cross_entropy)")
    g.add_argument("--feedback", choices=FEEDBACKS,
                   help="feedback weights of the layered network: tied (one weight per "
                   "coupling, the energy network) or separate feedback weights B_k (a vector "
                   "field, no energy; --algo ep is vector-field EP, rbp and bptt the exact "
                   "gradient on the same field) starting at W_k^T (transposed) or drawn "
                   "independently; the angle between W_k and B_k^T is recorded per epoch")
    g.add_argument("--homeostasis", type=float, metavar="C",
                   help="with --feedback transposed/independent and --algo ep: add C times the "
                   "gradient of Laborieux & Zenke's (2024) Jacobian homeostasis (the "
                   "asymmetry of the couplings at the free fixed point) to the update")
    g.add_argument("--cost", choices=COSTS,
                   help="cost of the built-in layered energy: squared error on the output layer "
                   "or a softmax readout of the last hidden layer")
    g = p.add_argument_group("learning")
    g.add_argument("--algo", choices=ALGOS,
                   help="learning rule: EP, continual EP (weights updated at every "
                   "nudged Euler step), contrastive Hebbian learning, recurrent "
                   "backprop at the fixed point, backprop through time (bptt always unrolls "
                   "free_t1/dt0 Euler steps, whatever --solver/--backend say), plain backprop "
                   "through the feedforward network of the same weights, or continuous: "
                   "clock-free EP, one ODE per batch in which the teacher arrives when the "
                   "network is at rest and the weights follow the STDP-form rule")
    g.add_argument("--plasticity", choices=PLASTICITY,
                   help="with --algo continuous: add each synapse's integrated change when the "
                   "episode ends, or move the weights inside the solve")
    g.add_argument("--variant", choices=VARIANTS,
                   help="EP nudging; holomorphic: complex beta on "
                   "--n-points points of the circle |beta| (needs a holomorphic activation "
                   "such as sigmoid or tanh)")
    g.add_argument("--n-points", type=int,
                   help="points on the circle for --variant holomorphic (the estimate's "
                   "error is O(beta^N))")
    g.add_argument("--beta", type=float, help="nudging strength")
    g.add_argument("--temperature", type=float,
                   help="neuron noise T: each phase is a Langevin SDE over its "
                   "whole horizon, tau ds = -dF/ds dt + sqrt(2 T tau) dW (holomorphic: the "
                   "--n-points points in turn, each from where the last ended, the noise on "
                   "the real parts)")
    g.add_argument("--spike-rate", type=float,
                   help="EP with spiking phases: Poisson units firing at rho(u) times this "
                   "rate (per time unit), step --dt0 (0 = rate units)")
    g.add_argument("--spike-tau", type=float,
                   help="time constant of the synaptic traces of --spike-rate")
    g.add_argument("--spike-stdp", action="store_true", default=None,
                   help="with --spike-rate: EP's update from the spike-based STDP rule "
                   "accumulated along the nudged phase (SpikeTiming)")
    g.add_argument("--common-noise", action="store_true", default=None,
                   help="--variant symmetric with --spike-rate or --temperature: both nudged "
                   "phases on the same random numbers (the noise they share cancels; a "
                   "simulation's variance reduction, not something a physical network can do)")
    g.add_argument("--lr", help="learning rate, or per-layer rates input side first: 0.1,0.05")
    g.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="optax optimiser, one per layer group with its --lr")
    g.add_argument("--schedule", choices=SCHEDULES,
                   help="learning-rate schedule over the run")
    g.add_argument("--lr-decay", type=float,
                   help="per-epoch factor of --schedule exponential (e.g. 0.95)")
    g.add_argument("--cosine-hold", type=float,
                   help="fraction of the run at the full rate before --schedule cosine "
                   "decays to 0 over the rest")
    g.add_argument("--momentum", type=float, help="heavy-ball momentum of --optimizer sgd")
    g.add_argument("--weight-decay", type=float,
                   help="weight decay (decoupled with adamw, an added wd * theta gradient "
                   "otherwise)")
    g.add_argument("--batch-size", type=int, help="examples per training step")
    g.add_argument("--epochs", type=int, help="passes over the training set")
    g.add_argument("--persistent", action=argparse.BooleanOptionalAction, default=None,
                   help="warm-start each example's free phase from its last fixed point")
    g.add_argument("--eval-persistent", action=argparse.BooleanOptionalAction, default=None,
                   help="give the validation and test examples persistent particles too and "
                   "score every example from its own (Scellier & Bengio's protocol); the "
                   "from-zero errors are reported beside")
    g.add_argument("--seed", type=int,
                   help="seed of the initial weights, the batch order and the EP signs")
    g = p.add_argument_group("relaxation")
    g.add_argument("--solver", help="euler, heun, tsit5, dopri5, kvaerno5, ... (diffrax "
                   "solvers)")
    g.add_argument("--backend", choices=BACKENDS,
                   help="diffrax: the ODE solver of --solver; fused: the same Euler steps in one while loop "
                   "with one field evaluation per step; blocks: exact layer-by-layer updates "
                   "(odd layers, then even ones) to the same fixed points, hard sigmoid only")
    g.add_argument("--nudged-backend", choices=BACKENDS,
                   help="the nudged phase's own backend (default: --backend), e.g. the paper's "
                   "truncated Euler second phase after a free phase relaxed by blocks")
    g.add_argument("--anderson", type=int, metavar="M",
                   help="Anderson acceleration of the block sweeps with memory M (0: "
                   "off): fewer sweeps to the same steady-state test, slower per sweep; "
                   "on CPU about even per batch (0.7-1.1x; see RelaxConfig)")
    g.add_argument("--dt0", type=float, help="(initial) step size in time units")
    g.add_argument("--tol", type=float,
                   help="a relaxation stops at steady state, max|ds/dt| < tol; 0: no test, "
                   "every relaxation runs its full horizon (t1/dt0 steps: the papers' fixed "
                   "step counts)")
    g.add_argument("--free-t1", type=float, help="horizon of the free phase (time units)")
    g.add_argument("--nudged-t1", type=float, help="horizon of the nudged phase")
    g.add_argument("--eval-t1", type=float, help="horizon when evaluating from zero states")
    g.add_argument("--max-steps", type=int,
                   help="most solver steps (or sweeps) of one relaxation")


#: `TrainConfig` fields set by the flags of `_run_flags`
RUN_FLAGS = (
    "dataset", "data_dir", "val_size", "arch", "energy", "activation", "formulation", "cost",
    "feedback", "homeostasis", "algo",
    "variant", "beta", "lr", "optimizer", "momentum", "weight_decay", "batch_size",
    "epochs", "persistent", "eval_persistent", "seed", "solver", "backend", "nudged_backend",
    "anderson", "dt0", "tol",
    "free_t1", "plasticity", "temperature", "spike_rate", "spike_tau", "spike_stdp",
    "common_noise", "n_points", "schedule",
    "lr_decay",
    "cosine_hold", "nudged_t1", "eval_t1", "max_steps",
)


def scale_flags(p, multihost: bool):
    g = p.add_argument_group("devices and hosts")
    g.add_argument("--devices", metavar="all|N",
                   help="data parallel: split each batch over a mesh of N devices (or all), "
                   "parameters replicated; the batch size must be a multiple of N. Same "
                   "numbers as one device up to floating-point summation order"
                   if multihost else "spread the runs over a mesh of N devices (or all)")
    if not multihost:
        return
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="multi-host: address of process 0 (jax.distributed.initialize); with "
                   "--num-processes and --process-id, and --devices all")
    g.add_argument("--num-processes", type=int, metavar="P", help="multi-host: processes in all")
    g.add_argument("--process-id", type=int, metavar="I", help="multi-host: this process, 0..P-1")
