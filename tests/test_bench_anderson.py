"""benchmarks/bench_anderson.py: plain against Anderson sweeps on a run's own particles."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_anderson  # noqa: E402

from eqdyn.learning import load_trained, resolve_config, train  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    cfg = resolve_config(dataset="digits", arch="64-32-10", backend="blocks", epochs=1,
                         eval_persistent=True)  # tracked val/test particles follow the training ones
    train(cfg, run_dir=run, progress=None)
    return run


def test_reads_the_training_particles_and_compares_fixed_points(run_dir, tmp_path):
    model, cfg, _ = load_trained(run_dir)
    from eqdyn.data import load_dataset

    n_train = load_dataset(cfg.dataset, cfg.data_dir, val_size=cfg.val_size).x_train.shape[0]
    parts = bench_anderson.training_particles(run_dir, model, cfg, n_train)
    assert [p.shape for p in parts] == [(n_train, n) for n in model.state_sizes]
    assert all(np.any(p != 0) for p in parts)  # relaxed states, not the zero start

    out = tmp_path / "anderson.json"
    assert bench_anderson.main(["--run-dir", str(run_dir), "--batches", "3", "--memories", "3",
                                "--repeats", "1", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["start"] == "particles" and r["epoch"] == 1 and r["batches"] == 3
    plain, acc = r["results"]
    assert plain["anderson"] == 0 and acc["anderson"] == 3
    for row in (plain, acc):
        assert row["converged"] == 1.0 and 0 < row["sweeps_mean"] <= row["sweeps_max"]
        assert row["ms_per_batch"] > 0
    # both stop within tol of a fixed point; on this small net it is the same one
    assert acc["max_state_diff_vs_plain"] < 10 * r["tol"]
    assert acc["prediction_differs_vs_plain"] == 0.0
    assert r["command"].startswith("python benchmarks/bench_anderson.py --run-dir")


def test_bad_arguments_name_the_problem(tmp_path):
    with pytest.raises(SystemExit, match="no config.json"):
        bench_anderson.main(["--run-dir", str(tmp_path), "--out", str(tmp_path / "a.json")])
    with pytest.raises(SystemExit, match="--memories '0'"):
        bench_anderson.main(["--run-dir", str(tmp_path), "--memories", "0"])
    with pytest.raises(SystemExit, match="comma-separated integers"):
        bench_anderson.main(["--run-dir", str(tmp_path), "--memories", "a,b"])
