"""Vector-field EP against symmetric EP on scikit-learn's 8x8 digits, with the weight alignment.

Three runs from the same feedforward weights (64-128-10, hard sigmoid, leaky, float32, batch 20,
plain SGD at rates (0.1, 0.05), symmetric nudging at beta 0.5, fused Euler dt 0.5 for at most
60 free and 30 nudged steps, no persistent particles):

- `symmetric`: `LayeredHopfield` trained by EP (tied weights);
- `vf-symmetric-init`: `VectorFieldHopfield` with `B_k = W_k^T` at the start, trained by
  `VectorFieldEP` (the feedforward and feedback weights then move apart);
- `vf-random-init`: `VectorFieldHopfield` with independent feedback weights.

Each epoch records the test accuracy (free phase from zero, the same relaxation) and, for the
vector-field runs, the angle between `W_2` and `B_2^T` (`eqdyn.models.alignment_angles`).

With `--dataset mnist` the runs go through the trainer (`eqdyn.train`, the same as `eqdyn
train --preset sb17-1h --backend fused --feedback F`): 784-500-10, Scellier & Bengio's
setting (hard sigmoid, batch 20, SGD at (0.1, 0.05), random-sign nudging at beta 1, persistent
particles, Euler dt 0.5, tol 1e-3, horizons 50) with fused Euler for both phases (block sweeps
are coordinate descent on an energy, which a vector field has not), seed 0, for `feedback` in
tied (symmetric-weight EP), independent and transposed (vector-field EP; the same feedforward
start). Each run trains on the 50,000 training images and is scored on the 10,000 test
images after every epoch (the trainer's per-epoch "validation" pass is given the test split:
nothing is selected on it), with the angle per layer. Runs live in `--runs/vf-mnist-F` and
resume there. A run named `independent+h0.5` adds Laborieux & Zenke's Jacobian homeostasis
with coefficient 0.5 (`--homeostasis 0.5`).

Usage (from the repository root):

    python benchmarks/study_vector_field.py [--epochs 20]   # writes results/vector_field_digits.{json,png}
    nice -n 5 python benchmarks/study_vector_field.py --dataset mnist --runs /work/runs \
        [--feedback tied,independent,transposed] [--epochs 25]   # results/vector_field_mnist.*
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from eqdyn.data import load_dataset
from eqdyn.dynamics import FusedEuler, relax_core
from eqdyn.learning import EP, Symmetric, VectorFieldEP
from eqdyn.models import LayeredHopfield, VectorFieldHopfield, alignment_angles

HERE = Path(__file__).resolve().parent
SIZES = (64, 128, 10)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=("digits", "mnist"), default="digits")
    p.add_argument("--epochs", type=int, default=None, help="default: digits 20, mnist 25")
    p.add_argument("--out", default=None,
                   help="default: results/vector_field_{digits,mnist}.json")
    p.add_argument("--runs", default="runs", help="mnist: folder of the run directories")
    p.add_argument("--feedback", default="tied,independent,transposed",
                   help="mnist: the runs, by TrainConfig.feedback")
    p.add_argument("--data-dir", default=None, help="mnist: the IDX files' folder")
    p.add_argument("--seed", type=int, default=0,
                   help="mnist: the runs' seed (run directories get -sN for N > 0)")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = str(HERE / "results" / f"vector_field_{args.dataset}.json")
    if args.dataset == "mnist":
        return _mnist(args, argv)
    args.epochs = args.epochs or 20
    t0 = time.perf_counter()
    ds = load_dataset("digits")
    xs, ys = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    xt, yt = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)
    free, nudged = FusedEuler(dt=0.5, t1=30.0), FusedEuler(dt=0.5, t1=15.0)
    beta, lrs, B = 0.5, (0.1, 0.05), 20

    vf0 = VectorFieldHopfield(SIZES, key=jax.random.PRNGKey(0))
    W, R, b = vf0.system.split(vf0.params)
    runs = {
        "symmetric": (LayeredHopfield(SIZES, key=None, weights=W, biases=b),
                      EP(beta, Symmetric(), free, nudged)),
        "vf-symmetric-init": (vf0.with_params((*W, *(w.T for w in W[1:]), *b)),
                              VectorFieldEP(beta, free=free, nudged=nudged)),
        "vf-random-init": (vf0, VectorFieldEP(beta, free=free, nudged=nudged)),
    }
    out = {"sizes": SIZES, "beta": beta, "lr": lrs, "batch": B, "epochs": args.epochs, "runs": {}}
    for name, (model, rule) in runs.items():
        groups = model.lr_groups
        rates = [lrs[g] if g < len(lrs) else lrs[-1] for g in groups]

        @eqx.filter_jit
        def step(m, x, d, rule=rule, rates=rates):
            grads, stats = rule(m, x, d, m.init_state(x.shape[0]))
            return m.with_params(tuple(p - r * g for p, r, g in zip(m.params, rates, grads)))

        @eqx.filter_jit
        def accuracy(m, x, y):
            res = relax_core(m, x, m.init_state(x.shape[0]), 0.0, None, free)
            return jnp.mean(m.predict(res.states, x) == y)

        hist = []
        rng = np.random.default_rng(0)
        for epoch in range(1, args.epochs + 1):
            perm = rng.permutation(len(ys))
            for i in range(0, len(perm) - B + 1, B):
                idx = perm[i:i + B]
                model = step(model, xs[idx], jax.nn.one_hot(ys[idx], 10))
            row = {"epoch": epoch, "test_accuracy": float(accuracy(model, xt, yt))}
            if isinstance(model, VectorFieldHopfield):
                row["angle_W2_B2T_deg"] = float(alignment_angles(model)[0])
            hist.append(row)
            print(name, row, flush=True)
        out["runs"][name] = hist
    out["wall_s"] = time.perf_counter() - t0
    out["command"] = " ".join(["python", "benchmarks/study_vector_field.py", *(argv or sys.argv[1:])])
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    png = Path(args.out).with_suffix(".png")
    _plot(out, png)
    print(f"wrote {args.out} and {png} ({out['wall_s']:.0f} s)")
    return 0


def _mnist(args, argv) -> int:
    """The MNIST comparison through the trainer (see the module docstring)."""
    import dataclasses

    from eqdyn.training import resolve_config, train

    t0 = time.perf_counter()
    epochs = args.epochs or 25
    ds = load_dataset("mnist", args.data_dir)
    # the per-epoch "validation" pass scores the test images (training keeps its 50,000)
    ds = dataclasses.replace(ds, x_val=ds.x_test, y_val=ds.y_test)
    out = {"dataset": "mnist", "epochs": epochs, "runs": {},
           "note": "val_error per epoch is the test error (the trainer's validation pass was "
                   "given the test split; nothing was selected on it)"}
    for fb in args.feedback.split(","):  # "independent+h0.5": with Jacobian homeostasis 0.5
        feedback, _, h = fb.partition("+h")
        cfg = resolve_config("sb17-1h", backend="fused", feedback=feedback, epochs=epochs,
                             data_dir=args.data_dir, homeostasis=float(h) if h else None,
                             seed=args.seed)
        run_dir = Path(args.runs) / (f"vf-mnist-{fb}" + (f"-s{args.seed}" if args.seed else ""))
        done = run_dir / "metrics.json"
        if done.exists() and json.loads(done.read_text()).get("epochs") == epochs:
            m = json.loads(done.read_text())
        else:
            m = train(cfg, run_dir=run_dir, resume=(run_dir / "config.json").exists(),
                      dataset=ds, progress=lambda s, fb=fb: print(fb, s, flush=True))
            m.pop("model")
        out["config"] = {k: v for k, v in cfg.to_json().items()
                         if k not in ("feedback", "homeostasis")}
        out["runs"][fb] = {
            "run_dir": str(run_dir), "test_error": m["test_error"],
            "wall_seconds": m["wall_seconds"],
            "history": [{"epoch": h["epoch"], "test_error": 1 - h["val_accuracy"],
                         "train_error": 1 - h["train_accuracy"], "loss": h["loss"],
                         "free_steps": h["free_steps"], "nudged_steps": h["nudged_steps"],
                         "not_converged": h.get("free_not_converged", 0)
                         + h.get("nudged_not_converged", 0),
                         "seconds": h["seconds"],
                         **({"alignment_deg": h["alignment_deg"]}
                            if "alignment_deg" in h else {})}
                        for h in m["history"]]}
        print(fb, "test error", m["test_error"], flush=True)
    if "tied" in out["runs"]:
        ref = out["runs"]["tied"]["test_error"]
        out["gap_to_tied"] = {fb: r["test_error"] - ref for fb, r in out["runs"].items()}
    out["wall_s"] = time.perf_counter() - t0
    out["command"] = " ".join(["python", "benchmarks/study_vector_field.py",
                               *(argv or sys.argv[1:])])
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    png = Path(args.out).with_suffix(".png")
    _plot_mnist(out, png)
    print(f"wrote {args.out} and {png}")
    return 0


def _plot_mnist(out, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for fb, run in out["runs"].items():
        hist = run["history"]
        ep = [r["epoch"] for r in hist]
        line, = a1.plot(ep, [100 * r["test_error"] for r in hist],
                        label=f"{fb} (test {100 * run['test_error']:.2f} %)")
        if "alignment_deg" in hist[0]:
            for k in range(len(hist[0]["alignment_deg"])):
                a2.plot(ep, [r["alignment_deg"][k] for r in hist], color=line.get_color(),
                        label=f"{fb}: angle(W_{k + 2}, B_{k + 2}^T)")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    a1.set(xlabel="epoch", ylabel="test error (%)", yscale="log",
           title="MNIST 784-500-10, sb17-1h setting, fused Euler")
    a1.yaxis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0)))
    a1.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a1.yaxis.set_minor_formatter(NullFormatter())
    a2.set(xlabel="epoch", ylabel="degrees", title="weight alignment")
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _plot(out, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, hist in out["runs"].items():
        ep = [r["epoch"] for r in hist]
        a1.plot(ep, [100 * r["test_accuracy"] for r in hist], label=name)
        if "angle_W2_B2T_deg" in hist[0]:
            a2.plot(ep, [r["angle_W2_B2T_deg"] for r in hist], label=name)
    a1.set(xlabel="epoch", ylabel="test accuracy (%)", title="digits, 64-128-10")
    a2.set(xlabel="epoch", ylabel="angle(W_2, B_2^T) (degrees)", title="weight alignment")
    a1.legend()
    a2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    raise SystemExit(main())
