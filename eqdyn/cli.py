"""The `eqdyn` command line: parses arguments, calls the public API, writes results.

    eqdyn train [--preset NAME] [--dataset digits|mnist|fashion-mnist] [--devices all|N] [...]
    eqdyn sweep --seeds 8 --beta 0.1,0.5,1.0 [--lr 0.1,0.05 --lr 0.2,0.1] [train flags]
    eqdyn derive --arch 784-500-10 --activation hard_sigmoid [--latex] [--check]
    eqdyn compare --algos ep,ep-sym,chl,rbp,bptt
    eqdyn analyze early-inference|bias|convergence|training|gdu|noise [--arch ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ._errors import EqdynError

DERIVE_TOLERANCE = 1e-10


def _add_train(sub):
    p = sub.add_parser(
        "train",
        help="train a layered Hopfield network with Equilibrium Propagation",
        description="Train with EP. A --preset sets defaults (e.g. sb17-1h, the paper's Table 2 "
        "setting); any flag overrides it. Writes config.json, checkpoint.* (every epoch, "
        "atomically) and metrics.json to the run directory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _run_flags(p)
    _scale_flags(p, multihost=True)
    g = p.add_argument_group("run")
    g.add_argument("--run-dir", help="output folder (default runs/<time>-<dataset>)")
    g.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    g.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    p.set_defaults(func=_cmd_train)


def _run_flags(p):
    """The settings of one training run (`train`; `sweep` for all that it does not vary)."""
    from .training import (ALGOS, BACKENDS, COSTS, FORMULATIONS, OPTIMIZERS, PLASTICITY,
                           PRESETS, SCHEDULES, VARIANTS)

    g = p.add_argument_group("data")
    g.add_argument("--preset", choices=sorted(PRESETS), help="named settings (flags override)")
    g.add_argument("--dataset", help="digits (bundled, default), mnist or fashion-mnist")
    g.add_argument("--data-dir", help="folder with the IDX .gz files (or set EQDYN_DATA_DIR)")
    g.add_argument("--download", action="store_true", help="fetch missing IDX files from mirrors")
    g.add_argument("--val-size", type=int, help="validation examples carved from training data")
    g = p.add_argument_group("model")
    g.add_argument("--arch", help="layer sizes, input first, e.g. 784-500-10")
    g.add_argument("--energy", metavar="FILE.py",
                   help="train the network of a custom energy defined in this Python file "
                   "(see derivations/energies/); built for --arch")
    g.add_argument("--activation", help="hard_sigmoid (default), sigmoid, tanh or a registered "
                   "one (with --energy: overrides the file's)")
    g.add_argument("--formulation", choices=FORMULATIONS,
                   help="ds/dt=-dF/ds, or the leaky-integrator form du/dt = -u + W rho(u) + b "
                   "(default for hard_sigmoid; with a smooth activation the continuous Hopfield "
                   "network, which needs --cost cross_entropy)")
    g.add_argument("--cost", choices=COSTS,
                   help="cost of the built-in layered energy: squared error on the output layer "
                   "(default) or a softmax readout of the last hidden layer")
    g = p.add_argument_group("learning")
    g.add_argument("--algo", choices=ALGOS,
                   help="learning rule: EP (default), continual EP (weights updated at every "
                   "nudged Euler step), contrastive Hebbian learning, recurrent "
                   "backprop at the fixed point, backprop through time (bptt always unrolls "
                   "free_t1/dt0 Euler steps, whatever --solver/--backend say), plain backprop "
                   "through the feedforward network of the same weights, or continuous: "
                   "clock-free EP, one ODE per batch in which the teacher arrives when the "
                   "network is at rest and the weights follow the STDP-form rule")
    g.add_argument("--plasticity", choices=PLASTICITY,
                   help="with --algo continuous: add each synapse's integrated change when the "
                   "episode ends (default), or move the weights inside the solve")
    g.add_argument("--variant", choices=VARIANTS,
                   help="EP nudging (default random-sign); holomorphic: complex beta on "
                   "--n-points points of the circle |beta| (needs a holomorphic activation "
                   "such as sigmoid or tanh)")
    g.add_argument("--n-points", type=int,
                   help="points on the circle for --variant holomorphic (default 4; the "
                   "estimate's error is O(beta^N))")
    g.add_argument("--beta", type=float, help="nudging strength (default 1.0)")
    g.add_argument("--temperature", type=float,
                   help="neuron noise T (default 0): each phase is a Langevin SDE over its "
                   "whole horizon, tau ds = -dF/ds dt + sqrt(2 T tau) dW (holomorphic: the "
                   "--n-points points in turn, each from where the last ended, the noise on "
                   "the real parts)")
    g.add_argument("--lr", help="learning rate, or per-layer rates input side first: 0.1,0.05")
    g.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="optax optimiser, one per layer group with its --lr (default sgd)")
    g.add_argument("--schedule", choices=SCHEDULES,
                   help="learning-rate schedule over the run (default constant)")
    g.add_argument("--lr-decay", type=float,
                   help="per-epoch factor of --schedule exponential (e.g. 0.95)")
    g.add_argument("--cosine-hold", type=float,
                   help="fraction of the run at the full rate before --schedule cosine "
                   "decays to 0 over the rest (default 0)")
    g.add_argument("--momentum", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--epochs", type=int)
    g.add_argument("--persistent", action=argparse.BooleanOptionalAction, default=None,
                   help="warm-start each example's free phase from its last fixed point")
    g.add_argument("--eval-persistent", action=argparse.BooleanOptionalAction, default=None,
                   help="give the validation and test examples persistent particles too and "
                   "score every example from its own (Scellier & Bengio's protocol); the "
                   "from-zero errors are reported beside")
    g.add_argument("--seed", type=int)
    g = p.add_argument_group("relaxation")
    g.add_argument("--solver", help="euler (default), heun, tsit5, dopri5, kvaerno5, ...")
    g.add_argument("--backend", choices=BACKENDS,
                   help="diffrax (default); fused: the same Euler steps in one while loop "
                   "with one field evaluation per step; blocks: exact layer-by-layer updates "
                   "(odd layers, then even ones) to the same fixed points, hard sigmoid only")
    g.add_argument("--nudged-backend", choices=BACKENDS,
                   help="the nudged phase's own backend (default: --backend), e.g. the paper's "
                   "truncated Euler second phase after a free phase relaxed by blocks")
    g.add_argument("--anderson", type=int, metavar="M",
                   help="Anderson acceleration of the block sweeps with memory M (0: off, "
                   "the default): fewer sweeps to the same steady-state test, slower per sweep; "
                   "on CPU about even per batch (0.7-1.1x; see RelaxConfig)")
    g.add_argument("--dt0", type=float, help="(initial) step size in time units")
    g.add_argument("--tol", type=float, help="steady state when max|ds/dt| < tol")
    g.add_argument("--free-t1", type=float, help="horizon of the free phase")
    g.add_argument("--nudged-t1", type=float, help="horizon of the nudged phase")
    g.add_argument("--eval-t1", type=float, help="horizon when evaluating from zero states")
    g.add_argument("--max-steps", type=int)


#: `TrainConfig` fields set by the flags of `_run_flags`
RUN_FLAGS = (
    "dataset", "data_dir", "val_size", "arch", "energy", "activation", "formulation", "cost",
    "algo",
    "variant", "beta", "lr", "optimizer", "momentum", "weight_decay", "batch_size",
    "epochs", "persistent", "eval_persistent", "seed", "solver", "backend", "nudged_backend",
    "anderson", "dt0", "tol",
    "free_t1", "plasticity", "temperature", "n_points", "schedule", "lr_decay",
    "cosine_hold", "nudged_t1", "eval_t1", "max_steps",
)


def _cmd_train(args) -> int:
    from ._distributed import initialize, parse_devices

    # before anything else touches JAX
    multi = initialize(args.coordinator, args.num_processes, args.process_id)
    import jax

    from .training import resolve_config, train

    overrides = {k: getattr(args, k) for k in RUN_FLAGS}
    overrides["devices"] = parse_devices(args.devices)
    if args.resume:
        for flag, value in (("--run-dir", args.run_dir), ("--preset", args.preset)):
            if value is not None:
                raise EqdynError(
                    f"`{flag}`={value!r} cannot be combined with `--resume`: a resumed run keeps "
                    "its directory and settings (only --epochs, --data-dir, --backend and "
                    "--devices may change)."
                )
        from .training import read_run_settings

        run_dir = Path(args.resume)
        saved = read_run_settings(run_dir, "`--resume`")
        preset = saved.pop("preset", None)
        saved.update({k: v for k, v in overrides.items() if v is not None})
        cfg = resolve_config(preset, **saved)
    else:
        cfg = resolve_config(args.preset, **overrides)
        run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / (
            time.strftime("%Y%m%d-%H%M%S") + f"-{cfg.dataset}"
        )
    lead = jax.process_index() == 0  # of several processes, one reports
    say = None if args.quiet or not lead else (lambda s: print(s, flush=True))
    rule = (f"{cfg.algo.upper()}/{cfg.variant} beta={cfg.beta}" if cfg.algo in ("ep", "cep")
            else cfg.algo.upper())
    model_desc = f"{cfg.arch} {cfg.activation or 'its activation'}"
    if cfg.energy:
        model_desc = f"energy {cfg.energy} {model_desc}"
    where = "" if cfg.devices is None else f" devices={cfg.devices}"
    if multi:
        where += f" (process {jax.process_index()} of {jax.process_count()})"
    print(f"eqdyn train: {cfg.dataset} {model_desc} {rule}"
          f" lr={','.join(map(str, cfg.lr))} batch={cfg.batch_size} epochs={cfg.epochs}{where}"
          f" -> {run_dir}", flush=True)
    try:
        metrics = train(cfg, run_dir=run_dir, resume=bool(args.resume), progress=say,
                        download=args.download)
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: eqdyn train --resume {run_dir}", file=sys.stderr)
        return 130
    if lead:
        print(f"test accuracy {metrics['test_accuracy']:.4f}; metrics in "
              f"{run_dir / 'metrics.json'}")
    return 0


def _scale_flags(p, multihost: bool):
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


def _add_sweep(sub):
    p = sub.add_parser(
        "sweep",
        help="train many small runs at once (vmap over runs): seeds x beta x lr, mean and std",
        description="Train every combination of --beta values and --lr settings with --seeds "
        "seeds each, as the runs `eqdyn train` would make, but many at once: the runs are "
        "stacked and the training step is vectorised over them (jax.vmap), on one device or "
        "split over --devices. Only values that enter as arrays vary inside one vectorised "
        "group: the seed, beta (ep and cep with one-sided, random-sign or symmetric nudging) and "
        "lr (rules with an optimiser). Holomorphic EP's beta, continuous EP's beta and the lr of "
        "cep / continuous are static: their settings run as separate groups, one after the "
        "other. Settings that change shapes or structure (--arch, --algo, --variant, "
        "--optimizer, --batch-size, ...) take one value: run one sweep per value. Prints a table "
        "(mean ± sample std over seeds per setting) and writes it with every run to --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        conflict_handler="resolve",
    )
    _run_flags(p)
    g = p.add_argument_group("sweep")
    g.add_argument("--seeds", type=int, default=4,
                   help="seeds per setting: --seed, --seed + 1, ... (default seed 0)")
    g.add_argument("--beta", help="comma-separated nudging strengths, e.g. 0.1,0.5,1.0")
    g.add_argument("--lr", action="append",
                   help="a learning-rate setting (one rate, or per-layer rates input side first, "
                   "e.g. 0.1,0.05); repeat the flag to sweep several")
    _scale_flags(p, multihost=False)
    g = p.add_argument_group("output")
    g.add_argument("--out", help="JSON file (default runs/sweep-<time>.json)")
    g.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args) -> int:
    from ._distributed import parse_devices
    from .training import format_sweep_table, sweep, write_json

    overrides = {k: getattr(args, k) for k in RUN_FLAGS if k not in ("beta", "lr")}
    betas = None
    if args.beta is not None:
        try:
            betas = [float(b) for b in args.beta.split(",") if b.strip()]
        except ValueError:
            raise EqdynError(f"`--beta`={args.beta!r} must be comma-separated numbers, e.g. "
                             "0.1,0.5,1.0.") from None
    say = None if args.quiet else (lambda s: print(s, flush=True))
    result = sweep(args.seeds, betas=betas, lrs=args.lr, preset=args.preset,
                   devices=parse_devices(args.devices), progress=say, download=args.download,
                   **overrides)
    result.pop("models")
    result["command"] = "eqdyn " + " ".join(sys.argv[1:])
    out = Path(args.out) if args.out else Path("runs") / (
        "sweep-" + time.strftime("%Y%m%d-%H%M%S") + ".json")
    write_json(out, result)
    print(format_sweep_table(result))
    print(f"{len(result['runs'])} runs in {result['wall_seconds']:.1f}s; wrote {out}")
    return 0


def _add_derive(sub):
    p = sub.add_parser(
        "derive",
        help="derive and print the neuron dynamics and learning rule of an energy",
        description="Derive tau_k ds_k/dt = -dF/ds_k, dF/dtheta and (with --stdp) the STDP form "
        "d/dt dF/dtheta of the layered Hopfield energy, or of the energy in --energy FILE.py, "
        "and print them; --check compares them with jax.grad / jax.jvp in float64.",
    )
    p.add_argument("--arch", default="784-500-10", help="layer sizes, input first")
    p.add_argument("--energy", metavar="FILE.py", help="a Python file defining `energy`")
    p.add_argument("--cost", choices=["squared_error", "cross_entropy"], default="squared_error",
                   help="cost of the built-in layered energy (cross_entropy: softmax readout)")
    p.add_argument("--activation", help="hard_sigmoid (default), sigmoid, tanh, or registered")
    p.add_argument("--latex", action="store_true", help="print LaTeX instead of plain text")
    p.add_argument("--stdp", action="store_true", help="also print the STDP form of the rule")
    p.add_argument("--code", action="store_true", help="also print the generated JAX source")
    p.add_argument("--check", action="store_true",
                   help=f"compare with jax.grad (float64); exit 1 if max error > {DERIVE_TOLERANCE:g}")
    p.set_defaults(func=_cmd_derive)


def _cmd_derive(args) -> int:
    from .models import (
        check_derivation, check_hopfield_derivation, compile_system, get_activation, parse_arch,
    )
    from .models._energy_file import load_energy_file
    from .symbolic import derive, layered_hopfield_energy

    sizes = parse_arch(args.arch)
    if args.energy:
        spec = load_energy_file(args.energy, sizes)
        energy = spec.energy
        act = args.activation or spec.activation or "hard_sigmoid"
    else:
        energy = layered_hopfield_energy(sizes, cost=args.cost)
        act = args.activation or "hard_sigmoid"
    if not isinstance(act, dict):
        get_activation(act)
    system = compile_system(derive(energy), act, "gradient")
    der = system.derivation
    act_name = act if isinstance(act, str) else getattr(act, "name", act)
    print(f"# {energy.name}, rho = {act_name}")
    if args.latex:
        print(der.latex())
        if args.stdp:
            print("\n".join(der.stdp_latex()))
    else:
        print(der)
        if args.stdp:
            print("\n".join(der.stdp_text()))
    if args.code:
        print("\n# generated JAX code\n" + system.code.source)
    if args.check:
        if args.energy is None and args.cost == "squared_error" and isinstance(act, str):
            # independent hand-written energy as the reference
            err = check_hopfield_derivation(sizes, act)
            err2 = check_derivation(system)
            err["param_rates"] = err2["param_rates"]
            err["max"] = max(err["max"], err2["max"])
        else:
            err = check_derivation(system)
        ok = err["max"] <= DERIVE_TOLERANCE
        print(
            f"check vs jax.grad (float64): max |dF/ds| error {err['state_grads']:.3e}, "
            f"max |dF/dtheta| error {err['param_grads']:.3e}, |F| error {err['energy']:.3e}, "
            f"STDP form vs jax.jvp {err['param_rates']:.3e} "
            f"-> {'OK' if ok else 'FAILED'} (tolerance {DERIVE_TOLERANCE:g})"
        )
        return 0 if ok else 1
    return 0


def _add_compare(sub):
    from .training import BACKENDS, OPTIMIZERS, SCHEDULES

    p = sub.add_parser(
        "compare",
        help="train several learning rules from the same initialisation and tabulate them",
        description="Train each rule with the same network, initial weights, batch order, "
        "relaxation and optimiser, and print one table (accuracy, wall time, mean relaxation "
        "steps). Rules: ep (one-sided), ep-rs (random-sign), ep-sym (symmetric), ep-holo "
        "(holomorphic; needs --activation sigmoid or tanh), cep (continual EP), continuous "
        "(clock-free EP), chl, rbp, bptt, backprop (feedforward).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--algos", default="ep,ep-sym,chl,rbp,bptt", help="comma-separated rules")
    p.add_argument("--preset", help="named settings (flags override)")
    p.add_argument("--dataset", help="digits (default), mnist or fashion-mnist")
    p.add_argument("--data-dir", help="folder with the IDX .gz files")
    p.add_argument("--arch", help="layer sizes, input first")
    p.add_argument("--energy", metavar="FILE.py", help="a custom energy file (see train --help)")
    p.add_argument("--activation", help="hard_sigmoid (default), sigmoid or tanh")
    p.add_argument("--beta", type=float)
    p.add_argument("--lr", help="learning rate(s), input side first")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int)
    p.add_argument("--backend", choices=BACKENDS)
    p.add_argument("--n-points", type=int, help="ep-holo: points on the circle (default 4)")
    p.add_argument("--nudged-t1", type=float,
                   help="horizon of the second phase (cep: its Euler steps are nudged_t1/dt0)")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--lr-decay", type=float, help="per-epoch factor of --schedule exponential")
    p.add_argument("--cosine-hold", type=float,
                   help="fraction of the run at the full rate before --schedule cosine decays")
    p.add_argument("--out", help="JSON file for the table (default runs/compare-<time>.json)")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args) -> int:
    from .training import compare, format_table, write_json

    overrides = {k: getattr(args, k) for k in (
        "dataset", "data_dir", "arch", "energy", "activation", "beta", "lr", "batch_size",
        "epochs", "seed", "backend", "n_points", "nudged_t1", "optimizer", "schedule",
        "lr_decay", "cosine_hold")}
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    print(format_table([], header=True), flush=True)
    rows = compare(algos, preset=args.preset, progress=lambda s: print(s, flush=True),
                   **overrides)
    out = Path(args.out) if args.out else Path("runs") / (
        time.strftime("%Y%m%d-%H%M%S") + "-compare.json")
    write_json(out, {"rows": rows})
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="eqdyn",
        description="Continuous-time energy-based networks and Equilibrium Propagation.",
    )
    parser.add_argument("--version", action="version", version=f"eqdyn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(sub)
    _add_sweep(sub)
    _add_derive(sub)
    _add_compare(sub)
    _add_analyze(sub)
    return parser


STUDIES = ("early-inference", "bias", "convergence", "training", "gdu", "noise")


def _add_analyze(sub):
    p = sub.add_parser(
        "analyze",
        help="run an analysis study and write its JSON and PNG figure",
        description="Studies (float64, small networks): early-inference (nudge the free fixed "
        "point and compare (s^beta - s^0)/beta with the fixed-point sensitivity, and ds/dt with "
        "backprop's error derivatives, per layer over time), bias (EP one-sided, symmetric and "
        "holomorphic against recurrent backprop over a grid of beta, with log-log slopes), "
        "convergence (solver steps, settling time vs the slowest Jacobian decay rate, and "
        "energy descent, over architectures), training (EP and recurrent backprop from the "
        "same initialisation on the bundled digits: learning curves and the cosine between "
        "EP's update and the exact gradient along training), gdu (EP's neural and weight "
        "updates at each nudged step against BPTT's gradients at the matching step, over beta, "
        "the step dt, a short and a long free phase, and depth), noise (EP one-sided, "
        "symmetric and holomorphic under neuron noise on the potentials of the continuous "
        "Hopfield network, against recurrent backprop: Laborieux & Zenke 2022; on a random "
        "20-16-16-5 network with a softmax readout, or the trained network of --run). Writes "
        "STUDY.json and STUDY.png to --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("study", choices=STUDIES)
    p.add_argument("--arch", help="layer sizes (default: early-inference 20-16-14-12-5, bias "
                   "5-6-3); for convergence and gdu a comma-separated list (default "
                   "20-32-10,20-32-32-10,20-32-32-32-10,20-128-10; gdu "
                   "10-12-4,10-12-12-4,10-12-12-12-4)")
    p.add_argument("--activation",
                   help="sigmoid (default; steep_sigmoid for training), tanh, steep_sigmoid or "
                   "hard_sigmoid (bias: holomorphic EP is left out for activations with kinks)")
    p.add_argument("--beta", type=float, default=1e-3, help="early-inference: the nudge")
    p.add_argument("--batch", type=int, default=8, help="random inputs in [0, 1]")
    p.add_argument("--n-points", type=int, default=4, help="bias: holomorphic EP's N")
    p.add_argument("--steps", type=int, default=200, help="training: SGD steps")
    p.add_argument("--lr", type=float, default=0.5, help="training: learning rate")
    p.add_argument("--dts", default="1,0.1",
                   help="gdu: comma-separated steps (1 = discrete time, smaller = Euler)")
    p.add_argument("--free-times", default="4,100",
                   help="gdu: comma-separated free-phase durations in units of tau (short: "
                   "unconverged; long: converged)")
    p.add_argument("--horizon", type=float, default=10.0,
                   help="gdu: nudged-phase duration in units of tau")
    p.add_argument("--run", action="append", default=[], metavar="DIR",
                   help="convergence: also study the trained network of this run directory "
                   "(eqdyn train --run-dir), on its first --batch test images; repeatable. "
                   "noise: study that network (one run) instead of a random one")
    p.add_argument("--temperature", type=float, default=8e-4,
                   help="noise: T of every phase (8e-4 = std 0.04 per step of dt 1, Laborieux "
                   "& Zenke's noise)")
    p.add_argument("--n-keys", type=int, default=16, help="noise: independent noise draws")
    p.add_argument("--estimators", default="one-sided:0.1,one-sided:0.4,symmetric:0.4,"
                   "holomorphic:0.4:10",
                   help="noise: comma-separated VARIANT:BETA[:N] (N for holomorphic)")
    p.add_argument("--solvers", default="euler,tsit5",
                   help="convergence: comma-separated solvers, or blocks (leaky formulation)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default runs/analyze-STUDY-<time>)")
    p.set_defaults(func=_cmd_analyze)


def _cmd_analyze(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")  # files only, no window
    from . import analysis
    from .analysis import plots
    from .models import LayeredHopfield, get_activation, parse_arch
    from .training import write_json

    act = get_activation(args.activation or (
        "steep_sigmoid" if args.study == "training" else "sigmoid"))
    out = Path(args.out) if args.out else Path("runs") / (
        f"analyze-{args.study}-" + time.strftime("%Y%m%d-%H%M%S"))
    if args.batch < 1:
        raise EqdynError(f"`--batch`={args.batch} must be a positive integer.")
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    if args.study == "training":
        from .data import load_dataset

        data = load_dataset("digits")
        sizes = parse_arch(args.arch or "64-32-10")
        model = LayeredHopfield(sizes, act.name, key=jax.random.PRNGKey(args.seed),
                                dtype=jnp.float64)
        print(f"eqdyn analyze training: digits {'-'.join(map(str, sizes))} ({act.name}), "
              f"{args.steps} steps", flush=True)
        beta = 0.1 if args.beta == 1e-3 else args.beta
        record = analysis.training_dynamics(
            model, np.asarray(data.x_train, np.float64), data.y_train, n_steps=args.steps,
            lr=args.lr, beta=beta, batch_size=20, seed=args.seed)
        fig = plots.plot_training(record)
        print(f"  final loss EP {record.loss_ep[-10:].mean():.4f}, RBP "
              f"{record.loss_rbp[-10:].mean():.4f}; cosine EP vs gradient: min "
              f"{record.cosine.min():.6f}, mean {record.cosine.mean():.6f}")
    elif args.study == "gdu":
        archs = (args.arch or "10-12-4,10-12-12-4,10-12-12-12-4").split(",")
        for a in archs:
            parse_arch(a)
        try:
            dts = tuple(float(v) for v in args.dts.split(","))
            free_times = tuple(float(v) for v in args.free_times.split(","))
        except ValueError:
            raise EqdynError(f"`--dts`={args.dts!r} and `--free-times`={args.free_times!r} "
                             "must be comma-separated numbers, e.g. 1,0.1 and 4,100.") from None
        print(f"eqdyn analyze gdu: {', '.join(archs)} ({act.name}), dt {dts}, free phase "
              f"{free_times} tau, nudged {args.horizon:g} tau", flush=True)
        record = analysis.gdu_study(archs, activation=act.name, dts=dts, free_times=free_times,
                                    horizon=args.horizon, batch=args.batch, seed=args.seed)
        fig = plots.plot_gdu_study(record)
        for r in record.rows:
            i = int(np.nanargmin(np.asarray(r["error_neurons"]) + r["error_params"]))
            print(f"  {r['arch']:<16} dt {r['dt']:<4g} T {r['n_free']:<5} residual "
                  f"{r['free_residual']:.1e}: best beta {record.betas[i]:.0e}, relative error "
                  f"neurons {r['error_neurons'][i]:.1e} weights {r['error_params'][i]:.1e}, "
                  f"sign agreement {r['sign_neurons'][i]:.4f} / {r['sign_params'][i]:.4f}")
    elif args.study == "noise":
        from .models import EnergyModel
        from .symbolic import layered_hopfield_energy

        estimators = []
        for item in args.estimators.split(","):
            parts = item.strip().split(":")
            try:
                variant, beta = parts[0], float(parts[1])
                n = int(parts[2]) if len(parts) > 2 else 2
            except (IndexError, ValueError):
                raise EqdynError(f"`--estimators` item {item!r}: write VARIANT:BETA[:N], e.g. "
                                 "one-sided:0.1 or holomorphic:0.4:10.") from None
            estimators.append((variant, beta, n))
        if len(args.run) > 1:
            raise EqdynError(f"`--run` given {len(args.run)} times; the noise study takes one "
                             "trained network.")
        if args.run:
            from .data import load_dataset
            from .training import load_trained

            model, cfg, epoch = load_trained(args.run[0], dtype=jnp.float64)
            data = load_dataset(cfg.dataset, cfg.data_dir)
            x = jnp.asarray(data.x_test[:args.batch], jnp.float64)
            d = jax.nn.one_hot(jnp.asarray(data.y_test[:args.batch]), model.n_outputs,
                               dtype=jnp.float64)
            what = f"{args.run[0]} ({cfg.arch}, {epoch} epochs), {args.batch} test images"
        else:
            sizes = parse_arch(args.arch or "20-16-16-5")
            act = get_activation(args.activation or "steep_sigmoid")
            model = EnergyModel(layered_hopfield_energy(sizes, cost="cross_entropy"), act.name,
                                "leaky", key=jax.random.PRNGKey(args.seed), dtype=jnp.float64)
            x = jnp.asarray(rng.uniform(size=(args.batch, sizes[0])))
            d = jax.nn.one_hot(jnp.asarray(rng.integers(0, sizes[-1], args.batch)), sizes[-1],
                               dtype=jnp.float64)
            what = f"{'-'.join(map(str, sizes))} ({act.name}, softmax readout), batch {args.batch}"
        print(f"eqdyn analyze noise: {what}, T = {args.temperature:g}, {args.n_keys} draws",
              flush=True)
        record = analysis.noise_study(model, x, d, temperature=args.temperature,
                                      estimators=estimators, n_keys=args.n_keys, seed=args.seed)
        fig = plots.plot_noise(record)
        for lab in record.labels:
            print(f"  {lab:<30} error per draw {np.mean(record.errors[lab]):.3f} (cos "
                  f"{np.mean(record.cosines[lab]):.4f}); of the average "
                  f"{record.mean_error[lab]:.3f}; noiseless {record.noiseless_error[lab]:.4f}")
    elif args.study == "convergence":
        default = "" if args.run else "20-32-10,20-32-32-10,20-32-32-32-10,20-128-10"
        archs = [a for a in (args.arch or default).split(",") if a]
        for a in archs:
            parse_arch(a)
        solvers = tuple(v.strip() for v in args.solvers.split(",") if v.strip())
        from .dynamics import SOLVERS
        unknown = [v for v in solvers if v != "blocks" and v not in SOLVERS]
        if unknown:
            raise EqdynError(f"`--solvers` {unknown} not known; use {sorted(SOLVERS)} or blocks.")
        print(f"eqdyn analyze convergence: {', '.join(archs + args.run)} ({act.name})",
              flush=True)
        record = analysis.convergence_study(archs, activation=act.name, batch=args.batch,
                                            seed=args.seed, solvers=solvers,
                                            run_dirs=tuple(args.run))
        fig = plots.plot_convergence(record)
        for r in record.rows:
            pred = "-" if r["predicted_t"] is None else f"{r['predicted_t']:.1f}"
            if r["trained"]:
                print(f"  trained {r['trained']['run_dir']} ({r['trained']['epochs']} epochs):")
            print(f"  {r['arch']:<18} steps {r['steps']}  t* {r['t_settle']:.1f}  slowest rate "
                  f"{r['slowest_rate']:.3f} -> predicted {pred}  energy "
                  f"max increase {r['energy_increase']:.1e}")
    else:
        default = "20-16-14-12-5" if args.study == "early-inference" else "5-6-3"
        sizes = parse_arch(args.arch or default)
        model = LayeredHopfield(sizes, act.name, key=jax.random.PRNGKey(args.seed),
                                dtype=jnp.float64)
        x = jnp.asarray(rng.uniform(size=(args.batch, sizes[0])))
        d = jax.nn.one_hot(jnp.asarray(rng.integers(0, sizes[-1], args.batch)), sizes[-1],
                           dtype=jnp.float64)
        print(f"eqdyn analyze {args.study}: {'-'.join(map(str, sizes))} ({act.name}), "
              f"batch {args.batch}", flush=True)
        if args.study == "early-inference":
            record = analysis.early_inference(model, x, d, beta=args.beta)
            fig = plots.plot_early_inference(record)
            for k, name in enumerate(record.layers):
                print(f"  {name:<5} ({record.distance[k]} from output): arrival "
                      f"{record.arrival[k]:.3g}, final cos vs ds*/dbeta "
                      f"{record.cos_adjoint[k, -1]:.6f}, cos(ds/dt, backprop) at t=1 "
                      f"{record.cos_backprop_velocity[k, np.searchsorted(record.times, 1.0)]:.3f}")
        else:
            variants = ("one-sided", "symmetric") + (("holomorphic",) if act.holomorphic else ())
            record = analysis.bias_vs_beta(model, x, d, variants=variants,
                                           n_points=args.n_points)
            fig = plots.plot_bias(record)
            for v, slope in record.slopes.items():
                print(f"  {v:<12} log-log slope {slope:.3f}")
    out.mkdir(parents=True, exist_ok=True)
    data = record.to_json()
    data.update(study=args.study, activation=act.name, seed=args.seed,
                seconds=time.perf_counter() - t0,
                command="eqdyn analyze " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "")
    write_json(out / f"{args.study}.json", data)
    plots.save_figure(fig, out / f"{args.study}.png")
    print(f"wrote {out / (args.study + '.json')} and {out / (args.study + '.png')}")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EqdynError as exc:
        print(f"eqdyn {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
