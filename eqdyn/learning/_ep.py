"""Equilibrium Propagation as a learning rule object: `EP(beta, nudging, free, nudged)`.

EP relaxes the network to its free fixed point `s^0`, nudges it towards the target with
strength `beta` from there, and reads the gradient of the mean cost from the change of
`dF/dtheta` (the nudging objects of `eqdyn.learning` say how: `OneSided`, `RandomSign`,
`Symmetric`, `Holomorphic`). The `dF/dtheta` are the SymPy-derived, compiled functions of the
model's system; estimates are averaged over the batch so that they are gradients of the mean
loss, and tend to `dJ/dtheta` (`J = C(s^0)`) as `beta -> 0`.

`beta` is an array leaf: a sweep over its values runs one compiled program. `EPConfig` and
`ep_gradient` are the 0.1 interface, kept for one release: `EP.from_config(config)` is the
same estimate.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import ConfigError
from ..dynamics import RelaxConfig
from ._nudging import (AbstractNudging, Holomorphic, OneSided, RandomSign, Symmetric,
                       check_holomorphic, require_holomorphic)
from ._phase import is_noisy, noisy_phase, run_phase
from ._rule import AbstractRule, Stats, as_leaf, check_batch, free_phase_stats, status_code

__all__ = ["EP", "EPConfig", "EPResult", "ep_gradient", "VARIANTS", "NUDGINGS",
           "check_holomorphic", "require_holomorphic"]

VARIANTS = ("one-sided", "random-sign", "symmetric", "holomorphic")


def _positive_beta(beta) -> None:
    if isinstance(beta, jax.core.Tracer):
        return
    b = np.asarray(beta)  # NumPy: a check at construction never traces, even inside jit
    if b.ndim != 0 or not np.isfinite(b) or not b > 0:
        raise ConfigError(f"`beta`={beta!r} must be a positive finite number (its sign is "
                          "chosen by the nudging: OneSided, RandomSign, Symmetric, Holomorphic).")


class EP(AbstractRule):
    """Equilibrium Propagation's estimate of the gradient of the mean cost.

    **Arguments:**

    - `beta`: the nudging strength (> 0; an array leaf, so changing it does not recompile).
    - `nudging`: `OneSided()`, `RandomSign()` (default), `Symmetric()` or `Holomorphic(n)`.
    - `free`: the free phase's relaxation (a relaxation object or a `RelaxConfig`; a
      `Langevin` relaxation for neuron noise, which then needs a `key`).
    - `nudged`: the nudged phase's relaxation, started from the free fixed point (default:
      `free`).

    Call it as any rule: `grads, stats = rule(model, x, d, s0, key=key)`.
    """

    beta: Float[Array, ""] = eqx.field(converter=as_leaf)
    nudging: AbstractNudging = RandomSign()
    free: object = eqx.field(default_factory=RelaxConfig)
    nudged: object = None

    def __check_init__(self):
        _positive_beta(self.beta)
        if not isinstance(self.nudging, AbstractNudging):
            raise ConfigError(f"`nudging`={self.nudging!r} must be OneSided(), RandomSign(), "
                              "Symmetric(), Holomorphic(n) or another AbstractNudging.")

    @property
    def nudged_relaxation(self):
        return self.free if self.nudged is None else self.nudged

    @classmethod
    def from_config(cls, config: "EPConfig") -> "EP":
        """The rule an `EPConfig` describes (its `temperature` makes both phases noisy)."""
        nudging = {"one-sided": OneSided(), "random-sign": RandomSign(),
                   "symmetric": Symmetric(),
                   "holomorphic": Holomorphic(config.n_points)}[config.variant]
        free, nudged = config.free, config.nudged
        if config.temperature > 0:
            free = noisy_phase(free, config.temperature)
            nudged = noisy_phase(nudged, config.temperature)
        return cls(config.beta, nudging, free, nudged)

    def __call__(self, model, x, d, s0, *, key: PRNGKeyArray | None = None, labels=None):
        check_batch(x, d, s0)
        noisy = is_noisy(self.free) or is_noisy(self.nudged_relaxation)
        if (self.nudging.needs_key or noisy) and key is None:
            raise ConfigError(f"`key` is required for {type(self.nudging).__name__} nudging"
                              + (" with neuron noise" if noisy else "")
                              + " (e.g. jax.random.PRNGKey(0)).")
        self.nudging.check(model)
        k_free = None
        if noisy:
            k_free, key = jax.random.split(key)
        free = run_phase(self.free, model, x, s0, 0.0, d, k_free)
        beta = jnp.asarray(self.beta, jnp.real(jnp.asarray(x)).dtype)
        grads, steps, conv, code = self.nudging.estimate(
            model, x, d, free.states, beta, self.nudged_relaxation, key)
        loss, correct = free_phase_stats(model, x, d, free.states, labels)
        stats = Stats(loss, correct, tuple(free.states), free.steps, steps, free.converged,
                      conv, status_code(free), code)
        return grads, stats


#: nudging objects by the CLI's variant names
NUDGINGS = {"one-sided": OneSided, "random-sign": RandomSign, "symmetric": Symmetric,
            "holomorphic": Holomorphic}


class EPConfig(eqx.Module):
    """Settings of an EP estimate.

    **Fields:** `beta` (> 0), `variant` (one of `VARIANTS`), `free` and `nudged` (`RelaxConfig`s
    for the two phases; the nudged phase starts from the free fixed point), `temperature`
    (neuron noise: with `T > 0` each phase is a Langevin SDE integrated with fixed steps `dt0`
    for its whole horizon `t1`, and the estimate uses its final, noisy states; holomorphic EP
    then runs its N points in turn, each continuing from the last), `n_points`
    (holomorphic EP: the number N of points on the circle `|beta|`, N >= 2).

    A noisy phase is Euler-Maruyama at its `RelaxConfig`'s `dt0` whatever the config's solver;
    its `backend` picks the integrator: `"fused"` or `"blocks"` (which has no noisy
    counterpart) run `langevin(..., backend="fused")`, fused Euler-Maruyama loops, and
    `"diffrax"` runs diffrax's SDE solve (so trainer configs with backend diffrax keep their
    behaviour; the lz22-mnist presets, blocks free and fused nudged phases, take the fused
    path). Measured on the lz22-mnist network (784-256-256-10, batch 20, float32, CPU, T 8e-4,
    dt 1, busy machine, three runs of benchmarks/bench_noisy_ep.py): one-sided EP with 100 + 50
    steps 26-30 ms per batch fused against 49-62 ms with diffrax (1.9-2.1x); holomorphic EP
    with N = 10 points of 50 steps 221-364 ms against 317-559 ms (1.4-1.55x; 1.0-1.15x before
    the complex states' products with the real weights became real products, see
    `eqdyn.models._binding.matmul` and benchmarks/bench_complex_matmul.py). On a CPU the normal
    draws (threefry) are most of a real noisy step's remaining time. The two draw their noise
    differently, so the same key gives different (equally distributed) noisy estimates.
    """

    beta: float = eqx.field(static=True, default=1.0)
    variant: str = eqx.field(static=True, default="random-sign")
    free: RelaxConfig = eqx.field(static=True, default_factory=RelaxConfig)
    nudged: RelaxConfig = eqx.field(static=True, default_factory=RelaxConfig)
    temperature: float = eqx.field(static=True, default=0.0)
    n_points: int = eqx.field(static=True, default=4)

    def __check_init__(self):
        if not (isinstance(self.beta, (int, float)) and self.beta > 0):
            raise ConfigError(f"`beta`={self.beta!r} must be a positive number (its sign is "
                              "chosen by `variant`).")
        if self.variant not in VARIANTS:
            raise ConfigError(f"`variant`={self.variant!r} is not known; use one of {VARIANTS}.")
        t = self.temperature
        if not (isinstance(t, (int, float)) and t >= 0 and t == t and t != float("inf")):
            raise ConfigError(f"`temperature`={t!r} must be a finite number >= 0.")
        if not (isinstance(self.n_points, int) and self.n_points >= 2):
            raise ConfigError(f"`n_points`={self.n_points!r} must be an integer >= 2 (points on "
                              "the circle of holomorphic EP; 2 is the symmetric estimate).")


class EPResult(eqx.Module):
    """Auxiliary outputs of `ep_gradient`: the free relaxation, the (first) nudged one,
    the mean cost at the free fixed point, and the number of correct predictions."""

    free_states: tuple[Array, ...]
    free_steps: Array
    free_converged: Array
    nudged_steps: Array
    nudged_converged: Array
    loss: Array
    correct: Array


def ep_gradient(model, x, d, s0, config: EPConfig, *, key: PRNGKeyArray | None = None, labels=None):
    """EP estimate of the gradient of the mean cost (the 0.1 interface of `EP`).

    **Arguments:**

    - `model`: an `eqdyn.AbstractEnergyModel` (e.g. `LayeredHopfield`, `EnergyModel`).
    - `x`, `d`: input `(B, n_in)` and target `(B, n_out)`.
    - `s0`: initial state of the free phase (zeros, or persistent particles).
    - `config`: an `EPConfig`.
    - `key`: PRNG key, needed for `variant="random-sign"` and neuron noise.
    - `labels`: optional integer labels to count correct predictions (default: argmax of `d`).

    **Returns:** `(grads, aux)`: `grads` a tuple in the order of `model.params`, `aux` an `EPResult`.
    """
    if config.variant == "random-sign" and key is None:
        raise ConfigError("`key` is required for variant='random-sign' (e.g. jax.random.PRNGKey(0)).")
    if config.temperature > 0 and key is None:
        raise ConfigError("`key` is required with `temperature` > 0 (the neuron noise).")
    check_batch(x, d, s0)
    grads, st = _call_rule(EP.from_config(config), model, x, d, s0, key, labels)
    return grads, EPResult(st.free_states, st.free_steps, st.free_converged, st.nudged_steps,
                           st.nudged_converged, st.loss, st.correct)


@eqx.filter_jit
def _call_rule(rule, model, x, d, s0, key, labels):
    # one compiled program (called eagerly, the rule would dispatch op by op); the rule's beta
    # is a leaf, so a sweep over beta reuses it
    return rule(model, x, d, s0, key=key, labels=labels)
