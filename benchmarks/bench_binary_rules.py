"""EP, CHL and the stochastic Boltzmann machine rule on one binary-unit network (digits).

The layered Hopfield network 64-64-10 on {0, 1} units, trained on scikit-learn's 8x8 digits
binarised at 0.5 with one-hot targets, by

- `BinaryEP(beta)` with mean-field phases and the softmax readout
  (`layered_hopfield_energy(sizes, cost="cross_entropy")`: the 10 outputs are the logits
  `m_1 W_2 + b_2` of the hidden means, the cost their cross-entropy),
- `BinaryEP(beta)` with mean-field phases on the network of the CHL rules below (10 binary
  output units `y`) with the cross-entropy of the output units' input `m_1 W_2 + b_2` as its
  cost (`output_cross_entropy`: the same units, parameters and free phase as CHL's),
- `BinaryEP(beta)` with mean-field phases and the squared error of 10 binary output units
  (the energy `layered_hopfield_energy(sizes)`: the outputs saturate at 0 and it fails),
- `BinaryCHL()` with mean-field phases (the deterministic Boltzmann machine, output units),
- `BinaryCHL(BlockGibbs(k))`: the Boltzmann rule on samples (output units clamped / free),

from the same initial weights (`W_1, b_1, W_2, b_2`, matched by name) with SGD + momentum; the
test error is read from the mean-field free phase (`BinarySystem.output`: the logits, or the
output units' means). Usage: `python benchmarks/bench_binary_rules.py [--epochs 5]`.
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


def output_cross_entropy(energy):
    """`energy` (a layered Hopfield energy with output units `y`) with its squared error
    replaced by the softmax cross-entropy of the output units' input `rho(h) W_L + b_L`: the
    same network, units and parameters (`argmax` of the logits is `argmax` of `y`'s means)."""
    from eqdyn.symbolic import Energy, terms

    L = len(energy.states)
    by_name = {p.name: p for p in energy.params}
    h, W, b = energy.states[-2], by_name[f"W_{L}"], by_name[f"b_{L}"]
    logits = terms.readout(h, W, b, terms.RHO)
    return Energy(internal=energy.internal, cost=terms.cross_entropy(logits, energy.inputs[1]),
                  states=energy.states, params=energy.params, inputs=energy.inputs,
                  scalars=energy.scalars, functions=energy.functions,
                  name=energy.name + ", output cross-entropy")


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
    readout = layered_hopfield_energy((64, 64, 10), cost="cross_entropy")
    same = output_cross_entropy(energy)
    mf = MeanField(1e-4, 100, damping=0.5)
    rules = {"ep_softmax_readout": (readout, BinaryEP(a.beta, mf)),
             "ep_output_cross_entropy": (same, BinaryEP(a.beta, mf)),
             "ep_squared_error": (energy, BinaryEP(a.beta, mf)),
             "chl_mean_field": (energy, BinaryCHL(mf)),
             "boltzmann_gibbs": (energy, BinaryCHL(BlockGibbs(a.gibbs_sweeps)))}
    out = {"settings": vars(a), "network": "64-64-10 layered Hopfield energy, {0,1} units; "
           "ep_softmax_readout: the 10 outputs are a softmax readout of the hidden layer (no "
           "output units, no feedback from them); the others: 10 binary output units, "
           "ep_output_cross_entropy with the cross-entropy of their input as its cost"}
    init = BoltzmannMachine.init(energy, key=jax.random.PRNGKey(0), scale=0.1)
    by_name = dict(zip(init.param_names, init.params))
    for name, (en, rule) in rules.items():
        t = time.perf_counter()
        model = BoltzmannMachine(tuple(by_name[p.name] for p in en.params), en)
        opt = optax.sgd(a.lr, momentum=0.9)
        st = opt.init(model.params)

        @jax.jit
        def step(model, st, x, d, k, rule=rule, opt=opt):
            g, stats = rule(model, x, d, key=k)
            u, st = opt.update(g, st)
            return model.with_params(optax.apply_updates(model.params, u)), st, stats.loss

        @jax.jit
        def predict(model, x):
            d0 = jnp.zeros((x.shape[0], 10))
            start = tuple(jnp.full((x.shape[0], n), 0.5) for n in model.state_sizes)
            res = mf.solve(binary_problem(model, start, inputs=(x, d0)))
            y = model.system.output(res.states, model.params, (x, d0))
            return jnp.argmax(y, 1), res.states[-1]

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
        pred, top = predict(model, jnp.asarray(xte))
        out[name] = {"test_error": float(np.mean(np.asarray(pred) != ds.y_test)),
                     "train_cost_per_epoch": losses,
                     "mean_top_state": float(jnp.mean(top)), "seconds": time.perf_counter() - t}
        print(name, out[name], flush=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
