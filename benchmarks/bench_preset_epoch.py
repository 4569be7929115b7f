"""Seconds per training epoch of an `eqdyn train` preset, timed on synthetic data.

The preset's network, rule and settings (`resolve_config(preset, **overrides)`) train for two
epochs through `eqdyn.training.train` on random inputs of the preset's data shape (uniform in
[0, 1] like eqdyn's loaders give them: CIFAR-10/100 3x32x32 flattened channel-major to 3072,
MNIST and Fashion-MNIST 784, digits 64) and random labels, `--batches` batches per epoch. The
first epoch compiles; the second epoch's training time (`train_seconds`: the chunks alone,
without the validation pass) divided by its batches is the time per batch, extrapolated to
the preset's real epoch: the batches `train` runs on `pool - val_size` examples (pool 50,000
for CIFAR, 60,000 for MNIST) with the preset's `chunk`, and to its `epochs`. No data files are
read, so the script runs on a machine without them, e.g. a GPU machine reached by one command.

Evaluation is kept out of the way: the validation split is empty, the test split holds two
examples, and `eval_t1` = `dt0` (one step) and `eval_batch` = `batch_size` unless `--set` gives
them; none of it is inside `train_seconds`. The relaxations' step counts are recorded: with a
tolerance (`tol`) a relaxation of random data may stop at a different step than one of the
real data would. The trainer's warnings (random labels: relaxations that do not settle) go
into the JSON's `warnings`.

Usage (from the repository root):

    python benchmarks/bench_preset_epoch.py l21-cifar10 --batches 2
    python benchmarks/bench_preset_epoch.py e19-pconv-mnist --batches 2 --set free_t1=20

writes `benchmarks/results/preset_epoch_<preset>_<platform>.json` (`--out` to change it).

On the project's GPU machine (the device tool's `run`; it receives a copy of the repository
and its image already holds jax with CUDA, equinox, diffrax, optax, lineax, optimistix, sympy,
scipy, scikit-learn, matplotlib and tqdm, so `PYTHONPATH=.` replaces `pip install -e .`, which
could fetch nothing there), one command for the three conv presets, its JSON coming back
through `$OUT`:

    export PYTHONPATH=. PYTHONUNBUFFERED=1; for p in l21-cifar10 e19-pconv-mnist hr25-cifar10; do python3 benchmarks/bench_preset_epoch.py $p --batches 5 --out $OUT || exit; done

(timeout_s 540: each preset's JSON is written when it finishes, so those done come back even
if a later one runs into the limit. `--out` naming a folder writes the default file name in
it; copy the files from the reply's `files_at` into benchmarks/results/.)
"""  # noqa: E501 (the device command is one line)

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_epoch import load_report, start_run, write_json_atomic  # noqa: E402
from bench_reproduce import _parse_sets  # noqa: E402

#: per data set: (training pool before the validation split, default val_size, inputs, classes,
#: input shape), as eqdyn.data's loaders give them
SHAPES = {
    "digits": (1500, 150, 64, 10, (8, 8)),
    "mnist": (60_000, 10_000, 784, 10, (28, 28)),
    "fashion-mnist": (60_000, 10_000, 784, 10, (28, 28)),
    "cifar10": (50_000, 5_000, 3072, 10, (3, 32, 32)),
    "cifar100": (50_000, 5_000, 3072, 100, (3, 32, 32)),
}


def synthetic_dataset(name: str, n_train: int, n_test: int = 2, seed: int = 0):
    """An `eqdyn.data.Dataset` of uniform random inputs in [0, 1] and random labels with the
    shape of data set `name`: `n_train` training examples, no validation, `n_test` test."""
    from eqdyn.data import Dataset

    _, _, n_in, n_classes, shape = SHAPES[name]
    rng = np.random.default_rng(seed)

    def split(n):
        return (rng.uniform(0, 1, (n, n_in)).astype(np.float32),
                rng.integers(0, n_classes, n).astype(np.int32))

    return Dataset(f"synthetic-{name}", *split(n_train), *split(0), *split(n_test), n_classes,
                   shape)


