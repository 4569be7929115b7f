"""The training loop: EP (or another rule) on a data set, one jitted `lax.scan` per chunk.

The per-batch step (the rule's relaxations and estimate, the optimiser update, and the
write-back of persistent particles) is traced once; a whole chunk of batches runs inside one
`lax.scan`, so Python touches the loop only once per chunk (for progress, failure checks and
interruption). Each epoch ends with an atomic checkpoint; `resume=True` continues bit for bit.
Relaxations that do not converge are counted per epoch; non-finite parameters or states stop
the run (`ConvergenceError`) naming the epoch and batch, with the last good checkpoint kept.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._compile import cheap_jit
from .._distributed import DataParallel, is_writer, resolve_devices, to_host
from .._errors import ConfigError
from ..learning import AbstractLocalRule, AbstractRule, Backprop
from ..models import VectorFieldHopfield, alignment_angles, parse_arch
from ._checkpoint import CheckpointWriter, load_checkpoint, write_json
from ._config import TrainConfig, build_model
from ._evaluate import evaluate
from ._health import check_epoch, divergence_error, failure_counts, format_epoch, pct
from ._optim import LOCAL_OPTIMIZER, make_optimizer
from ._registry import LOCAL_RULES, build_rule, relax_configs
from ._run_io import check_resume, keep_energy_file, make_run_dir, state_template

__all__ = ["train", "train_chunk", "epoch_order"]


def _finite(arrays) -> jax.Array:
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(a)) for a in arrays], bool))


def _chunk(model, opt_state, particles, key, x, y, batches, rule, opt, persistent, shard=None):
    """One chunk of training steps (a `lax.scan` over `batches`, rows of example indices)."""
    n_classes = model.n_outputs

    def step(carry, idx):
        model, opt_state, particles, key = carry
        key, sub = jax.random.split(key)
        xb = x[idx]
        lb = y[idx]
        db = jax.nn.one_hot(lb, n_classes, dtype=xb.dtype)
        if persistent:
            s0 = tuple(p[idx] for p in particles)
        else:
            s0 = model.init_state(xb.shape[0], xb.dtype)
        if shard is not None:  # data parallel: the batch axis split over the device mesh
            xb, db, lb, s0 = shard((xb, db, lb, s0))
        grads, st = rule(model, xb, db, s0, key=sub, labels=lb)
        updates, opt_state = opt.update(grads, opt_state, model.params)
        model = model.with_params(optax.apply_updates(model.params, updates))
        free_states = st.free_states
        if persistent:
            particles = tuple(p.at[idx].set(s) for p, s in zip(particles, free_states))
        # per batch: are the new parameters and the free states finite (names the first bad
        # batch without a host sync per batch)
        stats = dict(loss=st.loss, correct=st.correct, free_steps=st.free_steps,
                     nudged_steps=st.nudged_steps, free_converged=st.free_converged,
                     nudged_converged=st.nudged_converged, free_result=st.free_result,
                     nudged_result=st.nudged_result,
                     finite=_finite((*model.params, *free_states)))
        return (model, opt_state, particles, key), stats

    (model, opt_state, particles, key), stats = jax.lax.scan(
        step, (model, opt_state, particles, key), batches
    )
    return model, opt_state, particles, key, stats


@functools.partial(cheap_jit, level=0, static_argnums=(2, 3))
def epoch_order(key, epoch, n: int, keep: int):
    """The examples `train` visits in `epoch` (0-based), in order: the first `keep` of a
    random permutation of `n` examples drawn from `key` (the run's permutation key, the third
    of `jax.random.split(PRNGKey(cfg.seed), 3)`)."""
    return jax.random.permutation(jax.random.fold_in(key, epoch), n)[:keep]


_all_finite = cheap_jit(_finite, level=0)


def _in_background(fn, *args, **kwargs) -> concurrent.futures.Future:
    """`fn(*args, **kwargs)` on a daemon thread: an error or Ctrl-C in the caller does not
    wait for it."""
    future = concurrent.futures.Future()

    def work():
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:  # noqa: BLE001 - handed to the caller's .result()
                future.set_exception(e)

    threading.Thread(target=work, name="eqdyn-data", daemon=True).start()
    return future


#: The compiled training chunk, `train_chunk(model, opt_state, particles, key, x, y, rows,
#: rule, opt, persistent, shard=None) -> (model, opt_state, particles, key, stats)`: one
#: `lax.scan` of the learning rule `rule` (any `eqdyn.learning.AbstractRule`; its numbers are
#: leaves, so a new beta does not recompile) and the optax optimiser `opt` over `rows` (one row
#: of example indices of `x`, `y` per batch); `stats` holds per-batch arrays (loss, correct,
#: steps, converged flags, status codes, `finite`). Its inputs stay valid (benchmarks and
#: tests rerun a chunk from one state); `train` donates the particles instead.
train_chunk = eqx.filter_jit(_chunk)


@functools.partial(eqx.filter_jit, donate="all-except-first")
def _train_chunk_donating(args, particles):
    """`train_chunk(*args[:2], particles, *args[2:])` with the particles' buffers donated.

    The persistent particles hold every training example's state (50,000 x 510 float32, 102 MB,
    for 784-500-10 on MNIST). Without donation each call copies them into a fresh output
    buffer: measured 50-90 ms per call for that array, about 125 calls in a 25-epoch run, and
    3.3 million page faults. Donated, XLA scatters the batch's states in place. The `particles`
    passed in are invalid afterwards; `train` only ever uses the returned ones.
    """
    model, opt_state, *rest = args
    return _chunk(model, opt_state, particles, *rest)


def _load(cfg: TrainConfig, dataset, download: bool, progress):
    """The network and the data set; the files are read on a thread while the network is
    derived and compiled (zlib, NumPy's casts and XLA's compiler release the GIL)."""
    from ..data import load_dataset

    k_init = jax.random.split(jax.random.PRNGKey(cfg.seed), 3)[0]
    if dataset is None and not download:
        loading = _in_background(load_dataset, cfg.dataset, cfg.data_dir,
                                 val_size=cfg.val_size, progress=progress)
        try:
            model = build_model(cfg, k_init)
        except Exception:
            if loading.done() and loading.exception() is not None:
                raise loading.exception() from None  # the data's error first, as in sequence
            raise
        dataset = loading.result()
    else:
        if dataset is None:  # downloads report progress and stop at Ctrl-C: in this thread
            dataset = load_dataset(cfg.dataset, cfg.data_dir, val_size=cfg.val_size,
                                   download=download, progress=progress)
        model = build_model(cfg, k_init)
    sizes = parse_arch(cfg.arch)
    if dataset.input_dim != sizes[0] or dataset.n_classes != sizes[-1]:
        raise ConfigError(
            f"`arch`={cfg.arch!r} does not fit the data set {dataset.name!r}: it has "
            f"{dataset.input_dim} inputs and {dataset.n_classes} classes, so the arch must start "
            f"with {dataset.input_dim} and end with {dataset.n_classes}."
        )
    if model.input_size != dataset.input_dim or model.n_outputs != dataset.n_classes:
        raise ConfigError(
            f"the energy `{cfg.energy}` takes {model.input_size} inputs and predicts "
            f"{model.n_outputs} classes, but the data set {dataset.name!r} has "
            f"{dataset.input_dim} inputs and {dataset.n_classes} classes."
        )
    return model, dataset


class _Progress:
    """Progress inside an epoch: a tqdm bar (rate, ETA) when stderr is a terminal, otherwise
    a plain line through `say` at most every `every` seconds; nothing for one-chunk epochs."""

    def __init__(self, say, enabled: bool, epoch: int, epochs: int, total: int,
                 every: float = 30.0):
        self.say, self.total, self.done, self.bar = say, total, 0, None
        self.label, self.every = f"epoch {epoch}/{epochs}", every
        self.t0 = self.last = time.perf_counter()
        self.enabled = enabled
        if enabled and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="batch", desc=self.label, leave=False,
                            file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if self.enabled and self.done < self.total and now - self.last >= self.every:
            self.last = now
            rate = self.done / (now - self.t0)
            self.say(f"  {self.label}: {self.done}/{self.total} batches, {rate:.1f} batch/s, "
                     f"about {(self.total - self.done) / rate:.0f}s left")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(
    cfg: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: Callable[[str], None] | None = print,
    dataset=None,
    download: bool = False,
    rule: AbstractRule | None = None,
) -> dict:
    """Train a network by the rule `cfg.algo` (or `rule`); return the metrics (also in
    `metrics.json`).

    The rule is EP (`"ep"`, with `cfg.variant`), continual EP (`"cep"`), contrastive Hebbian
    learning (`"chl"`), recurrent backprop at the fixed point (`"rbp"`), backprop through the
    Euler free relaxation of `free_t1 / dt0` steps (`"bptt"`), feed-forward backprop
    (`"backprop"`) or clock-free EP (`"continuous"`); all share the network, data, relaxation
    and optimiser.

    **Arguments:**

    - `cfg`: a `TrainConfig` (see `resolve_config`).
    - `run_dir`: where `config.json`, `checkpoint.*` and `metrics.json` go (`None`: nothing
      written).
    - `resume`: continue from the checkpoint in `run_dir` (its `config.json` must match `cfg`
      except for `RESUMABLE` fields).
    - `progress`: called with one line per epoch, warnings and progress notes (`None`: silent;
      with the default `print` and a terminal, a progress bar inside long epochs).
    - `dataset`: an `eqdyn.data.Dataset` to use instead of loading `cfg.dataset`.
    - `download`: fetch missing MNIST / Fashion-MNIST files from the public mirrors.
    - `rule`: a learning rule object (any `eqdyn.learning.AbstractRule`, built-in or your own)
      to train with instead of the one `cfg.algo` names (`build_rule(cfg, ...)`); the rest of
      `cfg` (network, data, optimiser, evaluation) applies as usual. A rule that moves the
      weights itself (`AbstractLocalRule`) is applied with `LOCAL_OPTIMIZER`.

    **Returns:** the metrics dict (final accuracies and errors, `history` with one entry per
    epoch including the relaxations that did not converge, `model`: the trained network).

    Raises `ConvergenceError` when the parameters or free states become non-finite (naming
    the epoch and batch; the last good checkpoint is kept), and warns (`RuntimeWarning`) after
    an epoch in which most relaxations did not converge or the loss exploded.
    """
    say = progress or (lambda s: None)
    t_start = time.perf_counter()
    _, k_train, k_perm = jax.random.split(jax.random.PRNGKey(cfg.seed), 3)
    model, dataset = _load(cfg, dataset, download, progress)
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None:
        check_resume(cfg, run_dir, resume)
        make_run_dir(run_dir)
    writes = run_dir is not None and is_writer()  # one process of several writes the files

    _, _, eval_cfg = relax_configs(cfg)
    own_rule = rule is not None
    if rule is None:
        rule = build_rule(cfg, model.lr_groups)
    elif not isinstance(rule, AbstractRule):
        raise ConfigError(f"`rule`={rule!r} must be a learning rule (an eqdyn.learning."
                          "AbstractRule, e.g. EP(0.5, Symmetric())).")
    elif isinstance(rule, AbstractLocalRule) != (cfg.algo in LOCAL_RULES):
        # the optimiser (and so the checkpoint's layout) follows `cfg.algo`
        raise ConfigError(
            f"`rule`={type(rule).__name__} " + (
                "moves the weights itself, but `algo`=" + repr(cfg.algo) + " trains with an "
                "optimiser; set algo='cep' or 'continuous' (plain SGD at rate 1 on its change)"
                if isinstance(rule, AbstractLocalRule) else
                "returns a gradient for the optimiser, but `algo`=" + repr(cfg.algo) + " is a "
                "rule that moves the weights itself; set algo='ep' (or any other) instead")
            + ".")
    feedforward = isinstance(rule, Backprop)

    x_train = jnp.asarray(dataset.x_train)
    y_train = jnp.asarray(dataset.y_train, jnp.int32)
    n_train = x_train.shape[0]
    n_batches = n_train // cfg.batch_size
    if n_batches == 0:
        raise ConfigError(
            f"`batch_size`={cfg.batch_size} exceeds the {n_train} training examples."
        )
    dp, eval_batch, put = None, cfg.eval_batch, jnp.asarray
    if cfg.devices is not None:
        dp = DataParallel(resolve_devices(cfg.devices, divides=cfg.batch_size))
        eval_batch, put = dp.round_up(cfg.eval_batch), dp.split  # padding is masked
        x_train, y_train = dp.replicate((x_train, y_train))
    # equal chunks (one compilation); when `chunk` does not divide the batch count, up to
    # n_chunks - 1 batches of each epoch's random permutation are left out
    n_chunks = -(-n_batches // cfg.chunk)
    per_chunk = n_batches // n_chunks
    opt = (LOCAL_OPTIMIZER if isinstance(rule, AbstractLocalRule)
           else make_optimizer(cfg, model.lr_groups, n_chunks * per_chunk))
    # eval_persistent: the validation and test examples keep their own particles too
    state = state_template(cfg, model, opt, k_train, n_train,
                           {s: getattr(dataset, f"x_{s}").shape[0] for s in ("val", "test")})
    energy_sha = keep_energy_file(cfg, run_dir, resume, writes)
    start_epoch, history = 0, []
    if resume and run_dir is not None:
        loaded = load_checkpoint(run_dir, state)
        if loaded is not None:
            state, start_epoch, history = loaded
            say(f"resuming {run_dir} after epoch {start_epoch}")
    if start_epoch > cfg.epochs:
        raise ConfigError(
            f"`epochs`={cfg.epochs} is below the {start_epoch} epochs this run has completed; "
            f"resume with epochs >= {start_epoch}."
        )
    if writes:
        saved_cfg = cfg.to_json()
        if energy_sha is not None:
            saved_cfg["energy_sha256"] = energy_sha
        if own_rule:  # a fact about the run, not a setting (`algo` did not pick the rule)
            saved_cfg["rule"] = repr(rule)
        write_json(run_dir / "config.json", saved_cfg)
    if dp is not None:
        state = dp.replicate(state)
    model = model.with_params(state["params"])
    opt_state, particles, key = state["opt_state"], state["particles"], state["key"]
    tracked = state.get("tracked")

    def score(split, s0=None):  # the current model on one split, from zero states or `s0`
        return evaluate(model, getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}"),
                        eval_cfg, eval_batch, feedforward, put=put, s0=s0)

    with CheckpointWriter() if writes else contextlib.nullcontext() as writer:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            perm = epoch_order(k_perm, epoch, n_train, n_chunks * per_chunk * cfg.batch_size)
            perm = perm.reshape(n_chunks, per_chunk, cfg.batch_size)
            if dp is not None:
                perm = dp.replicate(perm)
            if epoch == start_epoch:
                say("compiling the training step (first chunk)...")
            bar = _Progress(say, progress is not None and n_chunks > 1, epoch + 1, cfg.epochs,
                            n_chunks * per_chunk)
            stats = []
            try:
                for c in range(n_chunks):
                    model, opt_state, particles, key, st = _train_chunk_donating(
                        (model, opt_state, key, x_train, y_train, perm[c], rule, opt,
                         cfg.persistent, dp and dp.constraint),
                        particles,
                    )
                    stats.append(to_host(st))
                    if not stats[-1]["finite"].all():  # the chunk's stats are on the host
                        bad = c * per_chunk + int(np.argmin(stats[-1]["finite"]))
                        raise divergence_error(cfg, epoch + 1, bad + 1, n_chunks * per_chunk,
                                               run_dir if writes else None, epoch)
                    bar.update(per_chunk)
            finally:
                bar.close()
            if not bool(_all_finite(model.params)):  # a backstop: the per-batch flags say
                raise divergence_error(cfg, epoch + 1, None, n_chunks * per_chunk,
                                       run_dir if writes else None, epoch)
            train_seconds = time.perf_counter() - t0
            st = {k: np.concatenate([s[k] for s in stats]) for k in stats[0]}
            if tracked is None:
                val = score("val")
            else:  # every validation and test example relaxes from its last fixed point
                res = {split: score(split, tracked[split]) for split in ("val", "test")}
                tracked = {split: r.pop("states") for split, r in res.items()}
                val = res["val"]
            h = dict(
                epoch=epoch + 1,
                loss=float(np.mean(st["loss"])),
                train_accuracy=float(np.sum(st["correct"]) / (st["correct"].size
                                                               * cfg.batch_size)),
                val_accuracy=val["accuracy"],
                val_loss=val["loss"],
                val_free_steps=val["steps"],
                free_steps=float(np.mean(st["free_steps"])),
                nudged_steps=float(np.mean(st["nudged_steps"])),
                free_converged=float(np.mean(st["free_converged"])),
                nudged_converged=float(np.mean(st["nudged_converged"])),
                **failure_counts(st),
                train_seconds=train_seconds,
                seconds=time.perf_counter() - t0,
            )
            if isinstance(model, VectorFieldHopfield):  # angle(W_k, B_k^T), k = 2..L
                h["alignment_deg"] = [float(a) for a in alignment_angles(model)]
            history.append(h)
            if writer is not None:  # written while the next epoch trains (the keys of
                # `state_template`, which restores it)
                writer.submit(run_dir, dict(params=model.params, opt_state=opt_state,
                                            particles=particles, key=key,
                                            **({} if tracked is None else dict(tracked=tracked))),
                              epoch + 1, history)
            say(format_epoch(h, cfg.epochs))
            check_epoch(cfg, h, history, st, model.n_outputs, say)

        if writer is not None and jax.process_count() > 1:
            writer.wait()  # every process leaves `train` after the writer's checkpoint is down
        metrics = _final_metrics(cfg, dataset, history, score, tracked, particles, n_train,
                                 t_start)
    # leaving the block waited for the last checkpoint (or raised its error)
    if writes:
        write_json(run_dir / "metrics.json", metrics)
    from_zero = metrics.get("from_zero")
    say(
        f"done: train {100 * metrics['train_accuracy']:.2f}%  val {pct(metrics['val_accuracy'])}"
        f"  test {100 * metrics['test_accuracy']:.2f}%  ({metrics['wall_seconds']:.1f}s)"
        + ("" if from_zero is None else
           f"; from zero states: train {100 * from_zero['train_accuracy']:.2f}%  val "
           f"{pct(from_zero['val_accuracy'])}  test {100 * from_zero['test_accuracy']:.2f}%")
    )
    metrics["model"] = model
    return metrics


def _final_metrics(cfg, dataset, history, score, tracked, particles, n_train, t_start) -> dict:
    """The run's metrics: every split scored from zero states, and with `eval_persistent`
    from each example's particle (the top-level numbers; `from_zero` beside)."""
    final = {split: score(split) for split in ("train", "val", "test")}
    from_zero, zero_test = None, final["test"]
    if tracked is not None:  # the paper's protocol: every example from its own particle
        from_zero = {k: v["accuracy"] for k, v in final.items()}
        starts = dict(tracked, train=particles)
        final = {split: score(split, starts[split]) for split in ("train", "val", "test")}
    mean = lambda k: float(np.mean([h[k] for h in history])) if history else None  # noqa: E731
    metrics = dict(
        config=cfg.to_json(),
        dataset=dataset.name,
        n_train=int(n_train), n_val=int(dataset.x_val.shape[0]),
        n_test=int(dataset.x_test.shape[0]),
        epochs=cfg.epochs,
        train_accuracy=final["train"]["accuracy"],
        val_accuracy=final["val"]["accuracy"],
        test_accuracy=final["test"]["accuracy"],
        train_error=1 - final["train"]["accuracy"],
        test_error=1 - final["test"]["accuracy"],
        eval_free_steps=zero_test["steps"],  # from zero states, either protocol
        eval_converged=zero_test["converged"],
        mean_free_steps=mean("free_steps"),
        mean_nudged_steps=mean("nudged_steps"),
        wall_seconds=time.perf_counter() - t_start,
        history=history,
        backend=jax.default_backend(),
    )
    if from_zero is not None:
        metrics["from_zero"] = dict(
            train_accuracy=from_zero["train"], val_accuracy=from_zero["val"],
            test_accuracy=from_zero["test"], train_error=1 - from_zero["train"],
            test_error=1 - from_zero["test"],
            note=("the same network evaluated from zero states; the top-level numbers relax "
                  "every example from its own persistent particle (eval_persistent)"))
    return metrics
