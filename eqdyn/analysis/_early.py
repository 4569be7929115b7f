"""Early inference: what the hidden units do right after the output is nudged.

From the free fixed point `s^0`, switch on a small `beta` and record, for every layer,
`q_k(t) = (s_k^beta(t) - s_k^0(t)) / beta` and `v_k(t) = (ds_k^beta/dt - ds_k^0/dt)(t) / beta`,
where `s^0(t)` is the free trajectory from the same start (so that what is left of the free
phase's residual motion cancels instead of being divided by beta). Two references,
kept apart because one is a theorem and the other a claim:

- **adjoint** (EP's theorem; recurrent backprop): `q_k(t) -> ds_k*/dbeta` as `t -> infinity`
  and `beta -> 0`, where `ds*/dbeta = -H^{-1} dC/ds` (`H = d2F/ds2` at `s^0`), the adjoint of
  recurrent backprop for the summed cost;
- **backprop** (Bengio & Fischer 2015, a claim): the error derivatives `-dC/ds_k` that plain
  backprop sends from the output down the feedforward network with the same weights
  (`s_k = rho(s_{k-1} W_k + b_k)`, `s_0 = x`), which the early `v_k(t)` are said to
  approximate.

Cosines and relative errors are taken over the batch (all examples and units of a layer
flattened). For an activation with kinks (the hard sigmoid) the first-order theory holds only
for examples where no unit crosses a bound under the nudge: examples with a potential closer
to a bound than `3 |beta| max|du*/dbeta|` are left out of the metrics (measured: one of 8
examples of a random 20-16-14-12-5 net had a unit 7e-5 from a bound; beta = 1e-4 flipped it
and its fixed point jumped by 0.3, a quotient of 3000 against a sensitivity of 1). The
*arrival time* of layer `k` is the first saved time at which `||q_k(t)||` reaches a fraction
`arrival_fraction` of `||ds_k*/dbeta||`.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ConfigError
from ..dynamics import RelaxConfig, Trajectory, relax_core
from ..models._activations import get_activation

__all__ = ["EarlyInference", "early_inference", "backprop_errors", "fixed_point_sensitivity",
           "field_jacobians", "cosine", "relative_error"]


def _flat(a) -> np.ndarray:
    """An array, or a pytree of arrays (e.g. a tuple of gradients), as one float64 vector."""
    return np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1)
                           for v in jax.tree_util.tree_leaves(a)])


def cosine(a, b) -> float:
    """Cosine similarity of two arrays or pytrees, flattened (`nan` if either is zero)."""
    a, b = _flat(a), _flat(b)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")


def relative_error(a, b) -> float:
    """`||a - b|| / ||b||` of two arrays or pytrees, flattened."""
    a, b = _flat(a), _flat(b)
    nb = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / nb) if nb > 0 else float("nan")


def field_jacobians(model, x, d, states, beta=0.0):
    """Per-example Jacobians of the field at `states`, shape `(B, N, N)` (`N` units per
    example), and `dG/dbeta` `(B, N)`. The field of an example depends only on its own row, so
    the batch Jacobian is block-diagonal and each block is built with `jax.jacfwd`."""
    system = model.system
    params = model.params
    inputs = model.inputs(x, d)
    sizes = [a.shape[1] for a in states]
    batched = tuple(a.ndim == 2 and a.shape[0] == x.shape[0] for a in inputs)
    beta = jnp.asarray(beta, states[0].dtype)

    def one(row, row_inputs):
        ins = tuple(a[None] if b else a for a, b in zip(row_inputs, batched))

        def g(flat, b):
            parts = jnp.split(flat, np.cumsum(sizes)[:-1])
            f = system.field(tuple(p[None] for p in parts), params, ins, b)
            return jnp.concatenate([a[0] for a in f])

        u = jnp.concatenate(row)
        jac = jax.jacfwd(g)(u, beta)
        dg_db = jax.jvp(lambda b: g(u, b), (beta,), (jnp.ones_like(beta),))[1]
        return jac, dg_db

    return jax.vmap(one, in_axes=(0, tuple(0 if b else None for b in batched)))(
        tuple(states), tuple(inputs))


def fixed_point_sensitivity(model, x, d, states) -> tuple:
    """`du*/dbeta` at the free fixed point `states`: `-(dG/du)^{-1} dG/dbeta`, `G` the field.

    In the gradient formulation `dG/du = -H` is symmetric and this is `-H^{-1} dC/ds`, the
    adjoint of recurrent backprop for the summed cost; in the leaky formulation (hard sigmoid)
    the Jacobian is not symmetric and this forward sensitivity, not the transposed adjoint, is
    what `(s^beta - s^0)/beta` tends to.
    """
    jac, dg_db = field_jacobians(model, x, d, states)
    flat = jnp.linalg.solve(jac, -dg_db[..., None])[..., 0]
    sizes = [a.shape[1] for a in states]
    return tuple(jnp.split(flat, np.cumsum(sizes)[:-1], axis=1))


@eqx.filter_jit
def _paired_trajectories(model, x, d, s0, beta, times, config: RelaxConfig):
    """The nudged and the free trajectory from `s0` in ONE solve (one state holding both), so
    that they share every step of the adaptive controller: their truncation errors then
    cancel in the difference instead of being divided by beta."""
    import diffrax

    system = model.system
    params = model.params
    inputs = model.inputs(x, d)
    dtype = s0[0].dtype
    n = len(s0)
    b = jnp.asarray(beta, dtype)
    zero = jnp.zeros((), dtype)
    c_b = system.constants(s0, params, inputs, b)
    c_0 = system.constants(s0, params, inputs, zero)

    def field(t, y, args):
        return (system.field(y[:n], params, inputs, b, c_b)
                + system.field(y[n:], params, inputs, zero, c_0))

    ts = jnp.asarray(times, dtype)
    solver, controller = config.solver_and_controller()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), solver, t0=zero, t1=ts[-1], dt0=jnp.asarray(config.dt0, dtype),
        y0=tuple(s0) + tuple(s0), saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=controller, max_steps=config.max_steps,
    )
    f = jax.vmap(lambda y: field(0.0, y, None))(sol.ys)
    steps = sol.stats["num_steps"]
    return (Trajectory(ts, tuple(sol.ys[:n]), tuple(f[:n]), steps),
            Trajectory(ts, tuple(sol.ys[n:]), tuple(f[n:]), steps))


def backprop_errors(model, x, d) -> tuple[np.ndarray, ...]:
    """`-dC/ds_k` for every layer `k = 1..L` of the feedforward network with the model's
    weights (`C = 1/2 sum ||s_L - d||^2`), the signal plain backprop sends down the layers."""
    if not hasattr(model, "weights"):
        raise ConfigError(
            "the backprop reference needs a layered network (a LayeredHopfield); "
            f"got {type(model).__name__}. Use reference='adjoint' only."
        )
    rho = get_activation(model.activation).fn
    ws, bs = model.weights, model.biases

    def cost(eps):
        s = x
        for w, b, e in zip(ws, bs, eps):
            s = rho(s @ w + b) + e
        return 0.5 * jnp.sum((s - d) ** 2)

    zeros = tuple(jnp.zeros((x.shape[0], w.shape[1]), x.dtype) for w in ws)
    grads = jax.grad(cost)(zeros)
    return tuple(-np.asarray(g) for g in grads)


@dataclasses.dataclass
class EarlyInference:
    """The record `early_inference` returns (NumPy arrays; `to_json` for a JSON file).

    - `times` `(T,)`, `beta`, `layers` (state names, input side first), `distance` (layers
      from the output: 0 for the output).
    - `quotient[k]`, `velocity[k]`: `(T, B, n_k)`, `(s^beta(t) - s^0)/beta` and
      `(ds/dt)/beta` of the observed state.
    - `adjoint[k]`: `(B, n_k)`, `ds*/dbeta` (recurrent backprop); `backprop[k]`: `-dC/ds_k` of
      the feedforward network, or `None` for non-layered models.
    - `cos_adjoint`, `rel_adjoint` `(L, T)`: quotient vs adjoint; `cos_backprop_velocity`,
      `cos_backprop_quotient` `(L, T)`: velocity and quotient vs backprop (`nan` without it,
      and for the velocity once it has fallen below 1e-6 of its peak: settled, no direction).
    - `arrival` `(L,)`: first time `||quotient_k|| >= arrival_fraction ||adjoint_k||`
      (`nan` if never).
    - `used_examples`: the examples the metrics are computed on (all, unless a unit sits at a
      kink of the activation, see the module docstring).
    """

    times: np.ndarray
    beta: float
    layers: tuple[str, ...]
    distance: tuple[int, ...]
    quotient: list
    velocity: list
    adjoint: list
    backprop: list | None
    cos_adjoint: np.ndarray
    rel_adjoint: np.ndarray
    cos_backprop_velocity: np.ndarray
    cos_backprop_quotient: np.ndarray
    arrival: np.ndarray
    arrival_fraction: float
    free_residual: float
    used_examples: np.ndarray

    def to_json(self) -> dict:
        """Everything but the per-unit arrays, as plain lists."""
        def clean(a):
            return [[None if not np.isfinite(v) else float(v) for v in row] for row in a]

        return dict(
            times=[float(t) for t in self.times], beta=self.beta, layers=list(self.layers),
            distance=list(self.distance), cos_adjoint=clean(self.cos_adjoint),
            rel_adjoint=clean(self.rel_adjoint),
            cos_backprop_velocity=clean(self.cos_backprop_velocity),
            cos_backprop_quotient=clean(self.cos_backprop_quotient),
            arrival=[None if not np.isfinite(v) else float(v) for v in self.arrival],
            arrival_fraction=self.arrival_fraction, free_residual=self.free_residual,
            used_examples=[int(i) for i in self.used_examples],
        )


def early_inference(model, x, d, *, beta: float = 1e-3, times=None,
                    free: RelaxConfig | None = None, solver: RelaxConfig | None = None,
                    arrival_fraction: float = 0.01) -> EarlyInference:
    """Nudge the free fixed point by `beta` and compare the response with its references.

    **Arguments:**

    - `model`: an energy model (the backprop reference needs a `LayeredHopfield`).
    - `x`, `d`: inputs `(B, n_in)` and targets `(B, n_out)`.
    - `beta`: the nudge (small: the references are first order in beta).
    - `times`: save times (default: 60 points log-spaced from 0.01 to 1000 time units).
    - `free`: the free relaxation (default: Euler 0.25 to a residual of 1e-9; float64 advised).
    - `solver`: how the nudged trajectory is integrated (default Tsit5, tolerances 1e-9).
    - `arrival_fraction`: threshold of the arrival time (fraction of the final response).
    """
    if not (isinstance(beta, (int, float)) and beta != 0 and np.isfinite(beta)):
        raise ConfigError(f"`beta`={beta!r} must be a non-zero finite number (a small nudge).")
    if not 0 < arrival_fraction < 1:
        raise ConfigError(f"`arrival_fraction`={arrival_fraction} must be in (0, 1).")
    times = np.geomspace(1e-2, 1e3, 60) if times is None else np.asarray(times, float)
    if times.ndim != 1 or times.size < 2 or np.any(np.diff(times) <= 0) or times[0] <= 0:
        raise ConfigError(f"`times`={times!r} must be increasing: a 1-D array of at least two "
                          "positive times, e.g. np.geomspace(1e-2, 1e3, 60).")
    free = free or RelaxConfig(dt0=0.25, tol=1e-9, t1=20000.0, max_steps=100000,
                               on_failure="raise")
    solver = solver or RelaxConfig(solver="tsit5", dt0=1e-3, rtol=1e-9, atol=1e-11,
                                   max_steps=100000)
    system = model.system
    x = jnp.asarray(x)
    d = jnp.asarray(d)
    s0 = model.init_state(x.shape[0], x.dtype)
    rel = relax_core(model, x, s0, 0.0, d, free)
    if not bool(rel.converged):
        raise ConfigError(
            f"the free phase did not reach the tolerance {free.tol:g} (residual "
            f"{float(rel.residual):.3g}); pass `free` with a longer horizon or a looser tol."
        )
    sens = fixed_point_sensitivity(model, x, d, rel.states)
    adjoint = [np.asarray(a) for a in system.observe_velocity(rel.states, sens)]
    tr, tr0 = _paired_trajectories(model, x, d, rel.states, beta, times, solver)
    quotient, velocity = [], []
    obs_t = jax.vmap(system.observe)(tr.states)
    vel_t = jax.vmap(system.observe_velocity)(tr.states, tr.field)
    obs_0 = jax.vmap(system.observe)(tr0.states)
    vel_0 = jax.vmap(system.observe_velocity)(tr0.states, tr0.field)
    for k in range(len(obs_t)):
        quotient.append((np.asarray(obs_t[k]) - np.asarray(obs_0[k])) / beta)
        velocity.append((np.asarray(vel_t[k]) - np.asarray(vel_0[k])) / beta)
    try:
        backprop = list(backprop_errors(model, x, d))
    except ConfigError:
        backprop = None
    used = np.arange(x.shape[0])
    bounds = system.activation.bounds
    if bounds is not None:
        u = np.concatenate([np.asarray(a) for a in rel.states], axis=1)
        reach = 3 * abs(beta) * np.max(np.abs(np.concatenate(
            [np.asarray(a) for a in sens], axis=1)), axis=1)
        gap = np.min(np.minimum(np.abs(u - bounds[0]), np.abs(u - bounds[1])), axis=1)
        used = np.nonzero(gap > reach)[0]
        if used.size == 0:
            raise ConfigError(
                f"every example has a unit within reach of a kink of {system.activation.name!r} "
                f"under `beta`={beta}; use a smaller beta."
            )
    quotient = [q[:, used] for q in quotient]
    velocity = [v[:, used] for v in velocity]
    adjoint = [a[used] for a in adjoint]
    if backprop is not None:
        backprop = [b[used] for b in backprop]
    n_layers, n_t = len(quotient), len(times)
    cos_a = np.full((n_layers, n_t), np.nan)
    rel_a = np.full((n_layers, n_t), np.nan)
    cos_bv = np.full((n_layers, n_t), np.nan)
    cos_bq = np.full((n_layers, n_t), np.nan)
    arrival = np.full(n_layers, np.nan)
    for k in range(n_layers):
        target = np.linalg.norm(adjoint[k])
        speed = np.array([np.linalg.norm(velocity[k][i]) for i in range(n_t)])
        for i in range(n_t):
            cos_a[k, i] = cosine(quotient[k][i], adjoint[k])
            rel_a[k, i] = relative_error(quotient[k][i], adjoint[k])
            if backprop is not None:
                # once the layer has settled its velocity is solver noise: no direction
                if speed[i] > 1e-6 * speed.max():
                    cos_bv[k, i] = cosine(velocity[k][i], backprop[k])
                cos_bq[k, i] = cosine(quotient[k][i], backprop[k])
        norms = np.array([np.linalg.norm(quotient[k][i]) for i in range(n_t)])
        hit = np.nonzero(norms >= arrival_fraction * target)[0]
        if hit.size:
            arrival[k] = times[hit[0]]
    names = system.state_names
    return EarlyInference(
        times=times, beta=float(beta), layers=tuple(names),
        distance=tuple(n_layers - 1 - k for k in range(n_layers)), quotient=quotient,
        velocity=velocity, adjoint=adjoint, backprop=backprop, cos_adjoint=cos_a,
        rel_adjoint=rel_a, cos_backprop_velocity=cos_bv, cos_backprop_quotient=cos_bq,
        arrival=arrival, arrival_fraction=float(arrival_fraction),
        free_residual=float(rel.residual), used_examples=used,
    )