def epoch_batches(n_examples: int, batch_size: int, chunk: int) -> int:
    """The batches `train` runs in one epoch of `n_examples`: equal chunks of at most `chunk`
    batches, the remainder of the batch count left out (as in `eqdyn.training.train`)."""
    n_batches = n_examples // batch_size
    n_chunks = -(-n_batches // chunk)
    return n_chunks * (n_batches // n_chunks)


def time_preset(preset: str, sets: dict | None = None, batches: int = 2) -> dict:
    """Train `preset` (with the overrides `sets`) for two epochs of `batches` batches on
    synthetic data; the result dict (see the module docstring)."""
    import jax

    from eqdyn.training import resolve_config, train

    sets = dict(sets or {})
    if batches < 1:
        raise SystemExit(f"--batches {batches}: time at least one batch")
    base = resolve_config(preset, **sets)
    quiet = {k: v for k, v in dict(eval_t1=base.dt0, eval_batch=base.batch_size).items()
             if k not in sets}
    cfg = resolve_config(preset, **sets, **quiet, epochs=2)
    if cfg.dataset not in SHAPES:
        raise SystemExit(f"preset {preset!r} trains on {cfg.dataset!r}; this script knows "
                         f"{sorted(SHAPES)}")
    if batches > cfg.chunk:  # more would split the timed epoch into chunks of unequal batches
        raise SystemExit(f"--batches {batches} exceeds the preset's chunk {cfg.chunk}")
    pool, default_val, *_ = SHAPES[cfg.dataset]
    ds = synthetic_dataset(cfg.dataset, cfg.batch_size * batches)
    with warnings.catch_warnings(record=True) as caught:  # random data: kept in the JSON
        warnings.simplefilter("always")
        m = train(cfg, dataset=ds, progress=None)
    first, second = m["history"]
    s_per_batch = second["train_seconds"] / batches
    n_real = pool - (default_val if cfg.val_size is None else cfg.val_size)
    real_batches = epoch_batches(n_real, cfg.batch_size, cfg.chunk)
    s_epoch = s_per_batch * real_batches
    dev = jax.devices()[0]
    return dict(
        preset=preset,
        overrides=sets,
        evaluation_overrides=quiet,
        dataset=cfg.dataset,
        batch_size=cfg.batch_size,
        batches_timed=batches,
        first_epoch_train_s=first["train_seconds"],
        second_epoch_train_s=second["train_seconds"],
        s_per_batch=s_per_batch,
        free_steps=second["free_steps"],
        nudged_steps=second["nudged_steps"],
        real_epoch_examples=n_real,
        real_epoch_batches=real_batches,
        s_per_epoch=s_epoch,
        preset_epochs=base.epochs,
        hours_for_preset_epochs=s_epoch * base.epochs / 3600,
        jax_backend=jax.default_backend(),
        device_kind=dev.device_kind,
        n_devices=jax.device_count(),
        warnings=[str(w.message)[:300] for w in caught],
        note=("synthetic data of the preset's shape; s_per_batch is the second epoch's "
              "train_seconds (training chunks only, compiled, no validation) over its "
              "batches; s_per_epoch = s_per_batch * real_epoch_batches, the batches of the "
              "preset's real epoch; hours_for_preset_epochs = s_per_epoch * preset_epochs / "
              "3600 (evaluation not included)."),
    )


def platform_name(backend: str, device_kind: str) -> str:
    """`cpu`, or the backend and the device kind as a file-name part (`gpu-nvidia-h100...`)."""
    if backend == "cpu":
        return "cpu"
    return backend + "-" + re.sub(r"[^a-z0-9]+", "-", device_kind.lower()).strip("-")


def main(argv=None) -> int:
    from eqdyn.training import PRESETS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("preset", choices=sorted(PRESETS), help="the `eqdyn train` preset")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a training option (TrainConfig field), repeatable")
    p.add_argument("--batches", type=int, default=2, help="batches per timed epoch (2)")
    p.add_argument("--out", help="JSON path, or a folder for the default name (default "
                   "benchmarks/results/preset_epoch_<preset>_<platform>.json)")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    load_start, busy, info = start_run()
    t0 = time.perf_counter()
    result = time_preset(args.preset, _parse_sets(args.set), args.batches)
    result.update(bench_wall_s=time.perf_counter() - t0, date=info["date"],
                  command=" ".join(["python", "benchmarks/bench_preset_epoch.py", *argv]),
                  **load_report(info, load_start, busy))
    name = f"preset_epoch_{args.preset}_{platform_name(result['jax_backend'], result['device_kind'])}"
    out = Path(args.out) if args.out else HERE / "results"
    out = out / f"{name}.json" if out.is_dir() else out
    write_json_atomic(out, result)
    print(f"{args.preset} on {result['device_kind']} ({result['jax_backend']}): "
          f"{result['s_per_batch']:.3g} s per batch of {result['batch_size']} "
          f"({result['batches_timed']} timed; first epoch {result['first_epoch_train_s']:.1f} s "
          f"with compilation), {result['s_per_epoch']:.0f} s per epoch of "
          f"{result['real_epoch_batches']} batches, {result['hours_for_preset_epochs']:.1f} h for "
          f"{result['preset_epochs']} epochs; load average {result['load_average_end'][0]:.1f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
