"""eqdyn's RBM (PCD) against scikit-learn's `BernoulliRBM` on the same binarised MNIST.

Both train with persistent CD, one Gibbs step per update, as many persistent chains as the
batch size, plain SGD at the same learning rate, the same hidden units, batch size and epochs,
from weights drawn from N(0, 0.01^2) (scikit-learn's initialisation). Reported side by side, in
one run: seconds per epoch (eqdyn: epoch 1 includes compilation and is reported apart; the
steady state is the mean of the later epochs) and the pseudo-likelihood of the training and
test images by scikit-learn's own `score_samples` (eqdyn's weights are copied into a
`BernoulliRBM`, so one evaluator scores both, with the same random corruptions).

Differences that remain: scikit-learn's negative statistics use the hidden probabilities,
eqdyn's the sampled hidden states; scikit-learn visits the batches in order, eqdyn shuffles.

Usage (from the repository root):

    python benchmarks/bench_rbm.py                       # writes benchmarks/results/rbm.json
    python benchmarks/bench_rbm.py --hidden 500 --epochs 5 --n-train 50000
"""

from __future__ import annotations

import os

# scikit-learn runs on NumPy's OpenBLAS; on this shared 2-core machine its default of one
# thread per core was measured 25x slower (10.6 s against 0.41 s for the same epoch) from
# contention, so the comparison gives it one thread unless BLAS_THREADS says otherwise
# (set before NumPy is imported). XLA's CPU matmuls get one thread too (`--xla_cpu_multi_
# thread_eigen=false`), so that both libraries run on one core each; BLAS_THREADS=0 leaves
# both at their defaults.
_BLAS = os.environ.get("BLAS_THREADS", "1")
if _BLAS != "0":
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, _BLAS)
    if _BLAS == "1":
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_cpu_multi_thread_eigen=false").strip()

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402


def _load(n_train: int, n_test: int):
    from eqdyn.data import load_dataset

    ds = load_dataset("mnist", os.environ.get("EQDYN_DATA_DIR", "/work/shared/data/mnist"),
                      val_size=0)
    xtr = (ds.x_train[:n_train] > 0.5).astype(np.float32)
    xte = (ds.x_test[:n_test] > 0.5).astype(np.float32)
    return xtr, xte


def _score(params, xtr, xte, seed=0):
    """scikit-learn's pseudo-likelihood of `params` = (W (n_v, n_h), b_v, b_h)."""
    from sklearn.neural_network import BernoulliRBM

    W, bv, bh = (np.asarray(p, np.float64) for p in params)
    rbm = BernoulliRBM(n_components=W.shape[1], random_state=seed)
    rbm.components_ = W.T.copy()
    rbm.intercept_visible_ = bv.reshape(-1).copy()
    rbm.intercept_hidden_ = bh.reshape(-1).copy()
    rbm.n_features_in_ = W.shape[0]
    rbm._n_features_out = W.shape[1]
    out = {}
    for name, x in (("train", xtr), ("test", xte)):
        rbm.random_state = seed  # the same corruptions for every model
        out[name] = float(np.mean(rbm.score_samples(x.astype(np.float64))))
    return out


def run_sklearn(xtr, hidden, lr, batch, epochs, seed):
    """`fit` with `n_iter=epochs`, timed as a whole (its epochs are alike: no compilation)."""
    from sklearn.neural_network import BernoulliRBM

    rbm = BernoulliRBM(n_components=hidden, learning_rate=lr, batch_size=batch, n_iter=epochs,
                       random_state=seed)
    t0 = time.perf_counter()
    rbm.fit(xtr)
    per_epoch = (time.perf_counter() - t0) / epochs
    params = (rbm.components_.T, rbm.intercept_visible_, rbm.intercept_hidden_)
    return params, [per_epoch] * epochs


def run_eqdyn(xtr, hidden, lr, batch, epochs, seed):
    from eqdyn.learning import PCD
    from eqdyn.models import BoltzmannMachine
    from eqdyn.training import fit_boltzmann

    key = jax.random.PRNGKey(seed)
    rbm = BoltzmannMachine.layered((xtr.shape[1], hidden), key=key, scale=0.01)
    times = []
    rbm, _, hist, _ = fit_boltzmann(rbm, jnp.asarray(xtr), PCD(1), optax.sgd(lr), epochs=epochs,
                                 batch_size=batch, key=key,
                                 progress=lambda r: times.append(r["seconds"]))
    W, bv, bh = rbm.params  # (W_1, b_0, b_1)
    return (np.asarray(W), np.asarray(bv), np.asarray(bh)), times, hist


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=20000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--note", default="")
    ap.add_argument("--out", default="benchmarks/results/rbm.json")
    a = ap.parse_args(argv)
    xtr, xte = _load(a.n_train, a.n_test)
    sk_params, sk_times = run_sklearn(xtr, a.hidden, a.lr, a.batch, a.epochs, a.seed)
    eq_params, eq_times, eq_hist = run_eqdyn(xtr, a.hidden, a.lr, a.batch, a.epochs, a.seed)
    steady = eq_times[1:] or eq_times
    out = {
        "settings": {"hidden": a.hidden, "learning_rate": a.lr, "batch_size": a.batch,
                     "epochs": a.epochs, "n_train": a.n_train, "n_test": a.n_test,
                     "binarised": "pixel > 0.5", "rule": "PCD-1, chains = batch size, SGD"},
        "sklearn": {"seconds_per_epoch": sk_times, "mean_seconds_per_epoch": float(np.mean(
            sk_times)), "pseudo_likelihood": _score(sk_params, xtr, xte)},
        "eqdyn": {"seconds_per_epoch": eq_times,
                  "steady_seconds_per_epoch": float(np.mean(steady)),
                  "reconstruction_error": [h["loss"] for h in eq_hist],
                  "pseudo_likelihood": _score(eq_params, xtr, xte)},
        "speedup_steady": float(np.mean(sk_times) / np.mean(steady)),
        "machine": {"platform": platform.platform(), "jax_backend": jax.default_backend(),
                    "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "note": a.note,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
