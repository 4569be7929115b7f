"""`eqdyn analyze STUDY`: the studies of `eqdyn.analysis` from the command line (their logic
lives in `eqdyn.analysis.run_study`; this module parses, runs and writes STUDY.json and
STUDY.png)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ._cli_flags import Formatter


def add_parser(sub):
    p = sub.add_parser(
        "analyze",
        help="run an analysis study and write its JSON and PNG figure",
        description="Studies (float64, small networks): early-inference (the first response "
        "of each layer to a nudge at the free fixed point against backprop through the "
        "network's own feedforward computation, over feedback strengths --gamma), bias (EP one-sided, symmetric and "
        "holomorphic against recurrent backprop over a grid of beta, with log-log slopes), "
        "convergence (solver steps, settling time vs the slowest Jacobian decay rate, and "
        "energy descent, over architectures), training (EP and recurrent backprop from the "
        "same initialisation on the bundled digits: learning curves and the cosine between "
        "EP's update and the exact gradient along training), gdu (EP's neural and weight "
        "updates at each nudged step against BPTT's gradients at the matching step, over beta, "
        "the step dt, a short and a long free phase, and depth), noise (EP one-sided, "
        "symmetric and holomorphic under neuron noise on the potentials of the continuous "
        "Hopfield network, against recurrent backprop: Laborieux & Zenke 2022; on a random "
        "20-16-16-5 network with a softmax readout, or the trained network of --run), stdp "
        "(the pairing protocol on two LIF neurons over offsets -100..100 ms: the weight change "
        "of Bengio et al.'s and Xie & Seung's rules and the fitted two-exponential window "
        "against the analytic one). Writes "
        "STUDY.json and STUDY.png to --out.",
        formatter_class=Formatter,
    )
    from .analysis import STUDIES

    p.add_argument("study", choices=STUDIES, help="the study to run")
    p.add_argument("--arch", help="layer sizes (default: early-inference 20-16-14-12-5, bias "
                   "5-6-3); for convergence and gdu a comma-separated list (default "
                   "20-32-10,20-32-32-10,20-32-32-32-10,20-128-10; gdu "
                   "10-12-4,10-12-12-4,10-12-12-12-4)")
    p.add_argument("--activation",
                   help="sigmoid (default; steep_sigmoid for training), tanh, steep_sigmoid or "
                   "hard_sigmoid (bias: holomorphic EP is left out for activations with kinks)")
    p.add_argument("--beta", type=float, default=1e-3,
                   help="training: the nudge (0.1 unless given)")
    p.add_argument("--gamma", default="1,0.3,0.1,0.01,1e-4",
                   help="early-inference: comma-separated feedback strengths (layer energy "
                   "scales c_{k+1}/c_k)")
    p.add_argument("--formulation", choices=("gradient", "leaky"),
                   help="early-inference: default leaky for hard_sigmoid, else gradient (leaky "
                   "with a smooth activation reads out through a softmax)")
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
                   help="early-inference: study this trained network (one run). "
                   "convergence: also study the trained network of this run directory "
                   "(eqdyn train --out), on its first --batch test images; repeatable. "
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
    p.add_argument("--pairs", type=int, default=60, help="stdp: pre/post pairs per offset")
    p.add_argument("--pair-rate", type=float, default=1.0, help="stdp: pairs per second (Hz)")
    p.add_argument("--dt-ms", type=float, default=0.1, help="stdp: the step (ms)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and inputs")
    p.add_argument("--out", help="output folder (default runs/analyze-STUDY-<time>)")
    p.set_defaults(func=_cmd_analyze)


def _cmd_analyze(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)  # the program's setting: the studies are float64
    import matplotlib

    matplotlib.use("Agg")  # files only, no window
    from .analysis import plots, run_study
    from .training import write_json

    out = Path(args.out) if args.out else Path("runs") / (
        f"analyze-{args.study}-" + time.strftime("%Y%m%d-%H%M%S"))
    t0 = time.perf_counter()
    record, fig, activation = run_study(args.study, args, say=lambda s: print(s, flush=True))
    out.mkdir(parents=True, exist_ok=True)
    data = record.to_json()
    data.update(study=args.study, activation=activation, seed=args.seed,
                seconds=time.perf_counter() - t0,
                command="eqdyn analyze " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "")
    write_json(out / f"{args.study}.json", data)
    plots.save_figure(fig, out / f"{args.study}.png")
    print(f"wrote {out / (args.study + '.json')} and {out / (args.study + '.png')}")
    return 0
