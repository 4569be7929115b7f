"""Scaling out: data parallelism on a device mesh, jax.distributed, vmapped sweeps.

Multi-device and multi-process runs happen in subprocesses (tests/scale_worker.py): forcing
host devices (XLA_FLAGS) or joining a distributed job must not touch this test process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eqdyn import ConfigError
from eqdyn._distributed import check_devices, initialize, parse_devices, resolve_devices
from eqdyn.learning import resolve_config, train
from eqdyn.training import format_sweep_table, sweep
from eqdyn.training._sweep import _group_key

WORKER = Path(__file__).with_name("scale_worker.py")
ROOT = WORKER.parent.parent


def _run_worker(args, tmp_path, n_devices=None, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if n_devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, str(WORKER), *args, str(out)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_sharded_training_matches_one_device_step_by_step(tmp_path):
    r = _run_worker(["devices"], tmp_path, n_devices=4)
    assert r["device_count"] == 4
    # parameters after each of three batches, batch of 20 split over 4 devices vs one device
    assert len(r["step_diffs"]) == 3 and max(r["step_diffs"]) < 1e-6
    # the whole run (2 epochs of 3 batches, evaluation split over the devices too)
    assert r["train_diff"] < 1e-6
    assert r["accuracy"][0] == r["accuracy"][1]
    msg = r["indivisible_error"]
    assert "`batch_size`=20" in msg and "3 devices" in msg and "multiple of 3" in msg


def test_sweep_on_four_devices_matches_one(tmp_path):
    r = _run_worker(["sweep-devices"], tmp_path, n_devices=4)
    assert r["sweep_diff"] < 1e-6  # 6 runs, padded to 8 and split over 4 devices
    assert r["sweep_accuracy"][0] == r["sweep_accuracy"][1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_localhost_match_one_process(tmp_path):
    """jax.distributed with gloo CPU collectives: 2 processes x 1 device, batch split in two."""
    port = str(_free_port())
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("XLA_FLAGS", None)
    outs = [tmp_path / f"p{i}.json" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, str(WORKER), "process", str(i), "2", port,
                               str(outs[i])], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    r0, r1 = (json.loads(o.read_text()) for o in outs)
    assert r0["process_count"] == 2 and r0["device_count"] == 2
    assert r0["local_device_count"] == 1
    assert r0["sharded_params"] == r1["sharded_params"]  # one replicated model
    single = _run_worker(["single"], tmp_path)["single_params"]
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
               for a, b in zip(single, r0["sharded_params"]))
    assert diff < 1e-6


def test_devices_setting_is_checked():
    for bad in (0, -2, "two", 1.5, True):
        with pytest.raises(ConfigError, match="`devices`"):
            check_devices(bad)
    with pytest.raises(ConfigError, match="`devices`=0"):
        resolve_config(devices=0)
    with pytest.raises(ConfigError, match="`--devices`='x'"):
        parse_devices("x")
    assert parse_devices("all") == "all" and parse_devices("3") == 3
    import jax

    n = jax.device_count()
    with pytest.raises(ConfigError, match=f"only {n} cpu device"):
        resolve_devices(n + 1)
    with pytest.raises(ConfigError, match="xla_force_host_platform_device_count"):
        resolve_devices(n + 1)
    assert len(resolve_devices("all", divides=20)) == n


def test_devices_may_change_on_resume(tmp_path):
    from eqdyn import CheckpointError
    from eqdyn.training import check_resume

    saved = resolve_config(arch="64-16-10", epochs=2)
    (tmp_path / "config.json").write_text(json.dumps(saved.to_json()))
    # a resumed run may use other devices (the sharded step is checked equal to one device's)
    check_resume(dataclasses.replace(saved, devices=2), tmp_path, resume=True)
    # but not, say, another beta
    with pytest.raises(CheckpointError, match=r"different configuration: beta: saved 1\.0 vs now "
                                              r"0\.5\. Resume with the saved settings"):
        check_resume(dataclasses.replace(saved, beta=0.5), tmp_path, resume=True)


@pytest.mark.parametrize("kwargs, message", [
    (dict(coordinator="127.0.0.1:1234"), "`num_processes`, `process_id` missing"),
    (dict(coordinator="localhost", num_processes=2, process_id=0), "HOST:PORT"),
    (dict(coordinator="h:1", num_processes=0, process_id=0), "`num_processes`=0"),
    (dict(coordinator="h:1", num_processes=2, process_id=2), "0..1"),
])
def test_distributed_flags_are_checked(kwargs, message):
    args = dict(coordinator=None, num_processes=None, process_id=None) | kwargs
    with pytest.raises(ConfigError, match=message):
        initialize(**args)
    assert initialize(None, None, None) is False


@pytest.fixture(scope="module")
def tiny():
    from eqdyn.data import load_dataset

    data = load_dataset("digits", val_size=60)
    return dataclasses.replace(data, x_train=data.x_train[:60], y_train=data.y_train[:60],
                               x_test=data.x_test[:60], y_test=data.y_test[:60])


SWEEP = dict(arch="64-16-10", batch_size=20, epochs=2, backend="fused", eval_t1=50.0,
             eval_batch=100)


def test_vmapped_sweep_matches_runs_one_by_one(tiny):
    res = sweep(2, betas=[0.5, 1.0], lrs=["0.1,0.05", "0.2"], progress=None, dataset=tiny,
                **SWEEP)
    assert res["groups"] == 1 and len(res["runs"]) == 8 and len(res["settings"]) == 4
    for rec, model in zip(res["runs"], res["models"]):
        one = train(resolve_config(seed=rec["seed"], beta=rec["beta"], lr=tuple(rec["lr"]),
                                   **SWEEP), progress=None, dataset=tiny)
        for a, b in zip(one["model"].params, model.params):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
        assert rec["test_accuracy"] == one["test_accuracy"]
        assert rec["val_accuracy"] == one["val_accuracy"]
        assert [h["train_accuracy"] for h in rec["history"]] == [
            h["train_accuracy"] for h in one["history"]]
    s = res["settings"][0]
    vals = s["test_accuracy"]["values"]
    assert s["n_runs"] == 2 and s["test_accuracy"]["mean"] == pytest.approx(np.mean(vals))
    assert s["test_accuracy"]["std"] == pytest.approx(np.std(vals, ddof=1))
    table = format_sweep_table(res)
    assert len(table.splitlines()) == 5 and "±" in table


def test_static_values_make_separate_groups():
    base = resolve_config(arch="64-16-10")
    key = lambda **kw: _group_key(dataclasses.replace(base, **kw), 2)  # noqa: E731
    # seed, beta and lr are arrays in EP: one group
    assert key(seed=1, beta=0.5, lr=(0.1, 0.05)) == key(seed=2, beta=1.0, lr=(0.2, 0.2))
    # holomorphic EP's beta is the radius of a static circle: one group per beta
    holo = dict(variant="holomorphic", activation="sigmoid")
    assert key(beta=0.5, **holo) != key(beta=1.0, **holo)
    # the local rules move the weights with static rates: one group per lr
    assert key(algo="cep", variant="one-sided", lr=(0.1, 0.05)) != key(
        algo="cep", variant="one-sided", lr=(0.2, 0.1))
    assert key(algo="cep", variant="one-sided", beta=0.5) == key(
        algo="cep", variant="one-sided", beta=1.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(betas=[0.1, 0.5], algo="rbp"), "does not nudge"),
    (dict(arch="64-16-10,64-32-10"), "one sweep per value"),
    (dict(beta=0.5), "`beta`=0.5 is swept"),
    (dict(seeds=0), "`seeds`=0"),
    (dict(betas=[0.5, 0.5]), "repeats a setting"),
])
def test_impossible_sweeps_are_refused(kwargs, message, tiny):
    kwargs = dict(seeds=1, arch="64-16-10") | kwargs
    with pytest.raises(ConfigError, match=message):
        sweep(kwargs.pop("seeds"), progress=None, dataset=tiny, **kwargs)


@pytest.mark.parametrize("argv, message", [
    (["train", "--devices", "0"], "`--devices`='0'"),
    (["train", "--devices", "many"], "'all' or a positive integer"),
    (["train", "--coordinator", "127.0.0.1:12355"], "`num_processes`, `process_id` missing"),
    (["sweep", "--beta", "0.1,x"], "`--beta`='0.1,x' must be comma-separated"),
    (["sweep", "--algo", "chl", "--beta", "0.1,0.5"], "does not nudge"),
    (["sweep", "--arch", "64-16-10,64-32-10"], "one sweep per value"),
])
def test_cli_scale_errors(argv, message, capsys, tmp_path, monkeypatch):
    from eqdyn.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_devices_beyond_the_machine(capsys, tmp_path, monkeypatch):
    import jax

    from eqdyn.cli import main

    monkeypatch.chdir(tmp_path)
    n = jax.device_count() + 1
    assert main(["train", "--devices", str(n), "--epochs", "1", "--quiet"]) == 2
    assert f"`devices`={n} but only" in capsys.readouterr().err


def test_cli_sweep_writes_table_and_json(capsys, tmp_path):
    from eqdyn.cli import main

    out = tmp_path / "sweep.json"
    assert main(["sweep", "--seeds", "2", "--beta", "0.5,1.0", "--arch", "64-16-10",
                 "--epochs", "1", "--backend", "fused", "--eval-t1", "50", "--quiet",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "±" in text and "4 runs" in text
    data = json.loads(out.read_text())
    assert [s["beta"] for s in data["settings"]] == [0.5, 1.0]
    assert all(s["n_runs"] == 2 for s in data["settings"]) and len(data["runs"]) == 4
    assert data["command"].startswith("eqdyn ")
