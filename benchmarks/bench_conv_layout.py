"""The conv EP estimate of `bench_conv.py` with the convolution helpers in NCHW / OIHW (as
before 2026-12-07) and in NHWC / HWIO (now), side by side in one process.

The generated code's `_conv2d` (eqdyn/symbolic/_conv.py, `HELPERS`) transposes the maps and
the kernel to channel-minor layouts around `lax.conv_general_dilated`; the "before" model is
built from the same helpers with that convolution written in NCHW. Both models have the same
parameters; the estimates are timed interleaved (a busy machine slows both alike).

Usage (from the repository root):

    python benchmarks/bench_conv_layout.py [--repeats 5]
    # writes benchmarks/results/conv_layout.json
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_conv import PCNN, add_pcnn_args, pcnn_energy, pcnn_problem  # noqa: E402
from bench_epoch import load_report, save_result, start_run  # noqa: E402

import eqdyn.symbolic._codegen as codegen  # noqa: E402 - swaps the helpers for "before"
from eqdyn.models import EnergyModel  # noqa: E402

NHWC = '''    y = jax.lax.conv_general_dilated(
        x.reshape(-1, C, H, W).astype(dt).transpose(0, 2, 3, 1),
        k.reshape(Co, C, kh, kw).astype(dt).transpose(2, 3, 1, 0), (s, s),
        ((p, p), (p, p)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y.transpose(0, 3, 1, 2).reshape(y.shape[0], -1)'''
NCHW = '''    y = jax.lax.conv_general_dilated(
        x.reshape(-1, C, H, W).astype(dt), k.reshape(Co, C, kh, kw).astype(dt), (s, s),
        ((p, p), (p, p)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y.reshape(y.shape[0], -1)'''


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pcnn_args(p)
    p.add_argument("--out", default=str(HERE / "results" / "conv_layout.json"))
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    load_start, busy, info = start_run()
    now = codegen.CONV_HELPERS
    if NHWC not in now:
        raise SystemExit("the generated convolution is no longer the NHWC one this compares")
    B = args.batch
    rule, x, d = pcnn_problem(args)
    runs, grads = {}, {}
    try:
        for label, helpers in (("nchw", now.replace(NHWC, NCHW)), ("nhwc", now)):
            codegen.CONV_HELPERS = helpers
            e = pcnn_energy()
            e = dataclasses.replace(e, name=f"{e.name} [{label}]")  # no shared compile cache
            m = EnergyModel(e, "hard_sigmoid", key=jax.random.PRNGKey(0))
            step = jax.jit(lambda m, x, d, s0: rule(m, x, d, s0)[0])
            runs[label] = (lambda step=step, m=m, s0=m.init_state(B): step(m, x, d, s0))
            grads[label] = jax.block_until_ready(runs[label]())
    finally:
        codegen.CONV_HELPERS = now
    times = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, f in runs.items():
            t = time.perf_counter()
            jax.block_until_ready(f())
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    diff = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)))
               for a, b in zip(grads["nchw"], grads["nhwc"]))
    result = dict(
        network=PCNN,
        batch=B, free_steps=args.free, nudged_steps=args.nudged, nudging="symmetric",
        ep_estimate_s_nchw=med["nchw"], ep_estimate_s_nhwc=med["nhwc"],
        ep_estimate_s_nchw_all=times["nchw"], ep_estimate_s_nhwc_all=times["nhwc"],
        speedup=med["nchw"] / med["nhwc"], max_relative_grad_difference_float32=diff,
        bench_wall_s=time.perf_counter() - t_start,
    )
    result.update(load_report(info, load_start, busy))

    def table(r):
        print(f"EP estimate, NCHW helpers {r['ep_estimate_s_nchw']:.2f} s, NHWC "
              f"{r['ep_estimate_s_nhwc']:.2f} s: {r['speedup']:.2f}x (gradients equal to "
              f"{r['max_relative_grad_difference_float32']:.1e} relative, float32)")

    return save_result(Path(args.out), result, "bench_conv_layout.py", argv or sys.argv[1:], table)


if __name__ == "__main__":
    raise SystemExit(main())
