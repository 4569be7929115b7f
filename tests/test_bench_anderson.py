"""benchmarks/bench_anderson.py: plain against Anderson sweeps on a run's own particles."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_anderson  # noqa: E402

from eqdyn._errors import CheckpointError  # noqa: E402
from eqdyn.data import load_dataset  # noqa: E402
from eqdyn.learning import (  # noqa: E402
    checkpoint_layout,
    load_run,
    load_trained,
    resolve_config,
    train,
)
from eqdyn.training import load_checkpoint_leaves  # noqa: E402

SETTINGS = {
    "sgd, tracked val/test": dict(eval_persistent=True),  # tracked leaves after the particles
    "adam, cosine": dict(optimizer="adam", lr=1e-3, schedule="cosine"),
    "no particles": dict(persistent=False),
}


@pytest.fixture(scope="module", params=list(SETTINGS))
def run(request, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    cfg = resolve_config(dataset="digits", arch="64-32-10", backend="blocks", epochs=1,
                         **SETTINGS[request.param])
    train(cfg, run_dir=run_dir, progress=None)
    return run_dir, cfg


def test_reads_the_training_particles(run):
    run_dir, cfg = run
    if not cfg.persistent:
        pytest.skip("no particles kept")
    model, cfg, _ = load_trained(run_dir)
    n_train = load_dataset(cfg.dataset, cfg.data_dir, val_size=cfg.val_size).x_train.shape[0]
    leaves, _ = load_checkpoint_leaves(run_dir)
    parts = bench_anderson.training_particles(leaves, model, cfg, n_train, run_dir)
    # the same arrays as the checkpoint restored through the trainer's own state template
    state = load_run(run_dir).state
    assert len(parts) == len(state["particles"]) == len(model.state_sizes)
    for a, b in zip(parts, state["particles"]):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert all(np.any(p != 0) for p in parts)  # relaxed states, not the zero start
    with pytest.raises(SystemExit, match=r"expected the training particles \[\(7, 32\)"):
        bench_anderson.training_particles(leaves, model, cfg, 7, run_dir)


def test_checkpoint_layout_finds_the_parameters(run):
    # the trainer's `load_trained` and the benchmark share `checkpoint_layout`: pin its params
    # slice against the checkpoint restored through the trainer's state template
    run_dir, cfg = run
    model, cfg, _ = load_trained(run_dir)
    leaves, _ = load_checkpoint_leaves(run_dir)
    state = load_run(run_dir).state
    params = leaves[checkpoint_layout(cfg, model)["params"]]
    assert len(params) == len(state["params"]) == len(model.params)
    for a, b in zip(params, state["params"]):
        np.testing.assert_array_equal(a, np.asarray(b))


def test_load_run_restores_every_split(run, tmp_path):
    run_dir, cfg = run
    r = load_run(run_dir)
    model, _, epoch = load_trained(run_dir)
    assert r.epoch == epoch == 1 and r.cfg == cfg
    for a, b in zip(r.model.params, model.params):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    expect = {"train"} if cfg.persistent else set()
    if cfg.eval_persistent:
        expect |= {"val", "test"}
    assert set(r.particles) == expect
    leaves, _ = load_checkpoint_leaves(run_dir)
    rest = leaves[checkpoint_layout(cfg, model)["particles"].start:]
    if cfg.persistent:  # the training particles, then the tracked ones in key order
        want = r.particles["train"] + (
            r.particles["test"] + r.particles["val"] if cfg.eval_persistent else ())
        assert len(rest) == len(want)
        for a, b in zip(rest, want):
            np.testing.assert_array_equal(a, np.asarray(b))
    for split, states in r.particles.items():
        n = getattr(r.dataset, f"x_{split}").shape[0]
        assert [s.shape for s in states] == [(n, k) for k in model.state_sizes]
    if cfg.persistent:  # another split of the data: the particles no longer fit
        other = load_dataset(cfg.dataset, cfg.data_dir, val_size=100)
        with pytest.raises(CheckpointError, match="shapes follow the data set"):
            load_run(run_dir, dataset=other)
    (tmp_path / "config.json").write_text((run_dir / "config.json").read_text())
    with pytest.raises(CheckpointError, match="no checkpoint.npz yet"):
        load_run(tmp_path)


def test_compares_plain_and_anderson_sweeps(run, tmp_path):
    run_dir, cfg = run
    out = tmp_path / "anderson.json"
    assert bench_anderson.main(["--run-dir", str(run_dir), "--batches", "3", "--memories", "3",
                                "--repeats", "1", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["start"] == ("particles" if cfg.persistent else "zero states")
    assert r["epoch"] == 1 and r["batches"] == 3 and r["cap"] == 100
    plain, acc = r["results"]
    assert plain["anderson"] == 0 and acc["anderson"] == 3
    for row in (plain, acc):
        assert row["converged"] == 1.0 and 0 < row["sweeps_mean"] <= row["sweeps_max"]
        assert row["ms_per_batch"] > 0
    # both stop at the steady-state test; on this small net at the same fixed point (the
    # state bound is a heuristic: tol bounds the residual, not the distance)
    assert acc["batches_compared"] == 3
    assert acc["max_state_diff_vs_plain"] < 50 * r["tol"]
    assert acc["prediction_differs_vs_plain"] == 0.0
    assert r["command"].startswith("python benchmarks/bench_anderson.py --run-dir")


def test_bad_arguments_name_the_problem(tmp_path):
    with pytest.raises(SystemExit, match="no config.json"):
        bench_anderson.main(["--run-dir", str(tmp_path), "--out", str(tmp_path / "a.json")])
    with pytest.raises(SystemExit, match="--memories '0'"):
        bench_anderson.main(["--run-dir", str(tmp_path), "--memories", "0"])
    with pytest.raises(SystemExit, match="--memories '33'.*1..32"):
        bench_anderson.main(["--run-dir", str(tmp_path), "--memories", "33"])
    with pytest.raises(SystemExit, match="comma-separated integers"):
        bench_anderson.main(["--run-dir", str(tmp_path), "--memories", "a,b"])
