"""Bad inputs that eqdyn refuses with a message naming the argument, the value and the fix
(issue 24's list; the refusals elsewhere in the suite cover the rest)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import write_idx

import eqdyn
from eqdyn import CheckpointError, ConfigError, DataError
from eqdyn.data import load_dataset, validate_arrays
from eqdyn.data import _datasets
from eqdyn.learning import (
    EPConfig,
    bptt_gradient,
    chl_gradient,
    continual_ep_step,
    ep_gradient,
    feedforward_backprop_gradient,
    rbp_gradient,
)
from eqdyn.training import check_resume, resolve_config, train

FILES = _datasets._IDX_FILES  # train images, train labels, test images, test labels


def test_swapped_image_and_label_files(tmp_path: Path):
    rng = np.random.default_rng(0)
    arrays = {FILES[0]: rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
              FILES[1]: (np.arange(30) % 10).astype(np.uint8),
              FILES[2]: rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
              FILES[3]: (np.arange(10) % 10).astype(np.uint8)}
    arrays[FILES[0]], arrays[FILES[1]] = arrays[FILES[1]], arrays[FILES[0]]
    for stem, array in arrays.items():
        write_idx(tmp_path / (stem + ".gz"), array)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz' holds 1-d data.*look "
                                        r"swapped"):
        load_dataset("mnist", tmp_path, val_size=5)


@pytest.mark.parametrize("y, shown", [
    (np.zeros((6, 1), np.int64), r"shape \(6, 1\) and dtype int64"),
    (np.zeros(6, np.float32), r"shape \(6,\) and dtype float32"),
])
def test_labels_must_be_1d_integers(y, shown):
    with pytest.raises(DataError, match=rf"`y_train` has {shown}; pass integer labels of shape"):
        validate_arrays("train", np.zeros((6, 4), np.float32), y, n_classes=3)


@pytest.mark.parametrize("name, value, message", [
    ("momentum", -0.1, "`momentum`=-0.1 must be a finite number >= 0"),
    ("weight_decay", -1e-4, "`weight_decay`=-0.0001 must be a finite number >= 0"),
    ("chunk", 0, "`chunk`=0 must be a positive integer"),
    ("eval_batch", 0, "`eval_batch`=0 must be a positive integer"),
])
def test_training_settings_out_of_range(name, value, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(**{name: value})


@pytest.fixture(scope="module")
def net():
    m = eqdyn.LayeredHopfield((3, 4, 2), "sigmoid", "gradient", key=jax.random.PRNGKey(0),
                              dtype=jnp.float64)
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(5, 3)))
    d = jax.nn.one_hot(jnp.arange(5) % 2, 2, dtype=jnp.float64)
    return m, x, d, m.init_state(5, jnp.float64)


_CFG = EPConfig(beta=0.5, variant="one-sided")
#: every estimator of eqdyn.learning, called as a user would
ESTIMATORS = {
    "ep": lambda m, x, d, s0: ep_gradient(m, x, d, s0, _CFG),
    "cep": lambda m, x, d, s0: continual_ep_step(m, x, d, s0, _CFG, 0.01),
    "rbp": lambda m, x, d, s0: rbp_gradient(m, x, d, s0),
    "bptt": lambda m, x, d, s0: bptt_gradient(m, x, d, s0, dt=0.5, n_steps=4),
    "chl": lambda m, x, d, s0: chl_gradient(m, x, d, s0),
    "backprop": lambda m, x, d, s0: feedforward_backprop_gradient(m, x, d),
}


@pytest.mark.parametrize("algo", ESTIMATORS)
def test_estimators_refuse_x_and_d_of_different_batches(net, algo):
    m, x, d, s0 = net
    with pytest.raises(ConfigError, match=r"first dimensions are `x`: 5, `d`: 4.*same batch"):
        ESTIMATORS[algo](m, x, d[:4], s0)


@pytest.mark.parametrize("algo", ["ep", "cep", "rbp", "bptt", "chl"])
def test_estimators_refuse_nan_targets_and_initial_states(net, algo):
    m, x, d, s0 = net
    with pytest.raises(ConfigError, match=r"`d` has 1 non-finite values \(NaN/inf\).*Pass finite"):
        ESTIMATORS[algo](m, x, d.at[2, 1].set(jnp.nan), s0)
    bad = (s0[0], s0[1].at[0].set(jnp.inf))
    with pytest.raises(ConfigError, match=r"`s0\[1\]` has 2 non-finite values"):
        ESTIMATORS[algo](m, x, d, bad)


def test_under_jit_only_the_shapes_are_checked(net):
    # inside a trace values are unknown; the shape check still runs (at trace time)
    m, x, d, s0 = net
    f = jax.jit(lambda x, d: ep_gradient(m, x, d, s0, _CFG)[0])
    with pytest.raises(ConfigError, match="`x`: 5, `d`: 4"):
        f(x, d[:4])


def test_unwritable_run_directory(tmp_path: Path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cfg = resolve_config(arch="64-16-10", epochs=1)
    with pytest.raises(CheckpointError, match=r"`run_dir` '.*a_file/run' cannot be created or "
                                              r"written \(Not a directory\); choose a folder"):
        train(cfg, run_dir=blocker / "run", progress=None)


def test_resuming_a_cosine_run_with_more_epochs_is_refused_before_training(tmp_path: Path):
    # the refusal alone (the integration tier's test of it trains a run first)
    saved = resolve_config(epochs=1, arch="64-16-10", schedule="cosine", variant="one-sided")
    (tmp_path / "config.json").write_text(json.dumps(saved.to_json()))
    check_resume(saved, tmp_path, resume=True)
    with pytest.raises(CheckpointError, match=r"epochs \(schedule='cosine' decays over them\): "
                                              r"saved 1 vs now 2"):
        check_resume(dataclasses.replace(saved, epochs=2), tmp_path, resume=True)
