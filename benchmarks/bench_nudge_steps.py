"""How much a truncated nudged phase (the paper's Euler steps) moves each layer's EP update.

Scellier & Bengio (2017) run the nudged phase for a few Euler steps of eps 0.5 from the free
state (6 for 784-500-500-10), not to the nudged steady state. For the `sb17-2h` network this
script computes, on the same examples and the same free fixed points, the one-sided EP
estimate with the nudged phase (a) capped at the preset's Euler steps (`nudged_backend
fused`, `nudged_t1 3`) and (b) relaxed to its steady state (block sweeps), and reports the
norm of each weight layer's estimate in (a) as a fraction of (b): at the initial weights, and
for the network a training run left in `--run-dir` (e.g. the `sb17-2h` reproduction's).

Usage (from the repository root; MNIST from ../shared/data/mnist):

    python benchmarks/bench_nudge_steps.py                          # initial weights only
    python benchmarks/bench_nudge_steps.py --run-dir RUN_DIR        # and a trained sb17-2h net

Writes `benchmarks/results/nudge_steps.json`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_epoch import load_report, save_result, start_run  # noqa: E402

OUT = HERE / "results" / "nudge_steps.json"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", default=None, help="a finished sb17-2h training run")
    ap.add_argument("--examples", type=int, default=200, help="first N training examples")
    ap.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data" / "mnist"))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from eqdyn.data import load_dataset
    from eqdyn.learning import EPConfig, ep_gradient
    from eqdyn.training import build_model, load_trained, relax_configs, resolve_config

    t_bench = time.perf_counter()
    load_start, busy, info = start_run()
    ds = load_dataset("mnist", args.data_dir)
    x = jnp.asarray(ds.x_train[: args.examples])
    d = jax.nn.one_hot(jnp.asarray(ds.y_train[: args.examples], jnp.int32), 10)
    nets = {"initial": build_model(resolve_config("sb17-2h"), jax.random.PRNGKey(0))}
    if args.run_dir:
        nets["trained"] = load_trained(args.run_dir)[0]
    rows = {}
    for label, model in nets.items():
        norms = {}
        for nudged_backend in ("fused", "blocks"):
            cfg = resolve_config("sb17-2h", nudged_backend=nudged_backend, variant="one-sided")
            free, nudged, _ = relax_configs(cfg)
            ep = EPConfig(beta=cfg.beta, variant="one-sided", free=free, nudged=nudged)
            grads, aux = ep_gradient(model, x, d, model.init_state(x.shape[0], x.dtype), ep)
            norms[nudged_backend] = dict(
                weight_norms=[float(jnp.linalg.norm(g)) for g in grads[: model.n_layers]],
                nudged_steps=int(aux.nudged_steps))
        rows[label] = dict(
            euler_steps=norms["fused"], steady_state=norms["blocks"],
            ratio=[a / b for a, b in zip(norms["fused"]["weight_norms"],
                                         norms["blocks"]["weight_norms"])])
    result = dict(
        network="784-500-500-10 (sb17-2h)", examples=args.examples, run_dir=args.run_dir,
        note=("one-sided estimate at the preset's beta from zero states; ratio = norm of each "
              "weight layer's estimate with the Euler-step nudged phase / with the steady-state "
              "one, W_1 first"),
        nets=rows, bench_wall_s=time.perf_counter() - t_bench,
        **load_report(info, load_start, busy))

    def table(r):
        for label, row in r["nets"].items():
            print(f"{label:>8}: Euler-step / steady-state update norms, W_1..W_L: "
                  + ", ".join(f"{v:.2f}" for v in row["ratio"]))

    return save_result(args.out, result, "bench_nudge_steps.py", argv, table)


if __name__ == "__main__":
    sys.exit(main())
