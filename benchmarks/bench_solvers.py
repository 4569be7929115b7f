"""Vector-field evaluations, steps and time each solver needs to relax to equilibrium.

For every (model, solver, tolerance) one free-phase relaxation (beta = 0, zero initial states,
MNIST test images) runs until the steady-state event `max |dF/ds| < tol` fires or the horizon
(`t1`, `max_steps`) runs out. Measured in one run (so that ratios are meaningful on a busy
machine):

- whether it converged, solver steps (accepted / rejected), final time and residual;
- field evaluations, *counted* rather than inferred: the run is repeated with a host callback
  (`jax.debug.callback`) in the vector field that increments a Python counter, with separate
  counters for the solver's stages (Newton iterations included for implicit solvers), the
  steady-state event's check (one evaluation per step, plus one on the initial state) and the
  Jacobian linearisations of the implicit solvers (a `jax.custom_jvp` marker: its JVP rule
  counts one per `jax.linearize`; the dense Jacobian is then materialised from the linear map
  without further primal evaluations);
- the warm wall time of the jitted relaxation (median of 3; 1 when a single run takes longer
  than `--long-run-s`), with the counters switched off;
- the distance of every converged run's fixed point (observed states) to a reference run.

The relaxation is a copy of `eqdyn.dynamics.relax_core` (same `diffeqsolve` call, term,
controller, event and final residual) in which the tolerances are traced arrays, so one
compilation per (model, solver) serves every tolerance, and the counting switch is a traced
flag. `eqdyn.relax` itself runs the same configurations for a few solvers (`--check-solvers`):
steps, residuals and states must agree exactly, and its time is reported beside the copy's.

Models: the hard-sigmoid (leaky) and sigmoid (gradient) LayeredHopfield 784-500-10 on 20
images with the eight explicit solvers, and a stiff energy (time constants 1, 20 and 0.05 per
layer, 784-100-100-10, 2 images) with Euler, Tsit5, Kvaerno3 and Kvaerno5. The implicit solvers
are not run on the 784-500-10 models by default: they factorise a dense (B sum n_k)^2 Jacobian
every step (10200 x 10200 at batch 20). LAPACK threads are limited to one during the
relaxations (`--blas-threads`); the LU factorisation is timed both ways first.

Usage (from the repository root):

    python benchmarks/bench_solvers.py            # writes benchmarks/results/solvers.json
    python benchmarks/bench_solvers.py --quick    # tol 1e-4 only, fewer checks (smoke run)
"""

from __future__ import annotations

import argparse
import collections
import functools
import statistics
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from bench_epoch import load_report, save_result, start_run

TOLS = (1e-3, 1e-4, 1e-5)
QUICK_TOLS = (1e-4,)
T1 = 2000.0
MAX_STEPS = 20000
DT0 = 0.5
N_IMAGES = 20
#: the stiff energy's time constants, per state (h_1, h_2, y)
STIFF_TAU = (1.0, 20.0, 0.05)
#: fixed Euler step of the stiff case: stable needs dt < 2 tau_min = 0.1
STIFF_EULER_DT = 0.05
#: step budget of the implicit solvers in the stiff case (each step linearises the field and
#: LU-factorises a dense Jacobian; Kvaerno3 at tol 1e-5 takes steps of ~0.03 time units)
IMPLICIT_MAX_STEPS = 1000
EXPLICIT = ("euler", "heun", "midpoint", "ralston", "bosh3", "tsit5", "dopri5", "dopri8")
IMPLICIT = ("kvaerno3", "kvaerno5")
#: nominal vector-field evaluations per step of diffrax's tableaux (for comparison with the
#: counts; FSAL methods reuse their last stage, so Bosh3 3 of 4, Tsit5/Dopri5 6 of 7)
NOMINAL_STAGES = dict(euler=1, heun=2, midpoint=2, ralston=2, bosh3=3, tsit5=6, dopri5=6,
                      dopri8=13, kvaerno3=None, kvaerno5=None)

