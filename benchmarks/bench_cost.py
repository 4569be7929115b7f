"""Cost curves: relaxation steps and training time per epoch as depth and width grow.

For every network of the grid (MNIST inputs, hard sigmoid, the sb17 settings: beta 1 with a
random sign, batch 20, persistent particles, tol 1e-3) and both fast relaxations — fixed-step
Euler at dt 0.5 in one while loop (`backend="fused"`) and exact block sweeps
(`backend="blocks"`), and with `--anderson M` the block sweeps with Anderson acceleration
of memory M (`method` "anderson") — one run measures, from the same weights (a fresh network
trained for `--warmup` batches):

- the free and nudged steps (Euler steps or sweeps; one field evaluation each) of a chunk of
  batches from zero states (`cold`, an example's first visit) and of the same batches again
  from their particles (`warm`, every later epoch), and the fraction that reached `tol`;
- the steady wall time per batch of the warm chunk (compiled beforehand, best of 2), and the
  epoch time it implies (2500 batches of 20);
- beside it the paper's fixed iteration counts (Scellier & Bengio 2017: 20, 100, 500 free and
  4, 6, 8 nudged iterations for 1, 2, 3 hidden layers).

Usage (from the repository root):

    python benchmarks/bench_cost.py            # writes benchmarks/results/cost_curves.{json,png}
    python benchmarks/bench_cost.py --quick    # a smaller grid, a few batches (smoke run)
    python benchmarks/bench_cost.py --quick --batches 20 --warmup 200 --anderson 5 \
        --out benchmarks/results/cost_anderson.json   # plain vs accelerated sweeps

The horizons are long (`--t1`, default 250 time units = 500 Euler steps or sweeps), so that the
step counts are those needed to reach `tol` rather than a cap; where a phase did not reach it,
`converged` says so.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_epoch import load_report, save_result, start_run  # noqa: E402

#: Scellier & Bengio (2017): free / nudged iterations by hidden layers
PAPER_ITERATIONS = {1: (20, 4), 2: (100, 6), 3: (500, 8)}
BACKENDS = ("fused", "blocks")


def _grid(quick: bool):
    if quick:
        return [(1, 500), (2, 500), (3, 500)], [(2, 128), (2, 512)]
    depth = [(k, 500) for k in range(1, 6)]
    width = [(2, w) for w in (128, 256, 512, 1024, 2048)]
    return depth, width


def measure(arch, x, y, n_batches, t1, warmup, seed=0, anderson=0) -> list[dict]:
    """Both backends (and Anderson-accelerated sweeps with memory `anderson` > 0) on `arch`,
    from the same weights after `warmup` training batches."""
    import jax
    import jax.numpy as jnp

    from eqdyn.learning import EP, EPConfig
    from eqdyn.training import (build_model, make_optimizer, relax_configs, resolve_config,
                                train_chunk)

    n_layers = arch.count("-")
    lr = tuple(0.1 * 0.25 ** k for k in range(n_layers))  # sb17's per-layer ratios

    def setup(backend, m=0):
        cfg = resolve_config(preset="sb17-1h", arch=arch, backend=backend, lr=lr, free_t1=t1,
                             nudged_t1=t1, max_steps=100_000, seed=seed, anderson=m)
        free_cfg, nudged_cfg, _ = relax_configs(cfg)
        ep_cfg = EPConfig(beta=cfg.beta, variant=cfg.variant, free=free_cfg, nudged=nudged_cfg)
        return cfg, ep_cfg, make_optimizer(cfg, tuple(range(n_layers)) * 2)

    cfg, ep_cfg, opt = setup("blocks")
    model = build_model(cfg, jax.random.PRNGKey(seed))
    B = cfg.batch_size
    # only the examples used, so that the particles written back per chunk are few (a chunk
    # returns a new particle array: with all 50k examples its copy would be timed too)
    used = np.random.default_rng(seed).permutation(x.shape[0])[: (warmup + n_batches) * B]
    x, y = x[used], y[used]
    warm_rows = np.arange(warmup * B).reshape(warmup, B)
    rows = np.arange(warmup * B, (warmup + n_batches) * B).reshape(n_batches, B)
    particles = model.init_state(x.shape[0])
    key = jax.random.PRNGKey(seed + 1)
    opt_state = opt.init(model.params)
    if warmup:  # train a little (blocks, the fastest) so that the network is not a fresh one
        model, opt_state, particles, key, _ = train_chunk(
            model, opt_state, particles, key, x, y, jnp.asarray(warm_rows), EP.from_config(ep_cfg), opt, True)
    out = []
    methods = [(b, b, 0) for b in BACKENDS] + ([("anderson", "blocks", anderson)]
                                                 if anderson else [])
    for method, backend, m in methods:
        _, ep_cfg, opt = setup(backend, m)

        def chunk(m, o, p, k):
            res = train_chunk(m, o, p, k, x, y, jnp.asarray(rows), EP.from_config(ep_cfg), opt, True)
            jax.block_until_ready(res)
            return res

        t0 = time.perf_counter()
        m1, o1, p1, k1, st_cold = chunk(model, opt_state, particles, key)  # compile; cold
        compile_and_cold_s = time.perf_counter() - t0
        best = np.inf
        for _ in range(2):  # the same batches again from their particles: warm, timed
            t0 = time.perf_counter()
            warm = chunk(m1, o1, p1, k1)
            best = min(best, time.perf_counter() - t0)
        per_batch = best / n_batches
        out.append(dict(
            arch=arch, hidden_layers=n_layers - 1, width=int(arch.split("-")[1]),
            backend=method, anderson=m, n_batches=n_batches, warmup_batches=warmup,
            cold=_steps(st_cold), warm=_steps(warm[-1]), seconds_per_batch=per_batch,
            epoch_s_estimate=per_batch * 50_000 / B, compile_and_cold_s=compile_and_cold_s,
            paper_iterations=PAPER_ITERATIONS.get(n_layers - 1)))
    return out


def _steps(st) -> dict:
    return dict(free=float(np.mean(st["free_steps"])), nudged=float(np.mean(st["nudged_steps"])),
                free_max=int(np.max(st["free_steps"])),
                free_converged=float(np.mean(st["free_converged"])),
                nudged_converged=float(np.mean(st["nudged_converged"])))


def run(args) -> dict:
    import jax.numpy as jnp

    from eqdyn.data import load_dataset

    t_run = time.perf_counter()
    load_start, busy, info = start_run()
    data = load_dataset("mnist", str(args.data_dir))
    x = jnp.asarray(data.x_train)
    y = jnp.asarray(data.y_train, jnp.int32)
    depth, width = _grid(args.quick)
    results = []
    for hidden, w in dict.fromkeys(depth + width):
        arch = "-".join(["784"] + [str(w)] * hidden + ["10"])
        for r in measure(arch, x, y, args.batches, args.t1, args.warmup, anderson=args.anderson):
            results.append(r)
            print(f"{arch:>28} {r['backend']:>6}: cold {r['cold']['free']:6.1f} / "
                  f"{r['cold']['nudged']:5.1f}, warm {r['warm']['free']:6.1f} / "
                  f"{r['warm']['nudged']:5.1f} steps, {1e3 * r['seconds_per_batch']:8.2f} ms/batch"
                  f" (epoch ~{r['epoch_s_estimate']:.0f} s)", flush=True)
    out = dict(
        **load_report(info, load_start, busy),
        settings=dict(batches=args.batches, warmup=args.warmup, t1=args.t1, tol=1e-3, dt0=0.5,
                      batch_size=20, anderson=args.anderson,
                      depth_grid=[list(g) for g in depth], width_grid=[list(g) for g in width]),
        results=results,
        note=("steps: Euler steps (fused) or sweeps (blocks), one field evaluation each; both "
              "backends start from the same weights, trained for `warmup` batches; cold = new "
              "examples from zero states, warm = the same batches again from their persistent "
              "particles; time from the warm chunk (compiled), epoch = 2500 batches of 20"),
        bench_wall_s=time.perf_counter() - t_run,
    )
    plot(out, args.out.with_suffix(".png"))
    return out


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = r["results"]
    depth = {tuple(g) for g in r["settings"]["depth_grid"]}
    width = {tuple(g) for g in r["settings"]["width_grid"]}
    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    styles = {"fused": dict(color="C0", marker="o"), "blocks": dict(color="C3", marker="s"),
              "anderson": dict(color="C2", marker="^")}
    labels = {"fused": "Euler dt 0.5 (fused)", "blocks": "block sweeps",
              "anderson": f"block sweeps + Anderson ({r['settings'].get('anderson')})"}
    for col, (grid, key, xlabel) in enumerate(((depth, "hidden_layers", "hidden layers (width 500)"),
                                               (width, "width", "units per hidden layer (2 hidden layers)"))):
        for b in dict.fromkeys(q["backend"] for q in res):
            pts = sorted((q[key], q) for q in res if q["backend"] == b
                         and (q["hidden_layers"], q["width"]) in grid)
            xs = [p for p, _ in pts]
            ax[0, col].plot(xs, [q["epoch_s_estimate"] for _, q in pts], label=labels[b],
                            **styles[b])
            for regime, ls in (("cold", "--"), ("warm", "-")):
                ax[1, col].plot(xs, [q[regime]["free"] + q[regime]["nudged"] for _, q in pts],
                                ls=ls, label=f"{labels[b]}, {regime}", **styles[b])
        if key == "hidden_layers":
            paper = sorted((h, sum(it)) for h, it in PAPER_ITERATIONS.items())
            ax[1, col].plot([p[0] for p in paper], [p[1] for p in paper], "k:", marker="x",
                            label="paper's fixed iterations (free + nudged)")
        ax[0, col].set(xlabel=xlabel, ylabel="time per MNIST epoch (s, estimated)", yscale="log")
        ax[1, col].set(xlabel=xlabel, ylabel="free + nudged steps per batch", yscale="log")
        if key == "width":
            for a in ax[:, col]:
                a.set_xscale("log", base=2)
        for a in ax[:, col]:
            a.grid(True, which="both", alpha=0.3)
            a.legend(fontsize=8)
    fig.suptitle("Cost of EP training vs depth and width (MNIST, hard sigmoid, batch 20, "
                 "tol 1e-3)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(r: dict) -> None:
    print(f"\n{'arch':>28} {'backend':>7} {'cold free/nudged':>17} {'warm free/nudged':>17} "
          f"{'ms/batch':>9} {'epoch s':>8}")
    for q in r["results"]:
        print(f"{q['arch']:>28} {q['backend']:>7} {q['cold']['free']:8.1f}/{q['cold']['nudged']:<8.1f}"
              f" {q['warm']['free']:8.1f}/{q['warm']['nudged']:<8.1f} "
              f"{1e3 * q['seconds_per_batch']:9.2f} {q['epoch_s_estimate']:8.0f}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=REPO / ".." / "shared" / "data" / "mnist",
                    help="folder with the MNIST IDX files (default ../shared/data/mnist)")
    ap.add_argument("--batches", type=int, default=None,
                    help="batches per measurement (default 20; 4 with --quick)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="training batches before measuring, so the network is not a fresh "
                         "one (default 200; 20 with --quick)")
    ap.add_argument("--t1", type=float, default=250.0,
                    help="horizon of each phase in time units (steps or sweeps = t1 / 0.5)")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default benchmarks/results/cost_curves.json; the figure "
                         "goes next to it as .png)")
    ap.add_argument("--quick", action="store_true", help="a smaller grid, a few batches")
    ap.add_argument("--anderson", type=int, default=0, metavar="M",
                    help="also measure block sweeps with Anderson acceleration of memory M")
    args = ap.parse_args(argv)
    if args.batches is None:
        args.batches = 4 if args.quick else 20
    if args.warmup is None:
        args.warmup = 20 if args.quick else 200
    if args.anderson < 0:
        ap.error(f"--anderson {args.anderson} must be >= 0 (0: off)")
    if args.batches < 1 or args.warmup < 0:
        ap.error(f"--batches {args.batches} must be positive and --warmup {args.warmup} >= 0")
    if not args.t1 > 0:
        ap.error(f"--t1 {args.t1} must be positive")
    if args.out is None:
        args.out = HERE / "results" / ("cost_curves_quick.json" if args.quick else "cost_curves.json")
    args.data_dir = args.data_dir.resolve()
    return save_result(args.out, run(args), "bench_cost.py", argv, print_table)


if __name__ == "__main__":
    sys.exit(main())
