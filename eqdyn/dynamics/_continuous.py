"""Learning in continuous time: one ODE for neurons, synapses and the teacher, no clocked phases.

Two-phase EP runs a free relaxation, flips a flag, runs a nudged one and then updates the
weights. Here a whole episode is *one* `diffrax.diffeqsolve` whose state holds

- the neurons `u` (the relaxation's variables),
- the synapses `theta` (when learning is applied) or an accumulator of their change,
- a few *gates* `g` in `[0, 1]` that are themselves continuous variables, and
- a snapshot of the free state (for persistent particles and for scoring the free prediction).

The teacher is an input `beta(t)`; the weights follow the local STDP-form rule derived from the
energy (`Derivation.param_rates`),

    dtheta/dt = -(eta / beta_max) * p(t) * d/dt dF/dtheta(s(t), beta(t)),

with `p(t)` a plasticity gate. While the network is at rest the rule does nothing; integrated
over the teacher's arrival it is EP's update, because the right-hand side is a total time
derivative (fundamental theorem of calculus): starting at the free fixed point `s^0` and ending
at the nudged one `s^beta`, the weights move by `-(eta/beta)[dF/dtheta(s^beta, beta) -
dF/dtheta(s^0, 0)]`.

How the teacher arrives is a `Teacher`:

- `OnSteady`: event-driven. A latch `p` opens when the network reaches a steady state (its
  residual falls below `tol`: no clock), and a second latch `q`, which opens once `p` has, turns
  on `beta(t) = beta_max q(t)`. Symmetric nudging has four: rest (the free fixed point is
  reached; the snapshot freezes), a teacher latch that sends `beta` to `-beta_max`, plasticity
  (at rest again), and a teacher latch that sweeps `beta` from `-beta_max` to `+beta_max`.
- `Ramp`: a smooth ramp of `beta` at a given time (a schedule, for comparison).
- `Custom`: any function `beta(t)`.

Latches are smooth: `dg/dt = r (1 - g) (trigger + g)`, with `trigger` in `[0, 1]` a sigmoid of
the log-residual; once `g` has risen it keeps rising to one, whatever the residual does. Every
consumer sees the latch clipped to `[0, 1]` (an Euler step of 0.5 overshot to 1.23, and the
teacher with it, which had made the STDP form's change 8-30 % off EP's on a 4-3-2 net).
With `OnSteady(trigger="example")` (the default with the STDP form) each example has its own
latches, teacher and plasticity.
"""

from __future__ import annotations


import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from .._errors import ConfigError
from ._config import RelaxConfig
from ._teachers import AbstractTeacher, Custom, OnSteady, Ramp, _clip

__all__ = [
    "AbstractTeacher", "OnSteady", "Ramp", "Custom", "EpisodeResult", "episode",
    "LEARN_MODES", "RULES", "DEFAULT_CONFIG",
]

LEARN_MODES = ("apply", "accumulate", "off")
#: "stdp": dtheta/dt from the derived STDP form d/dt dF/dtheta (exact in continuous time). A
#: solver of order p integrates it with an O(dt^p) error, also for smooth activations: under
#: Euler the increments J(s_n) (s_{n+1} - s_n) miss the curvature of dF/dtheta (rho(s_i)
#: rho(s_j) is not linear in s), not only the kinks of a hard sigmoid. Measured on a 4-3-2
#: net at Euler dt0 0.5 (latches clipped): 0.7-3 % off EP's update (sigmoid), 29 % (hard
#: sigmoid); hence the adaptive default below.
#: "trace": each synapse keeps an eligibility trace e of its Hebbian term dF/dtheta,
#: de/dt = k (dF/dtheta - e), and moves by dtheta/dt ~ k (dF/dtheta - e) = de/dt; over an
#: episode this telescopes to the same EP update, exactly also under Euler steps with
#: k = 1/dt0 (the trace then holds the previous step's value).
RULES = ("stdp", "trace")
#: The episode's default discretisation: Tsit5 (5th order) with its error control at the
#: steady-state tolerance. With it the STDP form's change is within 1 % of two-phase EP's on a
#: 4-3-2 network (measured 0.11-0.23 % sigmoid, 0.07 % hard sigmoid; tests/test_continuous.py),
#: at 5-6x the steps of Euler dt0 0.5 (117-125 vs 22-24 sigmoid, 258 vs 44 hard sigmoid), each
#: of 6 field evaluations: about 30x the field evaluations.
DEFAULT_CONFIG = RelaxConfig(solver="tsit5", dt0=0.1, tol=1e-5, t1=1000.0, max_steps=16384)


