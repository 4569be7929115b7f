"""Xie & Seung (2003): with weak feedback, contrastive learning's updates are backprop's.

In the energy with layer scales (`eqdyn.symbolic.with_layer_scales`, `c_k = gamma^-(L-k)`),
EP's update `-(1/beta) [dF/dtheta(s^beta) - dF/dtheta(s^0)]` carries the factor `c_k` on the
parameters of layer `k`: the Hebbian contrast of layer `k` times a learning rate
`gamma^-(L-k)`, Xie & Seung's scaling. EP's theorem makes it `-dJ/dtheta` of the
`gamma`-network at every `gamma`, and as `gamma -> 0` the free fixed point becomes the
feedforward pass, so the update tends to backprop's through the network's own feedforward
computation. Contrastive Hebbian learning (the output clamped to the target instead of
nudged) is measured the same way; without the `gamma^-(L-k)` rates the raw contrasts of
the lower layers vanish like `gamma^(L-k)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
import sympy as sp

from .._errors import ConfigError
from ..symbolic import term_owners
from ._feedforward import feedforward_backprop, fixed_point, with_feedback
from ._metrics import cosine, relative_error

__all__ = ["XieSeungStudy", "xie_seung_study"]


@dataclasses.dataclass
class XieSeungStudy:
    """`gammas` `(G,)`; for EP (symmetric, `beta`), CHL and EP without the per-layer rates
    (`raw`): `cos_*` and `rel_*` `(G,)` against backprop's update `-dJ_ff/dtheta` (all
    parameters flattened), and `cos_*_layers` `(G, P)` per parameter. `param_names`."""

    gammas: np.ndarray
    beta: float
    param_names: tuple
    cos_ep: np.ndarray
    rel_ep: np.ndarray
    cos_chl: np.ndarray
    rel_chl: np.ndarray
    cos_raw: np.ndarray
    rel_raw: np.ndarray
    cos_ep_layers: np.ndarray
    cos_chl_layers: np.ndarray

    def to_json(self) -> dict:
        def clean(a):
            a = np.asarray(a, float)
            return [clean(r) for r in a] if a.ndim else (float(a) if np.isfinite(a) else None)

        return {f.name: (clean(getattr(self, f.name)) if isinstance(getattr(self, f.name),
                                                                   np.ndarray)
                         else getattr(self, f.name)) for f in dataclasses.fields(self)}


def _param_scales(energy) -> tuple[float, ...]:
    """The layer scale `c` multiplying each parameter's terms (the cost's parameters: 1)."""
    owners = term_owners(energy)
    tau = energy.tau or (sp.Integer(1),) * len(energy.states)
    out = []
    for p in energy.params:
        ks = [k for t, k in zip(energy.internal, owners) if k is not None and t.has(p)]
        out.append(float(tau[ks[0]]) if ks else 1.0)
    return tuple(out)


def xie_seung_study(model, x, d, gammas: Sequence[float] = (1.0, 0.3, 0.1, 0.01, 1e-3),
                    *, beta: float = 1e-4) -> XieSeungStudy:
    """EP's and CHL's weight updates against backprop's over feedback strengths `gammas`.

    **Arguments:** `model` (float64; its time constants must be 1, so that the layer scales
    are the time constants of the scaled energy), `x`, `d`, `gammas`, `beta` (EP's nudge,
    symmetric estimate).
    """
    if any(float(t) != 1.0 for t in model.energy.tau):
        raise ConfigError("xie_seung_study needs an energy with unit time constants (the layer "
                          "scales are read back from the scaled energy's tau).")
    x, d = jnp.asarray(x), jnp.asarray(d)
    bp = tuple(-g for g in feedforward_backprop(model, x, d)[1])
    chl_ok = model.output_is_state
    rows = {k: [] for k in ("ep", "chl", "raw", "ep_l", "chl_l")}
    for gamma in gammas:
        m = with_feedback(model, float(gamma))
        system, params, inputs = m.system, m.params, m.inputs(x, d)
        zero = m.init_state(x.shape[0], x.dtype)
        s0, r0 = fixed_point(system.field, params, inputs, zero)
        sp_, r1 = fixed_point(system.field, params, inputs, s0, beta)
        sm, r2 = fixed_point(system.field, params, inputs, s0, -beta)
        rc = 0.0  # (no clamped phase without an output state)
        ep = tuple(-(a - b) / (2 * beta) for a, b in zip(
            system.param_grads(sp_, params, inputs, beta),
            system.param_grads(sm, params, inputs, -beta)))
        raw = tuple(g / c for g, c in zip(ep, _param_scales(m.energy)))
        rows["ep"].append(ep)
        rows["raw"].append(raw)
        rows["ep_l"].append([cosine(a, b) for a, b in zip(ep, bp)])
        if chl_ok:
            start = (*s0[:-1], jnp.asarray(d, s0[-1].dtype))
            clamp = (False,) * (len(s0) - 1) + (True,)
            sc, rc = fixed_point(system.field, params, inputs, start, clamp=clamp)
            chl = tuple(-(a - b) for a, b in zip(system.param_grads(sc, params, inputs),
                                                  system.param_grads(s0, params, inputs)))
            rows["chl"].append(chl)
            rows["chl_l"].append([cosine(a, b) for a, b in zip(chl, bp)])
        else:
            rows["chl"].append(None)
            rows["chl_l"].append([np.nan] * len(bp))
        if max(r0, r1, r2, rc) > 1e-8:
            raise ConfigError(f"a phase did not settle at gamma={gamma} (residuals free "
                              f"{r0:.2g}, nudged {r1:.2g} / {r2:.2g}, clamped {rc:.2g}).")

    def metric(fn, key):
        return np.array([fn(u, bp) if u is not None else np.nan for u in rows[key]])

    return XieSeungStudy(
        gammas=np.asarray(gammas, float), beta=float(beta), param_names=model.param_names,
        cos_ep=metric(cosine, "ep"), rel_ep=metric(relative_error, "ep"),
        cos_chl=metric(cosine, "chl"), rel_chl=metric(relative_error, "chl"),
        cos_raw=metric(cosine, "raw"), rel_raw=metric(relative_error, "raw"),
        cos_ep_layers=np.array(rows["ep_l"]), cos_chl_layers=np.array(rows["chl_l"]))
