"""eqdyn's RBM (PCD) against scikit-learn's `BernoulliRBM` on the same binarised MNIST.

Both train with persistent CD, one Gibbs step per update, as many persistent chains as the
batch size, plain SGD at the same learning rate, the same hidden units, batch size and epochs,
from weights drawn from N(0, 0.01^2) (scikit-learn's initialisation), in float32 (scikit-learn
fits in the dtype of its input, given float32), each on one CPU thread. Two settings in one
run: scikit-learn's defaults (batch 10, learning rate 0.1), where its per-batch Python work
counts, and batch 100. Reported side by side: seconds per epoch (eqdyn: epoch 1 includes
compilation and is reported apart; the steady state is the mean of the later epochs) and the
pseudo-likelihood of the training and test images by scikit-learn's own `score_samples`
(eqdyn's weights are copied into a `BernoulliRBM`, so one evaluator scores both, with the same
random corruptions).

The flop evidence: a PCD-1 update does five (B x 784) by (784 x H) sized matrix products (the
positive hidden means, one Gibbs sweep down and up, the two outer products of the gradient),
`10 B 784 H` flops. The run times those five products alone, as one compiled scan over an
epoch of batches (`matmul_only_seconds_per_epoch`), and one large product for the machine's
single-thread matmul rate (`peak_gflops`), and reports each library's achieved GFLOP/s and its
fraction of that rate. The machine's load average (`os.getloadavg`) is recorded before and
after: the machine is shared.

Differences that remain: scikit-learn's negative statistics use the hidden probabilities,
eqdyn's the sampled hidden states; scikit-learn visits the batches in order, eqdyn shuffles.

Usage (from the repository root):

    python benchmarks/bench_rbm.py                       # writes benchmarks/results/rbm.json
    python benchmarks/bench_rbm.py --hidden 200 --epochs 2 --n-train 20000 --batches 100
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
    assert rbm.components_.dtype == xtr.dtype, rbm.components_.dtype
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


def _best(fn, *args, repeat=5):
    fn(*args).block_until_ready()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args).block_until_ready()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def matmul_rates(n_visible, hidden, batch, n_batches):
    """Seconds of the five PCD-1 products alone for an epoch, and the single-thread peak."""
    k = jax.random.PRNGKey(0)
    W = 0.01 * jax.random.normal(k, (n_visible, hidden), jnp.float32)
    xs = jax.random.uniform(k, (n_batches, batch, n_visible), jnp.float32)

    @jax.jit
    def epoch(W, xs):
        def step(W, x):
            h = x @ W
            v = h @ W.T
            h2 = v @ W
            return W + 1e-9 * (x.T @ h - v.T @ h2), None
        return jax.lax.scan(step, W, xs)[0]

    a = jax.random.uniform(k, (2000, n_visible), jnp.float32)
    big = jax.jit(lambda a, W: a @ W)
    t_big = _best(big, a, W)
    return {"matmul_only_seconds_per_epoch": _best(epoch, W, xs, repeat=3),
            "peak_gflops": 2 * 2000 * n_visible * hidden / t_big / 1e9,
            "peak_product": f"(2000 x {n_visible}) @ ({n_visible} x {hidden}) float32"}


def compare(xtr, xte, hidden, lr, batch, epochs, seed):
    n_batches = xtr.shape[0] // batch
    flops = 10.0 * batch * xtr.shape[1] * hidden * n_batches  # five products per update
    load0 = os.getloadavg()
    sk_params, sk_times = run_sklearn(xtr, hidden, lr, batch, epochs, seed)
    eq_params, eq_times, eq_hist = run_eqdyn(xtr, hidden, lr, batch, epochs, seed)
    mm = matmul_rates(xtr.shape[1], hidden, batch, n_batches)
    steady = float(np.mean(eq_times[1:] or eq_times))
    sk = float(np.mean(sk_times))
    peak = mm["peak_gflops"]
    return {
        "settings": {"hidden": hidden, "learning_rate": lr, "batch_size": batch,
                     "epochs": epochs, "n_train": int(xtr.shape[0]), "n_test": int(xte.shape[0]),
                     "dtype": str(xtr.dtype), "binarised": "pixel > 0.5",
                     "rule": "PCD-1, chains = batch size, SGD"},
        "sklearn": {"seconds_per_epoch": sk_times, "mean_seconds_per_epoch": sk,
                    "gflops": flops / sk / 1e9, "fraction_of_peak": flops / sk / 1e9 / peak,
                    "pseudo_likelihood": _score(sk_params, xtr, xte)},
        "eqdyn": {"seconds_per_epoch": eq_times, "steady_seconds_per_epoch": steady,
                  "gflops": flops / steady / 1e9, "fraction_of_peak": flops / steady / 1e9 / peak,
                  "reconstruction_error": [h["loss"] for h in eq_hist],
                  "pseudo_likelihood": _score(eq_params, xtr, xte)},
        "flops_per_epoch": flops,
        **mm,
        "matmul_only_gflops": flops / mm["matmul_only_seconds_per_epoch"] / 1e9,
        "speedup_steady": sk / steady,
        "load_avg_before_after": [load0, os.getloadavg()],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=500)
    ap.add_argument("--lr", type=float, default=0.1, help="scikit-learn's default")
    ap.add_argument("--batches", type=int, nargs="+", default=[10, 100],
                    help="batch sizes (10: scikit-learn's default)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=60000)
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--note", default="")
    ap.add_argument("--out", default="benchmarks/results/rbm.json")
    a = ap.parse_args(argv)
    xtr, xte = _load(a.n_train, a.n_test)
    out = {"runs": [], "note": a.note}
    for batch in a.batches:
        r = compare(xtr, xte, a.hidden, a.lr, batch, a.epochs, a.seed)
        out["runs"].append(r)
        print(json.dumps(r, indent=2), flush=True)
    out.update({
        "machine": {"platform": platform.platform(), "jax_backend": jax.default_backend(),
                    "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "threads": "one each: OPENBLAS/OMP/MKL_NUM_THREADS="
                   f"{os.environ.get('OPENBLAS_NUM_THREADS')}, XLA_FLAGS="
                   f"{os.environ.get('XLA_FLAGS', '')!r}",
    })
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
