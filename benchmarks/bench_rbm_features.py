"""MNIST classification from an RBM's hidden units: logistic regression on `p(h = 1 | x)` of a
run of `eqdyn rbm train`, beside logistic regression on the raw binarised pixels.

Usage (from the repository root):

    python benchmarks/bench_rbm_features.py RUN_DIR [--data-dir DIR] [--max-iter 200]
        [--out benchmarks/results/rbm_features.json]

Both classifiers are scikit-learn's `LogisticRegression` (lbfgs, `--max-iter` iterations) on
the 50,000 training images and scored on the 10,000 test images, thresholded at 0.5 as in
`eqdyn rbm`. One BLAS thread (contention on a shared machine, see bench_rbm.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def main(argv=None):
    from sklearn.linear_model import LogisticRegression

    from eqdyn.data import load_dataset
    from eqdyn.models import BoltzmannMachine
    from eqdyn.symbolic import boltzmann_energy

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--data-dir", default=os.environ.get("EQDYN_DATA_DIR",
                                                         "/work/shared/data/mnist"))
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--out", default="benchmarks/results/rbm_features.json")
    a = ap.parse_args(argv)
    ds = load_dataset("mnist", a.data_dir, val_size=0)
    xtr, xte = (ds.x_train > 0.5).astype(np.float32), (ds.x_test > 0.5).astype(np.float32)
    cfg = json.loads((Path(a.run) / "config.json").read_text())
    with np.load(Path(a.run) / "checkpoint.npz") as z:
        params = tuple(jnp.asarray(z[f"param_{i}"]) for i in range(3))
    rbm = BoltzmannMachine(params, boltzmann_energy((784, cfg["hidden"])))
    feat = jax.jit(lambda m, x: m.system.prob_on((x, jnp.zeros((x.shape[0], cfg["hidden"]))),
                                                 m.params)[1])
    out = {"run": str(a.run), "config": cfg, "max_iter": a.max_iter}
    for name, (tr, te) in {"rbm_features": (np.asarray(feat(rbm, jnp.asarray(xtr))),
                                            np.asarray(feat(rbm, jnp.asarray(xte)))),
                           "raw_pixels": (xtr, xte)}.items():
        t = time.perf_counter()
        clf = LogisticRegression(max_iter=a.max_iter).fit(tr, ds.y_train)
        out[name] = {"test_error": float(1 - clf.score(te, ds.y_test)),
                     "seconds": time.perf_counter() - t, "n_iter": int(clf.n_iter_[0])}
        print(name, out[name], flush=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
