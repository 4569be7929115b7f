"""Regressions of issue 25: `--dataset` in every subcommand, and `val_loss` computed by hand."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqdyn.cli import main
from eqdyn.data import load_dataset
from eqdyn.dynamics import RelaxConfig
from eqdyn.learning import evaluate, load_trained
from eqdyn.models import LayeredHopfield

SMALL = ["--arch", "64-16-10", "--epochs", "1", "--batch-size", "50"]


def test_compare_with_a_dataset_name(tmp_path, capsys):
    # `--dataset digits` reached compare()'s `dataset=` (a loaded Dataset): AttributeError
    out = tmp_path / "cmp.json"
    argv = ["compare", "--algos", "ep,rbp", "--dataset", "digits", *SMALL, "--out", str(out)]
    assert main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["algo"] for r in rows] == ["ep", "rbp"]
    assert all(r["config"]["dataset"] == "digits" for r in rows)


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


def test_val_loss_is_the_mean_cost_computed_by_hand(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *SMALL, "--quiet", "--run-dir", str(run)]) == 0
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
