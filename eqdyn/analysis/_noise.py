"""EP's gradient estimates under neuron noise (Laborieux & Zenke 2022, Table 1 and Fig. 3c).

Every phase is a Langevin SDE at temperature `T` (noise on the potentials of the leaky
formulation, `sqrt(2 T)` per unit of sqrt-time: with Euler-Maruyama steps of `dt = 1`, `T =
sigma^2 / 2` adds a Gaussian of std `sigma` to every pre-activation at every step, their
`noise = sigma`). For each estimator (a variant and its `|beta|`) and each of `n_keys`
independent noise draws, the estimate is compared with recurrent backprop at the noiseless
fixed point: cosine similarity and relative error, and the same for the estimate averaged over
the draws and for the noiseless estimate (the estimator's own bias). Classic EP divides a
difference of two noisy states by a small beta, so its noise is `~ sigma / beta`; holomorphic
EP reads the first Fourier coefficient of N noisy points on the circle `|beta|`, which averages
the noise down by `sqrt(N)` at a larger `|beta|` without the bias that a larger real beta
brings.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ConfigError
from ..dynamics import RelaxConfig, relax_core
from ..learning import EPConfig, ep_gradient, rbp_gradient
from ._early import cosine, relative_error

__all__ = ["NoiseStudy", "noise_study", "DEFAULT_ESTIMATORS"]

#: `(variant, |beta|, N)`: Laborieux & Zenke's classic EP (beta 0.1), the same at their
#: holomorphic |beta|, symmetric EP (N = 2 on the circle) and holomorphic EP with N = 10
DEFAULT_ESTIMATORS = (("one-sided", 0.1, 2), ("one-sided", 0.4, 2), ("symmetric", 0.4, 2),
                      ("holomorphic", 0.4, 10))


def _label(variant, beta, n):
    return f"{variant}, beta {beta:g}" + (f", N {n}" if variant == "holomorphic" else "")


@dataclasses.dataclass
class NoiseStudy:
    """The record `noise_study` returns.

    `labels` one per estimator; `cosines[label]` and `errors[label]` `(n_keys,)`: cosine and
    relative error of each noisy estimate against recurrent backprop; `mean_cosine[label]`,
    `mean_error[label]`: of the estimate averaged over the draws; `noiseless_cosine[label]`,
    `noiseless_error[label]`: of the estimate at `T = 0` (the bias alone); `nudged_time[label]`:
    the time the nudged phases take together (holomorphic EP runs N points in turn).
    """

    temperature: float
    dt: float
    free_t1: float
    nudged_t1: float
    n_keys: int
    labels: list
    cosines: dict
    errors: dict
    mean_cosine: dict
    mean_error: dict
    noiseless_cosine: dict
    noiseless_error: dict
    nudged_time: dict

    @property
    def noise_std(self) -> float:
        """The per-step std of the noise on a potential (`sqrt(2 T dt)`)."""
        return float(np.sqrt(2.0 * self.temperature * self.dt))

    def to_json(self) -> dict:
        f = lambda v: [float(a) for a in v]  # noqa: E731
        return dict(temperature=self.temperature, noise_std_per_step=self.noise_std,
                    dt=self.dt, free_t1=self.free_t1, nudged_t1=self.nudged_t1,
                    n_keys=self.n_keys, labels=list(self.labels),
                    cosines={k: f(v) for k, v in self.cosines.items()},
                    errors={k: f(v) for k, v in self.errors.items()},
                    mean_cosine=dict(self.mean_cosine), mean_error=dict(self.mean_error),
                    noiseless_cosine=dict(self.noiseless_cosine),
                    noiseless_error=dict(self.noiseless_error),
                    nudged_time=dict(self.nudged_time))


def noise_study(model, x, d, *, temperature: float = 8e-4, estimators=DEFAULT_ESTIMATORS,
                n_keys: int = 16, dt: float = 1.0, free_t1: float = 50.0,
                nudged_t1: float = 50.0, seed: int = 0,
                config: RelaxConfig | None = None) -> NoiseStudy:
    """Gradient estimates of EP variants under neuron noise, against recurrent backprop.

    **Arguments:**

    - `model`, `x`, `d`: the network and a batch (a smooth, holomorphic activation for the
      holomorphic estimator; the leaky formulation puts the noise on the potentials, as
      Laborieux & Zenke do).
    - `temperature`: `T` of every phase (default 8e-4: std 0.04 per step of `dt = 1`).
    - `estimators`: `(variant, |beta|, N)` triples (`N` is used by holomorphic EP only).
    - `n_keys`: independent noise draws per estimator (vmapped).
    - `dt`, `free_t1`, `nudged_t1`: Euler-Maruyama step and horizons of the noisy phases; the
      noisy free phase starts at the noiseless free fixed point, each nudged phase (each point
      of the circle) lasts `nudged_t1`.
    - `config`: the noiseless relaxation (fixed point, references, noiseless estimates;
      default Euler 0.5 to a residual of 1e-9).
    """
    if not (isinstance(temperature, (int, float)) and temperature > 0
            and np.isfinite(temperature)):
        raise ConfigError(f"`temperature`={temperature!r} must be a positive number.")
    if not (isinstance(n_keys, int) and n_keys >= 2):
        raise ConfigError(f"`n_keys`={n_keys!r} must be an integer >= 2.")
    for name, v in (("dt", dt), ("free_t1", free_t1), ("nudged_t1", nudged_t1)):
        if not (isinstance(v, (int, float)) and v > 0 and np.isfinite(v)):
            raise ConfigError(f"`{name}`={v!r} must be a positive number.")
    estimators = [tuple(e) for e in estimators]
    for e in estimators:
        if len(e) != 3 or e[0] not in ("one-sided", "symmetric", "holomorphic"):
            raise ConfigError(f"estimator {e!r}: give (variant, beta, N) with variant "
                              "one-sided, symmetric or holomorphic.")
    config = config or RelaxConfig(dt0=0.5, tol=1e-9, t1=20000.0, max_steps=100000,
                                   backend="fused", on_failure="raise")
    x, d = jnp.asarray(x), jnp.asarray(d)
    s0 = model.init_state(x.shape[0], x.dtype)
    free = eqx.filter_jit(relax_core)(model, x, s0, 0.0, d, config)
    ref, _ = eqx.filter_jit(rbp_gradient)(model, x, d, free.states, config)
    noisy_free = RelaxConfig(t1=float(free_t1), dt0=float(dt))
    noisy_nudged = RelaxConfig(t1=float(nudged_t1), dt0=float(dt))
    keys = jax.random.split(jax.random.PRNGKey(seed), n_keys)

    out = {k: {} for k in ("cos", "err", "mcos", "merr", "ncos", "nerr", "time")}
    labels = []
    for variant, beta, n in estimators:
        label = _label(variant, beta, n)
        labels.append(label)
        quiet = EPConfig(beta=float(beta), variant=variant, free=config, nudged=config,
                         n_points=int(n))
        g0, _ = eqx.filter_jit(ep_gradient)(model, x, d, free.states, quiet)
        noisy = EPConfig(beta=float(beta), variant=variant, free=noisy_free,
                         nudged=noisy_nudged, temperature=float(temperature), n_points=int(n))

        @eqx.filter_jit
        def draws(model, keys, cfg=noisy):
            return jax.vmap(lambda k: ep_gradient(model, x, d, free.states, cfg, key=k)[0])(keys)

        gs = draws(model, keys)
        per = [tuple(g[i] for g in gs) for i in range(n_keys)]
        mean = tuple(jnp.mean(g, axis=0) for g in gs)
        out["cos"][label] = np.array([cosine(g, ref) for g in per])
        out["err"][label] = np.array([relative_error(g, ref) for g in per])
        out["mcos"][label] = float(cosine(mean, ref))
        out["merr"][label] = float(relative_error(mean, ref))
        out["ncos"][label] = float(cosine(g0, ref))
        out["nerr"][label] = float(relative_error(g0, ref))
        phases = {"one-sided": 1, "symmetric": 2, "holomorphic": int(n)}[variant]
        out["time"][label] = float(phases * nudged_t1)
    return NoiseStudy(float(temperature), float(dt), float(free_t1), float(nudged_t1),
                      int(n_keys), labels, out["cos"], out["err"], out["mcos"], out["merr"],
                      out["ncos"], out["nerr"], out["time"])