EVAL_NOTE = (
    "Field evaluations are counted at run time with jax.debug.callback (a Python counter), in "
    "a second run of the same compiled program with the counting flag on. 'solver' = "
    "evaluations made by the integrator's stages (for Kvaerno3/5 also every Newton (VeryChord) "
    "iteration and the primal of each linearisation); 'event' = the steady-state Event "
    "condition, which evaluates the field again on the initial state and after every step "
    "(eqdyn's design, not the solver's); 'final' = 1, relax_core's residual of the final state; "
    "'total' = what one eqdyn.relax call evaluates. 'linearisations' (implicit solvers only) = "
    "jax.linearize calls of the field (one per Jacobian); each Jacobian is then materialised "
    "as a dense (n x n) matrix, n = batch x sum(state sizes), by n JVP columns of the linear "
    "map and LU-factorised (lineax AutoLinearSolver), which is not counted as evaluations but "
    "dominates the cost for large n: 'jacobian_jvp_columns' = linearisations x n (derived, not "
    "counted; a JVP column costs about one field evaluation) and 'total_incl_jacobian_columns' "
    "= total + jacobian_jvp_columns. 'nominal_stages_x_steps' is the tableau's count "
    "(FSAL: stages - 1) times num_steps, for comparison. 'converged' is eqdyn's definition "
    "(event fired, or final residual < tol); converged with stopped_before_t1 False means the "
    "residual fell below tol only on the last (clipped) step that lands on t1, after hovering "
    "above tol for the whole horizon."
)


# ----------------------------------------------------------------------------------------
# counting relaxation (a copy of eqdyn.dynamics.relax_core with traced tolerances)

COUNTS: collections.Counter = collections.Counter()


def _bump(tag: str) -> None:
    COUNTS[tag] += 1


def _count(flag, tag: str) -> None:
    import jax

    jax.lax.cond(flag > 0.5, lambda: jax.debug.callback(functools.partial(_bump, tag)),
                 lambda: None)


def _make_classes():
    import equinox as eqx
    import jax

    @functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
    def mark(tag, flag, y):
        _count(flag, tag)
        return y

    @mark.defjvp
    def _mark_jvp(tag, primals, tangents):
        flag, y = primals
        _count(flag, "linearisation")
        return y, tangents[1]

    class CountingField(eqx.Module):
        """The system's ODE, with an evaluation counter (on when `flag` > 0.5)."""

        system: object = eqx.field(static=True)
        tag: str = eqx.field(static=True)

        def __call__(self, t, y, args):
            params, inputs, beta, consts, flag, _tol = args
            y = mark(self.tag, flag, y)
            return self.system.ode(t, y, (params, inputs, beta, consts))

    class Steady(eqx.Module):
        field: CountingField

        def __call__(self, t, y, args, **kwargs):
            return self.field.system.residual(y, self.field(t, y, args)) < args[-1]

    return CountingField, Steady


def make_solve():
    import diffrax
    import equinox as eqx
    import jax.numpy as jnp

    from eqdyn.dynamics import SOLVERS

    CountingField, Steady = _make_classes()

    @eqx.filter_jit
    def solve(model, x, solver: str, adaptive: bool, dt0: float, t1: float, max_steps: int,
              tol, rtol, atol, flag):
        system = model.system
        s0 = model.init_state(x.shape[0], x.dtype)
        inputs = model.inputs(x, None)
        beta = jnp.asarray(0.0, x.dtype)
        consts = system.constants(s0, model.params, inputs, beta)
        args = (model.params, inputs, beta, consts, flag, tol)
        controller = (diffrax.PIDController(rtol=rtol, atol=atol) if adaptive
                      else diffrax.ConstantStepSize())
        dtype = x.dtype
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(CountingField(system, "solver")), SOLVERS[solver][0](),
            t0=jnp.asarray(0.0, dtype), t1=jnp.asarray(t1, dtype), dt0=jnp.asarray(dt0, dtype),
            y0=tuple(s0), args=args, saveat=diffrax.SaveAt(t1=True),
            stepsize_controller=controller,
            event=diffrax.Event(Steady(CountingField(system, "event"))),
            max_steps=max_steps, throw=False,
        )
        states = tuple(a[-1] for a in sol.ys)
        residual = system.residual(states, system.ode(0.0, states, args[:4]))
        converged = (sol.result == diffrax.RESULTS.event_occurred) | (residual < tol)
        converged = converged & jnp.isfinite(residual)
        stats = {k: sol.stats[k] for k in
                 ("num_steps", "num_accepted_steps", "num_rejected_steps")}
        return dict(states=states, observed=system.observe(states), stats=stats,
                    residual=residual, converged=converged, t=sol.ts[-1],
                    event=sol.result == diffrax.RESULTS.event_occurred)

    return solve


