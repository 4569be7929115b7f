"""Spiking units (issue 28): spikes simulated per second on a 784-500-10 network at batch 20,
and one EP estimate with spiking phases against the rate-based one.

The network is a Glorot `LayeredHopfield` (hard sigmoid, leaky, float32) on uniform inputs
in [0, 1]. "spikes/s" runs `record_spikes` with `Poisson(max_rate)` units for `--steps` steps
of `dt = 1 / max_rate` (at most one spike per unit and step) and divides the spikes it drew
by the wall time; "unit-steps/s" counts every unit's step. The EP comparison times one
one-sided estimate per batch (beta 0.5) with both phases `Spiking(readout="traces")` against
`FusedEuler(dt 0.5, t1 30, tol 1e-4)` phases: an epoch costs the same ratio (the data
pipeline aside). Jitted, warmed up, best of `--repeats` wall times. The machine's load
average is recorded beside the numbers: on a shared machine they are upper bounds.

`--sweep` instead measures how the spiking EP estimate's error and time grow with the step
and the firing rate: on a 4-6-3 network (float64, batch 8, one-sided, beta 0.5, `t1` 20,
`tau_syn` 0.5 for both phases, `readout="traces"`), the relative error
`|g_spiking - g_rate| / |g_rate|` over all parameters against rate EP (fused Euler to
`tol` 1e-10), the mean over `--keys` spike draws, and the wall time of one estimate, for
`max_rate` in 10, 30, 100, 300, 1000 and `dt` in 0.05, 0.01, 0.002, 0.001 (where
`max_rate dt <= 1`).

Usage (from the repository root):

    python benchmarks/bench_spiking.py [--repeats 3] [--steps 400] [--out FILE.json]
    python benchmarks/bench_spiking.py --sweep [--keys 4] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from eqdyn.dynamics import FusedEuler, Poisson, Spiking, record_spikes
from eqdyn.learning import EP, OneSided
from eqdyn.models import LayeredHopfield


def best_time(fn, repeats):
    fn()  # compile
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def sweep_problem():
    """The sweep's network, batch and reference rule (call inside `jax.enable_x64(True)`):
    a 4-6-3 hard-sigmoid network whose hidden units are partly unsaturated, 8 random inputs
    with one-hot targets, and one-sided rate EP at beta 0.5 with tight fused Euler phases.
    Returns `(model, x, d, s0, rate_rule)` (tests/test_spiking.py uses it too)."""
    m = LayeredHopfield((4, 6, 3), key=jax.random.PRNGKey(2), dtype=jnp.float64)
    m = m.with_params([1.5 * w for w in m.weights] + [b + 0.3 for b in m.biases])
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(8, 4)))
    d = jax.nn.one_hot(jnp.asarray(rng.integers(0, 3, 8)), 3, dtype=jnp.float64)
    s0 = m.init_state(8, jnp.float64)
    rate = EP(0.5, OneSided(), FusedEuler(dt=0.1, t1=200.0, tol=1e-10, max_steps=5000))
    return m, x, d, s0, rate


def sweep(keys: int) -> dict:
    """The error and time of spiking EP's estimate over the step and the firing rate."""
    rows = []
    with jax.enable_x64(True):
        m, x, d, s0, rate = sweep_problem()
        g0 = jnp.concatenate([a.ravel() for a in eqx.filter_jit(rate)(m, x, d, s0)[0]])
        for max_rate in (10.0, 30.0, 100.0, 300.0, 1000.0):
            for dt in (0.05, 0.01, 0.002, 0.001):
                if max_rate * dt > 1:
                    continue
                sp = Spiking(Poisson(max_rate), dt=dt, t1=20.0, tau_syn=0.5,
                             readout="traces")
                est = eqx.filter_jit(EP(0.5, OneSided(), sp, sp))
                errs, best = [], float("inf")
                for k in range(keys):
                    t = time.perf_counter()
                    g = jax.block_until_ready(est(m, x, d, s0, key=jax.random.PRNGKey(k))[0])
                    if k:  # the first call compiles
                        best = min(best, time.perf_counter() - t)
                    g = jnp.concatenate([a.ravel() for a in g])
                    errs.append(float(jnp.linalg.norm(g - g0) / jnp.linalg.norm(g0)))
                rows.append(dict(max_rate=max_rate, dt=dt, steps_per_phase=round(20.0 / dt),
                                 relative_error=float(np.mean(errs)),
                                 relative_error_std=float(np.std(errs)), seconds=best))
                print(rows[-1], flush=True)
    return dict(network="4-6-3 hard_sigmoid leaky float64", batch=8, beta=0.5, t1=20.0,
                tau_syn=0.5, keys=keys, rows=rows)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--max-rate", type=float, default=20.0)
    p.add_argument("--sweep", action="store_true")
    p.add_argument("--keys", type=int, default=4)
    p.add_argument("--out")
    args = p.parse_args()
    if args.sweep:
        load0 = os.getloadavg()[0]
        out = sweep(args.keys)
        out.update(load_average=[load0, os.getloadavg()[0]], cpu_count=os.cpu_count(),
                   command="python benchmarks/bench_spiking.py --sweep",
                   date=time.strftime("%Y-%m-%d"))
        with open(args.out or "benchmarks/results/spiking_sweep.json", "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
        return
    args.out = args.out or "benchmarks/results/spiking.json"
    load0 = os.getloadavg()[0]
    sizes, batch = (784, 500, 10), 20
    model = LayeredHopfield(sizes, key=jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(batch, 784)), jnp.float32)
    d = jax.nn.one_hot(jnp.asarray(rng.integers(0, 10, batch)), 10, dtype=jnp.float32)
    s0 = model.init_state(batch, jnp.float32)
    dt = 1.0 / args.max_rate
    sp = Spiking(Poisson(args.max_rate), dt=dt, t1=args.steps * dt, tau_syn=0.5,
                 readout="traces")

    counts = {}

    def simulate():
        rec = record_spikes(model, x, sp, key=jax.random.PRNGKey(1))
        counts["spikes"] = int(sum(int(c.sum()) for c in jax.block_until_ready(
            rec.spike_counts)))

    t_sim = best_time(simulate, args.repeats)
    units = batch * sum(sizes[1:])
    rate_ep = eqx.filter_jit(EP(0.5, OneSided(), FusedEuler(dt=0.5, t1=30.0, tol=1e-4)))
    spike_ep = eqx.filter_jit(EP(0.5, OneSided(), sp, sp))
    t_rate = best_time(lambda: jax.block_until_ready(rate_ep(model, x, d, s0)[0]),
                       args.repeats)
    t_spike = best_time(lambda: jax.block_until_ready(
        spike_ep(model, x, d, s0, key=jax.random.PRNGKey(2))[0]), args.repeats)
    out = dict(
        network="784-500-10 hard_sigmoid leaky float32", batch=batch, steps=args.steps,
        max_rate=args.max_rate, dt=dt, tau_syn=0.5, seconds_simulation=t_sim,
        spikes=counts["spikes"], spikes_per_second=counts["spikes"] / t_sim,
        unit_steps_per_second=units * args.steps / t_sim,
        ep_estimate_seconds=dict(rate_fused_euler=t_rate, spiking=t_spike),
        spiking_over_rate=t_spike / t_rate,
        load_average=[load0, os.getloadavg()[0]], cpu_count=os.cpu_count(),
        device=str(jax.devices()[0]), command="python benchmarks/bench_spiking.py",
        date=time.strftime("%Y-%m-%d"),
    )
    print(json.dumps(out, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
