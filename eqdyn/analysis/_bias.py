"""The bias of EP's gradient estimate against beta, measured against recurrent backprop.

For each variant (one-sided, symmetric, holomorphic with `N` points) and each beta of a grid,
the relative error `||g_EP(beta) - g_RBP|| / ||g_RBP||` over all parameters, and the slope of
`log error` against `log beta` fitted over the grid: about 1 for one-sided EP, 2 for symmetric
EP and `N` for holomorphic EP (Laborieux et al. 2021; Laborieux & Zenke 2022), until the error
reaches the floor set by the fixed points' tolerance.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._errors import ConfigError
from ..dynamics import RelaxConfig
from ..learning import EP, VARIANTS, Holomorphic, OneSided, Symmetric, rbp_gradient
from ._early import relative_error

__all__ = ["BiasStudy", "bias_vs_beta"]


def _run(rule, model, x, d, s0):
    return rule(model, x, d, s0)


#: EP's estimate, compiled once per nudging: beta is the rule's array leaf, so the grid of betas
#: reuses one program (`_estimate._cached._cache_size()` counts them; tested)
_estimate = eqx.filter_jit(_run)
_rbp = eqx.filter_jit(rbp_gradient)


@dataclasses.dataclass
class BiasStudy:
    """The record `bias_vs_beta` returns.

    `betas` `(K,)`; `errors[variant]` `(K,)` relative errors against RBP (`nan` where a
    nudged phase did not settle); `slopes[variant]` the fitted log-log slope over the points
    above `floor`; `floor` the error below which points are not fitted (a fixed number, chosen
    above the resolution of the fixed points); `n_points` of the holomorphic variant.
    """

    betas: np.ndarray
    errors: dict
    slopes: dict
    floor: float
    n_points: int

    def to_json(self) -> dict:
        return dict(betas=[float(b) for b in self.betas],
                    errors={k: [None if not np.isfinite(e) else float(e) for e in v]
                            for k, v in self.errors.items()},
                    slopes={k: (None if not np.isfinite(v) else float(v))
                            for k, v in self.slopes.items()},
                    floor=self.floor, n_points=self.n_points)


def bias_vs_beta(model, x, d, *, betas=None, variants=("one-sided", "symmetric", "holomorphic"),
                 n_points: int = 4, config: RelaxConfig | None = None,
                 floor: float = 1e-9) -> BiasStudy:
    """Relative error of EP's estimate against recurrent backprop over a grid of beta.

    **Arguments:**

    - `model`, `x`, `d`: the network (float64 advised) and a batch.
    - `betas`: the grid (default 12 points log-spaced from 1e-3 to 0.5).
    - `variants`: any of `"one-sided"`, `"symmetric"`, `"holomorphic"` (needs a holomorphic
      activation).
    - `n_points`: points on the circle for the holomorphic variant.
    - `config`: the relaxation for every phase (default Euler 0.25 to a residual of 1e-11).
    - `floor`: errors below it are left out of the slope fits (resolution of the fixed
      points), and so are the betas at or below the one of the smallest error when smaller
      betas have larger errors (the fixed points' residual divided by beta dominates there).
    """
    betas = np.geomspace(1e-3, 0.5, 12) if betas is None else np.asarray(betas, float)
    if betas.ndim != 1 or betas.size < 2 or np.any(betas <= 0):
        raise ConfigError(f"`betas`={betas!r} must be at least two positive numbers.")
    bad = [v for v in variants if v not in VARIANTS or v == "random-sign"]
    if bad:
        raise ConfigError(f"`variants` {bad} are not known here; use one-sided, symmetric or "
                          "holomorphic.")
    config = config or RelaxConfig(dt0=0.25, tol=1e-11, t1=40000.0, max_steps=200000,
                                   on_failure="raise")
    x, d = jnp.asarray(x), jnp.asarray(d)
    s0 = model.init_state(x.shape[0], x.dtype)
    ref, aux = _rbp(model, x, d, s0, config)
    if not bool(aux.converged):
        raise ConfigError(
            f"the free phase did not reach `tol`={config.tol:g} by t1={config.t1:g}; pass a "
            "`config` with a longer horizon, more `max_steps` or a looser `tol`.")
    errors, slopes = {}, {}
    nudgings = dict(symmetric=Symmetric(), holomorphic=Holomorphic(n_points))
    nudgings["one-sided"] = OneSided()
    for v in variants:
        errs = []
        for b in betas:
            g, ep_aux = _estimate(EP(float(b), nudgings[v], config, config), model, x, d,
                                  aux.free_states)
            # a nudged phase that did not settle gives no estimate: nan, left out of the fit
            errs.append(relative_error(g, ref) if bool(ep_aux.nudged_converged)
                        else float("nan"))
        errs = np.array(errs)
        errors[v] = errs
        # below some beta the error grows again as beta shrinks (the fixed points' error over
        # beta): fit only the part above the minimum and above the floor
        finite = np.isfinite(errs)
        i = int(np.nanargmin(errs)) if finite.any() else 0
        ok = finite & (errs > floor) & ((betas > betas[i]) if i > 0 else True)
        slopes[v] = (float(np.polyfit(np.log(betas[ok]), np.log(errs[ok]), 1)[0])
                     if ok.sum() >= 2 else float("nan"))
    return BiasStudy(betas, errors, slopes, float(floor), int(n_points))
