"""The `eqdyn` command line, used as a newcomer would."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eqdyn.cli import main


def test_help_runs_as_a_program():
    out = subprocess.run([sys.executable, "-m", "eqdyn.cli", "train", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert "--preset" in out.stdout and "sb17-1h" in out.stdout


def test_derive_prints_equations_and_checks(capsys):
    assert main(["derive", "--arch", "6-5-4-3", "--activation", "sigmoid", "--check"]) == 0
    out = capsys.readouterr().out
    assert "dh_1/dt = -dF/dh_1" in out and "dF/dW_3" in out
    assert "-> OK" in out


def test_derive_latex_and_code(capsys):
    assert main(["derive", "--arch", "4-3-2", "--latex", "--code"]) == 0
    out = capsys.readouterr().out
    assert r"\rho'" in out and "def state_grads" in out and "_matmul(" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["derive", "--arch", "784-x-10"], "malformed"),
        (["derive", "--activation", "relu"], "not known"),
        (["train", "--lr", "a,b"], "comma-separated"),
        (["train", "--arch", "784-500-10"], "does not fit"),
        (["train", "--resume", "/nonexistent/run"], "no config.json"),
        (["train", "--dataset", "cifar"], "cifar"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err


def test_unknown_flag_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--wrong"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --wrong" in capsys.readouterr().err


def test_train_then_resume(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--arch", "64-16-10", "--epochs", "1", "--variant", "one-sided",
            "--beta", "0.5", "--lr", "0.2,0.1", "--batch-size", "10", "--run-dir", str(run)]
    assert main(argv) == 0
    first = json.loads((run / "metrics.json").read_text())
    assert first["epochs"] == 1 and len(first["history"]) == 1
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "epoch   2/2" in out
    second = json.loads((run / "metrics.json").read_text())
    assert second["epochs"] == 2 and [h["epoch"] for h in second["history"]] == [1, 2]
    # a run directory is never silently overwritten
    assert main(argv) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err


# Test accuracy after one epoch on digits, measured 2026-12-07: CHL 0.576 (hard sigmoid), RBP
# 0.677 and BPTT 0.572 (steep sigmoid, lr 0.5); chance is 0.1. RBP and BPTT with the hard
# sigmoid at the default rates (or the sigmoid at 0.1, 0.05) stay at chance (0.071) in one
# epoch, hence their settings here.
@pytest.mark.parametrize("algo, extra, floor", [
    ("chl", [], 0.45),
    ("rbp", ["--activation", "steep_sigmoid", "--lr", "0.5"], 0.5),
    ("bptt", ["--activation", "steep_sigmoid", "--lr", "0.5"], 0.45),
])
def test_train_other_learning_rules(algo, extra, floor, tmp_path):
    run = tmp_path / algo
    argv = ["train", "--algo", algo, "--arch", "64-16-10", "--epochs", "1", "--quiet",
            "--free-t1", "20", "--nudged-t1", "20", "--eval-t1", "50", "--run-dir", str(run),
            *extra]
    assert main(argv) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["config"]["algo"] == algo
    assert metrics["test_accuracy"] > floor, metrics["test_accuracy"]


def test_compare_same_initialisation_table(tmp_path, capsys):
    out = tmp_path / "cmp.json"
    argv = ["compare", "--algos", "ep,chl", "--arch", "64-16-10", "--epochs", "1",
            "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "algo" in text and "ep " in text and "chl" in text
    rows = json.loads(out.read_text())["rows"]
    assert [r["algo"] for r in rows] == ["ep", "chl"]
    # both learn: measured 2026-12-07, test accuracy EP 0.478, CHL 0.556 (chance 0.1)
    assert rows[0]["test_accuracy"] > 0.35 and rows[1]["test_accuracy"] > 0.4, rows
    assert rows[0]["config"]["seed"] == rows[1]["config"]["seed"]
    assert rows[0]["config"]["variant"] == "one-sided" and rows[1]["config"]["algo"] == "chl"


def test_compare_unknown_rule(capsys):
    assert main(["compare", "--algos", "ep,hebb"]) == 2
    assert "hebb" in capsys.readouterr().err


def test_resume_a_custom_energy_run(tmp_path, capsys):
    # config.json records the energy file's sha256 beside the settings; --resume reads it back
    run = tmp_path / "run"
    src = Path(__file__).resolve().parents[1] / "derivations" / "energies" / "lateral_skip_ce.py"
    assert main(["train", "--energy", str(src), "--arch", "64-16-16-10", "--epochs", "1",
                 "--lr", "0.05", "--batch-size", "50", "--run-dir", str(run)]) == 0
    assert "energy_sha256" in json.loads((run / "config.json").read_text())
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert "epoch   2/2" in capsys.readouterr().out


def test_resume_guards(tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", "--arch", "64-16-10", "--variant", "one-sided", "--quiet"]
    assert main(base + ["--epochs", "1", "--run-dir", str(run)]) == 0
    # the checkpoint file alone carries epoch and history (checkpoint.json is only a copy)
    (run / "checkpoint.json").unlink()
    assert main(["train", "--resume", str(run), "--epochs", "0"]) == 2
    assert "must be a positive integer" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--preset", "sb17-1h"]) == 2
    assert "cannot be combined with `--resume`" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert json.loads((run / "metrics.json").read_text())["history"][-1]["epoch"] == 2
    assert main(["train", "--resume", str(run), "--epochs", "1"]) == 2
    assert "below the 2 epochs this run has completed" in capsys.readouterr().err
    assert json.loads((run / "config.json").read_text())["epochs"] == 2  # not rewritten


def test_invalid_formulation_writes_nothing(tmp_path, capsys):
    run = tmp_path / "bad"
    argv = ["train", "--formulation", "leaky", "--activation", "sigmoid", "--run-dir", str(run)]
    assert main(argv) == 2
    assert "needs a cost that acts on the rates" in capsys.readouterr().err
    assert not run.exists()
