"""Early inference (Bengio & Fischer 2015), measured under its own hypothesis.

The claim: start at the free fixed point, switch on a small nudge at the output, and the early
temporal derivatives of the hidden units carry backprop's error signals, layer `L-j` after
about `j` time constants. The hypothesis behind it: the fixed point is the network's own
feedforward pass, which holds when the top-down feedback is weak.

What is measured (first order in `beta`, i.e. the linear response `v(t) = exp(A t) g` of the
dynamics at the free fixed point, `A` the Jacobian of the field, `g = dfield/dbeta`; exact
per example by matrix exponentials in coordinates scaled layer by layer, so that the
`gamma^j`-small responses of deep layers keep full relative precision):

- `velocity(t)`: the observed velocity `ds_k/dt` per unit `beta` (`rho'(u) du/dt` in the leaky
  formulation) and `response(t)` = `(s(t) - s^0)/beta`;
- `lead`: the leading early-time direction. To first order in `t`, layer `k` at graph
  distance `j` from the nudged layer moves as `t^j/j! (A^j g)_k`: backprop through the
  network's linearisation at its own fixed point (the off-diagonal blocks of `A`);
- `backprop`: backprop through the network's own feedforward computation (the `gamma -> 0`
  dynamics, `eqdyn.analysis.feedforward_backprop`), `-dC/du_k` with respect to the integrated
  variable (states in the gradient form, potentials in the leaky form), the same cost;
- `ff_distance`: how far the free fixed point is from the feedforward pass;
- per layer: cosine of `lead`, of the velocity at the arrival time and at a few probe times
  with `backprop`; the amplitude (peak `||velocity_k||` relative to the nudged layer's); the
  arrival time (`||response_k||` reaches `arrival_fraction` of its final value).

The reference is evaluated twice: at the feedforward pass (`backprop`, the claim's reference)
and at the free fixed point (`backprop_fp`: the same computation linearised where the network
actually is), so that `cos(lead, backprop_fp)` isolates the propagation mechanism and
`cos(backprop_fp, backprop)` the fixed-point mismatch.

**The output-layer check.** At `t -> 0` only the nudged layer moves, along `g`; the
reference's error at that layer, evaluated at the same point (`backprop_fp`), must be the same
direction (cosine 1 to `check_tol`). If not, the reference is not backprop for this network's
cost and variable (the plain-MLP reference eqdyn used before issue 26 gives 0.44 on its
default network), and no layer comparison is reported (`NaN`, with `refused` saying why).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np
import scipy.linalg

from .._errors import ConfigError
from ._feedforward import (
    feedforward_backprop,
    feedforward_pass,
    fixed_point,
    row_jacobians,
    with_feedback,
)
from ._metrics import (  # noqa: F401 (re-exported)
    _flat,
    cosine,
    field_jacobians,
    fixed_point_sensitivity,
    relative_error,
)

__all__ = ["EarlyInference", "EarlyInferenceSweep", "early_inference", "early_inference_sweep",
           "linear_response"]


def _distances(jac, g, sizes) -> np.ndarray:
    """Graph distance of each state from the nudged ones, along nonzero Jacobian blocks."""
    lo = np.cumsum([0] + list(sizes[:-1]))
    n = len(sizes)
    a = np.abs(np.asarray(jac)).max(axis=0)
    edge = np.array([[a[lo[k]:lo[k] + sizes[k], lo[j]:lo[j] + sizes[j]].max() > 0
                      for j in range(n)] for k in range(n)])  # edge[k, j]: j drives k
    src = np.abs(np.asarray(g)).max(axis=0)
    dist = np.full(n, np.inf)
    for k in range(n):
        if src[lo[k]:lo[k] + sizes[k]].max() > 0:
            dist[k] = 0
    for step in range(1, n + 1):
        for k in range(n):
            if not np.isfinite(dist[k]) and any(edge[k, j] and dist[j] == step - 1
                                                for j in range(n)):
                dist[k] = step
    return dist


def linear_response(jac, g, sizes, times):
    """First-order response to a unit nudge from rest: `v(t) = exp(A t) g` and `q(t) =
    int_0^t v`, per example, and the leading terms `lead_k = (A^{j_k} g)_k`.

    **Returns:** `(v, q, q_inf, lead, dist)`: `v`, `q` `(T, B, N)`, `q_inf = -A^{-1} g`
    `(B, N)`, `lead` `(B, N)` and the distance `j_k` of each state (`inf`: never reached).
    """
    jac, g = np.asarray(jac, np.float64), np.asarray(g, np.float64)
    dist = _distances(jac, g, sizes)
    lo = np.cumsum([0] + list(sizes[:-1]))
    nb, nn = g.shape
    lead = np.zeros_like(g)
    w = g.copy()
    for step in range(int(np.nanmax(np.where(np.isfinite(dist), dist, 0))) + 1):
        for k, j in enumerate(dist):
            if j == step:
                lead[:, lo[k]:lo[k] + sizes[k]] = w[:, lo[k]:lo[k] + sizes[k]]
        w = np.einsum("bij,bj->bi", jac, w)
    v = np.zeros((len(times), nb, nn))
    q = np.zeros_like(v)
    q_inf = np.zeros_like(g)
    for b in range(nb):
        # scale each layer by 1/||lead_k|| so that every block of S A S^-1 is O(1) or small
        sig = np.ones(nn)
        for k in range(len(sizes)):
            nrm = np.linalg.norm(lead[b, lo[k]:lo[k] + sizes[k]])
            if nrm > 0:
                sig[lo[k]:lo[k] + sizes[k]] = 1.0 / nrm
        bmat = sig[:, None] * jac[b] / sig[None, :]
        aug = np.zeros((nn + 1, nn + 1))
        aug[:nn, :nn] = bmat
        aug[:nn, nn] = sig * g[b]
        for i, t in enumerate(times):
            e = scipy.linalg.expm(aug * t)
            v[i, b] = e[:nn, :nn] @ (sig * g[b]) / sig
            q[i, b] = e[:nn, nn] / sig
        q_inf[b] = -np.linalg.solve(bmat, sig * g[b]) / sig
    return v, q, q_inf, lead, dist


@dataclasses.dataclass
class EarlyInference:
    """What `early_inference` measured (NumPy arrays; `to_json` for a JSON file).

    - `times` `(T,)`; `layers` (state names, input side first); `distance` `(L,)` from the
      nudged layer (0 for the output); `probe_times`.
    - `velocity[k]`, `response[k]` `(T, B, n_k)` per unit `beta`; `lead[k]`, `backprop[k]`
      `(B, n_k)`.
    - `ff_distance` `(L,)`: `||u*_k - u^ff_k|| / ||u^ff_k||`, and `ff_distance_total`.
    - `cos_lead`, `cos_arrival` `(L,)`, `cos_probe` `(L, P)`, `cos_time` `(L, T)`: cosines
      with `backprop` (over the batch, flattened); `cos_lead_fp`: `lead` against
      `backprop_fp`; `cos_fp`: `backprop_fp` against `backprop`; `cos_early_lead` `(L,)`: the
      response at the first time against `lead` (checks the expansion).
    - `amplitude` `(L,)`: peak `||velocity_k||` over the nudged layer's; `arrival` `(L,)`.
    - `output_check`: the nudged layer's `cos(lead, backprop)`; `refused`: why the layer
      comparison is withheld (`""` if it is reported).
    - `free_residual`: `max |field|` at the free fixed point.
    """

    times: np.ndarray
    layers: tuple
    distance: np.ndarray
    probe_times: tuple
    velocity: list
    response: list
    lead: list
    backprop: list
    backprop_fp: list
    cos_lead_fp: np.ndarray
    cos_fp: np.ndarray
    ff_distance: np.ndarray
    ff_distance_total: float
    cos_lead: np.ndarray
    cos_arrival: np.ndarray
    cos_probe: np.ndarray
    cos_time: np.ndarray
    cos_early_lead: np.ndarray
    amplitude: np.ndarray
    arrival: np.ndarray
    arrival_fraction: float
    output_check: float
    refused: str
    free_residual: float
    gamma: float | None = None

    def to_json(self) -> dict:
        """Everything but the per-unit arrays, as plain lists (`None` for NaN)."""
        def clean(a):
            a = np.asarray(a, float)
            if a.ndim == 0:
                return float(a) if np.isfinite(a) else None
            return [clean(r) for r in a]

        return dict(
            gamma=self.gamma, times=clean(self.times), layers=list(self.layers),
            distance=clean(self.distance), probe_times=list(self.probe_times),
            ff_distance=clean(self.ff_distance), ff_distance_total=self.ff_distance_total,
            cos_lead=clean(self.cos_lead), cos_lead_fp=clean(self.cos_lead_fp),
            cos_fp=clean(self.cos_fp), cos_arrival=clean(self.cos_arrival),
            cos_probe=clean(self.cos_probe), cos_time=clean(self.cos_time),
            cos_early_lead=clean(self.cos_early_lead), amplitude=clean(self.amplitude),
            arrival=clean(self.arrival), arrival_fraction=self.arrival_fraction,
            output_check=clean(self.output_check), refused=self.refused,
            free_residual=self.free_residual,
        )


def early_inference(model, x, d, *, times=None, probe_times: Sequence[float] = (0.1, 1.0, 10.0),
                    arrival_fraction: float = 0.01, check_tol: float = 1e-6,
                    reference: Callable | None = None, gamma: float | None = None
                    ) -> EarlyInference:
    """Compare the early response to a nudge with backprop through the network's own
    feedforward computation (see the module docstring).

    **Arguments:**

    - `model`: any energy model (a `LayeredHopfield`, an `EnergyModel` of a custom energy, a
      trained network); float64 advised.
    - `x`, `d`: inputs `(B, n_in)` and targets `(B, n_out)`.
    - `times`: increasing positive times (default 60 points log-spaced from 1e-3 to 1e3).
    - `probe_times`: times at which the velocity's cosine with backprop is also reported.
    - `arrival_fraction`: threshold of the arrival time (fraction of the final response).
    - `check_tol`: the output-layer check passes when `1 - cos > check_tol` does not hold.
    - `reference`: `reference(model, x, d, states) -> tuple of (B, n_k)` errors evaluated at
      `states` (the integrated variables), instead of `feedforward_backprop`'s (e.g.
      `mlp_backprop_errors`, to see the check refuse it).
    - `gamma`: run on `with_feedback(model, gamma)` (the same parameters, feedback `gamma`).

    **Returns:** an `EarlyInference`.
    """
    if gamma is not None:
        model = with_feedback(model, gamma)
    times = np.geomspace(1e-3, 1e3, 60) if times is None else np.asarray(times, float)
    if times.ndim != 1 or times.size < 2 or np.any(np.diff(times) <= 0) or times[0] <= 0:
        raise ConfigError(f"`times`={times!r} must be increasing: a 1-D array of at least two "
                          "positive times, e.g. np.geomspace(1e-3, 1e3, 60).")
    if not 0 < arrival_fraction < 1:
        raise ConfigError(f"`arrival_fraction`={arrival_fraction} must be in (0, 1).")
    system = model.system
    x, d = jnp.asarray(x), jnp.asarray(d)
    if x.dtype != jnp.float64:
        raise ConfigError("early_inference needs float64 inputs and parameters (responses of "
                          "deep layers are gamma^j small); build the model with "
                          "dtype=jnp.float64 under jax_enable_x64.")
    params, inputs = model.params, model.inputs(x, d)
    ff_states = feedforward_pass(model, x)
    states, residual = fixed_point(system.field, params, inputs,
                                   model.init_state(x.shape[0], x.dtype))
    if not residual < 1e-8:
        raise ConfigError(f"the free phase did not settle (residual {residual:.3g}).")
    reference = reference or (lambda m, x_, d_, st: feedforward_backprop(m, x_, d_, st)[0])
    bp = [np.asarray(a, np.float64) for a in reference(model, x, d, ff_states)]
    bp_fp = [np.asarray(a, np.float64) for a in reference(model, x, d, states)]
    sizes = [a.shape[1] for a in states]
    jac, g = row_jacobians(system.field, params, inputs, states)
    probe = np.asarray(probe_times, float)
    all_t = np.unique(np.concatenate([times, probe]))
    v, q, q_inf, lead, dist = linear_response(jac, g, sizes, all_t)
    lo = np.cumsum([0] + sizes[:-1])

    def observed(a):  # (..., N) integrated-variable velocity -> observed velocity per state
        parts = [a[..., lo[k]:lo[k] + n] for k, n in enumerate(sizes)]
        if system.formulation != "leaky":
            return parts
        return [np.asarray(system.activation.d1(np.asarray(states[k])))[..., :] * p
                for k, p in enumerate(parts)]

    vel, resp, leads, final = observed(v), observed(q), observed(lead), observed(q_inf)
    n_layers = len(sizes)
    out = {k: np.full(n_layers, np.nan) for k in ("cos_lead", "cos_arrival", "cos_early_lead",
                                                   "amplitude", "arrival", "ff", "cos_lead_fp", "cos_fp")}
    cos_probe = np.full((n_layers, probe.size), np.nan)
    cos_time = np.full((n_layers, all_t.size), np.nan)
    source = [k for k in range(n_layers) if dist[k] == 0]
    output_check = min(cosine(leads[k], bp_fp[k]) for k in source)
    refused = ""
    if all(np.linalg.norm(leads[k]) == 0 for k in source):
        refused = ("nothing moves at the nudged layer (every unit saturated: rho' = 0), so a "
                   "small nudge sends no signal down; nothing to compare")
    elif not (output_check > 1 - check_tol):
        refused = (f"output-layer check failed: cos(early velocity, reference) = "
                   f"{output_check:.4f} at the nudged layer, where nothing has propagated yet; "
                   "the reference is not backprop for this network's cost and variable")
    peak0 = max(max(np.linalg.norm(vel[k][i]) for i in range(all_t.size)) for k in source)
    for k in range(n_layers):
        ff_norm = np.linalg.norm(np.asarray(ff_states[k]))
        out["ff"][k] = np.linalg.norm(np.asarray(states[k] - ff_states[k])) / max(ff_norm, 1e-300)
        if not np.isfinite(dist[k]):
            continue
        speed = np.array([np.linalg.norm(vel[k][i]) for i in range(all_t.size)])
        out["amplitude"][k] = speed.max() / peak0 if peak0 > 0 else np.nan
        out["cos_early_lead"][k] = cosine(vel[k][0], leads[k])
        norms = np.array([np.linalg.norm(resp[k][i]) for i in range(all_t.size)])
        hit = np.nonzero(norms >= arrival_fraction * np.linalg.norm(final[k]))[0]
        i_arr = hit[0] if hit.size else None
        if hit.size:
            out["arrival"][k] = all_t[i_arr]
        if refused:
            continue
        out["cos_lead"][k] = cosine(leads[k], bp[k])
        out["cos_lead_fp"][k] = cosine(leads[k], bp_fp[k])
        out["cos_fp"][k] = cosine(bp_fp[k], bp[k])
        if i_arr is not None:
            out["cos_arrival"][k] = cosine(vel[k][i_arr], bp[k])
        for i in range(all_t.size):
            if speed[i] > 1e-9 * speed.max():  # a settled layer's velocity has no direction
                cos_time[k, i] = cosine(vel[k][i], bp[k])
        for p, t in enumerate(probe):
            cos_probe[k, p] = cos_time[k, np.searchsorted(all_t, t)]
    ff_total = float(np.linalg.norm(np.concatenate([np.ravel(np.asarray(a - b)) for a, b in
                                                    zip(states, ff_states)]))
                     / np.linalg.norm(np.concatenate([np.ravel(np.asarray(b))
                                                      for b in ff_states])))
    keep = np.isin(all_t, times)
    return EarlyInference(
        times=times, layers=tuple(system.state_names), distance=dist,
        probe_times=tuple(float(t) for t in probe), velocity=[a[keep] for a in vel],
        response=[a[keep] for a in resp], lead=leads, backprop=bp, backprop_fp=bp_fp,
        cos_lead_fp=out["cos_lead_fp"], cos_fp=out["cos_fp"], ff_distance=out["ff"],
        ff_distance_total=ff_total, cos_lead=out["cos_lead"], cos_arrival=out["cos_arrival"],
        cos_probe=cos_probe, cos_time=cos_time[:, keep], cos_early_lead=out["cos_early_lead"],
        amplitude=out["amplitude"], arrival=out["arrival"],
        arrival_fraction=float(arrival_fraction), output_check=float(output_check),
        refused=refused, free_residual=residual, gamma=gamma,
    )


@dataclasses.dataclass
class EarlyInferenceSweep:
    """`early_inference` over feedback strengths: `gammas` `(G,)`, `records`, and the summary
    arrays `cos_lead`, `cos_arrival`, `amplitude`, `arrival` `(G, L)`, `ff_distance` `(G,)`,
    `output_check` `(G,)`; `layers`, `distance`."""

    gammas: np.ndarray
    records: list
    layers: tuple
    distance: np.ndarray
    cos_lead: np.ndarray
    cos_arrival: np.ndarray
    amplitude: np.ndarray
    arrival: np.ndarray
    ff_distance: np.ndarray
    output_check: np.ndarray

    def to_json(self) -> dict:
        return dict(gammas=[float(g) for g in self.gammas],
                    records=[r.to_json() for r in self.records])

    def table(self) -> str:
        """The summary as text: per gamma, the fixed point's distance from the feedforward
        pass, the output-layer check, and per layer (nearest the output first) the cosine of
        the leading direction and of the velocity at arrival with backprop, and the
        amplitude."""
        order = np.argsort(self.distance)
        head = "  ".join(f"{self.layers[k]:>22}" for k in order)
        lines = [f"{'gamma':>8} {'|u*-u_ff|':>10} {'out check':>10}  {head}",
                 f"{'':>8} {'':>10} {'':>10}  " + "  ".join(
                     f"{'cos lead/arrival, amp':>22}" for _ in order)]
        for i, g in enumerate(self.gammas):
            cells = []
            for k in order:
                cells.append(f"{self.cos_lead[i, k]:.4f}/{self.cos_arrival[i, k]:.4f} "
                             f"{self.amplitude[i, k]:.0e}")
            lines.append(f"{g:>8g} {self.ff_distance[i]:>10.2e} {self.output_check[i]:>10.6f}  "
                         + "  ".join(f"{c:>22}" for c in cells))
            if self.records[i].refused:
                lines.append(f"{'':>8} refused: {self.records[i].refused}")
        return "\n".join(lines)


def early_inference_sweep(model, x, d, gammas: Sequence[float] = (1.0, 0.3, 0.1, 0.01, 1e-4),
                          **kwargs) -> EarlyInferenceSweep:
    """`early_inference(model, x, d, gamma=g, **kwargs)` for every `g` in `gammas`."""
    gammas = np.asarray(gammas, float)
    if gammas.ndim != 1 or gammas.size == 0 or np.any(gammas <= 0):
        raise ConfigError(f"`gammas`={gammas.tolist()} must be positive feedback strengths, "
                          "e.g. (1, 0.3, 0.1, 0.01, 1e-4).")
    recs = [early_inference(model, x, d, gamma=float(g), **kwargs) for g in gammas]

    def stack(name):
        return np.stack([getattr(r, name) for r in recs])

    return EarlyInferenceSweep(
        gammas=gammas, records=recs, layers=recs[0].layers, distance=recs[0].distance,
        cos_lead=stack("cos_lead"), cos_arrival=stack("cos_arrival"),
        amplitude=stack("amplitude"), arrival=stack("arrival"),
        ff_distance=np.array([r.ff_distance_total for r in recs]),
        output_check=np.array([r.output_check for r in recs]))
