"""The wall time of a whole `eqdyn train --preset NAME` process, as a user runs it.

Runs the command `--repeats` times, each in a fresh temporary run directory, and records per
run: the process wall (from `exec` to exit: interpreter start, imports, data loading, model
build, every compilation, all epochs with their validations, checkpoints, the final
evaluation), its user and system CPU time and peak RSS (the child's own, from `os.wait4`), the final
errors from its `metrics.json`, and the share of the CPUs' time the hypervisor stole while it
ran (from /proc/stat). On a shared virtual machine the steal share is the main source of
run-to-run noise, so read each wall beside its steal.

Usage (from the repository root; MNIST from ../shared/data):

    python benchmarks/bench_wall.py                       # sb17-1h, 3 runs
    python benchmarks/bench_wall.py --preset sb17-1h --repeats 5
    # A/B: the same runs interleaved with others under a changed environment
    python benchmarks/bench_wall.py --with-env XLA_FLAGS=--xla_cpu_multi_thread_eigen=false

Writes `benchmarks/results/wall_<preset>.json` (`wall_<preset>_env.json` with `--with-env`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_epoch import _cpu_stat, load_report, start_run, steal_share, write_json_atomic  # noqa: E402

#: the issue's target for the whole sb17-1h training (compile included), in seconds
TARGETS = {"sb17-1h": 60.0}


def one_run(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Run `cmd` (a run directory is appended) once, with `env` added to this process's
    environment; its wall, CPU, RSS, steal and errors."""
    import json

    with tempfile.TemporaryDirectory(prefix="eqdyn-wall-") as tmp:
        run_dir = Path(tmp) / "run"
        log = Path(tmp) / "log"
        with open(log, "w+") as out:
            cpu0 = _cpu_stat()
            t0 = time.perf_counter()
            proc = subprocess.Popen([*cmd, "--run-dir", str(run_dir), "--quiet"],
                                    stdout=out, stderr=subprocess.STDOUT,
                                    env=None if not env else {**os.environ, **env})
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own CPU time and RSS
            wall = time.perf_counter() - t0
            cpu1 = _cpu_stat()
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            text = out.read()
        if proc.returncode != 0:
            raise SystemExit(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n"
                             f"{text[-3000:]}")
        m = json.loads((run_dir / "metrics.json").read_text())
    return dict(
        wall_s=wall,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024,  # Linux: KiB
        cpu_steal_fraction=steal_share(cpu0, cpu1),
        test_error=m["test_error"],
        train_error=m["train_error"],
        run_wall_s=m["wall_seconds"],
    )


