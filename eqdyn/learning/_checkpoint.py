"""Atomic files for training runs: JSON, and checkpoints that survive interruption."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import CheckpointError

__all__ = ["write_bytes", "write_json", "save_checkpoint", "load_checkpoint",
           "load_checkpoint_leaves"]


def _atomic_write_bytes(path: Path, write: Callable) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
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


def save_checkpoint(run_dir: Path, state: dict, epoch: int, history: list) -> None:
    """One atomic file holds the arrays *and* the epoch and history, so a kill at any moment
    leaves either the previous checkpoint or the new one, never a mix. `checkpoint.json` is a
    human-readable copy of the metadata, written afterwards and never read back."""
    leaves = jax.tree_util.tree_leaves(state)
    meta = {"epoch": epoch, "history": history, "n_leaves": len(leaves)}
    arrays = {f"a{i}": np.asarray(a) for i, a in enumerate(leaves)}
    arrays["meta"] = np.asarray(json.dumps(meta))
    _atomic_write_bytes(run_dir / "checkpoint.npz", lambda f: np.savez(f, **arrays))
    write_json(run_dir / "checkpoint.json", meta)


def load_checkpoint_leaves(run_dir: Path):
    """`(leaves, meta)` of the checkpoint in `run_dir` (numpy arrays), or None if there is none."""
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


def load_checkpoint(run_dir: Path, template: dict):
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