# ----------------------------------------------------------------------------------------
# models and data


def load_images(n: int, data_dir: Path):
    """The first n MNIST test images, or scikit-learn digits (64 inputs) if MNIST is missing."""
    from eqdyn.data import load_dataset

    try:
        ds = load_dataset("mnist", str(data_dir))
        return ds.x_test[:n], "mnist", None
    except Exception as e:  # noqa: BLE001 - any missing/corrupt data: fall back, and say so
        msg = f"MNIST not available in {data_dir} ({type(e).__name__}: {e}); using digits (64 inputs)"
        print(msg)
        ds = load_dataset("digits")
        return ds.x_test[:n], "digits", msg


def build_models(n_in: int, stiff_sizes, stiff_batch: int, batch: int, quick: bool,
                 implicit_all: bool):
    import jax

    import eqdyn
    from eqdyn.symbolic import layered_hopfield_energy

    key = jax.random.PRNGKey(0)
    main_solvers = EXPLICIT + (IMPLICIT if implicit_all else ())
    models = [
        dict(name="hard_sigmoid_leaky", sizes=(n_in, 500, 10), batch=batch,
             model=eqdyn.LayeredHopfield((n_in, 500, 10), "hard_sigmoid", key=key),
             solvers=main_solvers, euler_dt0=DT0,
             description="LayeredHopfield, hard sigmoid, leaky formulation (Lipschitz field "
                         "with kinks at the saturation bounds)"),
        dict(name="sigmoid_gradient", sizes=(n_in, 500, 10), batch=batch,
             model=eqdyn.LayeredHopfield((n_in, 500, 10), "sigmoid", key=key),
             solvers=main_solvers, euler_dt0=DT0,
             description="LayeredHopfield, sigmoid, gradient flow (smooth field)"),
    ]
    sizes = (n_in, *stiff_sizes)
    energy = layered_hopfield_energy(sizes, tau=STIFF_TAU)
    models.append(dict(
        name="stiff_tau", sizes=sizes, batch=stiff_batch, tau=list(STIFF_TAU),
        model=eqdyn.EnergyModel(energy, "sigmoid", "gradient", key=key),
        solvers=("euler", "tsit5") if quick else ("euler", "tsit5", "kvaerno3", "kvaerno5"),
        euler_dt0=STIFF_EULER_DT,
        description=f"EnergyModel(layered_hopfield_energy({sizes}, tau={STIFF_TAU}), sigmoid, "
                    "gradient): time constants 0.05 to 20"))
    return models


# ----------------------------------------------------------------------------------------


def _median(xs):
    return float(statistics.median(xs))


def timed_runs(fn, long_run_s: float, repeats: int = 3):
    """Warm wall times: `repeats` runs, or 1 when the first takes longer than `long_run_s`."""
    import jax

    ts, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
        if ts[0] > long_run_s:
            break
    return out, ts


