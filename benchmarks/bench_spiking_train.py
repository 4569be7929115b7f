"""Spiking EP (issue 28): how the training error and the training time grow with the
simulation step and the firing rate.

Short training runs of `eqdyn.train` on the bundled digits (64-32-10, hard sigmoid,
random-sign EP at beta 0.5, batch 20, per-layer rates (0.1, 0.05), states from zero for
every batch, the same seed and `--epochs` for all), both phases spiking networks of
`Poisson(max_rate)` units (`spike_rate`, traces of time constant 0.5) stepped by `dt` over
fixed horizons `free_t1 10` and `nudged_t1 5` (the settings of `--preset sb17-1h-spiking`),
for `max_rate` in 10, 20, 50, 100 and `dt` in 0.05, 0.02, 0.01 where `max_rate dt <= 1`;
and the rate model with the same settings (fused Euler phases at `dt` 0.05, which stop at
rest, `tol` 1e-3, if they reach it within the horizon) as the reference. The rate model,
`(max_rate, dt)` = (10, 0.05), (20, 0.05) and (50, 0.02) are run again from
`--spread-seeds` (initial weights, batch order and spikes all change with the seed) for the
spread of the errors. The errors are scored by the trainer's evaluation, which relaxes the
rate model with the learned weights at the run's step up to t = 200. "seconds per epoch" is
the mean of the epochs' training time after the first (which compiles), without the
validation pass.

The machine's load average and busy processes are recorded: on a shared machine the times
are upper bounds, their ratios within one run are what to read.

Usage (from the repository root; about 15 minutes on 2 busy cores at `--epochs 6`):

    python benchmarks/bench_spiking_train.py [--epochs 6] [--variant symmetric]
        [--out FILE.json] [--png FILE.png]

Writes `benchmarks/results/spiking_train_sweep.json` and `.png` (test error and seconds
per epoch against the step, one line per rate).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_epoch import load_report, start_run, write_json_atomic  # noqa: E402

RATES = (10.0, 20.0, 50.0, 100.0)
STEPS = (0.05, 0.02, 0.01)
#: the settings run again from other seeds, for the spread of the errors
SPREAD = ((0.0, 0.05), (10.0, 0.05), (20.0, 0.05), (50.0, 0.02))
#: the runs' shared settings (TrainConfig fields)
BASE = dict(dataset="digits", arch="64-32-10", activation="hard_sigmoid", variant="random-sign",
            beta=0.5, lr=(0.1, 0.05), batch_size=20, persistent=False, backend="fused",
            free_t1=10.0, nudged_t1=5.0, spike_tau=0.5, seed=0,
            # evaluation relaxes the rate model at the run's `dt`: up to t = 200 at every
            # step (the default 4096 steps stop at t = 41 at dt 0.01, short of rest)
            eval_t1=200.0, max_steps=20000)


def grid(rates=RATES, steps=STEPS) -> list[tuple[float, float]]:
    """The `(max_rate, dt)` pairs of the sweep: every pair with `max_rate dt <= 1` (at most
    one spike per unit and step), plus `(0, steps[0])`, the rate model."""
    return [(0.0, steps[0])] + [(r, dt) for r in rates for dt in steps if r * dt <= 1 + 1e-9]


def train_sweep(epochs: int, pairs, dataset=None, progress=print, seed: int = 0,
                **overrides) -> list[dict]:
    """One training run per `(max_rate, dt)` pair (`max_rate` 0: the rate model) from
    `seed`; returns a row per run with its errors and times. `dataset` and `overrides`
    (TrainConfig fields) replace the bundled digits and `BASE` (for tests)."""
    import numpy as np

    from eqdyn.training import resolve_config, train

    rows = []
    for max_rate, dt in pairs:
        run = dict(BASE, **overrides, seed=seed)
        if max_rate == 0:  # the rate model has no noise to share
            run["common_noise"] = False
        cfg = resolve_config(**run, epochs=epochs, spike_rate=max_rate, dt0=dt)
        t = time.perf_counter()
        m = train(cfg, progress=None, **({} if dataset is None else dict(dataset=dataset)))
        h = m["history"]
        later = [e["train_seconds"] for e in h[1:]] or [h[0]["train_seconds"]]
        rows.append(dict(
            model="rate" if max_rate == 0 else "spiking", max_rate=max_rate, dt=dt, seed=seed,
            spike_probability_at_rho_1=max_rate * dt,
            steps_per_batch=dict(free=m["mean_free_steps"], nudged=m["mean_nudged_steps"]),
            train_error=m["train_error"], test_error=m["test_error"],
            val_accuracy_per_epoch=[e["val_accuracy"] for e in h],
            seconds_per_epoch=float(np.mean(later)),
            # rate phases that stopped at the horizon before rest (spiking ones run it out)
            not_converged=float(np.mean([e["not_converged_fraction"] for e in h])),
            eval_converged=m["eval_converged"], run_seconds=time.perf_counter() - t))
        if progress:
            r = rows[-1]
            progress(f"{r['model']:7s} max_rate {max_rate:5g} dt {dt:5g}: test error "
                     f"{100 * r['test_error']:.1f} %, train {100 * r['train_error']:.1f} %, "
                     f"{r['seconds_per_epoch']:.2f} s/epoch (seed {seed})")
    return rows


def plot(result: dict, path: Path) -> None:
    """Test error and seconds per epoch against the step, one line per firing rate; the rate
    model as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    spiking = [r for r in rows if r["model"] == "spiking"]
    rate = [r for r in rows if r["model"] == "rate"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for key, ax, label in (("test_error", axes[0], "test error"),
                           ("seconds_per_epoch", axes[1], "seconds per epoch (training)")):
        for mr in sorted({r["max_rate"] for r in spiking}):
            pts = sorted((r["dt"], r[key]) for r in spiking if r["max_rate"] == mr)
            ax.plot(*zip(*pts), "o-", label=f"Poisson, max_rate {mr:g}")
        for r in rate:
            ax.axhline(r[key], color="k", ls="--", label=f"rate model (dt {r['dt']:g})")
        other = result.get("seed_spread") or []
        if key == "test_error" and other:
            ax.plot([r["dt"] * (1.06 if r["model"] == "rate" else 1.0) for r in other],
                    [r[key] for r in other], "x", color="0.4",
                    label="other seeds (rate model offset right)")
        ax.set_xscale("log")
        ax.set_xlabel("step dt (units of tau)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 0.01, 0.02, 2, 5 rather than 2 x 10^-2
    for axis in (axes[0].xaxis, axes[1].xaxis, axes[1].yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(plain)
    axes[1].yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if v in (2, 3, 5) else ""))
    axes[1].legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="upper right")
    settings = result.get("settings", {})
    variant = settings.get("variant", BASE["variant"]) + (
        " on common spikes" if settings.get("common_noise") else "")
    fig.suptitle(f"spiking EP ({variant}) on digits 64-32-10, {result['epochs']} epochs, "
                 f"horizons {BASE['free_t1']:g} + {BASE['nudged_t1']:g}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--spread-seeds", type=lambda v: [int(x) for x in v.split(",") if x],
                   default=[1, 2], help="seeds of the spread runs (default 1,2; '' for none)")
    p.add_argument("--variant", choices=("random-sign", "symmetric", "one-sided"),
                   default=BASE["variant"], help="EP's nudging (symmetric: two nudged phases "
                   "on common random numbers) (default random-sign)")
    p.add_argument("--common-noise", action="store_true",
                   help="with --variant symmetric: both nudged phases on common spikes")
    p.add_argument("--out", default=str(HERE / "results" / "spiking_train_sweep.json"))
    p.add_argument("--png", help="figure path (default: the JSON's, .png)")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    load_start, busy, info = start_run()
    t0 = time.perf_counter()
    rule = dict(variant=args.variant, common_noise=args.common_noise)
    rows = train_sweep(args.epochs, grid(), **rule)
    # the spread from the seed (initial weights, batch order and spikes): the rate model and
    # the cheapest spiking settings again from other seeds
    spread = [r for s in args.spread_seeds
              for r in train_sweep(args.epochs, SPREAD, seed=s, **rule)]
    result = dict(
        settings={k: list(v) if isinstance(v, tuple) else v
                  for k, v in dict(BASE, **rule).items()},
        epochs=args.epochs, rows=rows, seed_spread=spread,
        bench_wall_s=time.perf_counter() - t0,
        date=time.strftime("%Y-%m-%d"),
        command=" ".join(["python", "benchmarks/bench_spiking_train.py", *argv]),
        **load_report(info, load_start, busy))
    out = Path(args.out)
    if args.variant != BASE["variant"] and "--out" not in argv:  # keep the default's record
        out = out.with_name(f"{out.stem}_{args.variant}{'_common' * args.common_noise}.json")
    write_json_atomic(out, result)
    png = Path(args.png) if args.png else out.with_suffix(".png")
    plot(result, png)
    print(f"wrote {out} and {png} ({result['bench_wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
