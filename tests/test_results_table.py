"""The README's reproduction table is generated from benchmarks/results/reproduce/*.json."""

from __future__ import annotations

from helpers import load_benchmark


def _module():
    return load_benchmark("results_table")


def test_readme_table_is_current():
    assert _module().main(["--check"]) == 0, "run `python benchmarks/results_table.py`"


def test_table_rows_come_from_the_json():
    mod = _module()
    result = dict(
        command="python benchmarks/bench_reproduce.py sb17-1h --run-dir /x/y --set lr=0.1",
        dataset="mnist", epochs=3, train_error=0.01, test_error=0.025, epoch_wall_s=120.0,
        config=dict(algo="ep", variant="holomorphic", n_points=6, beta=0.5, arch="784-500-10",
                    activation="steep_sigmoid"),
        paper=dict(train_error=0.0, test_error="0.02-0.03"),
        targets_met=dict(train_error=False, test_error=True),
    )
    row = mod.table([result]).splitlines()[-1]
    assert row == ("| `sb17-1h --set lr=0.1` | mnist, 784-500-10 steep_sigmoid | EP holomorphic, "
                   "N=6, beta 0.5; euler dt 0.5 | 3 | 1.00 % | 2.50 % | train 0.00 %, test 2-3 % | "
                   "no (train_error) | 2 min |")
    blocks = dict(result, config=dict(result["config"], variant="random-sign", backend="blocks"))
    assert "EP random-sign, beta 0.5; block sweeps |" in mod.table([blocks])
    loose = dict(result, config=dict(blocks["config"], anderson=3, tol=0.01))
    assert "EP random-sign, beta 0.5; block sweeps (Anderson 3), tol 0.01 |" in mod.table([loose])
    tracked = dict(result, from_zero=dict(train_error=0.02, test_error=0.04))
    assert "| 1.00 % (2.00 % from zero states) | 2.50 % (4.00 % from zero states) |" in (
        mod.table([tracked]))
    text = f"a\n{mod.START}\nold\n{mod.END}\nb\n"
    assert mod.render_readme(text, "T") == f"a\n{mod.START}\nT\n{mod.END}\nb\n"


def test_readme_headline_rows_name_existing_results():
    mod = _module()
    results = mod.load_named()
    assert all(name in results for _, name in mod.HEADLINE)
    lines = mod.headline(results).splitlines()
    assert len(lines) == 2 + len(mod.HEADLINE)
    assert lines[2].startswith("| `eqdyn train --preset sb17-1h` | mnist, 784-500-10 | ")


def test_load_report_measures_steal_from_its_own_start(monkeypatch):
    # benchmarks/bench_epoch.py: the steal share over a run, from the counters `start_run`
    # keeps in `info` (no module state); the private counters stay out of the JSON
    mod = load_benchmark("bench_epoch")
    counters = iter([(100, 0, 0, 100, 0, 0, 0, 0), (150, 0, 0, 120, 0, 0, 0, 30)])
    monkeypatch.setattr(mod, "_cpu_stat", lambda: next(counters))
    monkeypatch.setattr(mod, "_other_busy_processes", lambda: [])
    load_start, busy, info = mod.start_run()
    report = mod.load_report(info, load_start, busy)
    assert report["cpu_steal_fraction"] == 0.3  # 30 of 100 ticks
    assert "30 % of the CPU time" in report["contention_note"]
    assert not any(k.startswith("_") for k in report["machine"])
