"""The network's own feedforward computation, backprop through it, and exact fixed points.

Every function here works on any `AbstractEnergyModel` (the layered energy, custom energies,
both formulations, any activation). The *integrated variable* is the one the dynamics move:
the states `s` in the gradient formulation, the potentials `u` in the leaky one.

- `feedforward_pass`: the `gamma -> 0` limit of the dynamics (`eqdyn.symbolic.feedforward_energy`):
  layer `k` settles under the terms it owns, the layers below it fixed, the layers above it
  ignored.
- `feedforward_backprop`: backprop through that computation, with the energy's own cost on
  the same variable the cost reads: `-dC/du_k` (the error at layer `k`: the derivative of the
  cost with respect to the integrated variable of layer `k`, the layers above recomputed from
  it), and `dJ/dtheta` of `J = C(feedforward pass)`, by the implicit-function theorem.
- `fixed_point`: the free (or nudged, or output-clamped) fixed point of the model's own
  dynamics, by Euler steps and then Newton's method on each example (float64 advised):
  residuals near 1e-14, where a relaxation to a tolerance would leave 1e-9.
- `with_feedback(model, gamma)`: the same parameters in the energy with layer scales
  (`eqdyn.symbolic.with_layer_scales`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ConfigError
from ..models import EnergyModel, compile_system, get_activation
from ..symbolic import derive, feedforward_energy, with_layer_scales

__all__ = ["with_feedback", "fixed_point", "feedforward_pass", "feedforward_backprop",
           "row_jacobians", "mlp_backprop_errors"]


def with_feedback(model, gamma: float):
    """`model`'s parameters in its energy with feedback strength `gamma` (an `EnergyModel`)."""
    if not (isinstance(gamma, (int, float)) and np.isfinite(gamma) and gamma > 0):
        raise ConfigError(f"`gamma`={gamma!r} must be a positive number (1 = full feedback).")
    act = model.activation
    act = dict(act) if isinstance(act, tuple) else act
    return EnergyModel(with_layer_scales(model.energy, float(gamma)), act, model.formulation,
                       params=model.params)


def _split(flat, sizes):
    return tuple(jnp.split(flat, np.cumsum(sizes)[:-1], axis=-1))


def _row_fn(field, params, sizes, flags):
    """`(flat_row, row_inputs, beta) -> flat field` of one example."""
    def g(flat, row_inputs, beta):
        ins = tuple(a[None] if b else a for a, b in zip(row_inputs, flags))
        f = field(tuple(p[None] for p in _split(flat, sizes)), params, ins, beta)
        return jnp.concatenate([a[0] for a in f])

    return g


def _flags(inputs, batch):
    return tuple(bool(a.ndim == 2 and a.shape[0] == batch) for a in inputs)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _jacobians(field, sizes, flags, params, inputs, flat, beta):
    g = _row_fn(field, params, sizes, flags)
    axes = tuple(0 if b else None for b in flags)

    def one(u, row_inputs):
        jac = jax.jacfwd(g)(u, row_inputs, beta)
        dg = jax.jvp(lambda b: g(u, row_inputs, b), (beta,), (jnp.ones_like(beta),))[1]
        return jac, dg

    return jax.vmap(one, in_axes=(0, axes))(flat, inputs)


def row_jacobians(field, params, inputs, states, beta=0.0):
    """Per-example Jacobian `(B, N, N)` of `field(states, params, inputs, beta)` and its
    derivative in `beta` `(B, N)`. Each example's field depends on its own row only, so the
    batch Jacobian is block diagonal and each block is one `jax.jacfwd`. (`field` must be
    hashable: a bound method of a compiled system, or `_Tied`.)"""
    sizes = tuple(int(a.shape[1]) for a in states)
    flags = _flags(inputs, states[0].shape[0])
    return _jacobians(field, sizes, flags, tuple(params), tuple(inputs),
                      jnp.concatenate(states, axis=1), jnp.asarray(beta, states[0].dtype))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6, 7))
def _solve(field, sizes, flags, clamp, dt, max_steps, tol, newton, params, inputs, beta, u0):
    dtype = u0.dtype
    mask = jnp.concatenate([jnp.full((n,), 0.0 if c else 1.0, dtype)
                            for n, c in zip(sizes, clamp)])
    g = _row_fn(field, params, sizes, flags)
    axes = tuple(0 if b else None for b in flags)
    gb = jax.vmap(lambda u, r: mask * g(u, r, beta), in_axes=(0, axes))

    def cond(c):
        i, _, r = c
        return (i < max_steps) & (r > tol)

    def body(c):
        i, u, _ = c
        f = gb(u, inputs)
        return i + 1, u + dt * f, jnp.max(jnp.abs(f))

    _, u, _ = jax.lax.while_loop(cond, body, (0, u0, jnp.asarray(jnp.inf, dtype)))
    eye = jnp.diag(1.0 - mask)

    def newton_step(u, _):
        jac = jax.vmap(jax.jacfwd(lambda v, r: mask * g(v, r, beta)), in_axes=(0, axes))(
            u, inputs)
        step = jnp.linalg.solve(jac + eye, -gb(u, inputs)[..., None])[..., 0]
        return u + step, None

    u, _ = jax.lax.scan(newton_step, u, None, length=newton)
    return u, jnp.max(jnp.abs(gb(u, inputs)))


