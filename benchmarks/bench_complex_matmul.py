"""Holomorphic EP with real products for complex states times real weights, against promotion.

Holomorphic EP relaxes the network at complex `beta`: the states are complex, the weights real.
The generated code's products go through `eqdyn.models._binding.matmul`, which takes a complex
array times a real one as one real product of the stacked real and imaginary parts; before, `a @
W` promoted `W` to complex at every field evaluation and took a complex product (about 4x the
work). This script times both in one process: "promoting" is the same model whose compiled
system binds the generated code's `_matmul` to plain `jnp.matmul` (the old behaviour),
"split" is eqdyn as it is. The two run interleaved (their order alternating), `--repeats`
times each, so a busy machine slows both alike; each repeat's ratio promoting / split is
reported with the median and the range over repeats.

Cases (the lz22-mnist network, 784-256-256-10, steep sigmoid, leaky, softmax readout, batch 20
of MNIST training images (random uniform ones if MNIST is not found), float32, CPU):

- `holo`: one noiseless holomorphic EP estimate of the `lz22-mnist-holo` preset as it is (N = 10
  points on |beta| = 0.4, free phase by block sweeps, the complex nudged phases fused Euler at
  dt 1 to the steady state or t1 350): the training step's work;
- `holo-noisy-fused`, `holo-noisy-diffrax`: `bench_noisy_ep.py`'s holomorphic case (T 8e-4,
  100 free + 10 x 50 nudged steps), fused Euler-Maruyama and diffrax;
- `one-sided-noisy-fused`: `bench_noisy_ep.py`'s one-sided case, real states only: a control
  (both variants run the same code; its ratio is the timing noise).

Usage (from the repository root):

    python benchmarks/bench_complex_matmul.py [--repeats 7]   # writes results/complex_matmul.json
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_epoch import load_report, save_result, start_run  # noqa: E402

from eqdyn.learning import EPConfig, ep_gradient  # noqa: E402
from eqdyn.training import build_model, relax_configs, resolve_config  # noqa: E402
from eqdyn.models import EnergyModel, compile_system  # noqa: E402

CASES = {
    "holo": ("lz22-mnist-holo", {}),
    "holo-noisy-fused": ("lz22-mnist-holo",
                         dict(free_t1=100.0, nudged_t1=50.0, temperature=8e-4)),
    "holo-noisy-diffrax": ("lz22-mnist-holo",
                           dict(free_t1=100.0, nudged_t1=50.0, temperature=8e-4,
                                backend="diffrax", nudged_backend="diffrax")),
    "one-sided-noisy-fused": ("lz22-mnist",
                              dict(free_t1=100.0, nudged_t1=50.0, temperature=8e-4)),
}

_PROMOTING: dict = {}


def promoting_system(system):
    """`system` compiled afresh with the generated code's `_matmul` bound to `jnp.matmul`."""
    if system not in _PROMOTING:
        old = compile_system(system.derivation, system.activations or system.activation,
                             system.formulation)
        for ns in {id(n): n for n in old._fns.values()}.values():
            ns["_matmul"] = jnp.matmul
        _PROMOTING[system] = old
    return _PROMOTING[system]


class PromotingModel(EnergyModel):
    """The same network; its system promotes real operands of complex products (the old code)."""

    @property
    def system(self):
        return promoting_system(super().system)


def promoting(model: EnergyModel) -> PromotingModel:
    new = object.__new__(PromotingModel)
    for f in dataclasses.fields(model):
        object.__setattr__(new, f.name, getattr(model, f.name))
    return new


def batch(n=20):
    try:
        from eqdyn.data import load_dataset

        ds = load_dataset("mnist", str(HERE.parent.parent / "shared" / "data" / "mnist"))
        x = jnp.asarray(ds.x_train[:n], jnp.float32)
        y = jnp.asarray(ds.y_train[:n])
        source = "mnist train[:20]"
    except Exception as e:  # noqa: BLE001
        print(f"MNIST not loaded ({e}); random inputs")
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.uniform(size=(n, 784)), jnp.float32)
        y = jnp.asarray(rng.integers(0, 10, n))
        source = "uniform random"
    return x, jax.nn.one_hot(y, 10, dtype=jnp.float32), source