def run_one(solve, spec, x, solver: str, tol: float, long_run_s: float,
            implicit_max_steps: int = MAX_STEPS) -> dict:
    import jax
    import jax.numpy as jnp

    from eqdyn.dynamics import RelaxConfig

    model = spec["model"]
    dt0 = spec["euler_dt0"] if solver == "euler" else DT0
    implicit = solver in IMPLICIT
    max_steps = implicit_max_steps if implicit else MAX_STEPS
    cfg = RelaxConfig(solver=solver, dt0=dt0, tol=tol, t1=T1, max_steps=max_steps)
    adaptive = cfg.is_adaptive
    rtol, atol = tol, tol * 1e-2  # RelaxConfig's defaults
    f32 = x.dtype
    call = functools.partial(solve, model, x, solver, adaptive, dt0, T1, max_steps,
                             jnp.asarray(tol, f32), jnp.asarray(rtol, f32),
                             jnp.asarray(atol, f32))
    # counting run (also the first call of this compiled program for this solver)
    t0 = time.perf_counter()
    COUNTS.clear()
    out = jax.block_until_ready(call(jnp.asarray(1.0, f32)))
    jax.effects_barrier()
    first_s = time.perf_counter() - t0
    counts = dict(COUNTS)
    # timed runs, counters off
    out2, ts = timed_runs(lambda: call(jnp.asarray(0.0, f32)), long_run_s)
    same = all(bool(jnp.array_equal(a, b)) for a, b in zip(out["states"], out2["states"]))

    st = {k: int(v) for k, v in out["stats"].items()}
    steps = st["num_steps"]
    ev = dict(solver=counts.get("solver", 0), event=counts.get("event", 0), final=1)
    ev["total"] = ev["solver"] + ev["event"] + ev["final"]
    n_state = x.shape[0] * sum(model.state_sizes)
    if "linearisation" in counts:
        ev["linearisations"] = counts["linearisation"]
        ev["jacobian_jvp_columns"] = counts["linearisation"] * n_state
        ev["total_incl_jacobian_columns"] = ev["total"] + ev["jacobian_jvp_columns"]
    nominal = NOMINAL_STAGES[solver]
    ev["solver_per_step"] = ev["solver"] / steps if steps else None
    ev["nominal_stages_x_steps"] = nominal * steps if nominal else None
    row = dict(
        model=spec["name"], solver=solver, tol=tol, adaptive=adaptive, dt0=dt0,
        max_steps=max_steps,
        rtol=rtol if adaptive else None, atol=atol if adaptive else None, batch=int(x.shape[0]),
        converged=bool(out["converged"]), event_fired=bool(out["event"]),
        stopped_before_t1=bool(float(out["t"]) < T1),
        steps=steps, accepted=st["num_accepted_steps"],
        rejected=st["num_rejected_steps"], t_end=float(out["t"]),
        residual=float(out["residual"]), evaluations=ev,
        jacobian_shape=[n_state, n_state] if implicit else None,
        time_ms=1e3 * _median(ts), time_runs_ms=[1e3 * t for t in ts],
        counting_run_s=first_s, counting_run_identical=same,
    )
    return row, out


def check_against_relax(spec, x, solver: str, tol: float, row: dict, out, long_run_s: float):
    """eqdyn.relax with the same configuration: steps, residual and states must agree."""
    import jax
    import jax.numpy as jnp

    import eqdyn

    cfg = eqdyn.RelaxConfig(solver=solver, dt0=row["dt0"], tol=tol, t1=T1,
                            max_steps=row["max_steps"],
                            rtol=None, atol=None, on_failure="ignore")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = jax.block_until_ready(eqdyn.relax(spec["model"], x, config=cfg))
        first_s = time.perf_counter() - t0
        res, ts = timed_runs(lambda: eqdyn.relax(spec["model"], x, config=cfg), long_run_s)
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(res.states, out["states"]))
    return dict(
        model=spec["name"], solver=solver, tol=tol, relax_steps=int(res.steps),
        bench_steps=row["steps"], relax_residual=float(res.residual),
        bench_residual=row["residual"], relax_converged=bool(res.converged),
        max_abs_state_diff=diff,
        identical=bool(int(res.steps) == row["steps"] and diff == 0.0
                       and float(res.residual) == row["residual"]),
        relax_first_call_s=first_s, relax_time_ms=1e3 * _median(ts),
        bench_time_ms=row["time_ms"], relax_over_bench_time=_median(ts) * 1e3 / row["time_ms"],
    )