def run(args) -> dict:
    # the `eqdyn` command of this interpreter's environment (what its entry point runs)
    cmd = [sys.executable, "-m", "eqdyn.cli", "train", "--preset", args.preset]
    data_dir = args.data_dir
    if data_dir is None and "EQDYN_DATA_DIR" not in os.environ:
        from eqdyn.training import resolve_config

        shared = REPO.parent / "shared" / "data" / resolve_config(args.preset).dataset
        data_dir = str(shared) if shared.is_dir() else None
    if data_dir is not None:
        cmd += ["--data-dir", data_dir]
    load_start, busy, info = start_run()
    t0 = time.perf_counter()
    runs, runs_env = [], []
    variants = [(runs, None)] + ([(runs_env, args.with_env)] if args.with_env else [])
    for i in range(args.repeats):
        # interleaved, so that drifts in load hit both alike, and in turns first (the very
        # first run also warms the page cache)
        for out, env in (variants if i % 2 == 0 else variants[::-1]):
            r = one_run(cmd, env)
            out.append(r)
            steal = r["cpu_steal_fraction"]
            tag = "" if env is None else " [" + " ".join(f"{k}={v}" for k, v in env.items()) + "]"
            print(f"run {i + 1}/{args.repeats}{tag}: wall {r['wall_s']:.1f} s  user "
                  f"{r['user_s']:.1f} s  sys {r['sys_s']:.1f} s  steal "
                  f"{'-' if steal is None else f'{100 * steal:.1f} %'}  test error "
                  f"{100 * r['test_error']:.2f} %  train error {100 * r['train_error']:.2f} %",
                  flush=True)
    walls = [r["wall_s"] for r in runs]
    extra = {}
    if args.with_env:
        w_env = [r["wall_s"] for r in runs_env]
        extra = dict(with_env=dict(
            env=args.with_env,
            default_env={k: os.environ.get(k) for k in args.with_env},  # what it replaced
            runs=runs_env, wall_min_s=min(w_env),
            wall_median_s=statistics.median(w_env),
            median_ratio_over_default=statistics.median(w_env) / statistics.median(walls),
            note="the same command with these variables set in the environment (replacing "
                 "default_env), alternating with the default runs: default first in odd "
                 "repeats, this one first in even ones"))
    target = TARGETS.get(args.preset)
    quietest = min(runs, key=lambda r: (r["cpu_steal_fraction"] or 0.0, r["wall_s"]))
    shown = ["eqdyn"] + [os.path.relpath(c, REPO) if c == data_dir else c for c in cmd[3:]]
    return dict(
        preset=args.preset,
        command_measured=" ".join(shown) + " --run-dir TMP --quiet",
        runs=runs,
        wall_min_s=min(walls),
        wall_median_s=statistics.median(walls),
        quietest_run=quietest,
        target_s=target,
        target_met_min=None if target is None else bool(min(walls) <= target),
        target_met_median=None if target is None else bool(statistics.median(walls) <= target),
        bench_wall_s=time.perf_counter() - t0,
        note=("wall_s is the whole process, from exec to exit, as `time` reports it; "
              "quietest_run is the run with the smallest steal share."),
        **extra,
        **load_report(info, load_start, busy),
    )


def main(argv=None) -> int:
    from eqdyn.training import PRESETS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--preset", default="sb17-1h", choices=sorted(PRESETS),
                   help="the `eqdyn train` preset to time (default sb17-1h)")
    p.add_argument("--repeats", type=int, default=3, help="runs (default 3)")
    p.add_argument("--data-dir", help="folder with the IDX .gz files (default ../shared/data/...)")
    p.add_argument("--with-env", action="append", default=[], metavar="KEY=VALUE",
                   help="also time each run with this variable set, interleaved with the "
                   "default runs (repeat the flag to set several variables in that one variant)")
    p.add_argument("--out", help="JSON path (default benchmarks/results/wall_<preset>.json, "
                   "wall_<preset>_env.json with --with-env)")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats {args.repeats}: give at least 1 run")
    env = {}
    for item in args.with_env:
        key, eq, value = item.partition("=")
        if not eq or not key or not key.replace("_", "").isalnum():
            p.error(f"--with-env {item!r}: give KEY=VALUE, e.g. "
                    "XLA_FLAGS=--xla_cpu_multi_thread_eigen=false")
        env[key] = value
    args.with_env = env
    result = run(args)
    out = Path(args.out) if args.out else HERE / "results" / (
        f"wall_{args.preset}{'_env' if env else ''}.json")
    result["command"] = " ".join(["python", "benchmarks/bench_wall.py", *argv])
    write_json_atomic(out, result)
    tgt = result["target_s"]
    print(f"{args.preset}: process wall min {result['wall_min_s']:.1f} s, median "
          f"{result['wall_median_s']:.1f} s over {len(result['runs'])} runs"
          + ("" if tgt is None else f"; target <= {tgt:.0f} s met by the fastest run: "
             f"{result['target_met_min']}, by the median: {result['target_met_median']}"))
    if env:
        w = result["with_env"]
        print(f"with {' '.join(f'{k}={v}' for k, v in env.items())}: min "
              f"{w['wall_min_s']:.1f} s, median {w['wall_median_s']:.1f} s "
              f"({w['median_ratio_over_default']:.3f}x the default's median)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