def estimate_fns(preset: str, over: dict, x, d):
    """`{"promoting": fn, "split": fn}`, each `key -> (grads, nudged steps)`, compiled."""
    cfg = resolve_config(preset, **over)
    free, nudged, _ = relax_configs(cfg)
    ep = EPConfig(beta=cfg.beta, variant=cfg.variant, free=free, nudged=nudged,
                  temperature=cfg.temperature, n_points=cfg.n_points)
    model = build_model(cfg, jax.random.PRNGKey(0), jnp.float32)
    s0 = model.init_state(x.shape[0], jnp.float32)
    fns = {}
    for name, m in (("promoting", promoting(model)), ("split", model)):
        run = eqx.filter_jit(lambda m, k: (lambda g, a: (g, a.nudged_steps))(
            *ep_gradient(m, x, d, s0, ep, key=k)))

        def fn(k, m=m, run=run):
            return jax.block_until_ready(run(m, k))

        fn(jax.random.PRNGKey(0))  # compile
        fn(jax.random.PRNGKey(1))  # warm up
        fns[name] = fn
    return fns


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--out", default=str(HERE / "results" / "complex_matmul.json"))
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    load_start, busy, info = start_run()
    x, d, source = batch()
    cases = {}
    for name in args.cases.split(","):
        preset, over = CASES[name]
        fns = estimate_fns(preset, over, x, d)
        # the same numbers to rounding, the same number of steps
        key = jax.random.PRNGKey(7)
        (ga, sa), (gb, sb) = fns["promoting"](key), fns["split"](key)
        dev = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-30))
                  for a, b in zip(ga, gb))
        times = {k: [] for k in fns}
        for r in range(args.repeats):
            order = list(fns) if r % 2 == 0 else list(fns)[::-1]
            for which in order:
                t = time.perf_counter()
                fns[which](jax.random.PRNGKey(2 + r))
                times[which].append(time.perf_counter() - t)
        ratios = [a / b for a, b in zip(times["promoting"], times["split"])]
        cases[name] = dict(
            preset=preset, overrides=over,
            times_s={k: v for k, v in times.items()},
            median_s={k: statistics.median(v) for k, v in times.items()},
            min_s={k: min(v) for k, v in times.items()},
            ratio_per_repeat=ratios,
            ratio_median=statistics.median(ratios), ratio_min=min(ratios),
            ratio_max=max(ratios),
            nudged_steps={"promoting": int(sa), "split": int(sb)},
            max_rel_grad_difference=dev,
        )
        c = cases[name]
        print(f"{name}: promoting {1e3 * c['median_s']['promoting']:.0f} ms, split "
              f"{1e3 * c['median_s']['split']:.0f} ms (medians); promoting / split "
              f"{c['ratio_median']:.2f}x [{c['ratio_min']:.2f}-{c['ratio_max']:.2f}] over "
              f"{args.repeats} repeats; steps {int(sa)}/{int(sb)}, grads differ by {dev:.1e}",
              flush=True)
    result = dict(
        description=__doc__.split("\n\n")[1].replace("\n", " "),
        batch=20, dtype="float32", inputs=source, repeats=args.repeats, cases=cases,
        bench_wall_s=time.perf_counter() - t_start, **load_report(info, load_start, busy))

    def table(res):
        print("\ncase | promoting ms | split ms | ratio median [range]")
        for n, c in res["cases"].items():
            print(f"{n} | {1e3 * c['median_s']['promoting']:.0f} | "
                  f"{1e3 * c['median_s']['split']:.0f} | {c['ratio_median']:.2f} "
                  f"[{c['ratio_min']:.2f}-{c['ratio_max']:.2f}]")

    return save_result(args.out, result, "bench_complex_matmul.py",
                       sys.argv[1:] if argv is None else argv, table)


if __name__ == "__main__":
    raise SystemExit(main())
