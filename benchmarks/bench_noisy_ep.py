"""Time of one noisy EP estimate per batch: fused Euler-Maruyama against diffrax's SDE solve.

The `lz22-mnist` network (784-256-256-10, steep sigmoid, leaky, softmax readout), batch 20,
float32, neuron noise T = 8e-4 at dt 1: one-sided EP with free_t1 100 and nudged_t1 50 (150
steps), and holomorphic EP (`lz22-mnist-holo`, N = 10 points of 50 steps each, after the
100-step free phase). "fused" is the presets' own relaxation backends (blocks free phase, fused
nudged phase: both noisy phases then take `langevin(..., backend="fused")`); "diffrax" sets
`backend="diffrax"` on both phases. Jitted, warmed up, best of `--repeats` wall times
(the two interleaved).

Usage (from the repository root):

    python benchmarks/bench_noisy_ep.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from eqdyn.learning import EPConfig, ep_gradient
from eqdyn.training import build_model, relax_configs, resolve_config


def estimate_fn(preset: str, backend: str | None):
    """A jitted `key -> grads` for one noisy EP estimate on a fixed batch, compiled."""
    over = {"free_t1": 100.0, "nudged_t1": 50.0, "temperature": 8e-4}
    if backend is not None:
        over.update(backend=backend, nudged_backend=backend)
    cfg = resolve_config(preset, **over)
    free, nudged, _ = relax_configs(cfg)
    ep = EPConfig(beta=cfg.beta, variant=cfg.variant, free=free, nudged=nudged,
                  temperature=cfg.temperature, n_points=cfg.n_points)
    model = build_model(cfg, jax.random.PRNGKey(0), jnp.float32)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(20, 784)), jnp.float32)
    d = jax.nn.one_hot(jnp.asarray(rng.integers(0, 10, 20)), 10, dtype=jnp.float32)
    s0 = model.init_state(20, jnp.float32)
    run = eqx.filter_jit(lambda m, k: ep_gradient(m, x, d, s0, ep, key=k)[0])
    def fn(k):
        return jax.block_until_ready(run(model, k))

    fn(jax.random.PRNGKey(0))  # compile
    fn(jax.random.PRNGKey(1))  # warm up
    return fn


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    for name, preset in (("one-sided, 100 + 50 steps", "lz22-mnist"),
                         ("holomorphic N=10, 100 + 10 x 50 steps", "lz22-mnist-holo")):
        fns = {"fused": estimate_fn(preset, None), "diffrax": estimate_fn(preset, "diffrax")}
        best = dict.fromkeys(fns, float("inf"))
        for r in range(args.repeats):  # interleaved: a busy machine slows both alike
            for which, fn in fns.items():
                t = time.perf_counter()
                fn(jax.random.PRNGKey(2 + r))
                best[which] = min(best[which], time.perf_counter() - t)
        print(f"{name}: fused {1e3 * best['fused']:.1f} ms, diffrax "
              f"{1e3 * best['diffrax']:.1f} ms per batch "
              f"({best['diffrax'] / best['fused']:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
