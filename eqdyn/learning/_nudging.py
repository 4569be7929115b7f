"""How EP nudges: one-sided, random-sign, symmetric and holomorphic estimates as objects.

For any parameter `theta`, with `s^0` the free fixed point and `s^beta` the nudged one,

    OneSided:     g = (1/beta)  [dF/dtheta(s^beta)  - dF/dtheta(s^0)]
    Symmetric:    g = (1/2beta) [dF/dtheta(s^beta)  - dF/dtheta(s^-beta)]
    RandomSign:   one-sided with beta -> sign * beta, the sign drawn per batch
    Holomorphic:  g = (1/(N |beta|)) sum_k exp(-2 pi i k/N) dF/dtheta(s^{beta_k}, beta_k),
                  beta_k = |beta| exp(2 pi i k/N)   (Laborieux & Zenke 2022)

The holomorphic estimate is the first Fourier coefficient of `beta -> dF/dtheta(s^beta, beta)`
on a circle: by Cauchy's formula it is `dJ/dtheta` up to the aliased coefficient of order
`beta^(N+1)`, so its error is O(|beta|^N) (N = 2 is the symmetric estimate). The nudged
phases at non-real `beta_k` relax the holomorphic extension of the dynamics (complex states);
for real parameters `dF/dtheta` at `conj(beta)` is the conjugate of that at `beta`, so only
the points with `0 <= k <= N/2` are relaxed. With neuron noise (a noisy nudged relaxation)
the states are no longer conjugate, and all N points are run in turn as in Laborieux &
Zenke's noisy estimate: point k is a noisy phase at `beta_k` that starts where point k-1 ended
(point 0 from the free state), the teaching signal rotating once around the circle. Averaging
the N noisy terms with their phases makes the estimate far less sensitive to the noise than
one-sided EP's difference quotient (on a 5-6-3 sigmoid network at T = 8e-4, N = 10 on |beta| =
0.4 scatters 24 times less across noise draws than one-sided EP at beta = 0.1;
tests/test_algorithms.py).

A nudging is an `AbstractNudging`; write a new one by implementing `estimate`.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


from .._errors import ConfigError
from ._phase import is_noisy, run_phase
from ._rule import status_code, worst_status

__all__ = ["AbstractNudging", "OneSided", "RandomSign", "Symmetric", "Holomorphic",
           "require_holomorphic", "check_holomorphic"]


def require_holomorphic(activations) -> None:
    """Raise a `ConfigError` unless every `Activation` in `activations` is holomorphic."""
    bad = sorted({a.name for a in activations if not a.holomorphic})
    if bad:
        from ..models import ACTIVATIONS

        good = sorted(n for n, a in ACTIVATIONS.items() if a.holomorphic)
        raise ConfigError(
            f"`variant`='holomorphic' relaxes the network at complex beta and needs a "
            f"holomorphic activation; `activation`={bad[0]!r} is not (it has kinks). Use one "
            f"of {good}, an Activation.from_sympy built from analytic functions, or another "
            "nudging (OneSided, RandomSign, Symmetric)."
        )


def check_holomorphic(model) -> None:
    """Raise a `ConfigError` unless every activation of `model` is holomorphic and its energy
    has no max pooling (complex states have no maximum)."""
    system = model.system
    require_holomorphic([system.activation, *getattr(system, "activations", {}).values()])
    derivation = getattr(system, "derivation", None)
    if derivation is None:
        return
    from ..symbolic import Pool2d

    pools = sorted({str(p) for t in derivation.energy.internal for p in t.atoms(Pool2d)
                    if p.kind == "max"})
    if pools:
        raise ConfigError(
            f"`variant`='holomorphic' relaxes the network at complex states, which have no "
            f"maximum, and the energy uses max pooling ({pools[0]}); build it with average "
            "pooling (`pool_kind='avg'`) or use another nudging (OneSided, RandomSign, "
            "Symmetric).")


class AbstractNudging(eqx.Module):
    """How EP nudges from the free state and turns the nudged states into an estimate.

    `estimate(model, x, d, free_states, beta, relaxation, key)` returns `(grads, steps,
    converged, result)`: the estimate of the gradient of the mean cost (a tuple in the order of
    `model.params`), the nudged phases' total steps, whether all of them converged, and the
    worst status code among them.
    """

    #: whether `estimate` needs a PRNG key even without neuron noise
    needs_key = False

    def check(self, model) -> None:
        """Refuse a model this nudging cannot estimate on (default: none)."""

    @abc.abstractmethod
    def estimate(self, model, x, d, free_states, beta, relaxation, key):
        raise NotImplementedError


def _one_sided(model, x, d, free_states, beta, relaxation, key):
    system, params = model.system, model.params
    nudged = run_phase(relaxation, model, x, free_states, beta, d, key)
    # dF/dtheta at (s^beta, beta): a cost that depends on parameters (a softmax readout's
    # weights) contributes beta dC/dtheta there and nothing at beta = 0
    delta = system.param_grads_delta(nudged.states, free_states, params, model.inputs(x, d),
                                     beta, 0.0)
    scale = 1.0 / (beta * x.shape[0])
    grads = tuple(scale * g for g in delta)
    return grads, nudged.steps, nudged.converged, status_code(nudged)


class OneSided(AbstractNudging):
    """Classic EP: one nudged phase at `+beta` (an O(beta) bias)."""

    def estimate(self, model, x, d, free_states, beta, relaxation, key):
        return _one_sided(model, x, d, free_states, beta, relaxation, key)


class RandomSign(AbstractNudging):
    """One nudged phase at `+beta` or `-beta`, the sign drawn per batch from `key` (Scellier &
    Bengio 2017): the O(beta) bias averages out over batches. Needs a `key`."""

    needs_key = True

    def estimate(self, model, x, d, free_states, beta, relaxation, key):
        if key is None:
            raise ConfigError("`key` is required for RandomSign nudging (e.g. "
                              "jax.random.PRNGKey(0)).")
        beta = jnp.where(jax.random.bernoulli(key), beta, -beta)
        noise = jax.random.fold_in(key, 1) if is_noisy(relaxation) else None
        return _one_sided(model, x, d, free_states, beta, relaxation, noise)


class Symmetric(AbstractNudging):
    """Two nudged phases at `+beta` and `-beta` (Laborieux et al. 2021): an O(beta^2) bias.

    **Arguments:** `common_noise` (static, default `False`): with a noisy or spiking
    relaxation, run both phases on the same random numbers (common random numbers). Each phase
    is still an exact draw of its own process, so the estimate's mean is unchanged, but the
    noise the two phases share cancels in their difference: with `Spiking` units a spike then
    differs between the phases only where the nudge moved its firing probability, and the
    estimate's variance falls from O(1/beta^2) to about O(1/beta) (measured by
    `benchmarks/bench_spiking_noise.py --betas`). It is a variance reduction of the
    simulation: a physical or biological network cannot replay its noise, so the default
    draws the phases independently, as such a system would.
    """

    common_noise: bool = eqx.field(static=True, default=False)

    def estimate(self, model, x, d, free_states, beta, relaxation, key):
        system, params = model.system, model.params
        k_plus = k_minus = key
        if key is not None and not self.common_noise:
            k_plus, k_minus = jax.random.split(key)
        plus = run_phase(relaxation, model, x, free_states, beta, d, k_plus)
        minus = run_phase(relaxation, model, x, free_states, -beta, d, k_minus)
        delta = system.param_grads_delta(plus.states, minus.states, params,
                                         model.inputs(x, d), beta, -beta)
        scale = 1.0 / (2.0 * beta * x.shape[0])
        grads = tuple(scale * g for g in delta)
        return (grads, plus.steps + minus.steps, plus.converged & minus.converged,
                worst_status(status_code(plus), status_code(minus)))


class Holomorphic(AbstractNudging):
    """The first Fourier coefficient of `dF/dtheta(s^beta, beta)` on the circle `|beta|`, from
    `n_points` nudged phases at complex `beta_k` (Laborieux & Zenke 2022): an O(|beta|^N) bias.
    Needs holomorphic activations; a block-sweep relaxation cannot relax complex states."""

    n_points: int = eqx.field(static=True, default=4)

    def __check_init__(self):
        if not (isinstance(self.n_points, int) and not isinstance(self.n_points, bool)
                and self.n_points >= 2):
            raise ConfigError(f"`n_points`={self.n_points!r} must be an integer >= 2 (points on "
                              "the circle of holomorphic EP; 2 is the symmetric estimate).")

    def check(self, model) -> None:
        check_holomorphic(model)

    def estimate(self, model, x, d, free_states, beta, relaxation, key):
        if is_noisy(relaxation):
            return self._noisy(model, x, d, free_states, beta, relaxation, key)
        system, params = model.system, model.params
        inputs = model.inputs(x, d)
        n = self.n_points
        r = jnp.asarray(beta, x.dtype)
        cdtype = jnp.result_type(x.dtype, jnp.complex64)
        acc = None
        steps = jnp.zeros((), jnp.int32)
        conv = jnp.asarray(True)
        code = jnp.zeros((), jnp.int32)
        for k in range(n // 2 + 1):
            angle = 2.0 * np.pi * k / n
            real_point = k == 0 or 2 * k == n
            # conj(beta_k) = beta_{N-k}: its term is the conjugate, so count the pair once, twice
            weight = 1.0 if real_point else 2.0
            if real_point:
                beta_k = r if k == 0 else -r
                phase = 1.0 if k == 0 else -1.0
            else:
                beta_k = (r * complex(np.cos(angle), np.sin(angle))).astype(cdtype)
                phase = complex(np.cos(angle), -np.sin(angle))
            res = run_phase(relaxation, model, x, free_states, beta_k, d, None)
            g = system.param_grads(res.states, params, inputs, beta_k)
            term = tuple(weight * jnp.real(phase * gi) for gi in g)
            acc = term if acc is None else tuple(a + t for a, t in zip(acc, term))
            steps = steps + res.steps
            conv = conv & res.converged
            code = worst_status(code, status_code(res))
        scale = 1.0 / (n * r * x.shape[0])
        return tuple((scale * a).astype(p.dtype) for a, p in zip(acc, params)), steps, conv, code

    def _noisy(self, model, x, d, free_states, beta, relaxation, key):
        """Laborieux & Zenke's noisy estimate (their `noisy_ep_gradN`): for `k = 0 .. N-1` in
        turn a noisy phase at `beta_k` from where point `k-1` ended (point 0 from the free
        state); `dF/dtheta` read at the end of each point. One `lax.scan` over the points."""
        if key is None:
            raise ConfigError("`key` is required with neuron noise (a noisy relaxation).")
        system, params = model.system, model.params
        inputs = model.inputs(x, d)
        n = self.n_points
        r = jnp.asarray(beta, x.dtype)
        cdtype = jnp.result_type(x.dtype, jnp.complex64)
        angles = 2.0 * np.pi * np.arange(n) / n
        betas = r * jnp.asarray(np.exp(1j * angles), cdtype)
        phases = jnp.asarray(np.exp(-1j * angles), cdtype)

        def point(carry, xs):
            s, acc = carry
            beta_k, phase_k, key_k = xs
            res = run_phase(relaxation, model, x, s, beta_k, d, key_k)
            g = system.param_grads(res.states, params, inputs, beta_k)
            acc = tuple(a + jnp.real(phase_k * gi).astype(a.dtype) for a, gi in zip(acc, g))
            return (res.states, acc), (res.steps, res.converged, status_code(res))

        s0 = tuple(jnp.asarray(a, cdtype) for a in free_states)
        acc0 = tuple(jnp.zeros(p.shape, x.dtype) for p in params)
        (_, acc), (steps, conv, code) = jax.lax.scan(
            point, (s0, acc0), (betas, phases, jax.random.split(key, n)))
        scale = 1.0 / (n * r * x.shape[0])
        grads = tuple((scale * a).astype(p.dtype) for a, p in zip(acc, params))
        return grads, jnp.sum(steps), jnp.all(conv), worst_status(*code)
