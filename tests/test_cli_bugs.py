"""Issue 25: the bugs (`--dataset` in compare and sweep, a negative `val_loss`), `--tol 0`, and
the command line as a newcomer meets it (help, a wrong flag, `--out`, plots, `--resume`)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqdyn.cli import main
from eqdyn.data import load_dataset
from eqdyn.dynamics import RelaxConfig
from eqdyn.training import evaluate, load_trained
from eqdyn.models import LayeredHopfield

SMALL = ["--arch", "64-16-10", "--epochs", "1", "--batch-size", "50"]


def test_compare_with_a_dataset_name(tmp_path, capsys):
    # `--dataset digits` reached compare()'s `dataset=` (a loaded Dataset): AttributeError
    argv = ["compare", "--algos", "ep,rbp", "--dataset", "digits", *SMALL, "--out", str(tmp_path)]
    assert main(argv) == 0
    rows = json.loads((tmp_path / "compare.json").read_text())["rows"]
    assert [r["algo"] for r in rows] == ["ep", "rbp"]
    assert all(r["config"]["dataset"] == "digits" for r in rows)
    assert _is_png(tmp_path / "compare.png")


def test_sweep_with_a_dataset_name(tmp_path):
    out = tmp_path / "sweep.json"
    argv = ["sweep", "--seeds", "2", "--dataset", "digits", *SMALL, "--quiet", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["dataset"] == "digits" and len(result["runs"]) == 2


def test_cost_rows_is_the_cost_of_each_example():
    # the cost of row i alone, by hand: 1/2 |y_i - d_i|^2 (it summed (y_i - d) over the batch)
    model = LayeredHopfield((4, 5, 3), "hard_sigmoid", key=jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(6, 4)), jnp.float32)
    d = jax.nn.one_hot(jnp.arange(6) % 3, 3)
    states = tuple(jnp.asarray(rng.uniform(size=(6, n)), jnp.float32) for n in (5, 3))
    got = np.asarray(model.system.cost_rows(states, model.params, model.inputs(x, d)))
    hand = 0.5 * np.sum((np.asarray(states[-1]) - np.asarray(d)) ** 2, axis=-1)
    np.testing.assert_allclose(got, hand, rtol=1e-6)  # measured: equal to float32 rounding


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_val_loss_is_the_mean_cost_computed_by_hand(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", *SMALL, "--quiet", "--out", str(run)]) == 0
    assert _is_png(run / "curves.png")
    # resuming a finished run: nothing to train, said so, nothing rewritten
    before = (run / "metrics.json").read_text()
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert "nothing left to train" in out and "--epochs 11" in out
    assert (run / "metrics.json").read_text() == before
    metrics = json.loads((run / "metrics.json").read_text())
    val_loss = metrics["history"][-1]["val_loss"]
    assert val_loss > 0  # it was -0.177
    model, cfg, _ = load_trained(run)
    data = load_dataset(cfg.dataset, cfg.data_dir, val_size=cfg.val_size)
    rc = RelaxConfig(solver=cfg.solver, dt0=cfg.dt0, tol=cfg.tol, t1=cfg.eval_t1,
                     max_steps=cfg.max_steps, on_failure="ignore", backend=cfg.backend)
    x, y = data.x_val, data.y_val
    zeros = tuple(np.asarray(a) for a in model.init_state(x.shape[0], jnp.float32))
    res = evaluate(model, x, y, rc, s0=zeros)
    out = np.asarray(model.output(tuple(jnp.asarray(a) for a in res["states"]), jnp.asarray(x)))
    hand = 0.5 * np.sum((out - np.eye(10)[y]) ** 2, axis=-1)
    assert res["loss"] == pytest.approx(hand.mean(), rel=1e-5)
    # the same relaxation as the trainer's evaluation: metrics.json holds the same number
    assert val_loss == pytest.approx(hand.mean(), rel=1e-4)


@pytest.mark.parametrize("backend", ["diffrax", "fused", "blocks"])
def test_tol_zero_runs_the_full_horizon(backend):
    # tol 0: no steady-state test, a fixed t1/dt0 steps (the papers' protocol), converged
    from eqdyn.dynamics import relax

    model = LayeredHopfield((4, 5, 3), "hard_sigmoid", key=jax.random.PRNGKey(0))
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 4)), jnp.float32)
    cfg = RelaxConfig(dt0=0.5, t1=40.0, tol=0.0, backend=backend, on_failure="raise")
    res = relax(model, x, config=cfg)
    assert int(res.steps) == 80 and bool(res.converged)
    # the same network at rest well before: a positive tol stops early
    early = relax(model, x, config=RelaxConfig(dt0=0.5, t1=40.0, tol=5e-2, backend=backend))
    assert int(early.steps) < 80


def test_tol_zero_with_an_adaptive_solver_names_the_fix():
    from eqdyn._errors import ConfigError

    with pytest.raises(ConfigError, match="rtol"):
        RelaxConfig(solver="tsit5", tol=0.0)
    with pytest.raises(ConfigError, match="positive"):
        RelaxConfig(tol=-1.0)


def test_train_help_shows_the_config_defaults(capsys):
    from eqdyn.training import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split("options:", 1)[1].split())  # wrapped lines
    assert "None" not in text
    default = TrainConfig()
    for flag, value in (("--epochs EPOCHS", default.epochs), ("--tol TOL", default.tol),
                        ("--batch-size BATCH_SIZE", default.batch_size),
                        ("--seed SEED", default.seed), ("--max-steps MAX_STEPS", 4096)):
        after = text.split(flag, 1)[1].split(" --", 1)[0]
        assert f"(default: {value})" in after, (flag, after)
    assert "free steps 12.3" in text  # the epilog explains the epoch line


@pytest.mark.parametrize("command", ["sweep", "compare", "derive", "plot", "analyze"])
def test_no_help_says_default_none(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "default: None" not in capsys.readouterr().out


def test_a_wrong_flag_names_the_close_one(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--bta", "0.5"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --bta" in err and "did you mean --beta?" in err
    assert "eqdyn train --help" in err


def test_tol_zero_trains_fixed_step_counts_and_plot_overlays(tmp_path, capsys):
    runs = []
    for tol in ("0", "1e-3"):
        runs.append(tmp_path / f"tol{tol}")
        assert main(["train", *SMALL, "--quiet", "--tol", tol, "--free-t1", "10",
                     "--nudged-t1", "5", "--out", str(runs[-1])]) == 0
    h = json.loads((runs[0] / "metrics.json").read_text())["history"][-1]
    assert h["free_steps"] == 20 and h["nudged_steps"] == 10 and h["free_converged"] == 1.0
    out = tmp_path / "both.png"
    assert main(["plot", *map(str, runs), "--out", str(out)]) == 0
    assert _is_png(out)
    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics.json" in capsys.readouterr().err


@pytest.mark.parametrize("algo, key", [("bptt", "free_converged"), ("cep", "nudged_converged")])
def test_tol_zero_counts_fixed_counts_as_converged_in_every_rule(algo, key, tmp_path):
    # bptt's unrolled free phase and continual EP's nudged steps are fixed counts already; with
    # tol 0 they are what was asked for, not relaxations that failed to settle
    run = tmp_path / algo
    assert main(["train", "--algo", algo, *SMALL, "--quiet", "--tol", "0", "--free-t1", "10",
                 "--nudged-t1", "2", "--lr", "0.01,0.005", "--out", str(run)]) == 0
    h = json.loads((run / "metrics.json").read_text())["history"][-1]
    assert h[key] == 1.0
