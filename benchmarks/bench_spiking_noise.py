"""How noisy is EP's gradient estimate when the phases are spiking networks?

Hypothesis (issue 28): spiking EP on MNIST underfits (train error 3.6 % after 10 epochs
against 0.17 % for rate EP at the same setting) because its update is dominated by spike
noise: one-sided / random-sign EP subtracts the averaged traces of two *independently* drawn
spiking phases and divides by beta, so the noise of each phase, O(1) per unit, reaches the
update as O(1/beta). Running the two nudged phases of symmetric EP on common random numbers
should cancel most of it.

For one batch of `sb17-1h-spiking` (784-500-10, Poisson(20), dt 0.05, free 10, nudged 5,
beta 1) the script draws `--draws` estimates per estimator with different keys and compares
each with the deterministic (rate) estimate of the same nudging on the same horizons:

- `noise_norm`: the draws' scatter, sqrt(sum of the variances), beside `rate_norm` = |g_rate|,
- `rel_err`: mean over draws of |g - g_rate| / |g_rate| (noise and bias together),
- `bias`: |mean g - g_rate| / |g_rate| (what averaging over draws leaves),
- `cos`: mean cosine between g and g_rate,

for the hidden and the output weights separately, at initialisation and, with `--run DIR`,
at a trained run's weights. Writes JSON (`--out`).

    python benchmarks/bench_spiking_noise.py --draws 16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from eqdyn.data import load_dataset
from eqdyn.dynamics import Poisson, Spiking
from eqdyn.learning import EP, OneSided, RandomSign, Symmetric
from eqdyn.training import build_model, load_trained, relax_configs, resolve_config

HERE = Path(__file__).parent


def estimators(cfg, beta):
    def spiking(t1):
        return Spiking(Poisson(cfg.spike_rate), dt=cfg.dt0, t1=t1, tau_syn=cfg.spike_tau,
                       readout="traces")

    free_s, nudged_s = spiking(cfg.free_t1), spiking(cfg.nudged_t1)
    free_r, nudged_r, _ = relax_configs(dataclasses.replace(cfg, spike_rate=0.0))
    return {
        # name: (spiking rule, deterministic rule with the same mean)
        "one-sided": (EP(beta, OneSided(), free_s, nudged_s), EP(beta, OneSided(), free_r,
                                                                   nudged_r)),
        "random-sign": (EP(beta, RandomSign(), free_s, nudged_s), None),
        "symmetric, independent noise": (EP(beta, Symmetric(), free_s, nudged_s),
                                         EP(beta, Symmetric(), free_r, nudged_r)),
        "symmetric, common noise": (EP(beta, Symmetric(common_noise=True), free_s, nudged_s),
                                    EP(beta, Symmetric(), free_r, nudged_r)),
    }


def compare(model, x, d, rules, draws):
    s0 = model.init_state(x.shape[0], x.dtype)
    rows = {}
    ref_sym = next(ref for name, (_, ref) in rules.items() if "symmetric" in name)
    ref_sym = ref_sym(model, x, d, s0, key=jax.random.PRNGKey(0))[0]
    for name, (rule, ref) in rules.items():
        call = jax.jit(lambda k, rule=rule: rule(model, x, d, s0, key=k)[0])
        if ref is None:  # random sign: half its draws are one-sided at -beta; compare with
            ref_g = ref_sym  # the symmetric estimate both signs average to at O(beta^2)
        else:
            ref_g = ref(model, x, d, s0, key=jax.random.PRNGKey(0))[0]
        jax.block_until_ready(call(jax.random.PRNGKey(draws)))  # compile
        t0 = time.perf_counter()
        gs = [call(jax.random.PRNGKey(i)) for i in range(draws)]
        jax.block_until_ready(gs)
        seconds = (time.perf_counter() - t0) / draws
        row = {"seconds_per_estimate": seconds}
        for i, label in ((0, "W1 (input-hidden)"), (2, "W2 (hidden-output)")):
            r = np.asarray(ref_g[i], np.float64).ravel()
            g = np.stack([np.asarray(gg[i], np.float64).ravel() for gg in gs])
            nr = np.linalg.norm(r)
            norms = np.linalg.norm(g, axis=1)
            row[label] = {
                "rate_norm": float(nr),
                "noise_norm": float(np.sqrt(np.sum(g.var(0)))),
                "rel_err": float(np.mean(np.linalg.norm(g - r, axis=1)) / nr),
                "bias": float(np.linalg.norm(g.mean(0) - r) / nr),
                # a draw may be exactly 0 (no spike moved by the nudge): cosine 0
                "cos": float(np.mean(g @ r / np.where(norms > 0, norms * nr, np.inf))),
            }
        rows[name] = row
        print(f"  {name:30s} " + "  ".join(
            f"{k.split()[0]}: noise {v['noise_norm']:.3g} (rate {v['rate_norm']:.3g}) "
            f"err {v['rel_err']:.2f} bias {v['bias']:.2f} cos {v['cos']:.2f}"
            for k, v in row.items() if k != "seconds_per_estimate") + f"  {seconds:.2f} s")
    return rows


def beta_scaling(betas, draws):
    """The scatter of the W1 estimate over `draws` keys against beta on the 4-6-3 problem of
    `bench_spiking.py` (`Poisson(20)`, dt 0.05, horizons 10 + 5, float64), for symmetric EP
    on common and on independent spikes and for one-sided EP."""
    import equinox as eqx

    sys.path.insert(0, str(HERE))
    from bench_spiking import sweep_problem

    rows = []
    with jax.enable_x64(True):
        m, x, d, s0, _ = sweep_problem()
        kw = dict(dt=0.05, tau_syn=0.5, readout="traces")
        free, nudged = Spiking(Poisson(20.0), t1=10.0, **kw), Spiking(Poisson(20.0), t1=5.0, **kw)
        keys = jax.random.split(jax.random.PRNGKey(0), draws)
        for beta in betas:
            row = {"beta": beta}
            for name, nudging in (("symmetric, common noise", Symmetric(common_noise=True)),
                                  ("symmetric, independent noise", Symmetric()),
                                  ("one-sided", OneSided())):
                rule = EP(beta, nudging, free, nudged)
                g = eqx.filter_jit(jax.vmap(lambda k, r=rule: r(m, x, d, s0, key=k)[0][0]))(keys)
                g = np.asarray(g).reshape(draws, -1)
                row[name] = float(np.sqrt(g.var(0).sum()))
            rows.append(row)
            print(f"  beta {beta:g}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                                                   if k != "beta"))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", type=int, default=16)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--beta", type=float, default=None, help="default: the preset's (1.0)")
    p.add_argument("--run", default=None, help="also at this run directory's weights")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--betas", default="0.125,0.25,0.5,1",
                   help="betas of the scatter-against-beta table on the 4-6-3 problem "
                   "(64 draws each; '' to skip)")
    p.add_argument("--out", default=str(HERE / "results" / "spiking_noise.json"))
    a = p.parse_args(argv)
    cfg = resolve_config("sb17-1h-spiking", dataset="mnist")
    beta = a.beta or cfg.beta
    data = load_dataset("mnist", a.data_dir)
    x = jnp.asarray(data.x_train[: a.batch], jnp.float32)
    d = jax.nn.one_hot(jnp.asarray(data.y_train[: a.batch]), 10, dtype=jnp.float32)
    models = {"initialisation": build_model(cfg, jax.random.PRNGKey(cfg.seed))}
    if a.run:
        models[f"trained ({a.run})"] = load_trained(a.run)[0]
    out = {"setting": "sb17-1h-spiking", "beta": beta, "batch": a.batch, "draws": a.draws,
           "machine": platform.processor() or platform.machine(), "results": {}}
    for where, model in models.items():
        print(where)
        out["results"][where] = compare(model, x, d, estimators(cfg, beta), a.draws)
    betas = [float(b) for b in a.betas.split(",") if b]
    if betas:
        print("scatter of the W1 estimate against beta, 4-6-3 problem, 64 draws")
        out["beta_scaling_4_6_3"] = beta_scaling(betas, 64)
    out["command"] = " ".join(["python", "benchmarks/bench_spiking_noise.py",
                               *(sys.argv[1:] if argv is None else argv)])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
