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
    if not ms or any(m < 1 for m in ms):
        raise SystemExit(f"--memories {text!r}: each memory must be >= 1 (plain sweeps are "
                         "always measured)")
    return ms


def training_particles(run_dir, model, cfg, n_train):
    """The run's persistent particles of its training examples, or None (none kept)."""
    import jax

    from eqdyn.learning import make_optimizer
    from eqdyn.learning._checkpoint import load_checkpoint_leaves

    leaves, _ = load_checkpoint_leaves(run_dir)
    # the checkpoint's leaves: dict(key, opt_state, params, particles[, tracked]) in order
    opt = make_optimizer(cfg, model.lr_groups, 1)
    start = (len(jax.tree_util.tree_leaves(jax.random.PRNGKey(0)))
             + len(jax.tree_util.tree_leaves(opt.init(model.params))) + len(model.params))
    parts = leaves[start: start + len(model.state_sizes)]
    if len(parts) != len(model.state_sizes) or any(
            np.shape(p) != (n_train, n) for p, n in zip(parts, model.state_sizes)):
        return None
    return tuple(np.asarray(p) for p in parts)


def run(args) -> dict:
    import jax
    import jax.numpy as jnp

    from eqdyn.data import load_dataset
    from eqdyn.dynamics._relax import RelaxConfig, relax_core
    from eqdyn.learning import load_trained

    t_bench = time.perf_counter()
    load_start, busy, info = start_run()
    model, cfg, epoch = load_trained(args.run_dir)
    if cfg.backend != "blocks":
        raise SystemExit(f"--run-dir {args.run_dir!r}: the run's free phase uses backend "
                         f"{cfg.backend!r}; Anderson accelerates block sweeps (backend blocks)")
    ds = load_dataset(cfg.dataset, args.data_dir or cfg.data_dir, val_size=cfg.val_size)
    n_train = ds.x_train.shape[0]
    particles = training_particles(args.run_dir, model, cfg, n_train) if cfg.persistent else None
    bsz = args.batch_size or cfg.batch_size
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

    def measure(m):
        rc = RelaxConfig(backend="blocks", solver=cfg.solver, dt0=cfg.dt0, t1=cfg.free_t1,
                         tol=cfg.tol, max_steps=cfg.max_steps, anderson=m)
        relax = jax.jit(lambda x, s0, d: relax_core(model, x, s0, 0.0, d, rc))

        def one_pass():
            return jax.block_until_ready([relax(*args_b) for args_b in inputs])

        t0 = time.perf_counter()
        one_pass()
        compile_and_first_s = time.perf_counter() - t0
        best, res = np.inf, None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = one_pass()
            best = min(best, time.perf_counter() - t0)
        steps = np.array([int(r.steps) for r in res])
        observed = [model.system.observe(r.states) for r in res]  # the rates
        states = [np.concatenate([np.asarray(o[k]) for o in observed])
                  for k in range(len(model.state_sizes))]
        classes = np.concatenate([np.argmax(np.asarray(model.output(r.states, x_all[b])), -1)
                                  for r, b in zip(res, idx)])
        return dict(
            anderson=m, sweeps_mean=float(steps.mean()), sweeps_max=int(steps.max()),
            at_cap=float(np.mean(steps >= rc.max_iterations)),
            converged=float(np.mean([bool(r.converged) for r in res])),
            ms_per_batch=1e3 * best / nb, ms_per_sweep=1e3 * best / steps.sum(),
            compile_and_first_pass_s=compile_and_first_s,
        ), (states, classes)

    rows, plain = [], None
    for m in [0, *args.memories]:
        row, (states, classes) = measure(m)
        if plain is None:
            plain = states, classes
        else:
            row["max_state_diff_vs_plain"] = float(max(
                np.max(np.abs(a - b)) for a, b in zip(states, plain[0])))
            row["prediction_differs_vs_plain"] = float(np.mean(classes != plain[1]))
            row["speedup_per_batch"] = rows[0]["ms_per_batch"] / row["ms_per_batch"]
        rows.append(row)
        print(f"  anderson {m}: {row['sweeps_mean']:.1f} sweeps per batch, "
              f"{row['ms_per_batch']:.2f} ms per batch", flush=True)
    return dict(
        run_dir=str(args.run_dir), arch=cfg.arch, epoch=epoch, batches=nb, batch_size=bsz,
        start="particles" if particles is not None else "zero states",
        tol=cfg.tol, cap=int(RelaxConfig(backend="blocks", t1=cfg.free_t1, dt0=cfg.dt0,
                                         max_steps=cfg.max_steps).max_iterations),
        note=("free phase (beta 0) of random training batches; times are compiled passes over "
              "the same batches (best of repeats); the state and prediction differences compare "
              "each memory's fixed points with plain sweeps' (both within tol of a fixed point, "
              "which need not be the same one where the network has several)"),
        results=rows, bench_wall_s=time.perf_counter() - t_bench,
        **load_report(info, load_start, busy))


def print_table(r: dict) -> None:
    print(f"\n{r['arch']} after epoch {r['epoch']}, {r['batches']} batches of "
          f"{r['batch_size']} from {r['start']} (cap {r['cap']} sweeps)")
    print(f"{'method':>12} {'sweeps':>7} {'max':>5} {'at cap':>7} {'ms/batch':>9} "
          f"{'ms/sweep':>9} {'speed-up':>9} {'pred. differs':>14}")
    for row in r["results"]:
        name = f"anderson {row['anderson']}" if row["anderson"] else "plain"
        extra = (f"{row['speedup_per_batch']:>8.2f}x {100 * row['prediction_differs_vs_plain']:>13.2f}%"
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
    ap.add_argument("--repeats", type=int, default=2, help="timed passes, best kept (2)")
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