def fixed_point_check(rows, outputs, name: str) -> dict:
    """Distance of every converged run's observed states to the reference run's."""
    import jax.numpy as jnp

    mine = [r for r in rows if r["model"] == name]
    conv = [r for r in mine if r["converged"]]
    by_event = [r for r in conv if r["stopped_before_t1"]]
    tightest = min(r["tol"] for r in mine)
    ref = None
    tsit = [r for r in by_event if r["solver"] == "tsit5" and r["tol"] == tightest]
    if tsit:
        ref, why = tsit[0], "tsit5 at the tightest tolerance"
    elif by_event:
        ref = min(by_event, key=lambda r: r["residual"])
        why = ("tsit5 did not reach the steady state before t1 at the tightest tolerance; "
               "reference = the run stopped by the event before t1 with the smallest final "
               "residual")
    if ref is None:
        return dict(reference=None, note="no run converged")
    ref_obs = outputs[(name, ref["solver"], ref["tol"])]["observed"]
    for r in mine:
        obs = outputs[(name, r["solver"], r["tol"])]["observed"]
        d = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(obs, ref_obs))
        r["fixed_point_diff"] = d
        r["fixed_point_diff_over_tol"] = d / r["tol"]
    return dict(reference=dict(solver=ref["solver"], tol=ref["tol"], residual=ref["residual"]),
                why=why,
                max_diff_over_tol_converged=max(r["fixed_point_diff_over_tol"] for r in conv))


def winners(rows, name: str) -> dict:
    out = {}
    for tol in sorted({r["tol"] for r in rows if r["model"] == name}, reverse=True):
        conv = [r for r in rows if r["model"] == name and r["tol"] == tol and r["converged"]]
        if not conv:
            out[f"{tol:g}"] = None
            continue
        def equiv(r):
            return r["evaluations"].get("total_incl_jacobian_columns", r["evaluations"]["total"])

        fe = min(conv, key=lambda r: r["evaluations"]["solver"])
        ft = min(conv, key=lambda r: r["evaluations"]["total"])
        fq = min(conv, key=equiv)
        tm = min(conv, key=lambda r: r["time_ms"])
        out[f"{tol:g}"] = dict(
            fewest_solver_evaluations=dict(solver=fe["solver"],
                                           evaluations=fe["evaluations"]["solver"]),
            fewest_total_evaluations=dict(solver=ft["solver"],
                                          evaluations=ft["evaluations"]["total"]),
            fewest_evaluations_incl_jacobian_columns=dict(solver=fq["solver"],
                                                          evaluations=equiv(fq)),
            least_time=dict(solver=tm["solver"], time_ms=tm["time_ms"]),
            not_converged=sorted(r["solver"] for r in rows if r["model"] == name
                                 and r["tol"] == tol and not r["converged"]),
            converged_only_at_t1=sorted(r["solver"] for r in conv if not r["stopped_before_t1"]),
        )
    return out


