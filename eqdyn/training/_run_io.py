"""Run directories: `config.json`, the checkpoint's layout, and restoring a run.

A run directory holds `config.json` (the `TrainConfig`), `checkpoint.npz` (the trainer's
state after the last finished epoch, written atomically by `eqdyn.training._checkpoint`),
`metrics.json` when the run is done, and `energy.py` for a custom energy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp

from .._errors import CheckpointError
from ..models import load_energy_file, parse_arch
from ._checkpoint import load_checkpoint, load_checkpoint_leaves, write_bytes
from ._config import TrainConfig, build_model, validate
from ._optim import make_optimizer

__all__ = [
    "RESUMABLE", "read_run_config", "read_run_settings", "checkpoint_layout", "state_template",
    "load_trained", "load_run", "TrainedRun", "check_resume", "keep_energy_file", "make_run_dir",
]

#: Fields that may differ between a run and its resumption (`backend`: fused and diffrax
#: Euler agree to rounding, ~1e-7 in float32, not bit for bit; `devices`: data parallelism
#: changes only the order of floating-point sums).
RESUMABLE = frozenset({"epochs", "data_dir", "eval_batch", "backend", "devices"})


def read_run_config(run_dir: str | os.PathLike, flag: str = "`run_dir`") -> dict:
    """The settings saved in a run directory's `config.json` (a dict, as written)."""
    cfg_path = Path(run_dir) / "config.json"
    if not cfg_path.exists():
        raise CheckpointError(
            f"{flag} {str(run_dir)!r} has no config.json; point it at a run directory written "
            "by `eqdyn train --run-dir`."
        )
    return json.loads(cfg_path.read_text())


def read_run_settings(run_dir: str | os.PathLike, flag: str = "`run_dir`") -> dict:
    """The `TrainConfig` fields of a run's `config.json`: the file also records facts about the
    run that are not settings (a custom energy file's sha256, which `train` checks against the
    copy kept in the run directory)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return {k: v for k, v in read_run_config(run_dir, flag).items() if k in fields}


def checkpoint_layout(cfg: TrainConfig, model) -> dict[str, slice]:
    """Where the parameters and the training particles lie among a run's checkpoint leaves.

    A checkpoint holds the leaves of `dict(key, opt_state, params, particles[, tracked])` in
    that order (`particles` empty, shaped (0, n), without `cfg.persistent`); the optimiser
    state's leaf count depends on the optimiser and its schedule, so it is counted on a fresh
    one. Returns slices `params` and `particles` into the flat leaf list.
    """
    opt = make_optimizer(cfg, model.lr_groups, 1)  # the schedule's kind fixes the leaves
    start = len(jax.tree_util.tree_leaves(jax.random.PRNGKey(0))) + len(
        jax.tree_util.tree_leaves(opt.init(model.params)))
    mid = start + len(model.params)
    return dict(params=slice(start, mid), particles=slice(mid, mid + len(model.state_sizes)))


def state_template(cfg: TrainConfig, model, opt, key, n_train: int,
                   tracked: dict[str, int] | None = None) -> dict:
    """The trainer's state: what a checkpoint holds, and the template that restores one.

    **Arguments:** the run's `cfg` and `model`, its optimiser `opt`, the PRNG `key`, the
    number of training examples, and with `cfg.eval_persistent` `tracked`: each evaluated
    split ("val", "test") mapped to its example count.

    **Returns:** `dict(params, opt_state, particles, key[, tracked])`: the parameters, the
    state of `opt`, the training particles (empty, shaped (0, n), without `cfg.persistent`),
    the key, and with `cfg.eval_persistent` each tracked split's particles. Pass it to
    `eqdyn.training.load_checkpoint` to restore a checkpoint in these dtypes.
    """
    particles = (model.init_state(n_train) if cfg.persistent
                 else tuple(jnp.zeros((0, n)) for n in model.state_sizes))
    state = dict(params=model.params, opt_state=opt.init(model.params), particles=particles,
                 key=key)
    if cfg.eval_persistent:  # key sorted after "particles", so the leaves `load_trained`
        # reads keep their places
        if tracked is None:
            raise ValueError("`tracked` (split -> example count) is needed with eval_persistent")
        state["tracked"] = {split: model.init_state(n) for split, n in tracked.items()}
    return state


def _run_config(run_dir: Path) -> TrainConfig:
    saved = {k: (tuple(v) if k == "lr" else v) for k, v in read_run_settings(run_dir).items()}
    cfg = TrainConfig(**saved)
    validate(cfg)
    return cfg


def _no_checkpoint(run_dir: Path) -> CheckpointError:
    return CheckpointError(
        f"`run_dir` {str(run_dir)!r} has no checkpoint.npz yet (no epoch has finished)."
    )


def load_trained(run_dir: str | os.PathLike, dtype=None):
    """The network a training run left in `run_dir` (`config.json` and its last checkpoint).

    Returns `(model, cfg, epoch)`: the model with the trained parameters (cast to `dtype` if
    given, e.g. `jnp.float64` for analysis), the run's `TrainConfig` and the epochs it has
    completed. Raises `CheckpointError` naming the problem when the directory is not a run
    directory or holds no readable checkpoint. `load_run` also gives the particles.
    """
    run_dir = Path(run_dir)
    cfg = _run_config(run_dir)
    model = build_model(cfg, jax.random.PRNGKey(0), dtype=dtype or jnp.float32)
    loaded = load_checkpoint_leaves(run_dir)
    if loaded is None:
        raise _no_checkpoint(run_dir)
    leaves, meta = loaded
    params = leaves[checkpoint_layout(cfg, model)["params"]]
    if len(params) != len(model.params) or any(
            a.shape != b.shape for a, b in zip(params, model.params)):
        raise CheckpointError(
            f"the checkpoint in {str(run_dir)!r} does not hold the parameters of "
            f"{cfg.arch!r}; was it written by another version of eqdyn?"
        )
    params = tuple(jnp.asarray(a, b.dtype) for a, b in zip(params, model.params))
    return model.with_params(params), cfg, int(meta["epoch"])


@dataclasses.dataclass(frozen=True, eq=False)
class TrainedRun:
    """A training run's last checkpoint, restored whole (see `load_run`).

    `particles` holds each split's persistent states ("train" with `cfg.persistent`, "val" and
    "test" with `cfg.eval_persistent`); a split without them is absent.
    """
    model: object
    cfg: TrainConfig
    epoch: int
    dataset: object
    particles: dict
    state: dict


def load_run(run_dir: str | os.PathLike, dataset=None) -> TrainedRun:
    """Restore the whole state of the run in `run_dir` from its last checkpoint, read once.

    Unlike `load_trained` this needs the run's data set (the particles' shapes follow it): it
    is loaded from the run's config unless `dataset` is given. Raises `CheckpointError` when
    the directory holds no checkpoint or one of other shapes.
    """
    from ..data import load_dataset

    run_dir = Path(run_dir)
    cfg = _run_config(run_dir)
    if not (run_dir / "checkpoint.npz").exists():  # before reading the data set
        raise _no_checkpoint(run_dir)
    model = build_model(cfg, jax.random.PRNGKey(0))
    if dataset is None:
        dataset = load_dataset(cfg.dataset, cfg.data_dir, val_size=cfg.val_size)
    sizes = {s: getattr(dataset, f"x_{s}").shape[0] for s in ("train", "val", "test")}
    template = state_template(
        cfg, model, make_optimizer(cfg, model.lr_groups, 1), jax.random.PRNGKey(0),
        sizes["train"], {s: sizes[s] for s in ("val", "test")})
    try:
        loaded = load_checkpoint(run_dir, template)
    except CheckpointError as e:
        raise CheckpointError(
            f"{e} The particles' shapes follow the data set: is {dataset.name!r} with "
            f"{sizes} examples per split the one the run trained on (its `val_size` "
            f"{cfg.val_size})?") from None
    if loaded is None:
        raise _no_checkpoint(run_dir)
    state, epoch, _ = loaded
    particles = dict(state.get("tracked", {}))
    if cfg.persistent:
        particles["train"] = state["particles"]
    return TrainedRun(model.with_params(state["params"]), cfg, int(epoch), dataset, particles,
                      state)


def make_run_dir(run_dir: Path) -> None:
    """Create `run_dir` (and its parents) and check that it can be written, before training:
    `CheckpointError` naming the folder and the reason otherwise."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(run_dir, os.W_OK):
            raise PermissionError(13, "not writable")
    except OSError as e:
        raise CheckpointError(
            f"`run_dir` {str(run_dir)!r} cannot be created or written ({e.strerror}); "
            "choose a folder you can write to."
        ) from e


