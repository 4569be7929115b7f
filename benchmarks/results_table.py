"""Turn the reproduction results (benchmarks/results/reproduce/*.json) into tables.

Usage (from the repository root):

    python benchmarks/results_table.py            # print the table and rewrite README.md's
    python benchmarks/results_table.py --check    # exit 1 if README.md's table is out of date
    python benchmarks/results_table.py --print    # print only (every result)

README.md holds the headline results (`HEADLINE`: one row per preset, its current setting)
between the lines `<!-- reproduce-table:start -->` and `<!-- reproduce-table:end -->`;
everything between them is generated. The documentation site's reproductions page shows the
full table, made from the same files each time the site builds (docs/_hooks.py).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "reproduce"
README = REPO / "README.md"
START = "<!-- reproduce-table:start -->"
END = "<!-- reproduce-table:end -->"
#: README's rows: (what a user types, the result file that records it)
HEADLINE = (
    ("eqdyn train --preset sb17-1h", "sb17-1h"),
    ("eqdyn train --preset sb17-2h --eval-persistent", "sb17-2h-paper"),
    ("eqdyn train --preset sb17-3h --eval-persistent", "sb17-3h-paper"),
    ("eqdyn train --preset sb17-3h-fast", "sb17-3h-30min-tol-hold-60k"),
    ("eqdyn train --preset lz22-mnist", "lz22-mnist"),
    ("eqdyn train --preset fmnist-1h --backend diffrax", "fmnist-1h"),
)


def _rule(cfg: dict) -> str:
    algo = cfg["algo"]
    if algo in ("ep", "cep", "continuous"):
        name = {"ep": "EP", "cep": "C-EP", "continuous": "continuous EP"}[algo]
        extra = f", N={cfg.get('n_points', 4)}" if cfg["variant"] == "holomorphic" else ""
        relax = ""
        if algo == "ep":  # how the phases were relaxed (same fixed points, tested)
            euler = f"{cfg.get('solver', 'euler')} dt {cfg.get('dt0', 0.5):g}"
            nudged = cfg.get("nudged_backend") or cfg.get("backend")
            if cfg.get("backend") == "blocks":
                sweeps = "block sweeps" + (f" (Anderson {cfg['anderson']})"
                                           if cfg.get("anderson") else "")
                relax = (f"; {sweeps}" if nudged == "blocks"
                         else f"; {sweeps}, nudged {euler}")
            else:
                relax = f"; {euler}"
            if cfg.get("tol", 1e-3) != 1e-3:  # the steady-state test's residual
                relax += f", tol {cfg['tol']:g}"
        if cfg.get("spike_rate"):  # spiking phases: fixed horizons of Poisson units
            relax = (f"; Poisson({cfg['spike_rate']:g}) spiking phases, dt {cfg['dt0']:g} for "
                     f"{cfg['free_t1']:g} + {cfg['nudged_t1']:g}")
        if cfg.get("temperature"):  # noisy phases: fixed horizons of Euler-Maruyama steps
            relax = (f"; noise T {cfg['temperature']:g}, Euler-Maruyama dt {cfg.get('dt0', 0.5):g}"
                     f" for {cfg.get('free_t1'):g} + {cfg.get('nudged_t1'):g}"
                     + {"holomorphic": " per point", "symmetric": " per sign"}.get(
                         cfg["variant"], ""))
        if cfg.get("common_noise"):  # symmetric EP's nudged phases on the same random numbers
            extra += " on common noise"
        return f"{name} {cfg['variant']}{extra}, beta {cfg['beta']:g}{relax}"
    return {"backprop": "feedforward backprop", "bptt": "BPTT", "rbp": "recurrent backprop",
            "chl": "CHL"}.get(algo, algo)


def _readout(cfg: dict) -> str:
    return ", softmax readout" if cfg.get("cost") == "cross_entropy" else ""


def _paper(r: dict) -> str:
    p = r.get("paper") or {}
    parts = []
    if "train_error" in p:
        parts.append(f"train {100 * p['train_error']:.2f} %")
    if "test_error" in p:
        t = p["test_error"]
        parts.append("test " + (f"{100 * t:.2f} %" if isinstance(t, float) else
                                "-".join(f"{100 * float(v):g}" for v in t.split("-")) + " %"))
    return ", ".join(parts) if parts else "-"


def _targets(r: dict) -> str:
    met = r.get("targets_met") or {}
    if not met:
        return "-"
    return "yes" if all(met.values()) else "no (" + ", ".join(k for k, v in met.items()
                                                               if not v) + ")"


def _err(r: dict, key: str) -> str:
    """An error; with `eval_persistent` (each example scored from its own persistent
    particle, the paper's protocol) the same network's error from zero states beside it."""
    out = f"{100 * r[key]:.2f} %"
    if "from_zero" in r:
        out += f" ({100 * r['from_zero'][key]:.2f} % from zero states)"
    return out


def table(results: list[dict]) -> str:
    lines = [
        "| result | data, network | rule | epochs | train error | test error | paper | "
        "targets met | wall (epochs) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cfg = r["config"]
        cmd = r["command"].replace("python benchmarks/bench_reproduce.py ", "")
        cmd = re.sub(r"\s--(run-dir|out|from-run)\s+\S+", "", cmd)  # where this machine kept the run
        lines.append(
            f"| `{cmd}` | {r['dataset']}, {cfg['arch']} {cfg['activation']}{_readout(cfg)} | "
            f"{_rule(cfg)} | "
            f"{r['epochs']} | {_err(r, 'train_error')} | {_err(r, 'test_error')} | "
            f"{_paper(r)} | {_targets(r)} | {r['epoch_wall_s'] / 60:.0f} min |"
        )
    return "\n".join(lines)


def headline(results: dict[str, dict]) -> str:
    """README's short table: for each `HEADLINE` command, the network, the test error (from
    particles where the run scored so, as the paper does), the paper's, and the wall time."""
    lines = ["| command (add `--download`) | data, network | test error | paper | wall |",
             "|---|---|---|---|---|"]
    for cmd, name in HEADLINE:
        r = results[name]
        cfg = r["config"]
        lines.append(f"| `{cmd}` | {r['dataset']}, {cfg['arch']} | {_err(r, 'test_error')} | "
                     f"{_paper(r)} | {r['epoch_wall_s'] / 60:.0f} min ({r['epochs']} epochs) |")
    return "\n".join(lines)


def load_named(folder: Path = RESULTS) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def load(folder: Path = RESULTS) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def render_readme(text: str, tbl: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"{README} has no {START} ... {END} block to fill.")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{tbl}\n{END}{tail}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true", help="fail if README.md is out of date")
    g.add_argument("--print", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    if args.print:
        print(table(load()))
        return 0
    tbl = headline(load_named())
    text = README.read_text()
    new = render_readme(text, tbl)
    if args.check:
        if new != text:
            print("README.md's reproduction table is out of date; run "
                  "`python benchmarks/results_table.py`.", file=sys.stderr)
            return 1
        return 0
    tmp = README.with_suffix(".md.tmp")
    tmp.write_text(new)
    tmp.replace(README)
    print(tbl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
