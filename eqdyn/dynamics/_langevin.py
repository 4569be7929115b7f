"""Neuron noise: the Langevin SDE whose stationary distribution is `exp(-F/T)`.

    tau_k ds_k = -dF/ds_k dt + sqrt(2 T tau_k) dW_k

is the continuous-time, graded cousin of the Boltzmann machine: at temperature `T` the states
are samples of the Gibbs density `p(s) ~ exp(-F(s)/T)` (for any time constants), and `T -> 0`
recovers the deterministic relaxation. It is solved with diffrax (an `ODETerm` drift plus a
`ControlTerm` diffusion driven by Brownian increments drawn at each fixed step;
Euler-Maruyama by default). The
statement needs the gradient formulation: the leaky-integrator form of a hard sigmoid is not a
gradient flow of `F` in the integrated variables, so its noise has no Gibbs distribution.

A complex `beta` (holomorphic EP, Laborieux & Zenke 2022) integrates the holomorphic extension
of the dynamics as `relax_core` does, as the real pair `(Re s, Im s)`, with the noise on the real
parts only (real neuron noise added to complex states): the same Brownian increments, at the
same scale, as the real SDE, whose paths it reproduces when `beta` and `s0` are real.

`backend="fused"` integrates the same Euler-Maruyama scheme without diffrax: `lax.fori_loop`s
over the `ceil(t1 / dt)` steps, one field evaluation per step (`y <- y + dt f(y) + sqrt(dt)
sqrt(2 T / tau) z`, `z ~ N(0, 1)` fresh per step and unit, drawn for chunks of steps at once).
Same law and, at `T = 0`, the same states as `relax_core` with `backend="fused"` (bit for bit);
its noise draws are not diffrax's, so noisy paths differ from the diffrax backend's for the
same key.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .._errors import ConfigError
from ._base import (AbstractRelaxation, RelaxProblem, RelaxResult, _Field, _PairField,
                    check_number, concrete, leaf, status)

__all__ = ["Langevin", "LangevinResult", "langevin", "SDE_SOLVERS", "LANGEVIN_BACKENDS"]

#: SDE solvers by name (additive noise, so Ito and Stratonovich coincide).
SDE_SOLVERS = {"euler": diffrax.Euler, "heun": diffrax.Heun}
#: "diffrax": `diffrax.diffeqsolve` (any of `SDE_SOLVERS`); "fused": Euler-Maruyama in one
#: `lax.fori_loop` (solver "euler" only), see `_langevin_fused`.
LANGEVIN_BACKENDS = ("diffrax", "fused")


class LangevinResult(eqx.Module):
    """**Fields:** `states` (at `t1`), `ys` (the states at `ts`, leading time axis; `None`
    without `ts`), `steps`."""

    states: tuple
    ys: tuple | None
    steps: Array


class _Diffusion(eqx.Module):
    """`sqrt(2 T / tau_k)` on every state; with `control` (the shapes of a Brownian motion over
    the real halves of a complex state split as `(Re s_1, ..., Re s_n, Im s_1, ..., Im s_n)`,
    see `_PairField`) it drives the real halves only: the imaginary halves get no noise."""

    scales: tuple  # Python floats, or arrays (a traced temperature)
    control: tuple | None = eqx.field(static=True, default=None)

    def __call__(self, t, y, args):
        if self.control is None:
            return lx.DiagonalLinearOperator(
                tuple(jnp.full_like(a, s) for a, s in zip(y, self.scales)))
        real = y[: len(y) // 2]

        def mv(w):  # in the state's dtype (diffrax may solve in the times' wider one)
            return (tuple((s * a).astype(r.dtype) for s, a, r in zip(self.scales, w, real))
                    + tuple(jnp.zeros_like(r) for r in real))

        return lx.FunctionLinearOperator(mv, self.control)


#: bytes of normal draws made at once by the fused backend (a chunk of steps' noise)
_NOISE_CHUNK_BYTES = 2 ** 21
_NOISE_CHUNK_STEPS = 32


def _langevin_fused(drift, args, y0, scales, key, t1: float, dt: float, ts=None):
    """Euler-Maruyama in `lax.fori_loop`s: `y <- y + dt f(y) + sqrt(dt) scale z`.

    `y0` is the (real) state, `scales` the noise scales `sqrt(2 T / tau_k)` of its first
    `len(scales)` leaves (all of a real state; the real halves of a pair state split by
    `_PairField`, whose imaginary halves get no noise). `ceil(t1 / dt)` steps of `dt`, as
    `relax_core`'s fused backend (ending at `t1` when it is a multiple of `dt`, else at the next
    multiple). `z ~ N(0, 1)` is fresh for every step and unit: the draws are made for a chunk of
    up to `_NOISE_CHUNK_STEPS` steps at once (chunk `i` from `fold_in(key, i)`), which on a CPU
    costs about half as much as one draw per step (threefry is then most of a step's time). With
    every scale zero nothing is drawn and the steps are exactly those of `relax_core`'s fused
    backend. `ts` (sorted, in `[0, t1]`) saves the states there, interpolated linearly between
    steps as diffrax's Euler does (exactly the step's state at a time on the grid). Returns
    `(y, ys or None, steps)`.
    """
    dtype = y0[0].dtype
    n = int(np.ceil(t1 / dt - 1e-9))
    dt_ = jnp.asarray(dt, dtype)
    # no draws when every scale is a known zero (a traced one may be anything)
    n_noisy = len(scales) if any(concrete(s) != 0.0 for s in scales) else 0
    amp = tuple(jnp.asarray(s * np.sqrt(dt)).astype(dtype) for s in scales)
    sizes = [int(np.prod(a.shape)) for a in y0[:n_noisy]]
    offsets = np.cumsum([0] + sizes)

    def step(y, z):  # z: this step's normals, flat over the noisy leaves (None: no noise)
        f = drift(None, y, args)
        y1 = tuple(u + dt_ * g for u, g in zip(y, f))
        if z is None:
            return y1
        noise = tuple(z[o:o + m].reshape(u.shape) for o, m, u in zip(offsets, sizes, y1))
        return tuple(u + a * w for u, a, w in zip(y1, amp, noise)) + y1[n_noisy:]

    if ts is None:
        def body(k, y, z):
            return step(y, z)

        carry = tuple(y0)
    else:
        ts = jnp.asarray(ts, dtype)
        m_ts = ts.shape[0]

        def body(k, carry, z):
            y, buf, j = carry
            y1 = step(y, z)
            t_a = k.astype(dtype) * dt_

            def pending(c):  # save times inside this step (after the last one: all that remain)
                _, j = c
                t_j = ts[jnp.minimum(j, m_ts - 1)]
                return (j < m_ts) & ((t_j <= t_a + dt_) | (k == n - 1))

            def save(c):
                buf, j = c
                w = jnp.clip((ts[j] - t_a) / dt_, 0.0, 1.0)
                buf = tuple(b.at[j].set(jnp.where(w >= 1.0, v1, v + w * (v1 - v)))
                            for b, v, v1 in zip(buf, y, y1))
                return buf, j + 1

            buf, j = jax.lax.while_loop(pending, save, (buf, j))
            return y1, buf, j

        carry = (tuple(y0), tuple(jnp.zeros((m_ts, *a.shape), a.dtype) for a in y0),
                 jnp.asarray(0, jnp.int32))

    if n_noisy == 0:
        carry = jax.lax.fori_loop(0, n, lambda k, c: body(k, c, None), carry)
    else:
        per_step = int(offsets[-1]) * jnp.dtype(dtype).itemsize
        chunk = max(1, min(n, _NOISE_CHUNK_STEPS, _NOISE_CHUNK_BYTES // max(per_step, 1)))
        n_chunks, rest = divmod(n, chunk)

        def steps_from(k0, count, chunk_index, carry):
            z = jax.random.normal(jax.random.fold_in(key, chunk_index),
                                  (count, int(offsets[-1])), dtype)
            return jax.lax.fori_loop(0, count, lambda j, c: body(k0 + j, c, z[j]), carry)

        carry = jax.lax.fori_loop(
            0, n_chunks, lambda i, c: steps_from(i * chunk, chunk, i, c), carry)
        if rest:
            carry = steps_from(n_chunks * chunk, rest, n_chunks, carry)
    y, ys = (carry, None) if ts is None else carry[:2]
    return y, ys, jnp.asarray(n, jnp.int32)


def langevin(model, x, s0=None, *, temperature: float, key: PRNGKeyArray, t1: float,
             dt: float = 0.01, beta=0.0, d=None, ts=None, solver: str = "euler",
             require_gibbs: bool = True, backend: str = "diffrax"):
    """Sample the network's neurons at `temperature` by integrating the Langevin SDE.

    **Arguments:**

    - `model`: an `eqdyn.AbstractEnergyModel` in the gradient formulation.
    - `x`: clamped input `(B, n_in)`; every row is an independent chain.
    - `s0`: initial states (zeros if `None`).
    - `temperature`: `T >= 0`.
    - `key`: PRNG key of the Brownian motion.
    - `t1`, `dt`: horizon and (fixed) step.
    - `beta`, `d`: nudging and target, as for `relax`. A complex `beta` (or complex `s0`)
      integrates the holomorphic extension of the dynamics (complex states, as `relax_core`)
      with the noise on the real parts only; it needs a holomorphic activation, and the
      complex chain has no Gibbs law (neuron noise of holomorphic EP).
    - `ts`: optional times to save the states at (sorted, within `[0, t1]`).
    - `solver`: `"euler"` (Euler-Maruyama) or `"heun"`.
    - `backend`: `"diffrax"` (default: `diffrax.diffeqsolve`, either solver) or `"fused"`
      (Euler-Maruyama in one `lax.fori_loop`, solver `"euler"` only: `ceil(t1 / dt)` steps of
      `dt`, one field evaluation and fresh normals per step (drawn for chunks of steps), the
      state-independent constants once; same law, but the noise is drawn from `key`
      differently from diffrax's, so not the same paths; `ts` saved the same way, by linear
      interpolation between steps). When `t1` is not a multiple of `dt` it ends at the next
      multiple, as `relax_core`'s fused backend (diffrax ends at `t1`, its steps after the
      first spread evenly). EP's noisy phases use it for `RelaxConfig`s with `backend="fused"` or `"blocks"`.
    - `require_gibbs`: refuse the leaky formulation (default). With `False` the noise acts on
      the potentials of the leaky form too (neuron noise as in Laborieux & Zenke 2022), whose
      stationary law is then not `exp(-F/T)`.

    **Returns:** a `LangevinResult`, its states in the dtype of `x` (its complex counterpart
    with a complex `beta` or `s0`).
    """
    system = model.system
    if require_gibbs and system.formulation != "gradient":
        raise ConfigError(
            f"`langevin` needs the gradient formulation (its stationary law is exp(-F/T)); the "
            f"model uses {system.formulation!r}. Build it with formulation='gradient' and a "
            "smooth activation (sigmoid, tanh)."
        )
    if not (isinstance(temperature, (int, float)) and np.isfinite(temperature)
            and temperature >= 0):  # a Python number: it sets the static noise scale
        raise ConfigError(f"`temperature`={temperature!r} must be a finite number >= 0.")
    for name, v in (("t1", t1), ("dt", dt)):
        if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
            raise ConfigError(f"`{name}`={v!r} must be a positive number.")
    if solver not in SDE_SOLVERS:
        raise ConfigError(f"`solver`={solver!r} is not known; use one of {sorted(SDE_SOLVERS)}.")
    if backend not in LANGEVIN_BACKENDS:
        raise ConfigError(
            f"`backend`={backend!r} is not known; use one of {LANGEVIN_BACKENDS}.")
    if backend == "fused" and solver != "euler":
        raise ConfigError(
            f"`backend`='fused' is Euler-Maruyama; `solver`={solver!r} needs backend='diffrax'.")
    if backend == "fused" and ts is not None and not isinstance(ts, jax.core.Tracer):
        tv = np.asarray(ts, dtype=float)
        if tv.ndim != 1 or np.any(np.diff(tv) < 0) or np.any(tv < 0) or np.any(
                tv > t1 * (1 + 1e-9)):
            raise ConfigError(f"`ts` must be a sorted 1-d array of times in [0, t1={t1}].")
    x = jnp.asarray(x)
    dtype = x.dtype
    if s0 is None:
        s0 = model.init_state(x.shape[0], dtype)
    is_complex = jnp.iscomplexobj(beta) or any(jnp.iscomplexobj(s) for s in s0)
    inputs = model.inputs(x, d)
    scales = tuple(float(np.sqrt(2.0 * temperature / t)) for t in system.tau)
    if is_complex:  # the real pair (Re s, Im s) of `relax_core`, noise on the real halves
        cdtype = jnp.result_type(dtype, jnp.complex64)
        beta = jnp.asarray(beta, cdtype)
        s0 = tuple(jnp.asarray(s, cdtype) for s in s0)
        drift = _PairField(_Field(system))
        args = _PairField.pair_args((tuple(model.params), inputs, beta,
                                     system.constants(s0, model.params, inputs, beta)))
        y0 = tuple(jnp.real(s) for s in s0) + tuple(jnp.imag(s) for s in s0)
        out_dtype, pair = cdtype, drift.observe
    else:
        s0 = tuple(jnp.asarray(s, dtype) for s in s0)
        drift = _Field(system)
        beta = jnp.asarray(beta, dtype)
        # the state-independent products (x W_1) once per phase, not once per step
        args = (tuple(model.params), inputs, beta,
                system.constants(s0, model.params, inputs, beta))
        y0 = s0
        out_dtype, pair = dtype, tuple
    def observe(y):  # the states in the dtype of x (diffrax may solve in the times' wider one)
        return tuple(a.astype(out_dtype) for a in pair(y))

    y, ys, steps = _sde_solve(drift, args, y0, scales, key, t1, dt, ts, solver, backend,
                              is_complex)
    return LangevinResult(states=observe(y), ys=None if ys is None else observe(ys),
                          steps=steps)


def _sde_solve(drift, args, y0, scales, key, t1, dt, ts=None, solver="euler",
               backend="diffrax", paired=False):
    """The Langevin SDE `dy = drift dt + scale dW` from `y0` (real; with `paired`, the pairs
    `(Re s, Im s)` of `_PairField`, noise on the real halves), `ceil(t1 / dt)` fixed steps.
    Returns `(y, ys or None, steps)`, states as the solver left them (diffrax may widen a
    float32 state to its times' dtype)."""
    if backend == "fused":
        return _langevin_fused(drift, args, y0, scales, key, float(t1), float(dt), ts)
    dtype = y0[0].dtype
    # the Brownian motion has the states' shapes (complex states: their real parts')
    real = y0[: len(y0) // 2] if paired else y0
    shape = tuple(jax.ShapeDtypeStruct(s.shape, dtype) for s in real)
    # fixed steps: the unsafe (non-adaptive, draw-per-step) path is exact here and much cheaper
    # than a VirtualBrownianTree
    bm = diffrax.UnsafeBrownianPath(shape=shape, key=key)
    terms = diffrax.MultiTerm(diffrax.ODETerm(drift),
                              diffrax.ControlTerm(_Diffusion(scales, shape if paired
                                                             else None), bm))
    saveat = diffrax.SaveAt(t1=True) if ts is None else diffrax.SaveAt(
        subs=[diffrax.SubSaveAt(t1=True), diffrax.SubSaveAt(ts=jnp.asarray(ts, dtype))])
    n_steps = int(np.ceil(t1 / dt - 1e-9))
    sol = diffrax.diffeqsolve(
        terms, SDE_SOLVERS[solver](), t0=0.0, t1=float(t1), dt0=float(dt), y0=y0,
        args=args, saveat=saveat,
        max_steps=n_steps + 2, adjoint=diffrax.ForwardMode(),  # sampling, no backprop
    )
    final = sol.ys if ts is None else sol.ys[0]
    return (tuple(a[-1] for a in final), None if ts is None else tuple(sol.ys[1]),
            sol.stats["num_steps"])


class Langevin(AbstractRelaxation):
    """A noisy relaxation: the Langevin SDE `tau ds = f dt + sqrt(2 T tau) dW` for a fixed
    horizon (neuron noise; EP's noisy phases).

    **Arguments:**

    - `temperature`: `T >= 0` (an array leaf: a new temperature does not recompile).
    - `dt`, `t1`: the fixed step and the horizon (static: they set the number of steps,
      `ceil(t1 / dt)`).
    - `tol`: the residual test of `converged` (an array leaf).
    - `solver`: `"euler"` (Euler-Maruyama) or `"heun"` (`backend="diffrax"` only).
    - `backend`: `"fused"` (default; `lax.fori_loop`s, one field evaluation per step) or
      `"diffrax"` (`diffrax.diffeqsolve`), as `langevin`.

    Needs `key`. It runs its whole horizon (status `fixed_horizon`, or `nonfinite`) and
    reports what it measured: `residual` is the deterministic field's steady-state residual
    at the final state, `converged` is `residual < tol`. The noise acts on whatever the
    formulation integrates (the potentials of the leaky form too: neuron noise as in Laborieux
    & Zenke 2022; only the gradient form has the Gibbs law `exp(-F/T)`, see `langevin`). A
    complex problem (holomorphic EP) gets real noise on the real halves. The same states as
    `langevin` for the same settings and key (tested).
    """

    temperature: Array
    dt: float = eqx.field(static=True)
    t1: float = eqx.field(static=True)
    tol: Array
    solver: str = eqx.field(static=True)
    backend: str = eqx.field(static=True)

    def __init__(self, temperature, dt: float, t1: float, tol=1e-4, solver: str = "euler",
                 backend: str = "fused"):
        self.temperature, self.tol = leaf(temperature), leaf(tol)
        self.dt, self.t1, self.solver, self.backend = dt, t1, solver, backend

    def __check_init__(self):
        check_number("Langevin", "temperature", self.temperature, allow_zero=True)
        check_number("Langevin", "tol", self.tol, allow_zero=True)
        for name in ("dt", "t1"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
                    and v > 0):
                raise ConfigError(f"`Langevin`: `{name}`={v!r} must be a positive number "
                                  "(a Python number: it sets the number of steps).")
        if self.solver not in SDE_SOLVERS:
            raise ConfigError(f"`Langevin`: `solver`={self.solver!r} is not known; use one of "
                              f"{sorted(SDE_SOLVERS)}.")
        if self.backend not in LANGEVIN_BACKENDS:
            raise ConfigError(f"`Langevin`: `backend`={self.backend!r} is not known; use one "
                              f"of {LANGEVIN_BACKENDS}.")
        if self.backend == "fused" and self.solver != "euler":
            raise ConfigError(f"`Langevin`: backend='fused' is Euler-Maruyama; "
                              f"`solver`={self.solver!r} needs backend='diffrax'.")

    def solve(self, problem: RelaxProblem, *, key: PRNGKeyArray | None = None) -> RelaxResult:
        if key is None:
            raise ConfigError("`Langevin` draws neuron noise: pass a PRNG `key` (e.g. "
                              "jax.random.PRNGKey(0)) to relax / relax_core.")
        temperature = jnp.asarray(self.temperature)
        scales = tuple(jnp.sqrt(2.0 * temperature / t) for t in problem.system.tau)
        y0 = tuple(problem.y0)
        y, _, steps = _sde_solve(problem.field, problem.args, y0, scales, key, self.t1,
                                 self.dt, None, self.solver, self.backend, problem.paired)
        y = tuple(a.astype(b.dtype) for a, b in zip(y, y0))
        dtype = y0[0].dtype
        residual = problem.residual(y)
        finite = jnp.isfinite(residual)
        converged, result = status(residual, 0.0)  # fixed_horizon or nonfinite
        converged = finite & (residual < jnp.asarray(self.tol).astype(residual.dtype))
        t = (steps.astype(dtype) * jnp.asarray(self.dt, dtype) if self.backend == "fused"
             else jnp.asarray(self.t1, dtype))
        return RelaxResult(y, steps, residual, converged, t, result)

    def describe(self) -> str:
        return f"Langevin(dt={self.dt:g}, t1={self.t1:g}, {self.backend})"
