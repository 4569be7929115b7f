"""Record a finished `eqdyn rbm train` run and its AIS evaluations as one results JSON.

    python benchmarks/record_rbm_run.py RUN_DIR [EVAL_DIR ...] --out results/rbm_sm08_cd25.json

`RUN_DIR` is a run of `eqdyn rbm train` (its `config.json` and `metrics.json`); each directory
given (`RUN_DIR` itself included when it holds one) contributes its `evaluate.json` (written
by `eqdyn rbm evaluate`). A run of a preset must have the preset's settings (the data folder
and seed aside): the record then says what `eqdyn rbm train --preset NAME` gives. The
paper's figures for Salakhutdinov & Murray's presets go beside the result with the gap.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

#: Salakhutdinov & Murray (2008), MNIST RBM with 500 hidden units, test log-likelihood (nats)
PAPER = {"sm08-cd1": -125.53, "sm08-cd25": -86.34}
#: issue 27's target: within this many nats of the paper, with CD-25
TARGET_NATS = 3.0


def record(run: Path, evals: list[Path]) -> dict:
    from eqdyn.cli import RBM_PRESETS, rbm_settings

    cfg = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    preset = cfg.get("preset")
    if preset:
        want = rbm_settings(preset)
        differ = sorted(k for k in want if k not in ("data_dir", "seed") and cfg.get(k) != want[k])
        if differ:
            raise SystemExit(f"{run}: settings differ from --preset {preset} in {differ} "
                             f"({ {k: cfg.get(k) for k in differ} } vs "
                             f"{ {k: want[k] for k in differ} }); record it without the preset's "
                             "name or rerun with the preset.")
    hist = metrics["history"]
    out = {
        "run_command": f"eqdyn rbm train --preset {preset}" if preset in RBM_PRESETS else None,
        "config": cfg,
        "history": [{"epoch": h["epoch"], "reconstruction": round(h["loss"], 3),
                     "seconds": round(h["seconds"], 1)} for h in hist],
        "seconds_per_epoch_after_first": (sum(h["seconds"] for h in hist[1:])
                                          / max(len(hist) - 1, 1)),
        "evaluations": [],
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python", "benchmarks/record_rbm_run.py", *sys.argv[1:]]),
    }
    for d in [run] + evals:
        path = d / "evaluate.json"
        if path.exists() and (d == run or path.resolve() != (run / "evaluate.json").resolve()):
            ev = json.loads(path.read_text())
            if ev.get("epoch") != hist[-1]["epoch"]:
                raise SystemExit(f"{path} scored epoch {ev.get('epoch')}, but the run ended at "
                                 f"epoch {hist[-1]['epoch']}: evaluate a copy of the last "
                                 "checkpoint.")
            out["evaluations"].append(dict(ev, dir=str(d)))
    if preset in PAPER and out["evaluations"]:
        ll = [e["log_likelihood"] for e in out["evaluations"] if e["split"] == "test"]
        paper = PAPER[preset]
        out["paper"] = {"test_log_likelihood": paper,
                        "source": "Salakhutdinov & Murray (2008), 500 hidden units"}
        if ll:
            gap = paper - min(ll)  # the worst of the evaluations
            out["gap_nats"] = gap
            if preset == "sm08-cd25":
                out["target"] = f"within {TARGET_NATS:g} nats of {paper} (issue 27)"
                out["target_met"] = gap <= TARGET_NATS
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("evals", type=Path, nargs="*", help="more folders with an evaluate.json")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    out = record(a.run, a.evals)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
