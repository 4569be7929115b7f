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
from ._relax import _Field, _PairField

__all__ = ["LangevinResult", "langevin", "SDE_SOLVERS"]

#: SDE solvers by name (additive noise, so Ito and Stratonovich coincide).
SDE_SOLVERS = {"euler": diffrax.Euler, "heun": diffrax.Heun}


class LangevinResult(eqx.Module):
    """**Fields:** `states` (at `t1`), `ys` (the states at `ts`, leading time axis; `None`
    without `ts`), `steps`."""

    states: tuple
    ys: tuple | None
    steps: Array


class _Drift(eqx.Module):
    system: object = eqx.field(static=True)

    def __call__(self, t, y, args):
        params, inputs, beta = args
        return self.system.field(y, params, inputs, beta)


class _Diffusion(eqx.Module):
    """`sqrt(2 T / tau_k)` on every state; with `control` (the shapes of a Brownian motion over
    the real halves of a complex state split as `(Re s_1, ..., Re s_n, Im s_1, ..., Im s_n)`,
    see `_PairField`) it drives the real halves only: the imaginary halves get no noise."""

    scales: tuple = eqx.field(static=True)
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


def langevin(model, x, s0=None, *, temperature: float, key: PRNGKeyArray, t1: float,
             dt: float = 0.01, beta=0.0, d=None, ts=None, solver: str = "euler",
             require_gibbs: bool = True):
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
    - `ts`: optional times to save the states at.
    - `solver`: `"euler"` (Euler-Maruyama) or `"heun"`.
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
        drift = _Drift(system)
        args = (tuple(model.params), inputs, jnp.asarray(beta, dtype))
        y0 = s0
        out_dtype, pair = dtype, tuple
    # the Brownian motion has the states' shapes (complex states: their real parts')
    shape = tuple(jax.ShapeDtypeStruct(s.shape, dtype) for s in s0)
    # fixed steps: the unsafe (non-adaptive, draw-per-step) path is exact here and much cheaper
    # than a VirtualBrownianTree
    bm = diffrax.UnsafeBrownianPath(shape=shape, key=key)
    terms = diffrax.MultiTerm(diffrax.ODETerm(drift),
                              diffrax.ControlTerm(_Diffusion(scales, shape if is_complex
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

    def observe(y):  # the states in the dtype of x (diffrax may solve in the times' wider one)
        return tuple(a.astype(out_dtype) for a in pair(y))

    return LangevinResult(
        states=observe(tuple(a[-1] for a in final)),
        ys=None if ts is None else observe(tuple(sol.ys[1])),
        steps=sol.stats["num_steps"],
    )