class EpisodeResult(eqx.Module):
    """The end of an episode.

    **Fields:** `states` (neurons at the end), `free_states` (the snapshot taken when the
    first latch opened, i.e. the free fixed point for `OnSteady`; when plasticity switched on
    for the other teachers), `params` (synapses at the end;
    unchanged unless `learn="apply"`), `delta` (the integrated change, `learn="accumulate"`,
    else zeros), `gates`, `beta` (final), `steps`, `t`, `converged` (the teacher finished and
    the network came to rest before the horizon).
    """

    states: tuple
    free_states: tuple
    params: tuple
    delta: tuple
    gates: Array
    beta: Array
    steps: Array
    t: Array
    converged: Array


class _JointField(eqx.Module):
    system: object = eqx.field(static=True)
    teacher: AbstractTeacher
    learn: str = eqx.field(static=True)
    snap_rate: float = eqx.field(static=True)
    rule: str = eqx.field(static=True, default="stdp")

    def parts(self, t, y, args):
        inputs, fixed_params, lrs, sign, batch = args
        u, g = y["u"], y["g"]
        params = y["params"] if self.learn == "apply" else fixed_params
        beta, plastic = self.teacher(t, g, sign)
        per = self.teacher.per_example
        f = self.system.field(u, params, inputs, beta[:, None] if per else beta)
        r = self.system.residual(u, f, per_example=per)
        return params, beta, plastic, f, r

    def __call__(self, t, y, args):
        inputs, fixed_params, lrs, sign, batch = args
        u, g = y["u"], y["g"]
        params, beta, plastic, f, r = self.parts(t, y, args)
        dg = self.teacher.gate_field(t, g, r)
        out = dict(u=f, g=dg)
        # the snapshot follows the neurons until the first latch opens (the free fixed point)
        per = self.teacher.per_example
        hold = _clip(g[0]) if self.teacher.n_gates else plastic
        hold = hold[:, None] if per else hold
        out["snap"] = tuple(self.snap_rate * (1.0 - hold) * (a - s)
                            for a, s in zip(u, y["snap"]))
        if self.learn != "off":
            if self.rule == "stdp":
                dbeta = self.teacher.beta_rate(t, g, dg, sign)
                s = self.system.observe(u)
                sdot = self.system.observe_velocity(u, f)
                if per:  # each example's term, weighted by its own plasticity
                    rates = _per_example_rates(self.system, s, sdot, params, inputs, beta,
                                               dbeta, plastic)
                    plastic = 1.0
                else:
                    rates = self.system.param_rates(s, sdot, params, inputs, beta, dbeta)
            else:
                phi = self.system.param_grads(u, params, inputs, beta)
                rates = tuple(self.snap_rate * (a - e) for a, e in zip(phi, y["trace"]))
                out["trace"] = rates
            # the estimate is (1/beta) [...]: with the teacher's sign flipped, so is 1/beta
            coef = -plastic * self.teacher.scale * sign / batch
            key = "params" if self.learn == "apply" else "delta"
            out[key] = tuple(coef * lr * rt for lr, rt in zip(lrs, rates))
        return out


