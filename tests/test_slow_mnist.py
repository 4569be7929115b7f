"""The paper's MNIST setting end to end (slow: about 10-25 minutes on 2 cores).

Run with `pytest -m slow tests/test_slow_mnist.py`.
"""

import pytest
from helpers import SHARED_DATA

from eqdyn.learning import resolve_config, train

DATA = SHARED_DATA / "mnist"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"MNIST IDX files not found at {DATA}"),
]


def test_sb17_1h_reaches_the_papers_errors(tmp_path):
    cfg = resolve_config(preset="sb17-1h", data_dir=str(DATA))
    metrics = train(cfg, run_dir=tmp_path / "run", progress=None)
    # Scellier & Bengio 2017, Table 2: 0.00% train error, 2-3% test error (784-500-10)
    assert metrics["train_error"] < 0.005
    assert metrics["test_error"] <= 0.025
    assert metrics["epochs"] == 25
