"""benchmarks/rescore.py: a run's last checkpoint scored again at another tolerance."""

import json

import pytest
from helpers import load_benchmark

from eqdyn.learning import resolve_config, train


@pytest.fixture(scope="module")
def rescore():
    return load_benchmark("rescore")


def test_at_the_runs_own_tolerance_it_gives_the_runs_scores(rescore, tmp_path):
    cfg = resolve_config(dataset="digits", arch="64-32-10", backend="blocks", epochs=2,
                         eval_persistent=True, tol=1e-2)
    metrics = train(cfg, run_dir=tmp_path / "run", progress=None)
    out = tmp_path / "same.json"
    assert rescore.main([str(tmp_path / "run"), "--tol", "1e-2", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["run_tol"] == 1e-2 and r["tol"] == 1e-2 and r["epochs"] == 2
    s = r["splits"]
    # the final evaluation relaxed every example from its own particle, and from zero
    assert s["train"]["from_particles"]["error"] == pytest.approx(metrics["train_error"], abs=1e-12)
    assert s["test"]["from_particles"]["error"] == pytest.approx(metrics["test_error"], abs=1e-12)
    assert 1 - s["val"]["from_particles"]["error"] == pytest.approx(metrics["val_accuracy"], abs=1e-12)
    assert s["test"]["from_zero"]["error"] == pytest.approx(metrics["from_zero"]["test_error"],
                                                            abs=1e-12)
    # tighter: more sweeps from zero, every relaxation converged
    tight = rescore.rescore(tmp_path / "run", 1e-5, progress=None)["splits"]
    assert tight["test"]["from_zero"]["mean_sweeps"] > s["test"]["from_zero"]["mean_sweeps"]
    assert all(v["converged"] == 1.0 for row in tight.values() for v in row.values()
               if isinstance(v, dict))


def test_without_particles_and_bad_input(rescore, tmp_path, capsys):
    cfg = resolve_config(dataset="digits", arch="64-32-10", backend="blocks", epochs=1,
                         persistent=False)
    train(cfg, run_dir=tmp_path / "run", progress=None)
    r = rescore.rescore(tmp_path / "run", 1e-3, progress=None)["splits"]
    assert all(set(row) == {"from_zero", "seconds"} for row in r.values())
    with pytest.raises(SystemExit):
        rescore.main([str(tmp_path / "run"), "--tol", "0"])
    assert "--tol 0.0 must be a positive finite number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        rescore.main([str(tmp_path / "nowhere")])
    assert "has no config.json" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()  # a config but no finished epoch yet
    (tmp_path / "empty" / "config.json").write_text((tmp_path / "run" / "config.json").read_text())
    with pytest.raises(SystemExit):
        rescore.main([str(tmp_path / "empty")])
    assert "has no checkpoint.npz yet" in capsys.readouterr().err
