"""Anderson-accelerated block sweeps against plain ones, on a trained network's own states.

`bench_cost.py --anderson M` compares the two on networks trained for a few hundred batches.
This script measures them where a training run actually relaxes: it loads the network a run
left in `--run-dir` (any epoch's checkpoint, e.g. of a run still in progress) and relaxes
the free phase of `--batches` random batches of its training examples, each from the example's
persistent particle when the run keeps them (from zero states otherwise), once with plain
sweeps and once per Anderson memory. Per method: sweeps per batch (mean, max, share at the
cap), milliseconds per batch and per sweep (compiled, best of `--repeats` passes over the
same batches), and how far its fixed points are from the plain sweeps' (largest state
difference, share of examples whose predicted class differs). Same tolerance and cap as the
run's free phase.

Usage (from the repository root):

    python benchmarks/bench_anderson.py --run-dir RUN_DIR                 # memories 3 and 5
    python benchmarks/bench_anderson.py --run-dir RUN_DIR --memories 2,3,8 --batches 100

Writes `benchmarks/results/anderson.json` (or `--out`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_epoch import load_report, save_result, start_run  # noqa: E402

OUT = HERE / "results" / "anderson.json"


def _memories(text: str) -> list[int]:
    try:
        ms = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--memories {text!r}: give comma-separated integers, e.g. 3,5") from None
    if not ms or any(not 1 <= m <= 32 for m in ms):
        raise SystemExit(f"--memories {text!r}: each memory must be 1..32 (plain sweeps are "
                         "always measured; 3-8 is usual)")
    return ms


def training_particles(leaves, model, cfg, n_train, run_dir):
    """The persistent particles of the training examples among a checkpoint's `leaves`.

    The leaves are those of `dict(key, opt_state, params, particles[, tracked])`, in order.
    Raises `SystemExit` naming the run and the shapes when they are not where they should be.
    """
    from eqdyn.training import checkpoint_layout

    parts = leaves[checkpoint_layout(cfg, model)["particles"]]
    want = [(n_train, n) for n in model.state_sizes]
    found = [tuple(np.shape(p)) for p in parts]
    if found != want:
        raise SystemExit(
            f"--run-dir {str(run_dir)!r}: expected the training particles {want} in the "
            f"checkpoint, found {found}; is --data-dir the run's data set (n_train "
            f"{n_train})?")
    return tuple(np.asarray(p) for p in parts)


def run(args) -> dict:
    import dataclasses

    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from eqdyn.data import load_dataset
    from eqdyn.dynamics import relax_core
    from eqdyn.training import load_checkpoint_leaves, load_trained, relax_configs

    t_bench = time.perf_counter()
    load_start, busy, info = start_run()
    model, cfg, epoch = load_trained(args.run_dir)
    if cfg.backend != "blocks":
        raise SystemExit(f"--run-dir {args.run_dir!r}: the run's free phase uses backend "
                         f"{cfg.backend!r}; Anderson accelerates block sweeps (backend blocks)")
    ds = load_dataset(cfg.dataset, args.data_dir or cfg.data_dir, val_size=cfg.val_size)
    n_train = ds.x_train.shape[0]
    particles = None
    if cfg.persistent:
        leaves, meta = load_checkpoint_leaves(args.run_dir)
        if int(meta["epoch"]) != int(epoch):  # a run in progress wrote between the two reads
            raise SystemExit(f"--run-dir {args.run_dir!r}: the run wrote a new checkpoint "
                             "while it was being read; run the benchmark again")
        particles = training_particles(leaves, model, cfg, n_train, args.run_dir)
    bsz = args.batch_size or cfg.batch_size
    if bsz > n_train:
        raise SystemExit(f"--batch-size {bsz}: more than the {n_train} training examples of "
                         f"{cfg.dataset}; give at most {n_train}")
    nb = min(args.batches, n_train // bsz)
    idx = np.random.default_rng(args.seed).permutation(n_train)[: nb * bsz].reshape(nb, bsz)
    dtype = model.params[0].dtype  # the run's float32, also under jax_enable_x64
    x_all = jnp.asarray(ds.x_train, dtype)
    d_all = jax.nn.one_hot(jnp.asarray(ds.y_train, jnp.int32), model.n_outputs, dtype=dtype)
    print(f"{args.run_dir}: {cfg.arch} after epoch {epoch}; {nb} batches of {bsz} from "
          + ("their particles" if particles is not None else "zero states"), flush=True)

    # every batch's arguments on the device before any timing (the same for every method)
    inputs = [(x_all[b], (tuple(jnp.asarray(p[b], dtype) for p in particles) if particles is not None
                          else model.init_state(bsz, dtype)), d_all[b]) for b in idx]
    jax.block_until_ready(inputs)
    free_cfg = relax_configs(dataclasses.replace(cfg, anderson=0))[0]  # the run's free phase
    memories = [0, *args.memories]
    def relaxation(m):  # the model is an argument, as in training (not baked-in constants)
        rc = dataclasses.replace(free_cfg, anderson=m)
        return eqx.filter_jit(lambda mod, x, s0, d: relax_core(mod, x, s0, 0.0, d, rc))

    relax = {m: relaxation(m) for m in memories}

    def one_pass(m):
        return jax.block_until_ready([relax[m](model, *a) for a in inputs])

    first, results = {}, {}
    for m in memories:  # compile and check every method first
        t0 = time.perf_counter()
        results[m] = one_pass(m)
        first[m] = time.perf_counter() - t0
    best = dict.fromkeys(memories, np.inf)
    for _ in range(args.repeats):  # then time them interleaved, best of the repeats
        for m in memories:
            t0 = time.perf_counter()
            one_pass(m)
            best[m] = min(best[m], time.perf_counter() - t0)

    def summary(m):
        res = results[m]
        steps = np.array([int(r.steps) for r in res])
        conv = np.array([bool(r.converged) for r in res])
        observed = [model.system.observe(r.states) for r in res]  # the rates
        states = [np.stack([np.asarray(o[k]) for o in observed])
                  for k in range(len(model.state_sizes))]  # (batches, B, n_k)
        classes = np.stack([np.argmax(np.asarray(model.output(r.states, x_all[b])), -1)
                            for r, b in zip(res, idx)])
        row = dict(
            anderson=m, sweeps_mean=float(steps.mean()), sweeps_max=int(steps.max()),
            at_cap=float(np.mean(steps >= free_cfg.max_iterations)),
            converged=float(conv.mean()),
            ms_per_batch=1e3 * best[m] / nb, ms_per_sweep=1e3 * best[m] / steps.sum(),
            compile_and_first_pass_s=first[m])
        return row, conv, states, classes

    rows = []
    plain_row, plain_conv, plain_states, plain_classes = summary(0)
    rows.append(plain_row)
    for m in args.memories:
        row, conv, states, classes = summary(m)
        both = conv & plain_conv  # batches where both stopped within tol of a fixed point
        row["speedup_per_batch"] = plain_row["ms_per_batch"] / row["ms_per_batch"]
        row["batches_compared"] = int(both.sum())
        if both.any():
            row["max_state_diff_vs_plain"] = float(max(
                np.max(np.abs(a[both] - b[both])) for a, b in zip(states, plain_states)))
            row["prediction_differs_vs_plain"] = float(np.mean(
                classes[both] != plain_classes[both]))
        rows.append(row)
    for row in rows:
        print(f"  anderson {row['anderson']}: {row['sweeps_mean']:.1f} sweeps per batch, "
              f"{row['ms_per_batch']:.2f} ms per batch", flush=True)
    return dict(
        run_dir=str(args.run_dir), arch=cfg.arch, epoch=epoch, batches=nb, batch_size=bsz,
        start="particles" if particles is not None else "zero states", repeats=args.repeats,
        tol=cfg.tol, cap=int(free_cfg.max_iterations),
        note=("free phase (beta 0) of random training batches at the run's tolerance and cap; "
              "times are compiled passes over the same batches, the methods interleaved, best "
              "of `repeats`; the state and prediction differences compare each memory's fixed "
              "points with plain sweeps' over the batches where both converged "
              "(`batches_compared`): both are then within tol of a fixed point, which need not "
              "be the same one where the network has several"),
        results=rows, bench_wall_s=time.perf_counter() - t_bench,
        **load_report(info, load_start, busy))


def print_table(r: dict) -> None:
    print(f"\n{r['arch']} after epoch {r['epoch']}, {r['batches']} batches of "
          f"{r['batch_size']} from {r['start']} (cap {r['cap']} sweeps)")
    print(f"{'method':>12} {'sweeps':>7} {'max':>5} {'at cap':>7} {'ms/batch':>9} "
          f"{'ms/sweep':>9} {'speed-up':>9} {'pred. differs':>14}")
    for row in r["results"]:
        name = f"anderson {row['anderson']}" if row["anderson"] else "plain"
        differs = row.get("prediction_differs_vs_plain")
        extra = (f"{row['speedup_per_batch']:>8.2f}x "
                 + (f"{100 * differs:>13.2f}%" if differs is not None else f"{'n/a':>14}")
                 if row["anderson"] else f"{'-':>9} {'-':>14}")
        print(f"{name:>12} {row['sweeps_mean']:>7.1f} {row['sweeps_max']:>5d} "
              f"{100 * row['at_cap']:>6.0f}% {row['ms_per_batch']:>9.2f} "
              f"{row['ms_per_sweep']:>9.3f} {extra}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", required=True,
                    help="a training run's directory (config.json and a checkpoint)")
    ap.add_argument("--memories", type=_memories, default=[3, 5],
                    help="Anderson memories to measure beside plain sweeps (default 3,5)")
    ap.add_argument("--batches", type=int, default=60, help="random training batches (60)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the run's")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed passes per method, interleaved, best kept (3)")
    ap.add_argument("--seed", type=int, default=0, help="which batches")
    ap.add_argument("--data-dir", default=None, help="default: the run's data_dir")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    for name in ("batches", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} {getattr(args, name)}: must be >= 1")
    if args.batch_size is not None and args.batch_size < 1:
        ap.error(f"--batch-size {args.batch_size}: must be >= 1")
    from eqdyn._errors import EqdynError

    try:
        result = run(args)
    except EqdynError as e:  # unreadable run directory, missing data: the library's message
        raise SystemExit(f"bench_anderson: {e}") from None
    return save_result(args.out, result, "bench_anderson.py", argv, print_table)


if __name__ == "__main__":
    sys.exit(main())
