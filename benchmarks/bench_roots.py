"""optimistix's root finders and fixed-point iteration against eqdyn's hand-written
relaxations (`FusedEuler`, `BlockSweeps`, Anderson), on one network in float64.

A fixed point of the dynamics is a root of the field. Per method: steps, final residual,
milliseconds per batch (compiled, best of 5) and the largest difference of its fixed point
from `FusedEuler`'s (observed states). The numbers quoted in the docstrings of
`eqdyn.dynamics` came from

    python benchmarks/bench_roots.py 64-64-10
    python benchmarks/bench_roots.py 784-500-10

on a shared 2-core CPU (timings are indicative there; steps and agreement are exact).
Arguments: the architecture (default 64-64-10) and the activation (default hard_sigmoid).
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from eqdyn.dynamics import (Anderson, BlockSweeps, FusedEuler, OptimistixRoot, relax_core,
                            relax_problem)
from eqdyn.models import LayeredHopfield

BATCH, TOL = 20, 1e-8


def best_ms(f, *args):
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(5):
        t = time.perf_counter()
        out = jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t)
    return out, 1e3 * min(times)


def main(argv):
    sizes = tuple(int(s) for s in (argv[0] if argv else "64-64-10").split("-"))
    act = argv[1] if len(argv) > 1 else "hard_sigmoid"
    rng = np.random.default_rng(0)
    weights = [jnp.asarray(1.2 * rng.uniform(-1, 1, (a, b)) / np.sqrt(a))
               for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [jnp.asarray(0.3 * rng.normal(size=(1, n))) for n in sizes[1:]]
    model = LayeredHopfield(sizes, act, key=None, weights=weights, biases=biases,
                            dtype=jnp.float64)
    x = jnp.asarray(rng.uniform(0, 1, (BATCH, sizes[0])))
    d = jax.nn.one_hot(jnp.arange(BATCH) % sizes[-1], sizes[-1], dtype=jnp.float64)
    s0 = model.init_state(BATCH, jnp.float64)
    methods = [("FusedEuler dt=0.5", FusedEuler(0.5, 1e5, TOL, 200_000))]
    if act == "hard_sigmoid":
        methods += [("BlockSweeps", BlockSweeps(100_000, TOL)),
                    ("BlockSweeps + Anderson(3)", BlockSweeps(100_000, TOL, Anderson(3)))]
    methods += [("OptimistixRoot(Newton)", OptimistixRoot(optx.Newton(1e-10, 1e-10), TOL)),
                ("OptimistixRoot(Chord)", OptimistixRoot(optx.Chord(1e-10, 1e-10), TOL))]
    rows, ref = [], None
    for name, relaxation in methods:
        run = jax.jit(lambda x, s0, r=relaxation: relax_core(model, x, s0, 0.0, d, r))
        res, ms = best_ms(run, x, s0)
        obs = model.system.observe(res.states)
        ref = obs if ref is None else ref
        rows.append((name, int(res.steps), float(res.residual), ms, _gap(obs, ref)))
    if sum(sizes[1:]) * BATCH < 3000:  # the whole batch as one root problem: a dense Jacobian
        def whole(x, s0):
            p = relax_problem(model, x, s0, 0.0, d)
            sol = optx.root_find(lambda y, _: p.f(y), optx.Newton(1e-10, 1e-10), p.y0,
                                 max_steps=256, throw=False)
            return sol.value, sol.stats["num_steps"], p.residual(sol.value)

        (y, steps, r), ms = best_ms(jax.jit(whole), x, s0)
        rows.append(("optx.Newton, whole batch", int(steps), float(r), ms,
                     _gap(model.system.observe(y), ref)))

    def fixed_point(x, s0):  # plain iteration of y + 0.5 f(y), optimistix's own stopping test
        p = relax_problem(model, x, s0, 0.0, d)
        sol = optx.fixed_point(lambda y, _: tuple(u + 0.5 * f for u, f in zip(y, p.f(y))),
                               optx.FixedPointIteration(rtol=1e-10, atol=1e-10), p.y0,
                               max_steps=200_000, throw=False)
        return sol.value, sol.stats["num_steps"], p.residual(sol.value)

    (y, steps, r), ms = best_ms(jax.jit(fixed_point), x, s0)
    rows.append(("optx.FixedPointIteration (y + 0.5 f)", int(steps), float(r), ms,
                 _gap(model.system.observe(y), ref)))
    print(f"network {'-'.join(map(str, sizes))} {act}, batch {BATCH}, float64, tol {TOL:g}, "
          "zero start")
    print(f"{'relaxation':40s} {'steps':>7s} {'residual':>10s} {'ms':>10s} {'|s - s_fused|':>14s}")
    for name, steps, r, ms, gap in rows:
        print(f"{name:40s} {steps:7d} {r:10.2e} {ms:10.2f} {gap:14.1e}")


def _gap(a, b):
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(a, b))


if __name__ == "__main__":
    with jax.enable_x64(True):
        main(sys.argv[1:])
