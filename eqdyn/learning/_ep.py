"""Equilibrium Propagation gradient estimates (one-sided, random-sign, symmetric, holomorphic).

For any parameter `theta`, with `s^0` the free fixed point and `s^beta` the nudged one,

    one-sided:    g = (1/beta)  [dF/dtheta(s^beta)  - dF/dtheta(s^0)]
    symmetric:    g = (1/2beta) [dF/dtheta(s^beta)  - dF/dtheta(s^-beta)]
    random-sign:  one-sided with beta -> sign * beta, the sign drawn per batch
    holomorphic:  g = (1/(N |beta|)) sum_k exp(-2 pi i k/N) dF/dtheta(s^{beta_k}, beta_k),
                  beta_k = |beta| exp(2 pi i k/N)   (Laborieux & Zenke 2022)

The holomorphic estimate is the first Fourier coefficient of `beta -> dF/dtheta(s^beta, beta)`
on a circle: by Cauchy's formula it is `dJ/dtheta` up to the aliased coefficient of order
`beta^(N+1)`, so its error is O(|beta|^N) (N = 2 is the symmetric estimate). The nudged
phases at non-real `beta_k` relax the holomorphic extension of the dynamics (complex states);
for real parameters `dF/dtheta` at `conj(beta)` is the conjugate of that at `beta`, so only
the points with `0 <= k <= N/2` are relaxed. With neuron noise (`temperature > 0`) the states
are no longer conjugate, and all N points are run in turn as in Laborieux & Zenke's noisy
estimate: point k is a Langevin phase at `beta_k` that starts where point k-1 ended (point 0
from the free state), the teaching signal rotating once around the circle, with real noise on
the real parts of the complex states. Averaging the N noisy terms with their phases makes the
estimate far less sensitive to the noise than one-sided EP's difference quotient (on a 5-6-3
sigmoid network at T = 8e-4, N = 10 on |beta| = 0.4 scatters 24 times less across noise draws
than one-sided EP at beta = 0.1; tests/test_algorithms.py).

and `g -> dJ/dtheta` (J = C(s^0), the loss at the free fixed point) as beta -> 0. The
`dF/dtheta` are the SymPy-derived, compiled functions of the model's system; estimates are
averaged over the batch so that they are gradients of the mean loss.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from .._errors import ConfigError
from ..dynamics import RelaxConfig, relax_core

__all__ = ["EPConfig", "EPResult", "ep_gradient", "VARIANTS"]

VARIANTS = ("one-sided", "random-sign", "symmetric", "holomorphic")


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
    `eqdyn.models._system.matmul` and benchmarks/bench_complex_matmul.py). On a CPU the normal
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


def require_holomorphic(activations) -> None:
    """Raise a `ConfigError` unless every `Activation` in `activations` is holomorphic."""
    bad = sorted({a.name for a in activations if not a.holomorphic})
    if bad:
        from ..models._activations import ACTIVATIONS

        good = sorted(n for n, a in ACTIVATIONS.items() if a.holomorphic)
        raise ConfigError(
            f"`variant`='holomorphic' relaxes the network at complex beta and needs a "
            f"holomorphic activation; `activation`={bad[0]!r} is not (it has kinks). Use one "
            f"of {good}, an Activation.from_sympy built from analytic functions, or another "
            f"variant of {VARIANTS}."
        )


def check_holomorphic(model) -> None:
    """Raise a `ConfigError` unless every activation of `model` is holomorphic."""
    system = model.system
    require_holomorphic([system.activation, *getattr(system, "activations", {}).values()])


def free_phase_stats(model, x, d, free_states, labels=None):
    """`(loss, correct)` at the free fixed point: the mean cost over the batch and the number
    of correct predictions (against `labels`, default the argmax of `d`)."""
    loss = model.system.cost(free_states, model.params, model.inputs(x, d)) / x.shape[0]
    labels = jnp.argmax(d, axis=-1) if labels is None else labels
    return loss, jnp.sum(model.predict(free_states, x) == labels)


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


def _noisy_backend(cfg: RelaxConfig) -> str:
    """The `langevin` backend of a noisy phase relaxed by `cfg`: fused for the fixed-step
    backends (blocks has no noisy counterpart), diffrax for diffrax."""
    return "fused" if cfg.backend in ("fused", "blocks") else "diffrax"


def _relaxer(temperature: float):
    """`relax_core`, or a Langevin phase of the same horizon when `temperature > 0`."""
    if temperature <= 0:
        return lambda model, x, s0, beta, d, cfg, key: relax_core(model, x, s0, beta, d, cfg)

    def noisy(model, x, s0, beta, d, cfg, key):
        from ..dynamics import RelaxResult, langevin

        res = langevin(model, x, s0, temperature=temperature, key=key, t1=cfg.t1, dt=cfg.dt0,
                       beta=beta, d=d, require_gibbs=False, backend=_noisy_backend(cfg))
        return RelaxResult(res.states, res.steps, jnp.asarray(jnp.nan, x.dtype),
                           jnp.asarray(True), jnp.asarray(cfg.t1, x.dtype))

    return noisy


def ep_gradient(model, x, d, s0, config: EPConfig, *, key: PRNGKeyArray | None = None, labels=None):
    """EP estimate of the gradient of the mean cost with respect to the model's parameters.

    **Arguments:**

    - `model`: an `eqdyn.AbstractEnergyModel` (e.g. `LayeredHopfield`, `EnergyModel`).
    - `x`, `d`: input `(B, n_in)` and target `(B, n_out)`.
    - `s0`: initial state of the free phase (zeros, or persistent particles).
    - `config`: an `EPConfig`.
    - `key`: PRNG key, needed for `variant="random-sign"`.
    - `labels`: optional integer labels to count correct predictions (default: argmax of `d`).

    **Returns:** `(grads, aux)`: `grads` a tuple in the order of `model.params`, `aux` an `EPResult`.
    """
    inputs = model.inputs(x, d)
    if config.variant == "random-sign" and key is None:
        raise ConfigError("`key` is required for variant='random-sign' (e.g. jax.random.PRNGKey(0)).")
    k_free = k_plus = k_minus = None
    if config.temperature > 0:
        if key is None:
            raise ConfigError("`key` is required with `temperature` > 0 (the neuron noise).")
        key, k_free, k_plus, k_minus = jax.random.split(key, 4)
    relax_ = _relaxer(config.temperature)
    if config.variant == "holomorphic":
        check_holomorphic(model)
    free = relax_(model, x, s0, 0.0, d, config.free, k_free)
    if config.variant == "holomorphic":
        grads, steps, conv = _holomorphic(model, x, d, free.states, inputs, config, k_plus)
    else:
        grads, steps, conv = _real_nudges(model, x, d, free.states, inputs, config, key,
                                          k_plus, k_minus)
    loss, correct = free_phase_stats(model, x, d, free.states, labels)
    aux = EPResult(free.states, free.steps, free.converged, steps, conv, loss, correct)
    return grads, aux


def _real_nudges(model, x, d, free_states, inputs, config: EPConfig, key, k_plus, k_minus):
    """One-sided, random-sign or symmetric estimate from the free state: `(grads, steps,
    converged)` of the nudged phase(s)."""
    system, params = model.system, model.params
    batch = x.shape[0]
    relax_ = _relaxer(config.temperature)
    beta = jnp.asarray(config.beta, x.dtype)
    if config.variant == "random-sign":
        beta = jnp.where(jax.random.bernoulli(key), beta, -beta)
    nudged = relax_(model, x, free_states, beta, d, config.nudged, k_plus)
    # dF/dtheta at (s^beta, beta): a cost that depends on parameters (a softmax readout's
    # weights) contributes beta dC/dtheta there and nothing at beta = 0
    if config.variant == "symmetric":
        nudged_minus = relax_(model, x, free_states, -beta, d, config.nudged, k_minus)
        delta = system.param_grads_delta(nudged.states, nudged_minus.states, params, inputs,
                                         beta, -beta)
        scale = 1.0 / (2.0 * beta * batch)
        steps = nudged.steps + nudged_minus.steps
        conv = nudged.converged & nudged_minus.converged
    else:
        delta = system.param_grads_delta(nudged.states, free_states, params, inputs, beta, 0.0)
        scale = 1.0 / (beta * batch)
        steps, conv = nudged.steps, nudged.converged
    grads = tuple(scale * g for g in delta)
    return grads, steps, conv


def _holomorphic(model, x, d, free_states, inputs, config: EPConfig, key=None):
    """The first Fourier coefficient of `dF/dtheta(s^beta, beta)` on `|beta| = config.beta`
    (with `temperature > 0`: `_holomorphic_noisy`, the PRNG key `key`)."""
    import numpy as np

    if config.temperature > 0:
        return _holomorphic_noisy(model, x, d, free_states, inputs, config, key)
    system, params = model.system, model.params
    n, r = config.n_points, float(config.beta)
    acc = None
    steps = jnp.zeros((), jnp.int32)
    conv = jnp.asarray(True)
    for k in range(n // 2 + 1):
        angle = 2.0 * np.pi * k / n
        real_point = k == 0 or 2 * k == n
        # conj(beta_k) = beta_{N-k}: its term is the conjugate, so count the pair once, twice
        weight = 1.0 if real_point else 2.0
        if real_point:
            beta_k = jnp.asarray(r if k == 0 else -r, x.dtype)
            phase = 1.0 if k == 0 else -1.0
        else:
            beta_k = complex(r * np.cos(angle), r * np.sin(angle))
            phase = complex(np.cos(angle), -np.sin(angle))
        res = relax_core(model, x, free_states, beta_k, d, config.nudged)
        g = system.param_grads(res.states, params, inputs, beta_k)
        term = tuple(weight * jnp.real(phase * gi) for gi in g)
        acc = term if acc is None else tuple(a + t for a, t in zip(acc, term))
        steps = steps + res.steps
        conv = conv & res.converged
    scale = 1.0 / (n * r * x.shape[0])
    return tuple((scale * a).astype(p.dtype) for a, p in zip(acc, params)), steps, conv


def _holomorphic_noisy(model, x, d, free_states, inputs, config: EPConfig, key):
    """Holomorphic EP with neuron noise (Laborieux & Zenke 2022, their `noisy_ep_gradN`).

    For `k = 0 .. N-1` in turn, a Langevin phase of the complex dynamics at `beta_k` for the
    nudged horizon (fixed steps `config.nudged.dt0`), starting from the state where point `k-1`
    ended (point 0 from the free state), with real noise on the real parts; `dF/dtheta` is read
    at the end of each point, and the estimate is the real part of `(1/(N |beta|)) sum_k
    exp(-2 pi i k/N) dF/dtheta(s_k, beta_k)`. At `T -> 0` with horizons long enough for every
    point to settle it is the deterministic estimate. One `lax.scan` over the points (one
    compiled phase), the sum carried along.
    """
    import numpy as np

    from ..dynamics import langevin

    system, params = model.system, model.params
    n, r, cfg = config.n_points, float(config.beta), config.nudged
    cdtype = jnp.result_type(x.dtype, jnp.complex64)
    angles = 2.0 * np.pi * np.arange(n) / n
    betas = jnp.asarray(r * np.exp(1j * angles), cdtype)
    phases = jnp.asarray(np.exp(-1j * angles), cdtype)

    def point(carry, xs):
        s, acc = carry
        beta_k, phase_k, key_k = xs
        res = langevin(model, x, s, temperature=config.temperature, key=key_k, t1=cfg.t1,
                       dt=cfg.dt0, beta=beta_k, d=d, require_gibbs=False,
                       backend=_noisy_backend(cfg))
        g = system.param_grads(res.states, params, inputs, beta_k)
        acc = tuple(a + jnp.real(phase_k * gi).astype(a.dtype) for a, gi in zip(acc, g))
        return (res.states, acc), res.steps

    s0 = tuple(jnp.asarray(a, cdtype) for a in free_states)
    acc0 = tuple(jnp.zeros(p.shape, x.dtype) for p in params)
    (_, acc), steps = jax.lax.scan(point, (s0, acc0), (betas, phases, jax.random.split(key, n)))
    scale = 1.0 / (n * r * x.shape[0])
    grads = tuple((scale * a).astype(p.dtype) for a, p in zip(acc, params))
    return grads, jnp.sum(steps), jnp.asarray(True)
