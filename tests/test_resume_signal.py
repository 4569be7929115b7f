"""Resume is bit-exact where users use it: `eqdyn train` in its own process, stopped by a signal
after its first checkpoint, resumed by a fresh process, ends where an uninterrupted run ends.

The setting exercises every piece of state a checkpoint carries: random-sign EP (a key drawn
per batch), Adam with a cosine schedule (moments and step count), persistent particles (one
state per training example). Compared bit for bit through the public `load_run`: parameters,
optimiser state, particles, PRNG key; and the metrics history without its wall times.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from eqdyn.training import load_run

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ["--dataset", "digits", "--arch", "64-16-10", "--variant", "random-sign",
            "--beta", "0.5", "--optimizer", "adam", "--schedule", "cosine", "--lr", "0.01",
            "--persistent", "--batch-size", "10", "--epochs", "4", "--seed", "3", "--quiet"]
TIMINGS = {"train_seconds", "seconds"}


def _eqdyn(*args) -> list[str]:
    return [sys.executable, "-m", "eqdyn.cli", "train", *args]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def _leaves(run_dir: Path) -> list[np.ndarray]:
    state = load_run(run_dir).state
    out = []
    for leaf in jax.tree_util.tree_leaves(state):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out.append(np.asarray(leaf))
    return out


def _history(run_dir: Path) -> list[dict]:
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    return [{k: v for k, v in h.items() if k not in TIMINGS} for h in history]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("whole") / "run"
    subprocess.run(_eqdyn(*SETTINGS, "--run-dir", str(run)), env=_env(), check=True,
                   capture_output=True, text=True, timeout=600)
    return run


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_run_killed_mid_training_resumes_bit_exactly(uninterrupted, tmp_path, sig):
    run = tmp_path / "run"
    proc = subprocess.Popen(_eqdyn(*SETTINGS, "--run-dir", str(run)), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 600
        while not (run / "checkpoint.npz").exists():  # the first epoch's checkpoint
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(sig)
        out = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out  # it was stopped, not finished
    assert not (run / "metrics.json").exists() or len(_history(run)) < 4
    stopped_at = load_run(run).epoch
    assert 1 <= stopped_at < 4, stopped_at
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and f"eqdyn train --resume {run}" in out, out

    done = subprocess.run(_eqdyn("--resume", str(run), "--quiet"), env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert load_run(run).epoch == load_run(uninterrupted).epoch == 4
    a, b = _leaves(run), _leaves(uninterrupted)
    assert len(a) == len(b) and len(a) > 8  # key, Adam's moments and count, params, particles
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.dtype == y.dtype and x.shape == y.shape, i
        np.testing.assert_array_equal(x, y, err_msg=f"checkpoint leaf {i}")
    assert _history(run) == _history(uninterrupted)


def test_ctrl_c_after_an_epoch_then_resume_is_bit_exact_in_process(tmp_path):
    """The same check in one process on a 60-example slice of digits (default tier): the run is
    stopped as Ctrl-C would stop it (KeyboardInterrupt from the progress callback, after the
    first epoch's line) and resumed."""
    import dataclasses

    from eqdyn.data import load_dataset
    from eqdyn.training import resolve_config, train

    data = load_dataset("digits", val_size=30)
    tiny = dataclasses.replace(data, x_train=data.x_train[:60], y_train=data.y_train[:60],
                               x_test=data.x_test[:30], y_test=data.y_test[:30])
    cfg = resolve_config(arch="64-8-10", variant="random-sign", beta=0.5, optimizer="adam",
                         schedule="cosine", lr="0.01", persistent=True, batch_size=10,
                         epochs=3, seed=5, backend="fused", eval_t1=50.0)
    train(cfg, run_dir=tmp_path / "whole", progress=None, dataset=tiny)

    def stop_after_the_first_epoch(line):
        if line.lstrip().startswith("epoch"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, run_dir=tmp_path / "cut", progress=stop_after_the_first_epoch, dataset=tiny)
    assert load_run(tmp_path / "cut", dataset=tiny).epoch == 1
    train(cfg, run_dir=tmp_path / "cut", resume=True, progress=None, dataset=tiny)
    a = load_run(tmp_path / "cut", dataset=tiny).state
    b = load_run(tmp_path / "whole", dataset=tiny).state
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    assert len(la) > 8
    for i, (x, y) in enumerate(zip(la, lb)):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=f"leaf {i}")
    assert _history(tmp_path / "cut") == _history(tmp_path / "whole")
