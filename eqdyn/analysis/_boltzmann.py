"""Evaluating Boltzmann machines: exact enumeration, AIS for log Z, and chain diagnostics.

- `exact_log_partition`: `log Z = log sum_s exp(-F(s))` over every binary state of a small
  machine (the oracle the tests check the others against).
- `free_energy`: `-log sum_h exp(-F(v, h))` of an RBM (two layers), summing the hidden units
  out in closed form from their gaps.
- `ais_log_partition`: annealed importance sampling (Neal 2001) for an RBM's `log Z`, from the
  base-rate model whose visible biases match the data's marginals (Salakhutdinov & Murray 2008),
  with its error bar; `log_likelihood`: the mean test log-likelihood with it.
- `label_log_probs`: `log p(label | x)` of an RBM trained on `[x, one-hot label]` (a
  Boltzmann machine with its label units clamped in the positive phase), for classification.
- `autocorrelation`, `effective_sample_size`: of a scalar trace of chains (e.g. the energy
  trace of `eqdyn.dynamics.sample_chain`).
"""

from __future__ import annotations

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import ConfigError

__all__ = ["exact_log_partition", "free_energy", "AISResult", "ais_log_partition",
           "base_rate_bias", "log_likelihood", "autocorrelation", "effective_sample_size",
           "label_log_probs"]


def exact_log_partition(machine, *, temperature: float = 1.0, max_units: int = 24) -> float:
    """`log Z = log sum_s exp(-F(s) / T)` over all binary states (every layer), in float64.

    **Arguments:** `machine` (a `BoltzmannMachine` with no inputs), `temperature`, `max_units`
    (refuse larger machines: `2^n` states).
    """
    sizes = machine.state_sizes
    n = sum(sizes)
    if n > max_units:
        raise ConfigError(
            f"`exact_log_partition` enumerates 2^{n} states of `{machine.energy.name}`; that is "
            f"more than `max_units`={max_units} allow. Use `ais_log_partition`."
        )
    low = machine.system.low
    with jax.enable_x64(True):
        allstates = np.array(list(itertools.product([low, 1.0], repeat=n)), np.float64)
        cuts = np.cumsum((0,) + sizes)
        states = tuple(jnp.asarray(allstates[:, a:b]) for a, b in zip(cuts[:-1], cuts[1:]))
        params = tuple(jnp.asarray(p, jnp.float64) for p in machine.params)
        f = machine.system.energy_rows(states, params)
        return float(jax.scipy.special.logsumexp(-f / temperature))


def _check_rbm(machine, who):
    if len(machine.state_sizes) != 2 or machine.energy.inputs:
        raise ConfigError(
            f"`{who}` needs an RBM (two layers, visible first, no inputs); "
            f"`{machine.energy.name}` has states {machine.state_sizes}."
        )


def free_energy(machine, v: Float[Array, "B n_v"], params=None) -> Float[Array, " B"]:
    """`-log sum_h exp(-F(v, h))` of an RBM, per row of `v`.

    The hidden gaps `dF_h(v)` do not depend on `h`, so `F(v, h) = F(v, low) + sum_j
    (h_j - low) / (1 - low) dF_hj` and the sum over `h` is `prod_j (1 + exp(-dF_hj))`.
    """
    _check_rbm(machine, "free_energy")
    params = machine.params if params is None else params
    system = machine.system
    h0 = jnp.full((v.shape[0], machine.state_sizes[1]), system.low, v.dtype)
    f0 = system.energy_rows((v, h0), params)
    gap = system.gaps((v, h0), params)[1]
    return f0 - jnp.sum(jax.nn.softplus(-gap), axis=1)


def base_rate_bias(data: Float[Array, "N n_v"], eps: float = 1e-3) -> Float[Array, "1 n_v"]:
    """The base-rate model's visible biases: `log(p / (1 - p))` of the data's marginals `p`
    (clipped to `[eps, 1 - eps]`); Salakhutdinov & Murray (2008)."""
    p = jnp.clip(jnp.mean(data, axis=0, keepdims=True), eps, 1.0 - eps)
    return jnp.log(p) - jnp.log1p(-p)