def spectrum(spec, states, x) -> dict:
    """Eigenvalues of the field's Jacobian at a fixed point, one example at a time (the
    field is separable over the batch): the slowest and fastest decay rates set the time to
    equilibrium and an explicit solver's stable step."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    model = spec["model"]
    system = model.system
    inputs = model.inputs(x, None)
    beta = jnp.asarray(0.0, x.dtype)
    consts = system.constants(states, model.params, inputs, beta)
    sizes = model.state_sizes
    cuts = np.cumsum(sizes)[:-1].tolist()

    @jax.jit
    def jac(i):
        def f(v):
            parts = jnp.split(v, cuts)
            st = tuple(s.at[i].set(p) for s, p in zip(states, parts))
            out = system.ode(0.0, st, (model.params, inputs, beta, consts))
            return jnp.concatenate([o[i] for o in out])

        return jax.jacfwd(f)(jnp.concatenate([s[i] for s in states]))

    slow, fast, imag = [], [], []
    for i in range(x.shape[0]):
        ev = np.linalg.eigvals(np.asarray(jac(i), np.float64))
        slow.append(float(-np.max(ev.real)))
        fast.append(float(-np.min(ev.real)))
        imag.append(float(np.max(np.abs(ev.imag))))
    return dict(
        note="decay rates -Re(eig) of d(field)/d(state) at the reference fixed point, per "
             "example (float64 eigvals of the float32 Jacobian)",
        slowest_rate_per_example=slow, fastest_rate_per_example=fast,
        slowest_rate=min(slow), fastest_rate=max(fast), max_abs_imag=max(imag),
        stiffness_ratio=max(fast) / min(slow) if min(slow) > 0 else None,
    )


def lu_microbench(sizes, repeats: int = 5) -> dict:
    """Time `jax.scipy.linalg.lu_factor` (what Kvaerno's linear solver calls) with the BLAS
    library's default thread count and with one thread (threadpoolctl, at run time).

    On CPU jaxlib's LU calls LAPACK from SciPy's OpenBLAS; on an oversubscribed machine its
    worker threads can make a small factorisation dozens of times slower."""
    import jax
    import jax.scipy as jsp

    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return dict(note="threadpoolctl not installed: BLAS threads not controlled")
    lu = jax.jit(jsp.linalg.lu_factor)
    out = dict(blas=[{k: i.get(k) for k in ("internal_api", "num_threads", "version",
                                             "filepath")} for i in threadpool_info()
                     if i.get("user_api") == "blas"], ms={})
    for n in sizes:
        a = jax.random.normal(jax.random.PRNGKey(n), (n, n))
        res = {}
        for label, limit in (("default_threads", None), ("one_thread", 1)):
            with threadpool_limits(limit, "blas"):
                jax.block_until_ready(lu(a))
                ts = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    jax.block_until_ready(lu(a))
                    ts.append(time.perf_counter() - t0)
            res[label] = 1e3 * _median(ts)
        out["ms"][str(n)] = res
    return out


# ----------------------------------------------------------------------------------------


def run(args) -> dict:
    import jax.numpy as jnp

    t_run = time.perf_counter()
    import diffrax

    load_start, busy, info = start_run(diffrax=diffrax.__version__)
    tols = QUICK_TOLS if args.quick else TOLS
    check_tol = 1e-4
    check_solvers = [s for s in args.check_solvers.split(",") if s]
    images, dataset, data_note = load_images(N_IMAGES, args.data_dir)
    x_all = jnp.asarray(images, jnp.float32)
    n_in = int(x_all.shape[1])
    stiff_sizes = tuple(int(v) for v in args.stiff_sizes.split("-"))
    models = build_models(n_in, stiff_sizes, args.stiff_batch, N_IMAGES, args.quick,
                          args.implicit_all)
    solve = make_solve()
    stiff_n = models[-1]["batch"] * sum(models[-1]["model"].state_sizes)
    lu_bench = lu_microbench(sorted({stiff_n, 1020}))
    for n, v in lu_bench.get("ms", {}).items():
        print(f"LU factorisation {n} x {n}: {v['default_threads']:.1f} ms with the BLAS default "
              f"threads, {v['one_thread']:.1f} ms with one thread")
    blas_limit = None
    if args.blas_threads > 0:
        try:
            from threadpoolctl import threadpool_limits

            blas_limit = threadpool_limits(args.blas_threads, "blas")
            print(f"BLAS (LAPACK) threads limited to {args.blas_threads} for the relaxations")
        except ImportError:
            print("threadpoolctl not installed: BLAS threads left at their default")

    rows, outputs, checks, compile_s, skipped = [], {}, [], {}, []
    for spec in models:
        x = x_all[: spec["batch"]]
        n_state = spec["batch"] * sum(spec["model"].state_sizes)
        print(f"\n{spec['name']}: {'-'.join(map(str, spec['sizes']))}, batch {spec['batch']} "
              f"(n = {n_state} integrated variables)", flush=True)
        if not args.implicit_all and spec["name"] != "stiff_tau":
            skipped.append(dict(model=spec["name"], solvers=list(IMPLICIT), reason=(
                f"not run by default: Kvaerno3/5 linearise the field and LU-factorise a dense "
                f"{n_state} x {n_state} Jacobian every step ({4 * n_state**2 / 2**20:.0f} MiB, "
                f"~{2 / 3 * n_state**3 / 1e9:.0f} GFLOP per factorisation), which does not fit "
                "this benchmark's time budget; see the stiff case (batch "
                f"{args.stiff_batch}) or pass --implicit-all")))
        for solver in spec["solvers"]:
            for i, tol in enumerate(tols):
                row, out = run_one(solve, spec, x, solver, tol, args.long_run_s,
                                   args.implicit_max_steps)
                if i == 0:
                    compile_s[f"{spec['name']}/{solver}"] = row["counting_run_s"]
                rows.append(row)
                outputs[(spec["name"], solver, tol)] = out
                ev = row["evaluations"]
                status = (("conv" if row["stopped_before_t1"] else "t1  ") if row["converged"]
                          else "NOT ")
                print(f"  {solver:9s} tol {tol:7.0e}  {status} "
                      f"steps {row['steps']:6d} ({row['rejected']:5d} rej)  evals solver "
                      f"{ev['solver']:6d} total {ev['total']:6d}"
                      + (f" lin {ev['linearisations']:4d}" if "linearisations" in ev else "")
                      + f"  res {row['residual']:.1e}  t {row['t_end']:7.1f}  "
                      f"{row['time_ms']:8.1f} ms" + ("" if i else
                                                     f"  (first call {row['counting_run_s']:.1f} s)"),
                      flush=True)
                if solver in check_solvers and tol == check_tol:
                    c = check_against_relax(spec, x, solver, tol, row, out, args.long_run_s)
                    checks.append(c)
                    print(f"    eqdyn.relax: steps {c['relax_steps']}, identical "
                          f"{c['identical']}, {c['relax_time_ms']:.1f} ms "
                          f"(x{c['relax_over_bench_time']:.2f} of the copy)", flush=True)

    per_model = {}
    for spec in models:
        name = spec["name"]
        fp = fixed_point_check(rows, outputs, name)
        spec_res = None
        if fp.get("reference"):
            ref = outputs[(name, fp["reference"]["solver"], fp["reference"]["tol"])]
            spec_res = spectrum(spec, ref["states"], x_all[: spec["batch"]])
            if all(t == 1.0 for t in spec["model"].system.tau):
                fp["distance_scale_note"] = (
                    "unit time constants: near a fixed point |s - s*| is about residual / "
                    "slowest decay rate, so fixed_point_diff_over_tol up to about "
                    "one_over_slowest_rate is expected")
                fp["one_over_slowest_rate"] = 1.0 / spec_res["slowest_rate"]
            else:
                fp["distance_scale_note"] = (
                    "with time constants the residual is the force |dF/ds| = tau |ds/dt|, so "
                    "|s - s*| is about residual / (smallest eigenvalue of the Hessian of F), not "
                    "residual / slowest decay rate")
            print(f"{name}: decay rates at the fixed point {spec_res['slowest_rate']:.3g} .. "
                  f"{spec_res['fastest_rate']:.3g} (ratio {spec_res['stiffness_ratio']:.0f})")
        per_model[name] = dict(
            description=spec["description"], sizes=list(spec["sizes"]), batch=spec["batch"],
            activation=str(spec["model"].activation), formulation=spec["model"].formulation,
            tau=spec.get("tau"), euler_dt0=spec["euler_dt0"], solvers=list(spec["solvers"]),
            integrated_variables=spec["batch"] * sum(spec["model"].state_sizes),
            fixed_point=fp, spectrum=spec_res, best=winners(rows, name))
    if blas_limit is not None:
        blas_limit.restore_original_limits()

    result = dict(
        **load_report(info, load_start, busy),
        quick=bool(args.quick),
        dataset=dataset, data_note=data_note, n_images=N_IMAGES,
        setup=dict(
            tolerances=list(tols), t1=T1, max_steps=MAX_STEPS, dt0_adaptive=DT0,
            rtol="tol", atol="tol / 100", beta=0.0, initial_state="zeros", dtype="float32",
            steady_state="max over batch and units of |dF/ds| (= tau |ds/dt|) < tol, a diffrax "
                         "Event checked on the initial state and after every step",
            timing=f"warm wall time of the jitted relaxation (counters off), median of 3 runs, "
                   f"1 run when it takes longer than {args.long_run_s} s",
            relaxation="a copy of eqdyn.dynamics.relax_core with traced tolerances and a "
                       "counting flag; see checks_against_eqdyn_relax",
            implicit_max_steps=args.implicit_max_steps,
            blas_threads=args.blas_threads or "default",
        ),
        lu_factorisation=lu_bench,
        evaluation_note=EVAL_NOTE,
        models=per_model,
        runs=rows,
        skipped=skipped,
        checks_against_eqdyn_relax=checks,
        first_call_s=compile_s,
        bench_wall_s=None,
    )
    result["bench_wall_s"] = time.perf_counter() - t_run
    return result


def print_table(r: dict) -> None:
    for name, m in r["models"].items():
        print(f"\n{name}: {'-'.join(map(str, m['sizes']))}, batch {m['batch']}")
        fp = m["fixed_point"]
        if fp.get("reference"):
            print(f"  fixed point vs {fp['reference']['solver']} tol {fp['reference']['tol']:g}: "
                  f"max diff / tol over converged runs {fp['max_diff_over_tol_converged']:.2f}")
        for tol, w in m["best"].items():
            if w is None:
                print(f"  tol {tol}: nothing converged")
                continue
            q = w["fewest_evaluations_incl_jacobian_columns"]
            print(f"  tol {tol}: fewest evaluations {w['fewest_solver_evaluations']['solver']} "
                  f"({w['fewest_solver_evaluations']['evaluations']} solver, "
                  f"{w['fewest_total_evaluations']['solver']} "
                  f"{w['fewest_total_evaluations']['evaluations']} total, {q['solver']} "
                  f"{q['evaluations']} with Jacobian columns), fastest "
                  f"{w['least_time']['solver']} ({w['least_time']['time_ms']:.1f} ms); "
                  f"not converged: {', '.join(w['not_converged']) or '-'}"
                  + (f"; converged only at t1: {', '.join(w['converged_only_at_t1'])}"
                     if w["converged_only_at_t1"] else ""))
    bad = [c for c in r["checks_against_eqdyn_relax"] if not c["identical"]]
    print(f"\nchecks against eqdyn.relax: {len(r['checks_against_eqdyn_relax'])} runs, "
          f"{len(bad)} differ")
    if r["contention_note"]:
        print(f"note: {r['contention_note']}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default benchmarks/results/solvers.json, or "
                         "solvers_quick.json with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="tol 1e-4 only, the stiff case with Euler and Tsit5 only: a smoke run")
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "mnist",
                    help="MNIST folder (default ../shared/data/mnist); digits if missing")
    ap.add_argument("--stiff-sizes", default="100-100-10",
                    help="layers after the input of the stiff network (default 100-100-10)")
    ap.add_argument("--stiff-batch", type=int, default=2,
                    help="images relaxed in the stiff case (default 2: the implicit solvers' "
                         "dense Jacobian grows as the square of the batch)")
    ap.add_argument("--implicit-all", action="store_true",
                    help="also run Kvaerno3/5 on the two 784-500-10 models (batch 20: dense "
                         "10200 x 10200 Jacobians, very slow)")
    ap.add_argument("--check-solvers", default=None,
                    help="solvers also run through eqdyn.relax at tol 1e-4 (comma-separated; "
                         "default euler,bosh3,tsit5; euler,tsit5 with --quick)")
    ap.add_argument("--implicit-max-steps", type=int, default=IMPLICIT_MAX_STEPS,
                    help=f"max_steps of Kvaerno3/5 (default {IMPLICIT_MAX_STEPS}; the explicit "
                         f"solvers get {MAX_STEPS})")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="limit LAPACK/BLAS threads (threadpoolctl) during the relaxations: the "
                         "implicit solvers' LU (default 1; 0 leaves the library default)")
    ap.add_argument("--long-run-s", type=float, default=1.5,
                    help="time a configuration once (not 3 times) when a run takes longer")
    args = ap.parse_args(argv)
    if args.stiff_batch < 1 or args.stiff_batch > N_IMAGES:
        ap.error(f"--stiff-batch must be in 1..{N_IMAGES}")
    if args.check_solvers is None:
        args.check_solvers = "euler,tsit5" if args.quick else "euler,bosh3,tsit5"
    if args.out is None:
        args.out = HERE / "results" / ("solvers_quick.json" if args.quick else "solvers.json")
    return save_result(args.out, run(args), "bench_solvers.py", argv, print_table)


if __name__ == "__main__":
    sys.exit(main())
