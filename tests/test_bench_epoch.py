"""benchmarks/bench_epoch.py end to end on the bundled digits, with a deeper `--arch`."""

import json

import pytest
from helpers import load_benchmark


def _bench_epoch():
    return load_benchmark("bench_epoch")


def test_quick_run_on_a_deeper_net(tmp_path):
    mod = _bench_epoch()
    out = tmp_path / "epoch.json"
    sizes = (64, 32, 32, 10)
    assert mod.main(["--quick", "--arch", "-".join(map(str, sizes)), "--lr", "0.1,0.05,0.02",
                     "--numpy-batches", "4", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["config"]["arch"] == "64-32-32-10" and r["config"]["lr"] == [0.1, 0.05, 0.02]
    # the FLOP count is the deep net's: x W_1, then W_2 and W_3 twice per field evaluation
    B = r["config"]["batch_size"]
    assert r["flops_per_batch"]["field_eval"] == 4 * B * (32 * 32 + 32 * 10)
    # NumPy ran the same block sweeps on the same batches: same step counts, weights that
    # differ only by float32 rounding
    q = r["like_for_like"]
    assert q["eqdyn_free_steps_mean"] > 1
    assert q["numpy_free_steps_mean"] == pytest.approx(q["eqdyn_free_steps_mean"], rel=0.1)
    assert q["max_abs_param_diff_after_n_batches"] < 1e-4 * max(1.0, q["max_abs_param"])
    e = r["eqdyn"]
    assert 0 < e["fraction_of_jax_peak_executed"] < 1.5
    assert e["epoch2_train_only_s"] > 0 and r["ratios"]["numpy_epoch_over_eqdyn_epoch"] > 0


def test_a_deeper_arch_needs_its_rates(tmp_path, capsys):
    mod = _bench_epoch()
    with pytest.raises(SystemExit):
        mod.main(["--quick", "--arch", "64-32-32-10", "--out", str(tmp_path / "e.json")])
    err = capsys.readouterr().err
    assert "3 weight layers" in err and "give one rate or 3" in err
    assert not (tmp_path / "e.json").exists()
