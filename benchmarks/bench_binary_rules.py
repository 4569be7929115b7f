"""EP, CHL and the stochastic Boltzmann machine rule on one binary-unit network (digits).

The layered Hopfield energy 64-64-10 on {0, 1} units (`BoltzmannMachine.init`), trained on
scikit-learn's 8x8 digits binarised at 0.5 with one-hot targets, by

- `BinaryEP(beta)` with mean-field phases,
- `BinaryCHL()` with mean-field phases (the deterministic Boltzmann machine),
- `BinaryCHL(BlockGibbs(k))`: the Boltzmann rule on samples (output clamped / free),

from the same initial weights with SGD + momentum; the test error is read from the mean-field
free phase. Usage: `python benchmarks/bench_binary_rules.py [--epochs 5]`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax


def main(argv=None):
    from eqdyn.data import load_dataset
    from eqdyn.dynamics import BlockGibbs, MeanField, binary_problem
    from eqdyn.learning import BinaryCHL, BinaryEP
    from eqdyn.models import BoltzmannMachine
    from eqdyn.symbolic import layered_hopfield_energy

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--gibbs-sweeps", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/binary_rules.json")
    a = ap.parse_args(argv)
    ds = load_dataset("digits")
    xtr, xte = (ds.x_train > 0.5).astype(np.float32), (ds.x_test > 0.5).astype(np.float32)
    dtr = np.eye(10, dtype=np.float32)[ds.y_train]
    energy = layered_hopfield_energy((64, 64, 10))
    mf = MeanField(1e-4, 100, damping=0.5)
    rules = {"ep_mean_field": BinaryEP(a.beta, mf), "chl_mean_field": BinaryCHL(mf),
             "boltzmann_gibbs": BinaryCHL(BlockGibbs(a.gibbs_sweeps))}
    out = {"settings": vars(a), "network": "64-64-10 layered Hopfield energy, {0,1} units"}
    for name, rule in rules.items():
        t = time.perf_counter()
        model = BoltzmannMachine.init(energy, key=jax.random.PRNGKey(0), scale=0.1)
        opt = optax.sgd(a.lr, momentum=0.9)
        st = opt.init(model.params)

        @jax.jit
        def step(model, st, x, d, k, rule=rule, opt=opt):
            g, stats = rule(model, x, d, key=k)
            u, st = opt.update(g, st)
            return model.with_params(optax.apply_updates(model.params, u)), st, stats.loss

        @jax.jit
        def predict(model, x):
            start = tuple(jnp.full((x.shape[0], n), 0.5) for n in model.state_sizes)
            res = mf.solve(binary_problem(model, start, inputs=(x, jnp.zeros((x.shape[0], 10)))))
            return jnp.argmax(res.states[-1], 1), res.states[-1]

        key, losses = jax.random.PRNGKey(1), []
        for e in range(a.epochs):
            perm = np.random.default_rng(e).permutation(len(xtr))
            ls = []
            for i in range(0, len(xtr) - 19, 20):
                key, k = jax.random.split(key)
                idx = perm[i:i + 20]
                model, st, loss = step(model, st, jnp.asarray(xtr[idx]), jnp.asarray(dtr[idx]), k)
                ls.append(float(loss))
            losses.append(float(np.mean(ls)))
        pred, y = predict(model, jnp.asarray(xte))
        out[name] = {"test_error": float(np.mean(np.asarray(pred) != ds.y_test)),
                     "train_loss_per_epoch": losses,
                     "mean_output": float(jnp.mean(y)), "seconds": time.perf_counter() - t}
        print(name, out[name], flush=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
