"""An independent, hand-written JAX energy for checking the SymPy derivation.

`check_hopfield_derivation` compares the derived-and-compiled `dF/ds_k`, `dF/dtheta` and `F`
with `jax.grad` of this plain `jnp` energy, in float64.
"""

from __future__ import annotations

import jax
import numpy as np
import jax.numpy as jnp

from ._activations import get_activation
from ._system import hopfield_system

__all__ = ["hopfield_energy_reference", "check_hopfield_derivation", "check_derivation"]


def hopfield_energy_reference(states, weights, biases, x, d, beta, rho):
    """`F = E + beta C` of the layered Hopfield network, summed over the batch, written by hand."""
    e = sum(0.5 * jnp.sum(s**2) for s in states)
    below = [x] + [rho(s) for s in states[:-1]]
    for w, b, lo, s in zip(weights, biases, below, states):
        e = e - jnp.sum((lo @ w) * rho(s)) - jnp.sum(b * rho(s))
    return e + beta * 0.5 * jnp.sum((states[-1] - d) ** 2)


def check_hopfield_derivation(sizes, activation: str, *, batch: int = 4, seed: int = 0) -> dict:
    """Max abs deviation of the derived gradients and energy from `jax.grad` of the reference.

    Runs in float64 (inside `jax.enable_x64(True)`: the global setting is left as it was).
    Returns a dict with `state_grads`, `param_grads`, `energy` (max abs errors) and `max`.
    """
    with jax.enable_x64(True):
        return _check_hopfield_derivation(sizes, activation, batch, seed)


def _check_hopfield_derivation(sizes, activation, batch, seed) -> dict:
    sizes = tuple(sizes)
    system = hopfield_system(sizes, activation, "gradient")
    rho = get_activation(activation).fn
    keys = jax.random.split(jax.random.PRNGKey(seed), 2 * len(sizes) + 2)
    f64 = jnp.float64
    states = tuple(
        jax.random.uniform(keys[i], (batch, n), f64, -0.5, 1.5) for i, n in enumerate(sizes[1:])
    )
    L = len(sizes) - 1
    weights = tuple(
        jax.random.normal(keys[L + i], (a, b), f64) / jnp.sqrt(a)
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
    )
    biases = tuple(0.1 * jax.random.normal(keys[i], (1, n), f64) for i, n in enumerate(sizes[1:]))
    x = jax.random.uniform(keys[-2], (batch, sizes[0]), f64)
    d = jax.nn.one_hot(jnp.arange(batch) % sizes[-1], sizes[-1], dtype=f64)
    beta = 0.7

    def ref(states, weights, biases):
        return hopfield_energy_reference(states, weights, biases, x, d, beta, rho)

    gs, gw, gb = jax.grad(ref, argnums=(0, 1, 2))(states, weights, biases)
    params = (*weights, *biases)
    ds = system.state_grads(states, params, (x, d), beta)
    dp = system.param_grads(states, params, (x, d), beta)
    f = system.energy(states, params, (x, d), beta)

    def err(a, b):
        return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(a, b))

    out = dict(
        state_grads=err(gs, ds),
        param_grads=err((*gw, *gb), dp),
        energy=abs(float(ref(states, weights, biases) - f)),
    )
    out["max"] = max(out.values())
    return out


def check_derivation(system, reference=None, *, batch: int = 3, seed: int = 0,
                     beta: float = 0.7) -> dict:
    """Max abs deviations of a compiled system's derived functions from automatic differentiation.

    In float64 on random states, parameters and inputs:

    - `state_grads`, `param_grads`: the derived `dF/ds_k`, `dF/dtheta` against `jax.grad` of
      `reference(states, params, inputs, beta)` (an independent energy written in `jnp`), or of
      the compiled energy itself when no reference is given;
    - `energy`: the compiled `F` against the reference (0 without one);
    - `param_rates`: the STDP form `d/dt dF/dtheta` against `jax.jvp` of the derived
      `dF/dtheta` along random velocities and `dbeta/dt`;
    - `field`: the vector field against `-(1/tau_k) dF/ds_k` (gradient formulation only).

    Returns the errors and their `max`. Runs inside `jax.enable_x64(True)`: the global
    setting is left as it was.
    """
    with jax.enable_x64(True):
        return _check_derivation(system, reference, batch, seed, beta)


def _check_derivation(system, reference, batch, seed, beta) -> dict:
    e = system.derivation.energy
    f64 = jnp.float64
    rng = np.random.default_rng(seed)  # numpy: no compilation per shape

    def batch_shape(m):
        return (batch, int(m.cols))

    states = tuple(jnp.asarray(rng.uniform(-0.5, 1.5, batch_shape(s))) for s in e.states)
    params = tuple(jnp.asarray(rng.normal(size=tuple(int(v) for v in p.shape))
                               / np.sqrt(float(p.shape[0]))) for p in e.params)
    inputs = []
    for i, m in enumerate(e.inputs):
        if i == len(e.inputs) - 1 and i > 0:  # the target: one-hot rows
            inputs.append(jnp.asarray(np.eye(int(m.cols))[np.arange(batch) % int(m.cols)]))
        else:
            inputs.append(jnp.asarray(rng.uniform(0, 1, batch_shape(m))))
    inputs = tuple(inputs)
    b = jnp.asarray(beta, f64)

    def compiled(st, pr):
        return system._fns["exact"]["energy"](**system._kw(st, pr, inputs, b))

    energy_fn = (lambda st, pr: reference(st, pr, inputs, b)) if reference else compiled
    vel = tuple(jnp.asarray(rng.normal(size=s.shape)) for s in states)
    beta_rate = jnp.asarray(0.3, f64)

    def err(a, c):
        return jnp.max(jnp.stack([jnp.max(jnp.abs(u - v)) for u, v in zip(a, c)])) \
            if len(a) else jnp.zeros((), f64)

    def grads_of(st, bb):
        return system._fns["exact"]["param_grads"](**system._kw(st, params, inputs, bb))

    @jax.jit
    def errors(states, params, vel, beta_rate):
        gs, gp = jax.grad(energy_fn, argnums=(0, 1))(states, params)
        ds = system.state_grads(states, params, inputs, b)
        dp = grads_of(states, b)
        out = dict(state_grads=err(gs, ds), param_grads=err(gp, dp))
        out["energy"] = jnp.abs(energy_fn(states, params) - compiled(states, params))
        _, jvp = jax.jvp(grads_of, (states, b), (vel, beta_rate))
        out["param_rates"] = err(jvp, system.param_rates(states, vel, params, inputs, b,
                                                         beta_rate))
        if system.formulation == "gradient":
            field = system.field(states, params, inputs, b)
            out["field"] = err(field, tuple(-g / t for g, t in zip(ds, system.tau)))
        return out

    out = {k: float(v) for k, v in errors(states, params, vel, beta_rate).items()}
    out["max"] = max(out.values())
    return out