def _per_example_rates(system, s, sdot, params, inputs, beta, dbeta, plastic):
    """`sum_b p_b d/dt dF_b/dtheta` with each example's own `beta_b`, `dbeta_b/dt`.

    Where the cost has no parameters (the Hopfield energy's squared error), `dF/dtheta` does
    not depend on beta and the rule is linear in the velocities: one call with `p_b ds_b/dt`.
    Otherwise each example's rate is computed on its own row and the rows are summed.
    """
    energy = system.derivation.energy
    if not any(c.has(p) for c in energy.cost for p in energy.params):
        return system.param_rates(s, tuple(plastic[:, None] * v for v in sdot), params, inputs,
                                  0.0, 0.0)
    batch = s[0].shape[0]
    flags = tuple(a.ndim == 2 and a.shape[0] == batch for a in inputs)

    def row(s_b, v_b, in_b, b, db, p):
        ins = tuple(a[None] if fl else a for a, fl in zip(in_b, flags))
        r = system.param_rates(tuple(a[None] for a in s_b), tuple(a[None] for a in v_b),
                               params, ins, b, db)
        return tuple(p * a for a in r)

    axes = tuple(0 if fl else None for fl in flags)
    per_row = jax.vmap(row, in_axes=(0, 0, axes, 0, 0, 0))(s, sdot, tuple(inputs), beta, dbeta,
                                                            plastic)
    return tuple(jnp.sum(a, axis=0) for a in per_row)


class _Finished(eqx.Module):
    field: _JointField
    tol: float = eqx.field(static=True)

    def __call__(self, t, y, args, **kwargs):
        params, beta, _, _, r = self.field.parts(t, y, args)
        finished = self.field.teacher.done(t, y["g"]) & (jnp.max(r) < self.tol)
        if self.field.rule == "trace" and self.field.learn != "off":
            inputs = args[0]
            phi = self.field.system.param_grads(y["u"], params, inputs, beta)
            gap = jnp.max(jnp.stack([jnp.max(jnp.abs(a - e)) / (1.0 + jnp.max(jnp.abs(a)))
                                     for a, e in zip(phi, y["trace"])]))
            finished = finished & (gap < self.tol)
        return finished