class AISResult(eqx.Module):
    """`log Z` by AIS: `log_z`, the bounds `log_z_low`/`log_z_high` (`log(mean w -+ 3 se)`, as
    Salakhutdinov & Murray report; `-inf` low bound when `3 se > mean`), `log_weights` (one per
    run) and `log_z_base` (the base-rate model's exact `log Z`)."""

    log_z: Float[Array, ""]
    log_z_low: Float[Array, ""]
    log_z_high: Float[Array, ""]
    log_weights: Float[Array, " M"]
    log_z_base: Float[Array, ""]


def _sm_schedule(n: int, dtype):
    """`n + 1` inverse temperatures from 0 to 1, spaced as Salakhutdinov & Murray's (500 steps
    in [0, 0.5], 4,000 in [0.5, 0.9], 10,000 in [0.9, 1] of 14,500)."""
    n1, n2 = max(1, round(n * 500 / 14500)), max(1, round(n * 4000 / 14500))
    n3 = max(1, n - n1 - n2)
    return jnp.concatenate([jnp.linspace(0.0, 0.5, n1, endpoint=False, dtype=dtype),
                            jnp.linspace(0.5, 0.9, n2, endpoint=False, dtype=dtype),
                            jnp.linspace(0.9, 1.0, n3 + 1, dtype=dtype)])


def ais_log_partition(machine, base_bias: Float[Array, "1 n_v"], *, key: PRNGKeyArray,
                      n_runs: int = 100, n_betas: int = 1000, betas=None) -> AISResult:
    """Annealed importance sampling for the `log Z` of an RBM with units in {0, 1}.

    The runs anneal from the base-rate model `p_A(v) ∝ exp(base_bias . v)` (hidden units
    uniform) to the RBM through `p_b(v, h) ∝ exp(-(1 - b) F_A(v) - b F(v, h))`, each step one
    Gibbs transition (`h` then `v`) that leaves `p_b` invariant.

    **Arguments:** `machine`, `base_bias` (e.g. `base_rate_bias(train_data)`), `key`, `n_runs`
    (independent runs), `n_betas` (steps; spaced as Salakhutdinov & Murray's schedule) or
    `betas` (an increasing array from 0 to 1).

    **Returns:** an `AISResult`.
    """
    _check_rbm(machine, "ais_log_partition")
    if machine.units != "01":
        raise ConfigError("`ais_log_partition` supports units in {0, 1} (`units='01'`).")
    system = machine.system
    params = machine.params
    dtype = params[0].dtype
    n_v, n_h = machine.state_sizes
    bA = jnp.asarray(base_bias, dtype).reshape(1, n_v)
    betas = _sm_schedule(int(n_betas), dtype) if betas is None else jnp.asarray(betas, dtype)
    b0 = jnp.asarray(betas[0])
    if not isinstance(betas, jax.core.Tracer) and (
            float(b0) != 0.0 or float(betas[-1]) != 1.0 or bool(jnp.any(jnp.diff(betas) < 0))):
        raise ConfigError("`betas` must increase from 0 to 1.")
    h_off = jnp.zeros((n_runs, n_h), dtype)

    def log_p(v, b):  # log of the unnormalised marginal of v at inverse temperature b
        f0 = system.energy_rows((v, h_off), params)
        gap_h = system.gaps((v, h_off), params)[1]
        return (1 - b) * (v @ bA[0]) - b * f0 + jnp.sum(jax.nn.softplus(-b * gap_h), axis=1)

    def step(carry, bk):
        v, logw, b_prev, key = carry
        key, kh, kv = jax.random.split(key, 3)
        logw = logw + log_p(v, bk) - log_p(v, b_prev)
        gap_h = system.gaps((v, h_off), params)[1]
        h = (jax.random.uniform(kh, gap_h.shape, dtype) < jax.nn.sigmoid(-bk * gap_h))
        h = h.astype(dtype)
        gap_v = system.gaps((v, h), params)[0]
        field = (1 - bk) * bA + bk * (-gap_v)
        v = (jax.random.uniform(kv, field.shape, dtype) < jax.nn.sigmoid(field)).astype(dtype)
        return (v, logw, bk, key), None

    k0, k1 = jax.random.split(key)
    v0 = (jax.random.uniform(k0, (n_runs, n_v), dtype) < jax.nn.sigmoid(bA)).astype(dtype)
    init = (v0, jnp.zeros((n_runs,), dtype), betas[0], k1)
    (_, logw, _, _), _ = jax.lax.scan(step, init, betas[1:])
    log_z_base = jnp.sum(jax.nn.softplus(bA)) + n_h * jnp.log(2.0)
    m = jnp.max(logw)
    w = jnp.exp(logw - m)
    mean, se = jnp.mean(w), jnp.std(w) / jnp.sqrt(n_runs)
    log_z = log_z_base + m + jnp.log(mean)
    low = jnp.where(mean > 3 * se, log_z_base + m + jnp.log(jnp.maximum(mean - 3 * se, 1e-300)),
                    -jnp.inf)
    high = log_z_base + m + jnp.log(mean + 3 * se)
    return AISResult(log_z, low, high, logw, log_z_base)


