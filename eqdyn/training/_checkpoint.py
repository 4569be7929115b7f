"""Atomic files for training runs: JSON, and checkpoints that survive interruption."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import CheckpointError

__all__ = ["write_bytes", "write_json", "load_checkpoint", "load_checkpoint_leaves",
           "CheckpointWriter"]


def _read_umask() -> int:
    umask = os.umask(0)  # the only way to read it sets it: done once, at import, not on the
    os.umask(umask)  # checkpoint thread, where the short window would affect other threads
    return umask


_UMASK = _read_umask()


def _atomic_write_bytes(path: Path, write: Callable) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes atomically (temp file + rename)."""
    _atomic_write_bytes(Path(path), lambda f: f.write(data))


def _finite(obj):
    """`obj` with non-finite floats as `None` (JSON has no NaN: an empty split's accuracy)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: Path, obj) -> None:
    """Write standard JSON atomically (temp file + rename); NaN and infinities become null."""
    data = json.dumps(_finite(obj), indent=2, sort_keys=True, allow_nan=False).encode()
    _atomic_write_bytes(Path(path), lambda f: f.write(data))


def _snapshot(state: dict, epoch: int, history: list) -> tuple[dict, dict]:
    """Host copies of the state's arrays and the metadata, taken now (the device buffers may be
    donated to the next training step, and `history` grows)."""
    leaves = jax.tree_util.tree_leaves(state)
    meta = {"epoch": epoch, "history": [dict(h) for h in history], "n_leaves": len(leaves)}
    arrays = {f"a{i}": np.array(a, copy=True) for i, a in enumerate(leaves)}
    arrays["meta"] = np.asarray(json.dumps(meta))
    return arrays, meta


def _write_snapshot(run_dir: Path, arrays: dict, meta: dict) -> None:
    """One atomic file holds the arrays *and* the epoch and history, so a kill at any moment
    leaves either the previous checkpoint or the new one, never a mix. `checkpoint.json` is a
    human-readable copy of the metadata, written afterwards and never read back."""
    _atomic_write_bytes(run_dir / "checkpoint.npz", lambda f: np.savez(f, **arrays))
    write_json(run_dir / "checkpoint.json", meta)


class CheckpointWriter:
    """Checkpoints written on one background thread, so the write overlaps the next epoch.

    `submit` copies the arrays to host memory at once (the caller may then donate or change
    them) and hands the atomic write to the thread; it first waits for the previous write, so
    at most one is in flight and they land in order. `wait` blocks until the last one is on
    disk and re-raises its error, if any; call it (or use the writer as a context manager)
    before reading the checkpoint or reporting the run finished. An interruption while a write
    is in flight leaves the previous checkpoint (the write is atomic). Leaving the context on
    an exception waits for the last write too, but its error, if any, is attached to that
    exception as a note instead of replacing it.

    Measured on 784-500-10 / MNIST (the particles of 50,000 examples, 102 MB): about 0.2-0.3 s
    per checkpoint written in line, 25 of them in a 25-epoch run; in the background only the
    host copy (tens of ms) stays on the training thread.
    """

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eqdyn-checkpoint")
        self._pending: Future | None = None

    def submit(self, run_dir: Path, state: dict, epoch: int, history: list) -> None:
        snapshot = _snapshot(state, epoch, history)
        self.wait()
        self._pending = self._pool.submit(_write_snapshot, Path(run_dir), *snapshot)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            self.close()
            return
        try:  # let the last write finish; its error must not hide `exc`
            self.close()
        except Exception as write_error:
            exc.add_note(f"Writing the last checkpoint also failed: {write_error!r}")


def load_checkpoint_leaves(run_dir: str | os.PathLike):
    """The raw contents of the checkpoint in `run_dir`, or `None` if there is none.

    **Returns:** `(leaves, meta)`: the flat list of the saved state's leaves (NumPy arrays, in
    the order of `jax.tree_util.tree_leaves` of the state; `checkpoint_layout` says where the
    parameters and particles lie) and the metadata (`epoch`, `history`, `n_leaves`). Raises
    `CheckpointError` when the file is unreadable.
    """
    npz_path = Path(run_dir) / "checkpoint.npz"
    if not npz_path.exists():
        return None
    try:
        with np.load(npz_path) as z:
            meta = json.loads(str(z["meta"]))
            leaves = [z[f"a{i}"] for i in range(meta["n_leaves"])]
    except Exception as exc:
        raise CheckpointError(
            f"`resume` dir {str(run_dir)!r} has an unreadable checkpoint ({exc}); delete "
            "checkpoint.* there to start over."
        ) from exc
    return leaves, meta


def load_checkpoint(run_dir: str | os.PathLike, template: dict):
    """The checkpoint in `run_dir` restored into the structure and dtypes of `template` (see
    `state_template`): `(state, epoch, history)`, or `None` if there is none. Raises
    `CheckpointError` when its leaves do not match the template's shapes."""
    loaded = load_checkpoint_leaves(run_dir)
    if loaded is None:
        return None
    leaves, meta = loaded
    t_leaves, treedef = jax.tree_util.tree_flatten(template)
    if len(leaves) != len(t_leaves) or any(
        a.shape != b.shape for a, b in zip(leaves, t_leaves)
    ):
        raise CheckpointError(
            f"the checkpoint in {str(run_dir)!r} does not match this configuration's shapes."
        )
    state = jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(a, dtype=b.dtype) for a, b in zip(leaves, t_leaves)]
    )
    return state, meta["epoch"], meta["history"]