def episode(model, x, d, s0, teacher: AbstractTeacher, config: RelaxConfig | None = None, *,
            lr=1.0, learn: str = "apply", sign=1.0, ts=None, rule: str = "stdp"):
    """One continuous-time learning episode as a single diffrax solve (jittable).

    **Arguments:**

    - `model`: an `eqdyn.AbstractEnergyModel`.
    - `x`, `d`: input `(B, n_in)` and target `(B, n_out)`.
    - `s0`: initial neuron state (zeros, or the last free state of these examples).
    - `teacher`: `OnSteady(...)`, `Ramp(...)` or `Custom(...)`.
    - `config`: solver, step, steady-state `tol` and horizon `t1` (a `RelaxConfig`; default
      `DEFAULT_CONFIG`: Tsit5, tol 1e-5, within 1 % of two-phase EP's update with the STDP
      form; Euler at dt0 0.5 is cheaper but its STDP-form change is off by 8-30 %, use
      `rule="trace"` there).
    - `lr`: learning rate `eta`, one number or one per parameter (in `model.params` order).
    - `learn`: `"apply"` (weights evolve inside the solve), `"accumulate"` (weights held,
      their would-be change integrated into `delta`, e.g. to compare with two-phase EP) or
      `"off"`.
    - `sign`: multiplies `beta` (random-sign nudging draws it per batch).
    - `rule`: `"stdp"` (the derived STDP form) or `"trace"` (an eligibility trace of
      `dF/dtheta`; exact under fixed steps too, see `RULES`).
    - `ts`: optional times at which to also return the trajectory: `(result, ys)` with `ys` a
      dict like the solver state (`u`, `g`, `snap`, `params`/`delta`), each leaf with a leading
      time axis (times after the episode ended hold `inf`).

    **Returns:** an `EpisodeResult` (and the trajectory if `ts` is given).

    The rule is normalised by the batch size: with `learn="accumulate"` and one-sided
    `OnSteady`, `delta = -lr * (1/(beta B)) [dF/dtheta(s^beta, beta) - dF/dtheta(s^0, 0)]`,
    i.e. `-lr` times `ep_gradient`'s one-sided estimate.
    """
    config = config or DEFAULT_CONFIG
    if not isinstance(teacher, AbstractTeacher):
        raise ConfigError(f"`teacher`={teacher!r} must be OnSteady(...), Ramp(...) or "
                          "Custom(...).")
    if isinstance(teacher, OnSteady) and (teacher.tol is None or teacher.trigger is None):
        trigger = teacher.trigger or ("batch" if rule == "trace" else "example")
        teacher = OnSteady(beta=teacher.beta, symmetric=teacher.symmetric,
                           tol=config.tol if teacher.tol is None else teacher.tol,
                           rate=teacher.rate, trigger=trigger)
    if learn not in LEARN_MODES:
        raise ConfigError(f"`learn`={learn!r} is not known; use one of {LEARN_MODES}.")
    if teacher.per_example and rule == "trace" and learn != "off":
        raise ConfigError(
            "`rule`='trace' keeps one eligibility trace per synapse for the whole batch, so it "
            "needs one teacher for the batch: pass OnSteady(..., trigger='batch'), or use "
            "rule='stdp' with per-example teachers.")
    if rule not in RULES:
        raise ConfigError(f"`rule`={rule!r} is not known; use one of {RULES}.")
    system = model.system
    params = tuple(model.params)
    dtype = s0[0].dtype
    if not isinstance(lr, (tuple, list)):  # one rate (rates may be traced: no np.ndim)
        lrs = tuple(jnp.asarray(lr, dtype) for _ in params)
    else:
        if len(lr) != len(params):
            raise ConfigError(f"`lr` has {len(lr)} rates; the model has {len(params)} parameters.")
        lrs = tuple(jnp.asarray(v, dtype) for v in lr)
    inputs = model.inputs(x, d)
    batch = jnp.asarray(x.shape[0], dtype)
    gates = (teacher.n_gates, x.shape[0]) if teacher.per_example else (teacher.n_gates,)
    y0 = dict(u=tuple(s0), g=jnp.zeros(gates, dtype), snap=tuple(s0))
    if learn == "apply":
        y0["params"] = params
    elif learn == "accumulate":
        y0["delta"] = tuple(jnp.zeros_like(p) for p in params)
    if learn != "off" and rule == "trace":
        y0["trace"] = tuple(system.param_grads(tuple(s0), params, inputs, 0.0))
    field = _JointField(system, teacher, learn, 1.0 / config.dt0, rule)
    args = (inputs, params, lrs, jnp.asarray(sign, dtype), batch)
    if ts is None:
        saveat = diffrax.SaveAt(t1=True)
    else:
        saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(t1=True),
                                      diffrax.SubSaveAt(ts=jnp.asarray(ts, dtype))])
    solver, controller = config.solver_and_controller()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), solver,
        t0=jnp.asarray(0.0, dtype), t1=jnp.asarray(config.t1, dtype),
        dt0=jnp.asarray(config.dt0, dtype), y0=y0, args=args,
        saveat=saveat,
        stepsize_controller=controller,
        event=diffrax.Event(_Finished(field, config.tol)),
        max_steps=config.max_steps, throw=False,
    )
    final = sol.ys if ts is None else sol.ys[0]
    last = jax.tree_util.tree_map(lambda a: a[-1], final)
    end_params = last["params"] if learn == "apply" else params
    delta = last["delta"] if learn == "accumulate" else tuple(jnp.zeros_like(p) for p in params)
    t_end = (sol.ts if ts is None else sol.ts[0])[-1]
    beta_end, _ = teacher(t_end, last["g"], jnp.asarray(sign, dtype))
    res = EpisodeResult(
        states=tuple(last["u"]), free_states=tuple(last["snap"]), params=tuple(end_params),
        delta=tuple(delta), gates=_clip(last["g"]), beta=beta_end, steps=sol.stats["num_steps"],
        t=t_end, converged=sol.result == diffrax.RESULTS.event_occurred,
    )
    if ts is None:
        return res
    ys = dict(sol.ys[1])
    ys["g"] = jnp.where(jnp.isfinite(ys["g"]), _clip(ys["g"]), ys["g"])
    return res, ys
