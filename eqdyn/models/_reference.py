"""An independent, hand-written JAX energy for checking the SymPy derivation.

`check_hopfield_derivation` compares the derived-and-compiled `dF/ds_k`, `dF/dtheta` and `F`
with `jax.grad` of this plain `jnp` energy, in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._activations import get_activation
from ._system import hopfield_system

__all__ = ["hopfield_energy_reference", "check_hopfield_derivation"]


def hopfield_energy_reference(states, weights, biases, x, d, beta, rho):
    """`F = E + beta C` of the layered Hopfield network, summed over the batch, written by hand."""
    e = sum(0.5 * jnp.sum(s**2) for s in states)
    below = [x] + [rho(s) for s in states[:-1]]
    for w, b, lo, s in zip(weights, biases, below, states):
        e = e - jnp.sum((lo @ w) * rho(s)) - jnp.sum(b * rho(s))
    return e + beta * 0.5 * jnp.sum((states[-1] - d) ** 2)


def check_hopfield_derivation(sizes, activation: str, *, batch: int = 4, seed: int = 0) -> dict:
    """Max abs deviation of the derived gradients and energy from `jax.grad` of the reference.

    Runs in float64 (enables `jax_enable_x64`). Returns a dict with `state_grads`, `param_grads`,
    `energy` (max abs errors) and `max`.
    """
    jax.config.update("jax_enable_x64", True)
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
