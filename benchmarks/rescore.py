"""Score a training run's last checkpoint again, at another steady-state tolerance.

A run trained with a loose `tol` (early stopping on the residual, for speed) is also scored at
that tolerance: its final evaluation stops each relaxation as early as its training did. This
script relaxes the run's network again at `--tol`, for every split, from zero states and, where
the run kept them, from the examples' own particles (the training particles, and the
validation and test particles of `eval_persistent`), so that the two scores can be set side
by side.

Usage (from the repository root):

    python benchmarks/rescore.py RUN_DIR --tol 1e-3

Writes `RUN_DIR/rescore_tol<tol>.json` (or `--out`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_epoch import load_report, start_run, write_json_atomic  # noqa: E402

SPLITS = ("train", "val", "test")


def rescore(run_dir, tol: float, progress=print) -> dict:
    from eqdyn.training import evaluate, load_run, relax_configs

    run = load_run(run_dir)  # the checkpoint, read once: parameters and every split's particles
    model, cfg, ds = run.model, run.cfg, run.dataset
    # as `train` scores: a feedforward pass for backprop-trained networks, relaxation otherwise
    # (a data-parallel run rounded `eval_batch` up to its device count; here it is as given)
    feedforward = cfg.algo == "backprop"
    eval_cfg = relax_configs(dataclasses.replace(cfg, tol=tol))[2]
    out = {}
    for split in SPLITS:
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        t0 = time.perf_counter()
        row = {}
        for name, s0 in (("from_zero", None), ("from_particles", run.particles.get(split))):
            if name == "from_particles" and (s0 is None or feedforward):
                continue
            r = evaluate(model, x, y, eval_cfg, cfg.eval_batch, feedforward, s0=s0)
            row[name] = dict(error=1 - r["accuracy"], mean_sweeps=r["steps"],
                             converged=r["converged"])
        row["seconds"] = time.perf_counter() - t0
        out[split] = row
        if progress:
            progress(f"{split}: " + ", ".join(
                f"{k.replace('_', ' ')} {100 * v['error']:.2f} %" for k, v in row.items()
                if isinstance(v, dict)) + f" ({row['seconds']:.0f} s)")
    return dict(run_dir=str(run_dir), tol=tol, run_tol=cfg.tol, epochs=run.epoch,
                config=cfg.to_json(), splits=out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path, help="a run directory of `eqdyn train`")
    ap.add_argument("--tol", type=float, default=1e-3,
                    help="the steady-state residual to relax to (default 1e-3)")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default RUN_DIR/rescore_tol<tol>.json)")
    args = ap.parse_args(argv)
    if not (args.tol > 0 and args.tol < float("inf")):
        ap.error(f"--tol {args.tol} must be a positive finite number, e.g. 1e-3")
    if not (args.run_dir / "config.json").is_file():
        ap.error(f"run_dir {str(args.run_dir)!r} has no config.json: give the directory "
                 "`eqdyn train --run-dir` wrote")
    from eqdyn._errors import EqdynError

    load_start, busy, info = start_run()
    t0 = time.perf_counter()
    try:
        result = rescore(args.run_dir, args.tol)
    except EqdynError as e:  # no checkpoint yet, a changed data set, a bad config
        ap.error(str(e))
    result.update(load_report(info, load_start, busy), bench_wall_s=time.perf_counter() - t0)
    out = args.out or args.run_dir / f"rescore_tol{args.tol:g}.json"
    write_json_atomic(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
