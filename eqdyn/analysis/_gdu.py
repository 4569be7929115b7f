"""GDU: EP's step-by-step updates against BPTT's gradients (Ernoult et al. 2019).

The free phase is `T` steps of `u_{t+1} = u_t + dt G(u_t)`, `G` the system's field at
`beta = 0` (`-dE/ds` in the gradient formulation), from zero states; the loss is
`L = C(u_T)` summed over the batch. In the gradient formulation this is Ernoult et al.'s
prototypical setting `s_{t+1} = dPhi/ds(x, s_t, theta)` with `Phi = 1/2 |s|^2 - dt E`:
`dt = 1` is their discrete-time model (for the layered Hopfield energy
`s_{t+1} = rho'(s_t) (W rho(s_t) + b)`), and `dt < 1` is the Euler discretisation of
eqdyn's continuous-time dynamics. The nudged phase starts from `u_T` and runs `K` steps at
`beta` (the same map with `F = E + beta C`: a nudge of `dt beta` per step in their units).

- EP's neural and weight updates (Ernoult et al.'s Eqs. 9-10, with their `beta` = `dt beta`):
  `DEP_s(t) = (u^b_{t+1} - u^b_t) / (dt beta)` and
  `DEP_theta(t) = [dPhi/dtheta(u^b_{t+1}) - dPhi/dtheta(u^b_t)] / (dt beta)
  = -[dE/dtheta(u^b_{t+1}) - dE/dtheta(u^b_t)] / beta`, `t = 0..K-1`.
- BPTT's gradients: `-grad_s(t) = -dL/du_{T-t}` and `-grad_theta(t) = -dL/dtheta_{T-t}`,
  `theta_{T-t}` the copy of the parameters used by the step from `u_{T-t-1}` to `u_{T-t}`
  (one `jax.vjp` per step of the unrolled free phase, backwards from `T`).

GDU (their Theorem 1): when the free phase has converged (`u_{T-K} = ... = u_T`), the two
agree as `beta -> 0`, step by step. As `dt -> 0` the neural quantities stay O(1) (the
adjoint of the continuous dynamics) and the weight quantities are O(dt): divide them by `dt`
for rates per unit time (`GDU.param_rates`); `GDU.times` is `t dt`.

Metrics per layer and step, as in the paper: the relative mean squared error
`||a - b|| / max(||a||, ||b||)` (`relative_mse`; symmetric and at most 2) and the fraction of
entries with matching signs, over the entries where BPTT's gradient is non-zero (the error
reaches a layer `k` steps from the output only at step `k`: before that, both are zero but
for rounding and the free phase's residual motion, and have no sign). A (layer, step) whose
BPTT gradient is exactly zero has `nan` metrics.

In the leaky formulation (hard sigmoid) the step is `u_{t+1} = u_t + dt (-u_t + W rho(u_t) +
b)`, not the gradient of a `Phi` in `u` (`dt = 1`: Ernoult et al.'s `s_{t+1} = rho(W s_t)`),
and GDU is then only approximate; the study measures it the same way. Parameters entering
the cost (a readout) are not counted in `dPhi/dtheta`.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ConfigError
from ..models import LayeredHopfield, parse_arch
from ._early import _flat

__all__ = ["GDU", "GDUStudy", "gdu", "gdu_study", "relative_mse"]


def relative_mse(a, b) -> float:
    """`||a - b|| / max(||a||, ||b||)` of two arrays or pytrees, flattened: Ernoult et al.'s
    'relative mean squared error' (0 for equal, at most 2; `nan` if both are zero)."""
    a, b = _flat(a), _flat(b)
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return float(np.linalg.norm(a - b) / scale) if scale > 0 else float("nan")


@eqx.filter_jit
def _unrolled(model, x, d, u0, betas, dt, n_pre, n_steps: int):
    """Free phase (`n_pre + n_steps` steps), BPTT backwards through its last `n_steps`, and
    the nudged phase of `n_steps` from its end at every beta (vmapped)."""
    system = model.system
    params = model.params
    inputs = model.inputs(x, d)
    zero = jnp.zeros((), u0[0].dtype)

    def step(u, p, b):
        f = system.field(u, p, inputs, b)
        return tuple(a + dt * fa for a, fa in zip(u, f))

    u = jax.lax.fori_loop(0, n_pre, lambda i, u: step(u, params, zero), tuple(u0))

    def forward(u, _):
        return step(u, params, zero), u

    u_t, before = jax.lax.scan(forward, u, None, length=n_steps)  # before[k] = u_{T-K+k}
    residual = system.residual(u_t, system.field(u_t, params, inputs, zero))
    lam = jax.grad(lambda u: system.cost(u, params, inputs))(u_t)

    def backward(lam, u_prev):
        _, vjp = jax.vjp(lambda u, p: step(u, p, zero), u_prev, params)
        g_u, g_p = vjp(lam)
        return g_u, (lam, g_p)

    _, (grad_s, grad_p) = jax.lax.scan(backward, lam, before, reverse=True)
    # index k of the scan is step T-K+k; t = K-1-k counts back from T
    grad_s = tuple(a[::-1] for a in grad_s)
    grad_p = tuple(a[::-1] for a in grad_p)

    def nudged(b):
        def fwd(u, _):
            u = step(u, params, b)
            return u, u

        _, us = jax.lax.scan(fwd, u_t, None, length=n_steps)
        path = tuple(jnp.concatenate([a[None], s]) for a, s in zip(u_t, us))
        ds = tuple((a[1:] - a[:-1]) / (dt * b) for a in path)
        g = jax.vmap(lambda u: system.param_grads(u, params, inputs))(path)
        dp = tuple(-(a[1:] - a[:-1]) / b for a in g)
        return ds, dp

    ep_s, ep_p = jax.vmap(nudged)(betas)
    return ep_s, ep_p, grad_s, grad_p, residual


@dataclasses.dataclass
class GDU:
    """The record `gdu` returns (NumPy arrays; `to_json` for a JSON file).

    - `betas` `(nb,)`, `dt`, `n_free` (`T`), `n_nudged` (`K`), `times` `(K,)` (`t dt`, time
      before the end of the free phase, in units of tau), `free_residual` (`max |G(u_T)|`:
      how far the free phase is from converged), `state_names`, `param_names`.
    - `ep_neurons[k]` `(nb, K, B, n_k)`, `bptt_neurons[k]` `(K, B, n_k)`: `DEP_s(t)` and
      `-grad_s(t)`; `ep_params[j]` `(nb, K, *shape_j)`, `bptt_params[j]` `(K, *shape_j)`:
      `DEP_theta(t)` and `-grad_theta(t)` (per step; `param_rates` divides by `dt`).
    - `error_neurons` `(nb, L, K)`, `sign_neurons` `(nb, L, K)`, `error_params`,
      `sign_params` `(nb, P, K)`: relative mean squared error and sign agreement.
    """

    betas: np.ndarray
    dt: float
    n_free: int
    n_nudged: int
    times: np.ndarray
    free_residual: float
    state_names: tuple
    param_names: tuple
    ep_neurons: list
    bptt_neurons: list
    ep_params: list
    bptt_params: list
    error_neurons: np.ndarray
    sign_neurons: np.ndarray
    error_params: np.ndarray
    sign_params: np.ndarray

    def param_rates(self):
        """`(ep, bptt)` weight updates per unit time (divided by `dt`): O(1) as `dt -> 0`."""
        return ([a / self.dt for a in self.ep_params], [a / self.dt for a in self.bptt_params])

    def summary(self) -> dict:
        """Per beta, averaged over layers and steps (where defined): `error_neurons`,
        `error_params`, `sign_neurons`, `sign_params`; and the worst `sign_*_min`."""
        def over(a, f):
            return [float(f(a[i])) if np.isfinite(a[i]).any() else float("nan")
                    for i in range(a.shape[0])]

        return dict(error_neurons=over(self.error_neurons, np.nanmean),
                    error_params=over(self.error_params, np.nanmean),
                    sign_neurons=over(self.sign_neurons, np.nanmean),
                    sign_params=over(self.sign_params, np.nanmean),
                    sign_neurons_min=over(self.sign_neurons, np.nanmin),
                    sign_params_min=over(self.sign_params, np.nanmin))

    def to_json(self) -> dict:
        """The metrics and the settings, as plain lists (`null` for `nan`)."""
        def clean(a):
            a = np.asarray(a, float)
            return [clean(v) for v in a] if a.ndim else (float(a) if np.isfinite(a) else None)

        return dict(betas=clean(self.betas), dt=self.dt, n_free=self.n_free,
                    n_nudged=self.n_nudged, times=clean(self.times),
                    free_residual=self.free_residual, state_names=list(self.state_names),
                    param_names=list(self.param_names),
                    error_neurons=clean(self.error_neurons), sign_neurons=clean(self.sign_neurons),
                    error_params=clean(self.error_params), sign_params=clean(self.sign_params),
                    summary={k: clean(v) for k, v in self.summary().items()})


def gdu(model, x, d, *, betas=(1e-6,), n_free: int = 100, n_nudged: int = 10,
        dt: float = 1.0) -> GDU:
    """EP's neural and weight updates at each nudged step against BPTT's gradients.

    **Arguments:**

    - `model`: an energy model (float64 advised), e.g. a sigmoid `LayeredHopfield`.
    - `x`, `d`: inputs `(B, n_in)` and targets `(B, n_out)`.
    - `betas`: nudges (eqdyn's `F = E + beta C`; the per-step nudge is `dt beta`). The match
      is a limit `beta -> 0`: small betas in float64 (1e-6) test it, larger ones show its bias.
    - `n_free`: free steps `T` from zero states (enough to converge, or few to see what an
      unconverged free phase does); `n_nudged`: nudged steps `K <= T`.
    - `dt`: the step; 1 is Ernoult et al.'s discrete-time setting, smaller ones the Euler
      discretisation of the continuous-time dynamics (stable below 2 for the Hopfield leak).

    **Returns:** a `GDU` record.
    """
    betas = np.atleast_1d(np.asarray(betas, float))
    if betas.ndim != 1 or not np.all(np.isfinite(betas)) or np.any(betas == 0):
        raise ConfigError(f"`betas`={betas!r} must be non-zero finite numbers, e.g. (1e-6,).")
    for name, v in (("n_free", n_free), ("n_nudged", n_nudged)):
        if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
            raise ConfigError(f"`{name}`={v!r} must be a positive integer.")
    if n_nudged > n_free:
        raise ConfigError(f"`n_nudged`={n_nudged} exceeds `n_free`={n_free}: BPTT's gradients "
                          "at the matching steps need a free phase at least as long.")
    if not (isinstance(dt, (int, float)) and 0 < dt and np.isfinite(dt)):
        raise ConfigError(f"`dt`={dt!r} must be a positive number (1: discrete time).")
    x, d = jnp.asarray(x), jnp.asarray(d)
    dtype = x.dtype
    u0 = model.init_state(x.shape[0], dtype)
    ep_s, ep_p, grad_s, grad_p, residual = _unrolled(
        model, x, d, u0, jnp.asarray(betas, dtype), jnp.asarray(dt, dtype),
        jnp.asarray(n_free - n_nudged), n_nudged)
    ep_s = [np.asarray(a) for a in ep_s]
    ep_p = [np.asarray(a) for a in ep_p]
    ref_s = [-np.asarray(a) for a in grad_s]
    ref_p = [-np.asarray(a) for a in grad_p]
    if not all(np.all(np.isfinite(a)) for a in ref_s + ep_s):
        raise ConfigError(f"the unrolled dynamics diverged with `dt`={dt}; use a smaller dt.")

    def metrics(ep, ref):
        # (nb, L, K) over each layer's entries at each step, vectorised
        err = np.full((betas.size, len(ref), n_nudged), np.nan)
        sign = np.full_like(err, np.nan)
        for k, (e, r) in enumerate(zip(ep, ref)):
            e = e.reshape(betas.size, n_nudged, -1)
            r = r.reshape(n_nudged, -1)
            live = r != 0
            ok = live.any(axis=1)
            scale = np.maximum(np.linalg.norm(e, axis=2), np.linalg.norm(r, axis=1))
            with np.errstate(invalid="ignore", divide="ignore"):
                err[:, k] = np.where(ok, np.linalg.norm(e - r, axis=2) / scale, np.nan)
                agree = (np.sign(e) == np.sign(r)) & live
                sign[:, k] = np.where(ok, agree.sum(axis=2) / live.sum(axis=1), np.nan)
        return err, sign

    err_s, sign_s = metrics(ep_s, ref_s)
    err_p, sign_p = metrics(ep_p, ref_p)
    system = model.system
    return GDU(betas=betas, dt=float(dt), n_free=n_free, n_nudged=n_nudged,
               times=np.arange(n_nudged) * float(dt), free_residual=float(residual),
               state_names=tuple(system.state_names), param_names=tuple(system.param_names),
               ep_neurons=ep_s, bptt_neurons=ref_s, ep_params=ep_p, bptt_params=ref_p,
               error_neurons=err_s, sign_neurons=sign_s, error_params=err_p,
               sign_params=sign_p)


@dataclasses.dataclass
class GDUStudy:
    """The record `gdu_study` returns: `records`, one `GDU` per architecture, `dt` and
    free-phase length (all at the same `betas`), and `rows`, one dict per record with `arch`,
    `depth` (hidden layers), `dt`, `free_time` (`T dt`), `n_free`, `n_nudged`,
    `free_residual` and its `summary()` (lists over `betas`)."""

    betas: np.ndarray
    rows: list
    records: list
    activation: str
    horizon: float

    def to_json(self) -> dict:
        return dict(betas=[float(b) for b in self.betas], rows=self.rows,
                    activation=self.activation, horizon=self.horizon,
                    records=[r.to_json() for r in self.records])


def gdu_study(archs, *, activation: str = "sigmoid", betas=None, dts=(1.0, 0.1),
              free_times=(4.0, 200.0), horizon: float = 10.0, batch: int = 8, seed: int = 0,
              dtype=jnp.float64) -> GDUStudy:
    """GDU on Glorot-initialised networks of each `arch`, random inputs uniform in [0, 1] and
    random one-hot targets (seeded), for each step `dt` and free-phase duration.

    **Arguments:**

    - `archs`: architectures, e.g. `["10-12-4", "10-12-12-4"]` (depth dependence).
    - `activation`: of the `LayeredHopfield` networks (sigmoid: the exact setting).
    - `betas`: the nudges (default 1e-8 to 1, one per decade): the error falls as O(beta)
      until rounding and the free phase's residual, divided by beta, take over.
    - `dts`: steps (1 = discrete time; smaller: continuous time under Euler).
    - `free_times`: free-phase durations in units of tau (`T = round(free_time / dt)`): a
      short one (unconverged) and a long one (converged).
    - `horizon`: duration of the nudged phase (`K = round(horizon / dt)`, at most `T`).
    """
    if not archs:
        raise ConfigError("`archs` is empty; give at least one architecture, e.g. ['10-12-4'].")
    betas = np.geomspace(1e-8, 1.0, 9) if betas is None else np.asarray(betas, float)
    rows, records = [], []
    for arch in archs:
        sizes = parse_arch(arch) if isinstance(arch, str) else tuple(arch)
        key = jax.random.PRNGKey(seed)
        model = LayeredHopfield(sizes, activation, key=key, dtype=dtype)
        rng = np.random.default_rng(seed)
        x = jnp.asarray(rng.uniform(size=(batch, sizes[0])), dtype)
        d = jax.nn.one_hot(jnp.asarray(rng.integers(0, sizes[-1], batch)), sizes[-1],
                           dtype=dtype)
        for dt in dts:
            for ft in free_times:
                n_free = max(1, int(round(ft / dt)))
                n_nudged = min(n_free, max(1, int(round(horizon / dt))))
                r = gdu(model, x, d, betas=betas, n_free=n_free, n_nudged=n_nudged, dt=dt)
                records.append(r)
                rows.append(dict(arch="-".join(map(str, sizes)), depth=len(sizes) - 2,
                                 dt=float(dt), free_time=float(ft), n_free=n_free,
                                 n_nudged=n_nudged, free_residual=r.free_residual,
                                 **r.to_json()["summary"]))
    return GDUStudy(betas, rows, records, activation, float(horizon))
