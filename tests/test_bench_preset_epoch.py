"""benchmarks/bench_preset_epoch.py: a preset's epoch timed on synthetic data of its shape."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_preset_epoch as bpe  # noqa: E402


def test_epoch_batches_follows_the_trainer_s_chunks():
    assert bpe.epoch_batches(50_000, 128, 500) == 390  # one chunk of 390
    assert bpe.epoch_batches(60_000, 20, 500) == 3000  # six chunks of 500
    # 1,200 batches in chunks of at most 500: three chunks of 400
    assert bpe.epoch_batches(1_200 * 20 + 7, 20, 500) == 1_200
    assert bpe.epoch_batches(1_201 * 20, 20, 500) == 1_200  # 3 x 400, one batch left out


def test_synthetic_dataset_has_the_loader_s_shape():
    ds = bpe.synthetic_dataset("cifar100", 6)
    assert ds.x_train.shape == (6, 3072) and ds.input_shape == (3, 32, 32)
    assert ds.n_classes == 100 and ds.x_val.shape == (0, 3072) and ds.x_test.shape == (2, 3072)
    assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1


# l21-cifar10 is left out: compiling its training step took over 10 minutes on the 2 loaded
# cores (2026-12-08, load 5-6; 131 s at a lower load in test_conv.py), whatever the horizons
@pytest.mark.parametrize("preset, batches", [("e19-pconv-mnist", 2)])
def test_preset_epoch_is_timed_and_extrapolated(preset, batches, tmp_path):
    out = tmp_path / "r.json"
    assert bpe.main([preset, "--batches", str(batches), "--set", "free_t1=2", "--set",
                     "nudged_t1=1", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["preset"] == preset and r["overrides"] == dict(free_t1=2, nudged_t1=1)
    assert r["batches_timed"] == batches and r["free_steps"] == 2 and r["nudged_steps"] == 1
    assert 0 < r["s_per_batch"] < r["first_epoch_train_s"]  # the first epoch compiles
    assert math.isclose(r["s_per_batch"], r["second_epoch_train_s"] / batches)
    want = {"e19-pconv-mnist": (60_000, 20, 3000, 40), "l21-cifar10": (50_000, 128, 390, 120)}
    n, bs, nb, epochs = want[preset]
    assert (r["real_epoch_examples"], r["batch_size"], r["real_epoch_batches"],
            r["preset_epochs"]) == (n, bs, nb, epochs)
    assert math.isclose(r["s_per_epoch"], r["s_per_batch"] * nb)
    assert math.isclose(r["hours_for_preset_epochs"], r["s_per_epoch"] * epochs / 3600)
    assert r["jax_backend"] == "cpu" and r["device_kind"] == "cpu"
    assert r["command"].endswith(f"--out {out}") and len(r["load_average_end"]) == 3


def test_platform_name_is_a_file_name_part():
    assert bpe.platform_name("cpu", "cpu") == "cpu"
    assert bpe.platform_name("gpu", "NVIDIA H100 80GB HBM3") == "gpu-nvidia-h100-80gb-hbm3"
