"""Sampling binary units as relaxations: block Gibbs sweeps and their mean-field limit.

A Boltzmann machine's states are binary (`eqdyn.models.BoltzmannMachine`); each unit is on with
`p = sigmoid(-dF / T)`, `dF` its energy gap given the others (`eqdyn.symbolic.binary_units`).
The states split into blocks with no coupling inside a block (odd and even layers), so a whole
block is drawn at once, for every chain (the rows of the states) together.

- `BlockGibbs`: `n_sweeps` sweeps over the blocks, optionally annealed from a higher
  temperature; a sampler, so it ends with `RESULTS.fixed_horizon`.
- `MeanField`: the deterministic limit, the damped fixed point `mu = E[s | p = sigmoid(-dF(mu) /
  T)]` swept block by block until `max |mu - update| < tol` (`RESULTS.successful`) or the sweep
  budget is spent (`max_steps_reached`).

`binary_problem` builds the `RelaxProblem` both solve: which states are clamped (the visibles
in a positive phase), the chains' start `s0`, and the energy's inputs.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import ConfigError
from ._base import (AbstractRelaxation, RelaxProblem, RelaxResult, as_dtype, check_count,
                    check_number, concrete, leaf, status)

__all__ = ["BlockGibbs", "MeanField", "binary_problem", "sample_chain"]


class _BinaryField(eqx.Module):
    """The mean-field drive `E[s | rest] - s` of a binary system (clamped states: zero)."""

    system: object = eqx.field(static=True)
    clamped: tuple[bool, ...] = eqx.field(static=True)

    def __call__(self, t, y, args):
        params, inputs, beta, temperature = args
        p = self.system.prob_on(y, params, inputs, beta, temperature)
        return tuple(jnp.zeros_like(s) if c else self.system.mean(q) - s
                     for s, q, c in zip(y, p, self.clamped))

    def residual(self, y, f):
        return jnp.max(jnp.stack([jnp.max(jnp.abs(a)) for a in f]))

    def observe(self, y):
        return tuple(y)


def binary_problem(machine, s0, *, clamp: tuple[int, ...] = (), inputs=(), beta=0.0,
                   temperature=1.0) -> RelaxProblem:
    """The `RelaxProblem` of sampling `machine` from `s0` with the states `clamp` held fixed.

    **Arguments:**

    - `machine`: an `eqdyn.models.BoltzmannMachine`.
    - `s0`: one `(chains, n_k)` array per state (binary for `BlockGibbs`; probabilities in
      [0, 1], or means in [-1, 1], for `MeanField`).
    - `clamp`: indices of the states held at their `s0` (e.g. `(0,)`: the visibles).
    - `inputs`, `beta`: the energy's clamped inputs and nudging strength (none for
      `boltzmann_energy`).
    - `temperature`: the temperature `T` of the field (`MeanField`'s, and the residual's).

    **Returns:** a `RelaxProblem` whose `system` is the machine's `BinarySystem`.
    """
    system = machine.system
    sizes = machine.state_sizes
    s0 = tuple(s0)
    if len(s0) != len(sizes) or any(
            jnp.ndim(s) != 2 or jnp.shape(s)[1] != n or jnp.shape(s)[0] != jnp.shape(s0[0])[0]
            for s, n in zip(s0, sizes)):
        raise ConfigError(
            f"`s0` has shapes {[jnp.shape(s) for s in s0]}; `{machine.energy.name}` needs one "
            f"(chains, n) array per state with n = {sizes} and the same number of chains "
            "(e.g. `machine.init_state(chains, key=key)`)."
        )
    bad = [k for k in clamp if not (isinstance(k, int) and 0 <= k < len(sizes))]
    if bad:
        raise ConfigError(f"`clamp`={tuple(clamp)} names no state (states 0..{len(sizes) - 1}).")
    check_number("binary_problem", "temperature", temperature)
    clamped = tuple(k in clamp for k in range(len(sizes)))
    return RelaxProblem(_BinaryField(system, clamped), (machine.params, tuple(inputs),
                                                        leaf(beta), leaf(temperature)), s0)


def _schedule(n: int, temperature, anneal, dtype):
    """Temperatures of `n` sweeps: geometric from `anneal` down to `temperature`."""
    t1 = as_dtype(temperature, dtype)
    if anneal is None or n == 1:
        return jnp.full((n,), t1)
    t0 = as_dtype(anneal, dtype)
    frac = jnp.arange(n, dtype=dtype) / (n - 1)
    return t0 * (t1 / t0) ** frac


class BlockGibbs(AbstractRelaxation):
    """Block Gibbs sampling: every sweep draws each block of states given the others.

    **Arguments:**

    - `n_sweeps`: sweeps over all blocks (static: the length of the loop).
    - `temperature`: the final temperature `T > 0` (a leaf).
    - `anneal`: a start temperature; the sweeps then cool geometrically from it to
      `temperature` (simulated annealing). `None`: every sweep at `temperature`.

    `solve(problem, key=key)` returns the chains' last states (`RESULTS.fixed_horizon`; the
    residual is the mean-field drive's at the end, a diagnostic, not a test). Chains are the
    rows of the states: pass persistent chains back as the next problem's `s0`.
    """

    n_sweeps: int = eqx.field(static=True)
    temperature: Float[Array, ""] | float
    anneal: Float[Array, ""] | float | None
    tol: Float[Array, ""] | float

    def __init__(self, n_sweeps: int, temperature=1.0, *, anneal=None):
        check_count("BlockGibbs", "n_sweeps", n_sweeps)
        check_number("BlockGibbs", "temperature", temperature)
        if anneal is not None:
            check_number("BlockGibbs", "anneal", anneal)
        self.n_sweeps = int(n_sweeps)
        self.temperature = leaf(temperature)
        self.anneal = None if anneal is None else leaf(anneal)
        self.tol = leaf(0.0)

    def sweep(self, problem: RelaxProblem, y, key: PRNGKeyArray, temperature):
        """One sweep over the blocks at `temperature`: the new states."""
        system = problem.system
        params, inputs, beta, _ = problem.args
        clamped = problem.field.clamped
        y = list(y)
        keys = jax.random.split(key, len(clamped))
        for block in system.blocks:
            gaps = system.gaps(tuple(y), params, inputs, beta)  # unused gaps: removed by XLA
            for k in block:
                if clamped[k]:
                    continue
                p = jax.nn.sigmoid(-gaps[k] / temperature)
                u = jax.random.uniform(keys[k], p.shape, p.dtype)
                y[k] = jnp.where(u < p, 1.0, system.low).astype(y[k].dtype)
        return tuple(y)

    def sample(self, problem: RelaxProblem, key: PRNGKeyArray):
        """The states after `n_sweeps` sweeps (what `solve` returns, without the residual)."""
        if key is None:
            raise ConfigError("`BlockGibbs` draws its samples: pass `key=jax.random.PRNGKey(...)`.")
        system = problem.system
        if system.mean_field_states and concrete(problem.args[2]) != 0.0:
            raise ConfigError(
                f"`BlockGibbs`: the cost of `{system.binary.source.name}` is nonlinear in the "
                f"states {[system.state_names[k] for k in system.mean_field_states]} (a softmax "
                "readout), so their conditionals at `beta` != 0 are not a matrix of gaps; nudge "
                "with `MeanField` (e.g. `BinaryEP(beta, MeanField(...))`), or use an energy whose "
                "cost is the squared error of an output state."
            )
        y0 = tuple(problem.y0)
        temps = _schedule(self.n_sweeps, self.temperature, self.anneal, y0[0].dtype)

        def body(y, kt):
            k, t = kt
            return self.sweep(problem, y, k, t), None

        y, _ = jax.lax.scan(body, y0, (jax.random.split(key, self.n_sweeps), temps))
        return y

    def solve(self, problem: RelaxProblem, *, key: PRNGKeyArray | None = None) -> RelaxResult:
        y = self.sample(problem, key)
        dtype = y[0].dtype
        temps = _schedule(self.n_sweeps, self.temperature, self.anneal, dtype)
        params, inputs, beta, _ = problem.args
        res = problem.field.residual(y, problem.field(None, y, (params, inputs, beta, temps[-1])))
        conv, result = status(res, self.tol)
        return RelaxResult(y, jnp.asarray(self.n_sweeps), res, conv,
                           jnp.asarray(self.n_sweeps, dtype), result)


class MeanField(AbstractRelaxation):
    """The deterministic limit of Gibbs sampling: damped block fixed-point sweeps of the means.

    `mu_k <- (1 - damping) mu_k + damping * E[s_k]`, `E[s_k] = sigmoid(-dF_k(mu) / T)` (or
    `2 sigmoid - 1` on {-1, 1}), block by block; the gaps are affine in the other layers, so
    this is the naive mean-field (variational) fixed point of Salakhutdinov & Hinton (2009).
    When the free states lie in one block (an RBM's hidden layer with the visibles clamped)
    and `damping` is 1, one sweep is exact: it returns after it, residual 0, `successful`.

    **Arguments:** `tol` (stop when `max |E[s] - mu| < tol`; 0: run `max_sweeps`),
    `max_sweeps` (static), `damping` in (0, 1], `temperature` (> 0).
    """

    tol: Float[Array, ""] | float
    max_sweeps: int = eqx.field(static=True)
    damping: Float[Array, ""] | float
    temperature: Float[Array, ""] | float

    def __init__(self, tol=1e-6, max_sweeps: int = 100, *, damping=1.0, temperature=1.0):
        check_number("MeanField", "tol", tol, allow_zero=True)
        check_count("MeanField", "max_sweeps", max_sweeps)
        check_number("MeanField", "damping", damping)
        check_number("MeanField", "temperature", temperature)
        if not isinstance(damping, jax.Array) and float(damping) > 1.0:
            raise ConfigError(f"`MeanField`: `damping`={damping!r} must be in (0, 1].")
        self.tol = leaf(tol)
        self.max_sweeps = int(max_sweeps)
        self.damping = leaf(damping)
        self.temperature = leaf(temperature)

    def solve(self, problem: RelaxProblem, *, key: PRNGKeyArray | None = None) -> RelaxResult:
        system = problem.system
        params, inputs, beta, _ = problem.args
        clamped = problem.field.clamped
        y0 = tuple(problem.y0)
        dtype = y0[0].dtype
        temp, damp = as_dtype(self.temperature, dtype), as_dtype(self.damping, dtype)
        tol = as_dtype(self.tol, dtype)
        args = (params, inputs, beta, temp)

        def sweep(y):
            y = list(y)
            for block in system.blocks:
                p = system.prob_on(tuple(y), params, inputs, beta, temp)
                for k in block:
                    if not clamped[k]:
                        y[k] = (1 - damp) * y[k] + damp * system.mean(p[k])
            return tuple(y)

        def resid(y):
            return problem.field.residual(y, problem.field(None, y, args))

        free = [k for k, c in enumerate(clamped) if not c]
        one_block = (any(set(free) <= set(b) for b in system.blocks)
                     and not (system.mean_field_states and concrete(beta) != 0.0))
        if one_block and concrete(self.damping) == 1.0:
            # the free states' gaps depend on clamped states only (an RBM's hidden layer given
            # the visibles): one undamped sweep is the exact fixed point, residual zero
            y = sweep(y0)
            r = jnp.zeros((), dtype)
            conv, result = status(r, tol, converged=jnp.asarray(True))
            return RelaxResult(y, jnp.asarray(1), r, conv, jnp.asarray(1, dtype), result)

        def cond(c):
            _, n, r = c
            return (n < self.max_sweeps) & ~(r < tol) & jnp.isfinite(r)

        def body(c):
            y, n, _ = c
            y = sweep(y)
            return y, n + 1, resid(y)

        y, n, r = jax.lax.while_loop(cond, body, (y0, jnp.asarray(0), resid(y0)))
        conv, result = status(r, tol, converged=(r < tol) | ((tol == 0) & (n == self.max_sweeps)))
        return RelaxResult(y, n, r, conv, n.astype(dtype), result)


def sample_chain(sampler: BlockGibbs, problem: RelaxProblem, key: PRNGKeyArray,
                 n_samples: int, *, burn_in: int = 0, thin: int = 1):
    """Run `sampler`'s sweeps and keep every `thin`-th state after `burn_in` sweeps.

    **Arguments:** `sampler` (a `BlockGibbs`; its temperature is used, not its annealing),
    `problem` (from `binary_problem`), `key`, `n_samples`, `burn_in`, `thin`.

    **Returns:** `(samples, energies)`: one `(n_samples, chains, n_k)` array per state, and
    the energy `F` of every kept state, `(n_samples, chains)` (the energy trace).
    """
    check_count("sample_chain", "n_samples", n_samples)
    check_count("sample_chain", "thin", thin)
    if not (isinstance(burn_in, int) and burn_in >= 0):
        raise ConfigError(f"`sample_chain`: `burn_in`={burn_in!r} must be an integer >= 0.")
    system = problem.system
    params, inputs, beta, _ = problem.args
    y0 = tuple(problem.y0)
    t = as_dtype(sampler.temperature, y0[0].dtype)
    k_burn, k_run = jax.random.split(key)

    def sweeps(y, k, n):
        return jax.lax.fori_loop(0, n, lambda i, y: sampler.sweep(
            problem, y, jax.random.fold_in(k, i), t), y)

    y = sweeps(y0, k_burn, burn_in) if burn_in else y0

    def body(y, k):
        y = sweeps(y, k, thin)
        return y, (y, system.energy_rows(y, params, inputs, beta))

    _, (samples, energies) = jax.lax.scan(body, y, jax.random.split(k_run, n_samples))
    return samples, energies