def log_likelihood(machine, data: Float[Array, "N n_v"], ais: AISResult):
    """The mean log-likelihood of `data` (nats per example) given an AIS estimate of `log Z`:
    `(mean, low, high)`, the bounds from `ais`'s bounds on `log Z` (a larger `log Z` means a
    lower likelihood)."""
    mean_f = -jnp.mean(free_energy(machine, data))
    return mean_f - ais.log_z, mean_f - ais.log_z_high, mean_f - ais.log_z_low


def autocorrelation(trace, max_lag: int | None = None) -> np.ndarray:
    """The normalised autocorrelation `rho_t`, `t = 0..max_lag`, of a `(steps, chains)` trace
    (a `(steps,)` one is one chain), averaged over the chains (FFT, float64)."""
    x = np.asarray(trace, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 2:
        raise ConfigError(f"`trace` has shape {x.shape}; pass (steps >= 2, chains).")
    n = x.shape[0]
    max_lag = n - 1 if max_lag is None else min(int(max_lag), n - 1)
    x = x - x.mean(axis=0)
    f = np.fft.rfft(x, n=2 * n, axis=0)
    acov = np.fft.irfft(f * np.conj(f), axis=0)[:n] / n
    var = acov[0]
    ok = var > 0
    rho = np.where(ok, acov / np.where(ok, var, 1.0), 0.0)
    rho[0] = 1.0
    return rho.mean(axis=1)[: max_lag + 1]


def effective_sample_size(trace) -> float:
    """`N / (1 + 2 sum_t rho_t)` for a `(steps, chains)` trace (`N` = steps x chains), with
    the sum cut by Geyer's initial positive sequence (pairs `rho_2m + rho_2m+1` summed while
    positive)."""
    x = np.asarray(trace, np.float64)
    x = x[:, None] if x.ndim == 1 else x
    rho = autocorrelation(x)
    tau = -1.0  # 1 + 2 sum_{t >= 1} rho_t = -1 + 2 sum_{t >= 0} rho_t
    for m in range(0, len(rho) - 1, 2):
        pair = rho[m] + rho[m + 1]
        if pair <= 0:
            break
        tau += 2 * pair
    return float(x.size / max(tau, 1e-12))


def label_log_probs(machine, x: Float[Array, "B n_x"], n_classes: int) -> Float[Array, "B C"]:
    """`log p(label | x)` of an RBM whose visible layer is `[x, one-hot label]` (the label
    units last), exactly: `-F_free([x, e_c])` normalised over the classes `c`.

    This is the classification RBM of the seed document: train it with `CD`/`PCD` on
    `[x, one-hot(label)]` (the label units clamped in the positive phase, free in the
    negative one), then predict `argmax` of these.
    """
    _check_rbm(machine, "label_log_probs")
    n_v = machine.state_sizes[0]
    if jnp.ndim(x) != 2 or x.shape[1] + n_classes != n_v:
        raise ConfigError(
            f"`x` has shape {jnp.shape(x)} and `n_classes`={n_classes}, but the visible layer "
            f"of `{machine.energy.name}` has {n_v} units: pass x with {n_v - n_classes} columns "
            "(the label units are the last ones)."
        )
    low = machine.system.low
    eye = jnp.where(jnp.eye(n_classes, dtype=x.dtype) > 0, 1.0, low).astype(x.dtype)

    def per_class(e):
        v = jnp.concatenate([x, jnp.broadcast_to(e, (x.shape[0], n_classes))], axis=1)
        return -free_energy(machine, v)

    logits = jax.vmap(per_class, out_axes=1)(eye)
    return jax.nn.log_softmax(logits, axis=1)
