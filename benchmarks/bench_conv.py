"""A convolutional EP epoch on this machine, and the fraction of it spent in its convolutions.

The network is Ernoult et al.'s (2019) P_CNN on MNIST-shaped input (1x28x28 -> 5x5 conv, 32
channels, 2x2 max pooling -> 5x5 conv, 64 channels, 2x2 max pooling -> 10 outputs;
`eqdyn.symbolic.conv_hopfield_energy`), hard sigmoid, leaky formulation, float32, random
uniform images (the timing does not depend on the pixels). One EP estimate per batch:
symmetric nudging, a free phase and two nudged phases of fixed length (fused Euler, dt 0.5,
`tol = 0`: every step runs), jitted once. The epoch time is the median time per batch times
the number of batches in 50,000 training images.

The convolutions alone: the field of the second map and of the first map takes, per step, the
convolution `K_2 * rho(c_1)` (20x32x12x12 -> 20x64x8x8) and its transpose (the feedback into
`c_1`); the input's convolution is hoisted out of the relaxation. The script times the same two
convolutions alone (the generated code's own helpers `_conv2d` and `_convtranspose2d`:
`lax.conv_general_dilated` in NHWC and its `jax.vjp`), in
a `lax.fori_loop` of as many iterations as EP takes field evaluations, and reports their time
as a fraction of the EP estimate's, with the FLOP rate they reach (2 * MACs / time).

Usage (from the repository root):

    python benchmarks/bench_conv.py [--batch 20] [--free 60] [--nudged 15] [--repeats 5]
    # writes benchmarks/results/conv_epoch.json

Absolute times depend on the machine's load: the JSON records it (a shared 2-core machine
inflates them; the fraction is measured in one process and is less sensitive).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_epoch import load_report, save_result, start_run  # noqa: E402

from eqdyn.dynamics import FusedEuler  # noqa: E402
from eqdyn.learning import EP, Symmetric  # noqa: E402
from eqdyn.models import EnergyModel  # noqa: E402
from eqdyn.symbolic import CONV_HELPERS, conv_hopfield_energy  # noqa: E402

N_TRAIN = 50_000


def _timed(fn):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t


#: The network both conv benchmarks time (bench_conv_layout.py imports this setup).
PCNN = "P_CNN 1x28x28-conv5(32)-maxpool2-conv5(64)-maxpool2-10, hard_sigmoid, leaky"


def pcnn_energy():
    """Ernoult et al.'s (2019) P_CNN as a `conv_hopfield_energy`."""
    return conv_hopfield_energy((1, 28, 28), (32, 64), (10,), kernel_size=5, pool_kind="max")


def add_pcnn_args(p: argparse.ArgumentParser) -> None:
    """The batch, step counts and repeats of a P_CNN EP timing."""
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--free", type=int, default=60, help="free-phase Euler steps")
    p.add_argument("--nudged", type=int, default=15, help="steps of each nudged phase")
    p.add_argument("--repeats", type=int, default=5)


def pcnn_problem(args):
    """Symmetric EP with fixed-step fused Euler phases (dt 0.5, `args.free` and `args.nudged`
    steps, beta 0.5), and a batch of `args.batch` random images with cycling one-hot targets."""
    def phase(steps):
        return FusedEuler(dt=0.5, t1=0.5 * steps, tol=0.0, max_steps=steps)

    rule = EP(0.5, Symmetric(), phase(args.free), phase(args.nudged))
    x = jax.random.uniform(jax.random.PRNGKey(1), (args.batch, 784))
    d = jax.nn.one_hot(jnp.arange(args.batch) % 10, 10)
    return rule, x, d


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pcnn_args(p)
    p.add_argument("--out", default=str(HERE / "results" / "conv_epoch.json"))
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    load_start, busy, info = start_run()
    B = args.batch
    model = EnergyModel(pcnn_energy(), "hard_sigmoid", key=jax.random.PRNGKey(0))
    rule, x, d = pcnn_problem(args)
    s0 = model.init_state(B)
    step = jax.jit(lambda m, x, d, s0: rule(m, x, d, s0)[0])
    n_fields = args.free + 2 * args.nudged + 3  # one more per phase: the field at the start

    k2 = model.params[1]  # 64 x (32*5*5)
    a = jax.random.uniform(jax.random.PRNGKey(2), (B, 32 * 12 * 12))
    ns = {"jax": jax, "jnp": jnp}
    exec(CONV_HELPERS, ns)  # noqa: S102 - the generated code's own convolution helpers
    geom = (32, 12, 12, 64, 5, 5, 1, 0)

    @jax.jit
    def convs(a, k):
        def body(i, acc):
            z = ns["_conv2d"](a + acc[0, 0] * 1e-9, k, geom)  # a dependency: no hoisting
            return acc + ns["_convtranspose2d"](z, k, geom)
        return jax.lax.fori_loop(0, n_fields, body, jnp.zeros_like(a))

    def run_ep():
        return step(model, x, d, s0)

    def run_convs():
        return convs(a, k2)

    jax.block_until_ready((run_ep(), run_convs()))  # compile both
    ep_times, conv_times = [], []
    for _ in range(args.repeats):  # interleaved: a busy machine slows both alike
        ep_times.append(_timed(run_ep))
        conv_times.append(_timed(run_convs))
    t_ep, t_conv = statistics.median(ep_times), statistics.median(conv_times)
    ratios = [c / e for c, e in zip(conv_times, ep_times)]
    macs = 2 * B * 64 * 8 * 8 * 32 * 5 * 5  # forward and transpose, per field evaluation
    result = dict(
        network=PCNN,
        batch=B, free_steps=args.free, nudged_steps=args.nudged, nudging="symmetric",
        field_evaluations_per_estimate=n_fields,
        ep_estimate_s=t_ep, ep_estimate_s_all=ep_times,
        epoch_s_extrapolated=t_ep * (N_TRAIN // B),
        convolutions_alone_s=t_conv, convolutions_alone_s_all=conv_times,
        convolution_fraction=statistics.median(ratios), convolution_fraction_all=ratios,
        convolution_gflops=2 * macs * n_fields / t_conv / 1e9,
        bench_wall_s=time.perf_counter() - t_start,
    )
    result.update(load_report(info, load_start, busy))

    def table(r):
        print(f"EP estimate (batch {r['batch']}, {r['free_steps']} + 2 x {r['nudged_steps']} "
              f"steps): {1e3 * r['ep_estimate_s']:.1f} ms; epoch of {N_TRAIN} images "
              f"{r['epoch_s_extrapolated']:.0f} s")
        print(f"its convolutions alone: {1e3 * r['convolutions_alone_s']:.1f} ms "
              f"({100 * r['convolution_fraction']:.0f} % of the estimate), "
              f"{r['convolution_gflops']:.1f} GFLOP/s")

    return save_result(Path(args.out), result, "bench_conv.py", argv or sys.argv[1:], table)


if __name__ == "__main__":
    raise SystemExit(main())