def check_resume(cfg: TrainConfig, run_dir: Path, resume: bool) -> None:
    """Check that `train(cfg, run_dir=run_dir, resume=resume)` may use `run_dir`: a resumed
    run's saved settings equal `cfg` except for `RESUMABLE` fields; a new run does not
    overwrite a checkpoint. Raises `CheckpointError` saying what differs."""
    cfg_path = run_dir / "config.json"
    if resume:
        if not cfg_path.exists():
            raise CheckpointError(
                f"`resume` dir {str(run_dir)!r} has no config.json; is it a run directory?"
            )
        saved = json.loads(cfg_path.read_text())
        now = cfg.to_json()
        # a field added after the run was started counts as its default
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        diff = {k: (saved.get(k, defaults.get(k)), now[k]) for k in now
                if k not in RESUMABLE and saved.get(k, defaults.get(k)) != now[k]}
        if cfg.schedule == "cosine" and saved.get("epochs", cfg.epochs) != cfg.epochs:
            # the cosine decays over all epochs: a new count would bend the curve mid-run
            diff["epochs (schedule='cosine' decays over them)"] = (saved["epochs"], cfg.epochs)
        if diff:
            raise CheckpointError(
                f"`resume` dir {str(run_dir)!r} was made with a different configuration: "
                + ", ".join(f"{k}: saved {a!r} vs now {b!r}" for k, (a, b) in diff.items())
                + ". Resume with the saved settings or start a new run directory."
            )
    elif (run_dir / "checkpoint.npz").exists():
        raise CheckpointError(
            f"`run_dir` {str(run_dir)!r} already holds a checkpoint; pass resume=True "
            "(--resume) to continue it, or choose a new directory."
        )


def keep_energy_file(cfg: TrainConfig, run_dir: Path | None, resume: bool,
                     writes: bool) -> str | None:
    """Keep a custom energy with its run (`energy.py`): a resumed run must train the same
    energy (`CheckpointError` if the file changed). Returns the file's sha256, or `None`
    without `cfg.energy`."""
    if cfg.energy is None:
        return None
    sha = load_energy_file(cfg.energy, parse_arch(cfg.arch)).sha256
    copy = run_dir / "energy.py" if run_dir is not None else None
    if resume and copy is not None and copy.exists():
        if hashlib.sha256(copy.read_bytes()).hexdigest() != sha:
            raise CheckpointError(
                f"`energy` file {cfg.energy!r} has changed since this run started (its "
                f"copy is {str(copy)!r}); resume with the original file or start a new "
                "run directory."
            )
    elif copy is not None and writes:
        write_bytes(copy, Path(cfg.energy).read_bytes())
    return sha
