"""Training a Boltzmann machine on binary data: epochs of CD/PCD steps, one compiled scan each.

`fit_boltzmann(machine, data, rule, optimizer, ...)` shuffles the data every epoch, cuts it into
batches, and runs the whole epoch as one `jax.lax.scan` of rule steps (a PCD rule's persistent
chains are carried from step to step and returned, so a later call continues them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import ConfigError
from ..models import check_binary

__all__ = ["fit_boltzmann", "BoltzmannFit"]


class BoltzmannFit(NamedTuple):
    """What `fit_boltzmann` returns: the trained `machine`, the persistent `chains`, the
    per-epoch `history` and the optimiser's `opt_state` (pass the last two back to continue)."""

    machine: object
    chains: tuple
    history: list
    opt_state: object


def fit_boltzmann(machine, data: Float[Array, "N n_v"], rule,
                  optimizer: optax.GradientTransformation,
                  *, epochs: int, batch_size: int, key: PRNGKeyArray, chains=None,
                  opt_state=None, progress: Callable[[dict], object] | None = None
                  ) -> BoltzmannFit:
    """Train `machine` on `data` with a Boltzmann rule (`CD`, `PCD`).

    **Arguments:**

    - `machine`: an `eqdyn.models.BoltzmannMachine`; `data`: `(N, n_visible)` binary.
    - `rule`: e.g. `eqdyn.learning.PCD(1)`; `optimizer`: an optax transformation (descends
      the rule's gradients, e.g. `optax.sgd(0.05)`).
    - `epochs`, `batch_size`: full batches per epoch (a last partial batch is dropped).
    - `key`: shuffles, chains and sampling; `chains`: a PCD rule's persistent chains (default:
      `batch_size` random chains); `opt_state`: the optimiser's state to continue from
      (default: `optimizer.init`).
    - `progress`: called after every epoch with `{"epoch", "seconds", "loss"}` (`loss` the
      rule's mean reconstruction error).

    **Returns:** a `BoltzmannFit` `(machine, chains, history, opt_state)`, `history` the list
    of those records.
    """
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if not (isinstance(v, int) and v > 0):
            raise ConfigError(f"`fit_boltzmann`: `{name}`={v!r} must be a positive integer.")
    data = jnp.asarray(data, machine.params[0].dtype)
    check_binary("data", data, machine.units)
    n_batches = data.shape[0] // batch_size
    if n_batches == 0:
        raise ConfigError(
            f"`batch_size`={batch_size} is larger than the {data.shape[0]} examples of `data`.")
    key, k_chains = jax.random.split(key)
    if chains is None:
        chains = machine.init_state(batch_size, key=k_chains)
    if opt_state is None:
        opt_state = optimizer.init(machine.params)

    @eqx.filter_jit
    def epoch(machine, opt_state, chains, key):
        k_perm, k_steps = jax.random.split(key)
        perm = jax.random.permutation(k_perm, data.shape[0])[: n_batches * batch_size]
        batches = data[perm].reshape(n_batches, batch_size, -1)

        def step(carry, xs):
            params, opt_state, chains = carry
            x, k = xs
            m = machine.with_params(params)
            grads, stats = rule(m, x, None, chains, key=k)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, stats.free_states), stats.loss

        (params, opt_state, chains), losses = jax.lax.scan(
            step, (machine.params, opt_state, chains),
            (batches, jax.random.split(k_steps, n_batches)))
        return machine.with_params(params), opt_state, chains, jnp.mean(losses)

    history = []
    for e in range(epochs):
        key, k = jax.random.split(key)
        t0 = time.perf_counter()
        machine, opt_state, chains, loss = epoch(machine, opt_state, chains, k)
        loss = float(loss)  # waits for the epoch
        rec = {"epoch": e + 1, "seconds": time.perf_counter() - t0, "loss": loss}
        if not np.isfinite(loss):
            raise ConfigError(
                f"epoch {e + 1}: the reconstruction error is {loss}; the weights diverged. "
                "Lower the learning rate.")
        history.append(rec)
        if progress is not None:
            progress(rec)
    return BoltzmannFit(machine, chains, history, opt_state)
