"""benchmarks/bench_wall.py: one timed `eqdyn train` process, and a failing one."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_wall  # noqa: E402


def _eqdyn():
    return [sys.executable, "-m", "eqdyn.cli"]


def test_one_run_times_a_whole_training_process():
    r = bench_wall.one_run([*_eqdyn(), "train", "--dataset", "digits", "--arch", "64-16-10",
                            "--epochs", "1"])
    assert r["wall_s"] >= r["run_wall_s"] > 0  # the process includes the run
    assert r["user_s"] > 0 and r["max_rss_mb"] > 0
    assert 0 <= r["test_error"] <= 1 and 0 <= r["train_error"] <= 1
    assert r["cpu_steal_fraction"] is None or 0 <= r["cpu_steal_fraction"] <= 1


def test_one_run_reports_a_failing_command():
    with pytest.raises(SystemExit, match="failed"):
        bench_wall.one_run([*_eqdyn(), "train", "--dataset", "digits", "--epochs", "0"])


def test_one_run_passes_its_environment(tmp_path):
    # a stand-in for `eqdyn train` that reports the variable it was given as its error
    fake = tmp_path / "fake_train.py"
    fake.write_text(
        "import json, os, sys\n"
        "d = sys.argv[sys.argv.index('--run-dir') + 1]\n"
        "os.makedirs(d)\n"
        "e = float(os.environ.get('EQDYN_FAKE_ERROR', '-1'))\n"
        "json.dump(dict(test_error=e, train_error=e, wall_seconds=0.01),"
        " open(os.path.join(d, 'metrics.json'), 'w'))\n")
    r = bench_wall.one_run([sys.executable, str(fake)], env={"EQDYN_FAKE_ERROR": "0.25"})
    assert r["test_error"] == 0.25
    assert bench_wall.one_run([sys.executable, str(fake)])["test_error"] == -1


def test_with_env_needs_key_value(capsys):
    with pytest.raises(SystemExit):
        bench_wall.main(["--with-env", "XLA_FLAGS"])
    assert "give KEY=VALUE" in capsys.readouterr().err
