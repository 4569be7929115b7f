"""Throughput of a sweep: many small runs vectorised with vmap vs the same runs one by one.

The same runs (every seed x beta on the bundled digits) are trained twice in one process:
once by `eqdyn.training.sweep` (all runs of a group stacked, one vmapped program) and
once sequentially by `eqdyn.train` (one compilation, reused by every run). Both walls include
their one compilation and every evaluation (validation after each epoch, train / val / test at
the end). Reported: runs per minute of each, the speed-up, and the largest parameter
difference and the number of runs whose test accuracy differs between the two (they should
agree to float32 rounding).

Usage (from the repository root):

    python benchmarks/bench_sweep.py              # 8 seeds x 2 betas, 3 epochs, 64-32-10
    python benchmarks/bench_sweep.py --quick      # 2 seeds x 2 betas, 1 epoch (smoke run)
    python benchmarks/bench_sweep.py --devices all   # the vmapped runs split over a device mesh
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_epoch import load_report, save_result, start_run  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "sweep.json"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--betas", default="0.5,1.0")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--arch", default="64-32-10")
    ap.add_argument("--backend", default="diffrax", help="relaxation backend (diffrax, fused)")
    ap.add_argument("--devices", default=None, help="split the vmapped runs over devices")
    ap.add_argument("--quick", action="store_true", help="2 seeds, 1 epoch")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs = 2, 1
        if args.out == str(OUT):
            args.out = str(OUT.with_name("sweep_quick.json"))

    import jax

    from eqdyn._distributed import parse_devices
    from eqdyn.data import load_dataset
    from eqdyn.training import format_sweep_table, resolve_config, sweep, train

    t_bench = time.perf_counter()
    load_start, busy, info = start_run()
    betas = [float(b) for b in args.betas.split(",")]
    settings = dict(arch=args.arch, epochs=args.epochs, backend=args.backend)
    data = load_dataset("digits")
    n_runs = args.seeds * len(betas)
    print(f"{n_runs} runs: digits {args.arch}, {args.seeds} seeds x beta {betas}, "
          f"{args.epochs} epochs, backend {args.backend}")

    t0 = time.perf_counter()
    vm = sweep(args.seeds, betas=betas, dataset=data, progress=None,
               devices=parse_devices(args.devices), **settings)
    vm_wall = time.perf_counter() - t0
    print(f"vmapped:    {vm_wall:7.1f} s  ({vm['groups']} group(s))", flush=True)

    t0 = time.perf_counter()
    seq = []
    for rec in vm["runs"]:
        cfg = resolve_config(seed=rec["seed"], beta=rec["beta"], **settings)
        seq.append(train(cfg, progress=None, dataset=data))
    seq_wall = time.perf_counter() - t0
    print(f"sequential: {seq_wall:7.1f} s", flush=True)

    param_diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                     for m, s in zip(vm["models"], seq)
                     for a, b in zip(m.params, s["model"].params))
    acc_differs = sum(r["test_accuracy"] != s["test_accuracy"] for r, s in zip(vm["runs"], seq))
    vm.pop("models")
    # after the first epoch (which compiles): the vmapped group's epochs vs the sum of the runs'
    vm_warm = sum(h["group_seconds"] for h in vm["runs"][0]["history"][1:])
    seq_warm = sum(h["seconds"] for s in seq for h in s["history"][1:])
    result = dict(
        n_runs=n_runs, seeds=args.seeds, betas=betas, epochs=args.epochs, arch=args.arch,
        backend=args.backend, devices=args.devices, jax_devices=jax.device_count(),
        n_train=vm["n_train"],
        vmapped=dict(wall_s=vm_wall, runs_per_minute=60 * n_runs / vm_wall, groups=vm["groups"]),
        sequential=dict(wall_s=seq_wall, runs_per_minute=60 * n_runs / seq_wall),
        speedup=seq_wall / vm_wall,
        warm_epochs=dict(
            note="epochs 2.. only (compiled): training and validation, no final evaluation",
            vmapped_s=vm_warm, sequential_s=seq_warm,
            speedup=seq_warm / vm_warm if vm_warm else None),
        max_param_diff=param_diff, runs_with_different_test_accuracy=acc_differs,
        settings=vm["settings"],
        bench_wall_s=time.perf_counter() - t_bench,
        **load_report(info, load_start, busy),
    )

    def table(r):
        print(f"\n{'mode':<12} {'wall s':>8} {'runs/min':>9}")
        for mode in ("vmapped", "sequential"):
            print(f"{mode:<12} {r[mode]['wall_s']:>8.1f} {r[mode]['runs_per_minute']:>9.1f}")
        w = r["warm_epochs"]
        if w["speedup"]:
            print(f"epochs after the first (compiled): vmapped {w['vmapped_s']:.1f} s, "
                  f"sequential {w['sequential_s']:.1f} s, speed-up {w['speedup']:.2f}x")
        print(f"speed-up {r['speedup']:.2f}x; max |param difference| {r['max_param_diff']:.2e}; "
              f"runs with a different test accuracy: {r['runs_with_different_test_accuracy']}")
        print(format_sweep_table(vm))

    return save_result(args.out, result, "bench_sweep.py", argv, table)


if __name__ == "__main__":
    sys.exit(main())
