"""Time symbolic derivation + compilation, and the compiled vector field against hand-written JAX.

Two requirements, measured in one run (so that ratios are meaningful even on a busy machine):

(a) deriving and compiling a 5-hidden-layer network (784-500-500-500-500-500-10) takes under
    2 s: `derive(layered_hopfield_energy(sizes))` plus `compile_system(derivation, "sigmoid",
    "gradient")` (code generation + `exec`, no JAX tracing). Each repetition runs in a fresh
    subprocess, so SymPy's caches are cold; the same process then repeats the derivation warm.
    The first jitted call of the vector field (trace + XLA compile) is timed separately.
(b) the compiled vector field of 784-500-500-500-10 (batch 256, float32) runs within 10% of a
    hand-written `-jax.grad(F)` field. Both are `jax.jit`-ed and called with the same inputs,
    warmed up, then timed interleaved (every round calls every variant once, in rotating
    order) with `block_until_ready`; medians per call and their ratios. Four variants: the
    compiled field with and without the hoisted constants (`x W_1`), the hand field with and
    without `x W_1` precomputed. The same four are timed as whole 50-step fixed-step Euler
    relaxations (`jax.lax.fori_loop`, constants computed once per relaxation inside the jit).
    The fields' numerical agreement (float32) is recorded.

Usage (from the repository root):

    python benchmarks/bench_derive.py            # writes benchmarks/results/derive.json
    python benchmarks/bench_derive.py --quick    # fewer repetitions (smoke run)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_epoch import load_report, save_result, start_run, write_json_atomic

#: requirement (a): the network derived and compiled, and its time budget
DERIVE_SIZES = (784, 500, 500, 500, 500, 500, 10)
DERIVE_TARGET_S = 2.0
#: requirement (b): the network whose field is timed, batch, and the allowed slowdown
FIELD_SIZES = (784, 500, 500, 500, 10)
FIELD_TARGET_RATIO = 1.10
BATCH = 256
ACTIVATION = "sigmoid"
FORMULATION = "gradient"
BETA = 0.5
RELAX_DT = 0.2

VARIANTS = ("compiled_hoisted", "compiled_plain", "hand", "hand_precomputed")
VARIANT_NOTE = {
    "compiled_hoisted": "system.field(states, params, inputs, beta, constants), constants = "
                        "system.constants(...) (x W_1) computed once outside the timed call / "
                        "once per relaxation",
    "compiled_plain": "system.field(states, params, inputs, beta): x W_1 recomputed per call",
    "hand": "-jax.grad(F, argnums=states) of the energy written in plain jnp (jax.nn.sigmoid), "
            "x W_1 inside F",
    "hand_precomputed": "the same hand-written F with c = x W_1 passed in precomputed (computed "
                        "once outside the timed call / once per relaxation)",
}


def _median(xs):
    return float(statistics.median(xs))


def _summary(xs) -> dict:
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
    return dict(median_s=_median(xs), min_s=float(xs[0]), q1_s=float(q[0]), q3_s=float(q[2]),
                n=len(xs))


# ----------------------------------------------------------------------------------------
# (a) derive + compile, one cold repetition per subprocess


def derive_worker(out_path: str, n_warm: int, batch: int) -> None:
    t0 = time.perf_counter()
    import jax
    import sympy

    import eqdyn.symbolic as sym  # the package __init__ imports all of eqdyn (JAX, diffrax)
    from eqdyn.models import compile_system
    t_import = time.perf_counter() - t0

    def once():
        t0 = time.perf_counter()
        energy = sym.layered_hopfield_energy(DERIVE_SIZES)
        t1 = time.perf_counter()
        derivation = sym.derive(energy)
        t2 = time.perf_counter()
        system = compile_system(derivation, ACTIVATION, FORMULATION)
        t3 = time.perf_counter()
        return system, dict(energy_s=t1 - t0, derive_s=t2 - t1, compile_system_s=t3 - t2,
                            total_s=t3 - t0)

    system, cold = once()
    warm = [once()[1] for _ in range(n_warm)]

    # the first jitted call of the field (trace + XLA compile), batch `batch`, float32
    sizes = DERIVE_SIZES
    states, params, inputs, beta = make_problem(sizes, batch, seed=1)
    const_fn = jax.jit(lambda s, p, i, b: system.constants(s, p, i, b))
    field_fn = jax.jit(lambda s, p, i, b, c: system.field(s, p, i, b, c))
    t0 = time.perf_counter()
    c = jax.block_until_ready(const_fn(states, params, inputs, beta))
    first_constants_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(field_fn(states, params, inputs, beta, c))
    first_field_s = time.perf_counter() - t0
    steady = []
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(field_fn(states, params, inputs, beta, c))
        steady.append(time.perf_counter() - t0)
    # the same again with a fresh wrapper, split into trace+lowering and XLA compilation
    fresh = jax.jit(lambda s, p, i, b, c: system.field(s, p, i, b, c))
    t0 = time.perf_counter()
    lowered = fresh.lower(states, params, inputs, beta, c)
    lower_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lowered.compile()
    xla_compile_s = time.perf_counter() - t0
    write_json_atomic(Path(out_path), dict(
        sympy=sympy.__version__,
        import_s=t_import,
        cold=cold, warm=warm,
        first_call=dict(constants_s=first_constants_s, field_hoisted_s=first_field_s,
                        field_second_call_s=_median(steady), trace_and_lower_s=lower_s,
                        xla_compile_s=xla_compile_s, batch=batch),
    ))


def run_derive(reps: int, n_warm: int) -> dict:
    runs = []
    with tempfile.TemporaryDirectory(prefix="eqdyn-bench-derive-") as tmp:
        for r in range(reps):
            out = Path(tmp) / f"derive{r}.json"
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "--derive-worker",
                            str(out), str(n_warm), str(BATCH)], check=True)
            runs.append(json.loads(out.read_text()))
            print(f"  cold derive+compile {r + 1}/{reps}: {runs[-1]['cold']['total_s']:.3f} s "
                  f"(derive {runs[-1]['cold']['derive_s']:.3f}, compile_system "
                  f"{runs[-1]['cold']['compile_system_s']:.3f}); first jitted field call "
                  f"{runs[-1]['first_call']['field_hoisted_s']:.2f} s", flush=True)

    def med(part, key):
        vals = [x[key] for r in runs for x in ([r[part]] if part == "cold" else r[part])]
        return _median(vals) if vals else None

    keys = ("energy_s", "derive_s", "compile_system_s", "total_s")
    first = {k: _median([r["first_call"][k] for r in runs])
             for k in ("constants_s", "field_hoisted_s", "field_second_call_s",
                       "trace_and_lower_s", "xla_compile_s")}
    cold_total = med("cold", "total_s")
    return dict(
        sizes=list(DERIVE_SIZES), activation=ACTIVATION, formulation=FORMULATION,
        repetitions=reps, warm_repetitions_per_process=n_warm,
        cold_median={k: med("cold", k) for k in keys},
        warm_median={k: med("warm", k) for k in keys} if n_warm else None,
        cold_max_total_s=max(r["cold"]["total_s"] for r in runs),
        first_jitted_call_median=dict(first, batch=BATCH),
        import_median_s=_median([r["import_s"] for r in runs]),
        runs=runs,
        target_s=DERIVE_TARGET_S,
        passed=bool(cold_total < DERIVE_TARGET_S),
        note=("total_s = layered_hopfield_energy(sizes) + derive(...) + compile_system(..., "
              f"{ACTIVATION!r}, {FORMULATION!r}) (code generation + exec, no JAX tracing). "
              "cold: the first time in a fresh subprocess (imports done, SymPy caches empty), "
              "median over the subprocesses; warm: repeated in the same process (SymPy caches "
              "filled). first_jitted_call: jax.jit of system.field with constants, first call "
              f"at batch {BATCH} float32 (trace + XLA compile + one run; constants_s is the "
              "first call of the jitted constants function), then a fresh wrapper split into "
              "trace+lowering and XLA compilation. Imports (sympy, jax and eqdyn, whose package "
              "__init__ loads everything) are not in any of these times (import_median_s). "
              "passed: cold median total < target_s."),
    )


# ----------------------------------------------------------------------------------------
# (b) compiled vs hand-written field


def make_problem(sizes, batch, seed=0):
    """Random float32 states, params (W_1..W_L, b_1..b_L with b_k (1, n_k)), inputs (x, d), beta."""
    import jax
    import jax.numpy as jnp

    L = len(sizes) - 1
    keys = jax.random.split(jax.random.PRNGKey(seed), 2 * L + 2)
    f32 = jnp.float32
    states = tuple(jax.random.uniform(keys[k], (batch, n), f32, -0.5, 1.5)
                   for k, n in enumerate(sizes[1:]))
    weights = tuple(jax.random.normal(keys[L + k], (a, b), f32) / jnp.sqrt(float(a))
                    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])))
    biases = tuple(jnp.full((1, n), 0.05 * (k + 1), f32) for k, n in enumerate(sizes[1:]))
    x = jax.random.uniform(keys[-2], (batch, sizes[0]), f32)
    d = jax.nn.one_hot(jnp.arange(batch) % sizes[-1], sizes[-1], dtype=f32)
    return states, (*weights, *biases), (x, d), jnp.asarray(BETA, f32)


def hand_energy(states, params, drive, d, beta):
    """F of the layered Hopfield network in plain jnp; `drive` = x W_1 (computed by the caller)."""
    import jax
    import jax.numpy as jnp

    rho = jax.nn.sigmoid
    L = len(states)
    W, b = params[:L], params[L:]
    F = sum(0.5 * jnp.sum(s**2) for s in states)
    F = F - jnp.sum(drive * rho(states[0]))
    for k in range(1, L):
        F = F - jnp.sum((rho(states[k - 1]) @ W[k]) * rho(states[k]))
    for k in range(L):
        F = F - jnp.sum(b[k] * rho(states[k]))
    return F + beta * 0.5 * jnp.sum((states[-1] - d) ** 2)


def hand_field(states, params, inputs, beta):
    """-dF/ds, x W_1 computed inside F."""
    import jax

    x, d = inputs

    def F(st):
        return hand_energy(st, params, x @ params[0], d, beta)

    return tuple(-g for g in jax.grad(F)(states))


def hand_field_precomputed(states, params, drive, d, beta):
    """-dF/ds with `drive` = x W_1 given."""
    import jax

    g = jax.grad(hand_energy, argnums=0)(states, params, drive, d, beta)
    return tuple(-a for a in g)


def build_variants(system):
    """Jitted per-call fields and 50-step relaxations; each takes (states, params, inputs, beta, pre)
    with pre = (constants, x W_1) precomputed outside."""
    import jax

    def euler(field_of, states, n_steps):
        def body(_, s):
            f = field_of(s)
            return tuple(a + RELAX_DT * fa for a, fa in zip(s, f))

        return jax.lax.fori_loop(0, n_steps, body, states)

    per_call = {
        "compiled_hoisted": jax.jit(lambda s, p, i, b, c: system.field(s, p, i, b, c)),
        "compiled_plain": jax.jit(lambda s, p, i, b: system.field(s, p, i, b)),
        "hand": jax.jit(hand_field),
        "hand_precomputed": jax.jit(hand_field_precomputed),
    }

    def relax_compiled_hoisted(s, p, i, b, n):
        c = system.constants(s, p, i, b)
        return euler(lambda st: system.field(st, p, i, b, c), s, n)

    def relax_compiled_plain(s, p, i, b, n):
        return euler(lambda st: system.field(st, p, i, b), s, n)

    def relax_hand(s, p, i, b, n):
        return euler(lambda st: hand_field(st, p, i, b), s, n)

    def relax_hand_precomputed(s, p, i, b, n):
        drive = i[0] @ p[0]
        return euler(lambda st: hand_field_precomputed(st, p, drive, i[1], b), s, n)

    relax = {
        "compiled_hoisted": jax.jit(relax_compiled_hoisted, static_argnums=4),
        "compiled_plain": jax.jit(relax_compiled_plain, static_argnums=4),
        "hand": jax.jit(relax_hand, static_argnums=4),
        "hand_precomputed": jax.jit(relax_hand_precomputed, static_argnums=4),
    }
    return per_call, relax


def interleaved(calls: dict, rounds: int, warmup: int) -> dict:
    """Time every callable once per round, rotating the order; returns name -> list of seconds."""
    import jax

    names = list(calls)
    for _ in range(warmup):
        for n in names:
            jax.block_until_ready(calls[n]())
    times = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            t0 = time.perf_counter()
            jax.block_until_ready(calls[n]())
            times[n].append(time.perf_counter() - t0)
    return times


def run_field(rounds: int, relax_rounds: int, relax_steps: int) -> dict:
    import jax
    import jax.numpy as jnp

    from eqdyn.models import compile_system
    from eqdyn.symbolic import derive, layered_hopfield_energy

    system = compile_system(derive(layered_hopfield_energy(FIELD_SIZES)), ACTIVATION, FORMULATION)
    states, params, inputs, beta = make_problem(FIELD_SIZES, BATCH)
    x, d = inputs
    constants = jax.block_until_ready(jax.jit(system.constants)(states, params, inputs, beta))
    drive = jax.block_until_ready(jax.jit(lambda a, w: a @ w)(x, params[0]))
    per_call, relax = build_variants(system)

    args = {
        "compiled_hoisted": (states, params, inputs, beta, constants),
        "compiled_plain": (states, params, inputs, beta),
        "hand": (states, params, inputs, beta),
        "hand_precomputed": (states, params, drive, d, beta),
    }
    # compile everything first (not timed here: requirement (a) measures compilation)
    outs = {n: jax.block_until_ready(per_call[n](*args[n])) for n in VARIANTS}
    finals = {n: jax.block_until_ready(relax[n](states, params, inputs, beta, relax_steps))
              for n in VARIANTS}

    def maxdiff(a, b):
        return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(a, b))

    scale = max(float(jnp.max(jnp.abs(g))) for g in outs["hand"])
    final_scale = max(float(jnp.max(jnp.abs(g))) for g in finals["hand"])
    agreement = dict(
        field_max_abs_diff={n: maxdiff(outs[n], outs["hand"]) for n in VARIANTS if n != "hand"},
        field_max_abs=scale,
        relax_final_state_max_abs_diff={n: maxdiff(finals[n], finals["hand"])
                                        for n in VARIANTS if n != "hand"},
        relax_final_state_max_abs=final_scale,
        note=("float32; every variant against the hand field (x W_1 inside F) on the same "
              f"inputs: random states U(-0.5, 1.5), W_k ~ N(0, 1/n_(k-1)), x ~ U(0, 1), one-hot "
              f"d, beta = {BETA}; relaxation: {relax_steps} Euler steps of dt = {RELAX_DT} from "
              "those states"),
    )
    print(f"  field agreement (float32): max |compiled - hand| = "
          f"{agreement['field_max_abs_diff']['compiled_hoisted']:.2e} (|field| <= {scale:.1f}); "
          f"after {relax_steps} steps "
          f"{agreement['relax_final_state_max_abs_diff']['compiled_hoisted']:.2e}", flush=True)

    print(f"  per-call field: {rounds} interleaved rounds ...", flush=True)
    t_field = interleaved({n: (lambda n=n: per_call[n](*args[n])) for n in VARIANTS},
                          rounds, warmup=5)
    print(f"  {relax_steps}-step relaxations: {relax_rounds} interleaved rounds ...", flush=True)
    t_relax = interleaved(
        {n: (lambda n=n: relax[n](states, params, inputs, beta, relax_steps)) for n in VARIANTS},
        relax_rounds, warmup=1)

    pairs = dict(compiled_hoisted_over_hand=("compiled_hoisted", "hand"),
                 compiled_hoisted_over_hand_precomputed=("compiled_hoisted", "hand_precomputed"),
                 compiled_plain_over_hand=("compiled_plain", "hand"))

    def ratios(t):
        return {k: _median(t[a]) / _median(t[b]) for k, (a, b) in pairs.items()}

    def robust(t):
        # two cross-checks of the ratio of medians: the ratio of the fastest calls, and the
        # median over rounds of the ratio within a round (both calls made moments apart)
        return dict(
            ratio_of_min={k: min(t[a]) / min(t[b]) for k, (a, b) in pairs.items()},
            median_of_paired_ratios={k: _median([u / v for u, v in zip(t[a], t[b])])
                                     for k, (a, b) in pairs.items()},
        )

    field_ratios = ratios(t_field)
    relax_ratios = ratios(t_relax)
    checks = {f"per_call.{k}": v for k, v in field_ratios.items()}
    checks.update({f"relaxation.{k}": v for k, v in relax_ratios.items()})
    return dict(
        sizes=list(FIELD_SIZES), batch=BATCH, dtype="float32", activation=ACTIVATION,
        formulation=FORMULATION, beta=BETA,
        variants=VARIANT_NOTE,
        per_call=dict(rounds=rounds, warmup=5,
                      times={n: _summary(t_field[n]) for n in VARIANTS},
                      ratios=field_ratios, ratio_cross_checks=robust(t_field)),
        relaxation=dict(steps=relax_steps, dt=RELAX_DT, rounds=relax_rounds, warmup=1,
                        times={n: _summary(t_relax[n]) for n in VARIANTS},
                        per_step_median_s={n: _median(t_relax[n]) / relax_steps
                                           for n in VARIANTS},
                        ratios=relax_ratios, ratio_cross_checks=robust(t_relax)),
        agreement=agreement,
        target_ratio=FIELD_TARGET_RATIO,
        checks={k: dict(ratio=v, passed=bool(v < FIELD_TARGET_RATIO)) for k, v in checks.items()},
        passed=bool(all(v < FIELD_TARGET_RATIO for v in checks.values())),
        note=("Every variant jax.jit-ed, same inputs, warmed up, then timed interleaved (each "
              "round calls each variant once, the order rotating by one per round), "
              "block_until_ready after every call; times are per call (dispatch included). "
              "Ratios of medians (ratio_cross_checks: ratio of the minima, and the median "
              "of the per-round ratios). compiled_hoisted_over_hand: the compiled field as it is used "
              "(hoisted x W_1) against the naive hand field; compiled_hoisted_over_hand_"
              "precomputed and compiled_plain_over_hand are like for like. Relaxation: "
              "jax.lax.fori_loop of fixed-step Euler inside one jit, constants / x W_1 computed "
              "once per relaxation inside it (XLA may also hoist the loop-invariant x W_1 of "
              "the 'plain' and 'hand' variants itself). passed: every ratio < target_ratio."),
    )


# ----------------------------------------------------------------------------------------


def run(args) -> dict:
    import sympy

    t_run = time.perf_counter()
    load_start, busy, info = start_run(sympy=sympy.__version__)
    if args.quick:
        reps, n_warm, rounds, relax_rounds = 2, 1, 30, 3
    else:
        reps, n_warm, rounds, relax_rounds = 5, 3, 200, 15
    reps = args.derive_reps or reps
    rounds = args.rounds or rounds
    relax_rounds = args.relax_rounds or relax_rounds

    print(f"(a) derive + compile {'-'.join(map(str, DERIVE_SIZES))}: {reps} fresh processes ...",
          flush=True)
    derive_res = run_derive(reps, n_warm)
    print(f"(b) field of {'-'.join(map(str, FIELD_SIZES))}, batch {BATCH}, float32 ...",
          flush=True)
    field_res = run_field(rounds, relax_rounds, args.relax_steps)
    result = dict(
        **load_report(info, load_start, busy),
        quick=bool(args.quick),
        derive=derive_res,
        field=field_res,
        targets=dict(
            derive_compile_under_2s=dict(
                value_s=derive_res["cold_median"]["total_s"], target_s=DERIVE_TARGET_S,
                passed=derive_res["passed"]),
            field_within_10pct=dict(
                per_call_compiled_over_hand=field_res["per_call"]["ratios"][
                    "compiled_hoisted_over_hand"],
                per_call_like_for_like_max=max(
                    field_res["per_call"]["ratios"]["compiled_hoisted_over_hand_precomputed"],
                    field_res["per_call"]["ratios"]["compiled_plain_over_hand"]),
                relaxation_compiled_over_hand=field_res["relaxation"]["ratios"][
                    "compiled_hoisted_over_hand"],
                relaxation_like_for_like_max=max(
                    field_res["relaxation"]["ratios"]["compiled_hoisted_over_hand_precomputed"],
                    field_res["relaxation"]["ratios"]["compiled_plain_over_hand"]),
                target_ratio=FIELD_TARGET_RATIO, passed=field_res["passed"]),
        ),
        bench_wall_s=None,
    )
    result["bench_wall_s"] = time.perf_counter() - t_run
    return result


def print_table(r: dict) -> None:
    d, f = r["derive"], r["field"]
    c, w, fc = d["cold_median"], d["warm_median"], d["first_jitted_call_median"]
    print(f"\n(a) {'-'.join(map(str, d['sizes']))}, median of {d['repetitions']} fresh processes")
    print(f"  cold: energy {c['energy_s']:.3f} + derive {c['derive_s']:.3f} + compile_system "
          f"{c['compile_system_s']:.3f} = {c['total_s']:.3f} s (max {d['cold_max_total_s']:.3f})"
          f"  target < {d['target_s']} s: {'PASS' if d['passed'] else 'FAIL'}")
    if w:
        print(f"  warm: {w['total_s']:.3f} s (derive {w['derive_s']:.3f}, compile_system "
              f"{w['compile_system_s']:.3f})")
    print(f"  first jitted field call (batch {fc['batch']}): {fc['field_hoisted_s']:.2f} s "
          f"(trace+lower {fc['trace_and_lower_s']:.2f}, XLA {fc['xla_compile_s']:.2f}); "
          f"constants {fc['constants_s']:.2f} s; second call {1e3 * fc['field_second_call_s']:.1f} ms")
    print(f"  imports (not counted): sympy + jax + eqdyn {d['import_median_s']:.2f} s")
    print(f"\n(b) {'-'.join(map(str, f['sizes']))}, batch {f['batch']}, float32: median ms")
    steps = f["relaxation"]["steps"]
    print(f"  {'variant':18s} {'per call':>9s} {f'{steps}-step relax':>15s}")
    for n in VARIANTS:
        print(f"  {n:18s} {1e3 * f['per_call']['times'][n]['median_s']:9.2f} "
              f"{1e3 * f['relaxation']['times'][n]['median_s']:15.1f}")
    print("  ratios of medians, per call / relaxation (ratio of minima; median paired ratio):")
    for k in f["per_call"]["ratios"]:
        pc, rx = f["per_call"], f["relaxation"]
        print(f"    {k:40s} {pc['ratios'][k]:.3f} / {rx['ratios'][k]:.3f}   "
              f"({pc['ratio_cross_checks']['ratio_of_min'][k]:.3f} / "
              f"{rx['ratio_cross_checks']['ratio_of_min'][k]:.3f}; "
              f"{pc['ratio_cross_checks']['median_of_paired_ratios'][k]:.3f} / "
              f"{rx['ratio_cross_checks']['median_of_paired_ratios'][k]:.3f})")
    a = f["agreement"]
    print(f"  max |compiled - hand| {a['field_max_abs_diff']['compiled_hoisted']:.2e} "
          f"(|field| <= {a['field_max_abs']:.1f})")
    print(f"  target ratio < {f['target_ratio']}: {'PASS' if f['passed'] else 'FAIL'}")
    if r["contention_note"]:
        print(f"note: {r['contention_note']}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--derive-worker":
        derive_worker(argv[1], int(argv[2]), int(argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default benchmarks/results/derive.json, or "
                         "derive_quick.json with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="fewer repetitions (2 derive processes, 30 field rounds, 3 relaxation "
                         "rounds): a smoke run")
    ap.add_argument("--derive-reps", type=int, default=None,
                    help="fresh processes for (a) (default 5; 2 with --quick)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="interleaved per-call rounds for (b) (default 200; 30 with --quick)")
    ap.add_argument("--relax-rounds", type=int, default=None,
                    help="interleaved relaxation rounds for (b) (default 15; 3 with --quick)")
    ap.add_argument("--relax-steps", type=int, default=50,
                    help="Euler steps per relaxation (default 50)")
    args = ap.parse_args(argv)
    for name in ("derive_reps", "rounds", "relax_rounds"):
        v = getattr(args, name)
        if v is not None and v < 1:
            ap.error(f"--{name.replace('_', '-')} must be positive")
    if args.relax_steps < 1:
        ap.error("--relax-steps must be positive")
    if args.out is None:
        args.out = HERE / "results" / ("derive_quick.json" if args.quick else "derive.json")
    return save_result(args.out, run(args), "bench_derive.py", argv, print_table)


if __name__ == "__main__":
    sys.exit(main())