def fixed_point(field, params, inputs, s0, beta=0.0, *, clamp=None, dt: float = 0.25,
                max_steps: int = 20000, tol: float = 1e-9, newton: int = 8):
    """A zero of `field(states, params, inputs, beta)` from `s0`: Euler steps of `dt` until
    `max |field| < tol` (or `max_steps`), then `newton` Newton steps per example.

    `clamp`: optional tuple of flags, one per state; a clamped state keeps its value from `s0`
    (contrastive Hebbian learning's output). Returns `(states, residual)`, `residual` the
    final `max |field|` over the free states.
    """
    sizes = tuple(int(a.shape[1]) for a in s0)
    clamp = tuple(bool(c) for c in (clamp or (False,) * len(sizes)))
    u, res = _solve(field, sizes, _flags(inputs, s0[0].shape[0]), clamp, float(dt),
                    int(max_steps), float(tol), int(newton), tuple(params), tuple(inputs),
                    jnp.asarray(beta, s0[0].dtype), jnp.concatenate(s0, axis=1))
    return _split(u, sizes), float(res)


def _feedforward_system(model):
    """The compiled feedforward energy of `model` (cached on its system)."""
    system = model.system
    cache = system._fns
    if "feedforward" not in cache:
        cache["feedforward"] = compile_system(derive(feedforward_energy(system.derivation.energy)),
                                              dict(system.activations), system.formulation)
    return cache["feedforward"]


class _Tied:
    """The feedforward field with each `z_j` tied to the state `s_j` (block lower triangular);
    hashable by its system, so jitted functions taking it compile once per system."""

    def __init__(self, ff):
        self.ff = ff

    def __call__(self, states, params, inputs, beta=0.0):
        return self.ff.field(states, params, (inputs[0], *states[:-1]), 0.0)

    def __hash__(self):
        return hash(self.ff)

    def __eq__(self, other):
        return isinstance(other, _Tied) and other.ff is self.ff


def _tied_field(ff):
    cache = ff._fns
    if "tied" not in cache:
        cache["tied"] = _Tied(ff)
    return cache["tied"]


def feedforward_pass(model, x, *, tol: float = 1e-9):
    """The integrated variables of the network's own feedforward computation on `x`."""
    ff = _feedforward_system(model)
    x = jnp.asarray(x)
    s0 = model.init_state(x.shape[0], x.dtype)
    states, res = fixed_point(_tied_field(ff), model.params, (x,), s0, tol=tol)
    if not res < 1e-8:
        raise ConfigError(f"the feedforward pass did not converge (residual {res:.3g}); does "
                          "every layer's own equation have a stable fixed point?")
    return states


def feedforward_backprop(model, x, d, states=None):
    """Backprop through the network's own feedforward computation.

    **Returns:** `(errors, grads, states)`: `errors[k] = -dC/du_k` `(B, n_k)` (`u` the
    integrated variable; the cost is the energy's own, at the observed states), `grads` the
    gradient `dJ/dtheta` of `J = C(feedforward pass)` summed over the batch (model.params
    order), and the feedforward states.
    """
    ff = _feedforward_system(model)
    x, d = jnp.asarray(x), jnp.asarray(d)
    states = feedforward_pass(model, x) if states is None else tuple(states)
    sizes = tuple(int(a.shape[1]) for a in states)
    errors, grads = _backprop(model.system, _tied_field(ff), sizes, tuple(model.params),
                              model.inputs(x, d), x, tuple(states))
    return tuple(np.asarray(e) for e in errors), tuple(np.asarray(g) for g in grads), states


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _backprop(system, field, sizes, params, inputs, x, states):
    jac, _ = _jacobians(field, sizes, (True,), params, (x,), jnp.concatenate(states, axis=1),
                        jnp.zeros((), x.dtype))
    dc_du, dc_dp = jax.grad(lambda s, p: system.cost(s, p, inputs), argnums=(0, 1))(
        states, params)
    dc = jnp.concatenate(dc_du, axis=1)
    lam = -jnp.linalg.solve(jnp.swapaxes(jac, 1, 2), dc[..., None])[..., 0]
    block = np.zeros((sum(sizes), sum(sizes)))
    for lo, n in zip(np.cumsum((0,) + sizes[:-1]), sizes):
        block[lo:lo + n, lo:lo + n] = 1.0
    off = jac * (1.0 - jnp.asarray(block, jac.dtype))
    total = dc + jnp.einsum("bij,bi->bj", off, lam)
    _, vjp = jax.vjp(lambda p: field(states, p, (x,)), params)
    (g_field,) = vjp(_split(lam, sizes))
    return tuple(-e for e in _split(total, sizes)), tuple(a + b for a, b in zip(dc_dp, g_field))


def mlp_backprop_errors(model, x, d, states=None) -> tuple[np.ndarray, ...]:
    """The reference eqdyn's study used before issue 26 (retracted): `-dC/ds_k` of a plain MLP
    `s_k = rho(s_{k-1} W_k + b_k)` with the cost on `rho(a_L)`, which is not the layered
    network's own feedforward computation (kept to show that the output-layer check rejects
    it). `states` is ignored: the MLP has its own forward pass."""
    if not hasattr(model, "weights"):
        raise ConfigError(f"the plain-MLP reference needs a LayeredHopfield; got "
                          f"{type(model).__name__}.")
    rho = get_activation(model.activation).fn

    def cost(eps):
        s = x
        for w, b, e in zip(model.weights, model.biases, eps):
            s = rho(s @ w + b) + e
        return 0.5 * jnp.sum((s - d) ** 2)

    zeros = tuple(jnp.zeros((x.shape[0], w.shape[1]), x.dtype) for w in model.weights)
    return tuple(-np.asarray(g) for g in jax.grad(cost)(zeros))
