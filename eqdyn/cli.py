"""The `eqdyn` command line: parses arguments, calls the public API, writes results.

    eqdyn train [--preset NAME] [--dataset digits|mnist|fashion-mnist] [--devices all|N] [...]
    eqdyn sweep --seeds 8 --beta 0.1,0.5,1.0 [--lr 0.1,0.05 --lr 0.2,0.1] [train flags]
    eqdyn derive --arch 784-500-10 --activation hard_sigmoid [--latex] [--check]
    eqdyn compare --algos ep,ep-sym,chl,rbp,bptt [--out DIR]
    eqdyn plot RUN_DIR [RUN_DIR ...] [--out FILE.png]
    eqdyn analyze early-inference|bias|convergence|training|gdu|noise [--arch ...] [--out DIR]

Every subcommand writes under `--out` (a folder; `--run-dir` is kept as an alias of
`eqdyn train --out`). The study logic lives in `eqdyn.analysis` (`run_study`), the training in
`eqdyn.training`; this module only parses and calls.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import time
from pathlib import Path

from ._cli_analyze import add_parser as _add_analyze
from ._cli_boltzmann import RBM_PRESETS as RBM_PRESETS
from ._cli_boltzmann import add_parser as _add_rbm
from ._cli_boltzmann import rbm_settings as rbm_settings
from ._cli_flags import (EPOCH_LINE, RUN_FLAGS, Formatter, arch_default, run_flags,
                         scale_flags, show_config_defaults)
from ._errors import EqdynError

DERIVE_TOLERANCE = 1e-10

def _add_train(sub):
    p = sub.add_parser(
        "train",
        help="train a layered Hopfield network with Equilibrium Propagation",
        description="Train with EP. A --preset sets defaults (e.g. sb17-1h, the paper's Table 2 "
        "setting); any flag overrides it. Writes config.json, checkpoint.* (every epoch, "
        "atomically), metrics.json and curves.png to the run directory (--out).",
        epilog=EPOCH_LINE,
        formatter_class=Formatter,
    )
    run_flags(p)
    scale_flags(p, multihost=True)
    g = p.add_argument_group("run")
    g.add_argument("--out", metavar="DIR",
                   help="the run directory (default runs/<time>-<dataset>)")
    g.add_argument("--run-dir", dest="out", help=argparse.SUPPRESS)  # the 0.1 name
    g.add_argument("--resume", metavar="DIR", help="continue the run in DIR (to a larger "
                   "--epochs; it keeps its other settings)")
    g.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    show_config_defaults(p)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from ._distributed import initialize, parse_devices

    # before anything else touches JAX
    multi = initialize(args.coordinator, args.num_processes, args.process_id)
    import jax

    from .training import resolve_config, train

    overrides = {k: getattr(args, k) for k in RUN_FLAGS}
    overrides["devices"] = parse_devices(args.devices)
    if args.resume:
        for flag, value in (("--out", args.out), ("--preset", args.preset)):
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
        if _nothing_left(run_dir, cfg):
            return 0
    else:
        cfg = resolve_config(args.preset, **overrides)
        run_dir = Path(args.out) if args.out else Path("runs") / (
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
        _write_curves([run_dir])
        print(f"test accuracy {metrics['test_accuracy']:.4f}; metrics in "
              f"{run_dir / 'metrics.json'}, curves in {run_dir / 'curves.png'}")
    return 0


def _nothing_left(run_dir: Path, cfg) -> bool:
    """Whether the run in `run_dir` has trained all `cfg.epochs` and been scored: then say so
    (and how to train on) instead of scoring it again."""
    import json

    from .training import load_trained

    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return False  # not scored yet (stopped after its last checkpoint): train() scores it
    done = load_trained(run_dir)[2]
    if done != cfg.epochs or metrics.get("epochs") != done:  # fewer: train; more: refused
        return False
    print(f"eqdyn train: {run_dir} has already trained {done} of --epochs {cfg.epochs}: "
          f"nothing left to train (test accuracy {metrics['test_accuracy']:.4f}, in "
          f"{run_dir / 'metrics.json'}). To train on, resume with a larger --epochs, e.g. "
          f"eqdyn train --resume {run_dir} --epochs {done + 10}", flush=True)
    return True


def _write_curves(run_dirs, out=None) -> Path:
    """Draw the learning curves of the runs in `run_dirs` into `out` (default: the one run's
    `curves.png`)."""
    import json

    import matplotlib

    matplotlib.use("Agg")  # files only, no window
    from .analysis import plots

    runs = []
    for d in map(Path, run_dirs):
        for name in ("metrics.json", "checkpoint.json"):  # finished, or still training
            if (d / name).exists():
                runs.append((d.name, json.loads((d / name).read_text())))
                break
        else:
            raise EqdynError(f"{str(d)!r} holds no metrics.json or checkpoint.json; is it a "
                             "run directory of eqdyn train (its --out)?")
    out = Path(out) if out else Path(run_dirs[0]) / "curves.png"
    fig = plots.plot_runs(runs)
    plots.save_figure(fig, out)
    matplotlib.pyplot.close(fig)
    return out


def _add_plot(sub):
    p = sub.add_parser(
        "plot",
        help="draw the learning curves of one or several training runs, overlaid",
        description="Draw loss, training and validation error, relaxation steps and "
        "convergence per epoch of each run directory (eqdyn train --out), overlaid in one "
        "figure. A run still training is drawn from its last checkpoint.",
        formatter_class=Formatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories")
    p.add_argument("--out", metavar="FILE.png",
                   help="the figure (default: RUN_DIR/curves.png for one run, "
                   "runs/plot-<time>.png for several)")
    p.set_defaults(func=_cmd_plot)


def _cmd_plot(args) -> int:
    out = args.out
    if out is None and len(args.runs) > 1:
        out = Path("runs") / ("plot-" + time.strftime("%Y%m%d-%H%M%S") + ".png")
    print(f"wrote {_write_curves(args.runs, out)}")
    return 0


def _table_paths(out, default_dir: str, name: str) -> tuple[Path, Path]:
    """`(JSON, PNG)` of a table written to `--out`: a folder (`NAME.json`, `NAME.png` in it) or,
    as in 0.1, a `.json` file (the PNG beside it)."""
    if out is None:
        out = Path("runs") / (default_dir + "-" + time.strftime("%Y%m%d-%H%M%S"))
    out = Path(out)
    if out.suffix == ".json":
        return out, out.with_suffix(".png")
    return out / f"{name}.json", out / f"{name}.png"


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
        formatter_class=Formatter,
        conflict_handler="resolve",
    )
    run_flags(p)
    g = p.add_argument_group("sweep")
    g.add_argument("--seeds", type=int, default=4,
                   help="seeds per setting: --seed, --seed + 1, ...")
    g.add_argument("--beta", help="comma-separated nudging strengths, e.g. 0.1,0.5,1.0")
    g.add_argument("--lr", action="append",
                   help="a learning-rate setting (one rate, or per-layer rates input side first, "
                   "e.g. 0.1,0.05); repeat the flag to sweep several")
    scale_flags(p, multihost=False)
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="DIR",
                   help="folder for sweep.json (default runs/sweep-<time>); a name ending in "
                   ".json is the file itself")
    g.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    show_config_defaults(p)
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
    out = _table_paths(args.out, "sweep", "sweep")[0]
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
        formatter_class=Formatter,
    )
    p.add_argument("--arch", default="784-500-10", help="layer sizes, input first")
    p.add_argument("--energy", metavar="FILE.py", help="a Python file defining `energy`")
    p.add_argument("--cost", choices=["squared_error", "cross_entropy"], default="squared_error",
                   help="cost of the built-in layered energy (cross_entropy: softmax readout)")
    p.add_argument("--activation",
                   help="hard_sigmoid, sigmoid, tanh, or a registered one (default: "
                   "hard_sigmoid, or the --energy file's own)")
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
        "(clock-free EP), chl, rbp, bptt, backprop (feedforward). Writes the table as "
        "compare.json and a bar chart compare.png to --out.",
        formatter_class=Formatter,
    )
    p.add_argument("--algos", default="ep,ep-sym,chl,rbp,bptt", help="comma-separated rules")
    p.add_argument("--preset", help="named settings (flags override; see train --help)")
    p.add_argument("--dataset", help="digits, mnist or fashion-mnist")
    p.add_argument("--data-dir", metavar="DIR", help="folder with the IDX .gz files")
    p.add_argument("--arch", help=f"layer sizes, input first (default: {arch_default()})")
    p.add_argument("--energy", metavar="FILE.py", help="a custom energy file (see train --help)")
    p.add_argument("--activation", help="hard_sigmoid, sigmoid or tanh")
    p.add_argument("--beta", type=float, help="nudging strength of the EP rules")
    p.add_argument("--lr", help="learning rate(s), input side first")
    p.add_argument("--batch-size", type=int, help="examples per training step")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training set")
    p.add_argument("--seed", type=int, help="seed of the shared initial weights and batches")
    p.add_argument("--backend", choices=BACKENDS,
                   help="relaxation backend (see train --help)")
    p.add_argument("--n-points", type=int, help="ep-holo: points on the circle")
    p.add_argument("--nudged-t1", type=float,
                   help="horizon of the second phase (cep: its Euler steps are nudged_t1/dt0)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="optax optimiser")
    p.add_argument("--schedule", choices=SCHEDULES,
                   help="learning-rate schedule over the run")
    p.add_argument("--lr-decay", type=float, help="per-epoch factor of --schedule exponential")
    p.add_argument("--cosine-hold", type=float,
                   help="fraction of the run at the full rate before --schedule cosine decays")
    p.add_argument("--out", metavar="DIR",
                   help="folder for compare.json and compare.png (default "
                   "runs/compare-<time>); a name ending in .json is the table's file, the "
                   "chart beside it")
    show_config_defaults(p)
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
    out, png = _table_paths(args.out, "compare", "compare")
    write_json(out, {"rows": rows, "command": "eqdyn " + " ".join(sys.argv[1:])})
    import matplotlib

    matplotlib.use("Agg")
    from .analysis import plots

    plots.save_figure(plots.plot_compare(rows), png)
    print(f"wrote {out} and {png}")
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
    _add_plot(sub)
    _add_analyze(sub)
    _add_rbm(sub)
    parser.commands = sub.choices  # for the suggestions of `main`
    return parser


def _refuse_unknown(parser, args, extra) -> None:
    """argparse's "unrecognized arguments", with the closest flags of the subcommand and where
    to read about them (exits 2)."""
    sub = parser.commands[args.command]
    known = [o for a in sub._actions for o in a.option_strings if a.help != argparse.SUPPRESS]
    hints = []
    for item in extra:
        flag = item.split("=")[0]
        if flag.startswith("-"):
            close = difflib.get_close_matches(flag, known, n=2, cutoff=0.7)
            if close:
                hints.append(f"{flag}: did you mean {' or '.join(close)}?")
    # no usage block: the train command's is 25 lines, and the error would scroll away
    print(f"eqdyn {args.command}: error: unrecognized arguments: {' '.join(extra)}"
          + "".join(f"\n  {h}" for h in hints)
          + f"\nsee `eqdyn {args.command} --help` for every flag", file=sys.stderr)
    sys.exit(2)


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _refuse_unknown(parser, args, extra)
    try:
        return args.func(args)
    except EqdynError as exc:
        print(f"eqdyn {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
