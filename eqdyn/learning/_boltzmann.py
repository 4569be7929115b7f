"""The Boltzmann learning rule: `dW ∝ <s_i s_j>_clamped - <s_i s_j>_free`, by sampling.

The gradient of the negative log-likelihood of a Boltzmann machine with energy `F` is

    d(-log p(v)) / dtheta = <dF/dtheta>_clamped - <dF/dtheta>_free

(for a weight, `dF/dW_k = -s_{k-1}^T s_k`: the Hebbian correlations of the clamped phase minus
those of the free one). Both averages are estimated:

- the clamped (positive) phase holds the visibles at the data and takes the other layers'
  means by `MeanField` (exact in one sweep for an RBM, whose hidden units are independent given
  the visibles; the variational positive phase of a deep Boltzmann machine, Salakhutdinov &
  Hinton 2009);
- the free (negative) phase runs `k` block Gibbs sweeps: from the data (`CD`, contrastive
  divergence, Hinton 2002) or from persistent chains that the caller passes back (`PCD`,
  Tieleman 2008).

Both rules follow `AbstractRule`: `grads, stats = rule(machine, x, None, s0, key=key)`, `grads`
in the order of `machine.params`, to descend. `stats.free_states` are the negative chains after
the sweeps: pass them as the next call's `s0` to keep PCD's chains persistent.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._errors import ConfigError
from ..dynamics import RESULTS, BlockGibbs, MeanField, binary_problem
from ..models import check_binary
from ._rule import AbstractRule, Stats, as_leaf, check_batch, status_code

__all__ = ["CD", "PCD", "positive_phase", "BinaryEP", "BinaryCHL"]


def positive_phase(machine, x, relaxation: MeanField | None = None):
    """The clamped phase: visibles (state 0) at `x`, the other layers' means by mean field.

    **Returns:** the `RelaxResult` (states: `x` and the hidden means).
    """
    relaxation = relaxation or MeanField(1e-6, 50)
    half = 0.5 if machine.units == "01" else 0.0
    s0 = (x,) + tuple(jnp.full((x.shape[0], n), half, x.dtype) for n in machine.state_sizes[1:])
    return relaxation.solve(binary_problem(machine, s0, clamp=(0,)))


def _check(machine, x, name="x"):
    n = machine.state_sizes[0]
    if jnp.ndim(x) != 2 or jnp.shape(x)[1] != n:
        raise ConfigError(
            f"`{name}` has shape {jnp.shape(x)}; `{machine.energy.name}` has {n} visible units: "
            f"pass a (batch, {n}) array."
        )
    check_binary(name, x, machine.units)


def _reconstruction(machine, pos):
    """Mean squared error of the visibles' means given the positive phase's hidden means."""
    system = machine.system
    p = system.prob_on(pos.states, machine.params)
    x = pos.states[0]
    return jnp.sum((x - system.mean(p[0])) ** 2) / x.shape[0]


class _Boltzmann(AbstractRule):
    k: eqx.AbstractVar[int]
    temperature: eqx.AbstractVar[Float[Array, ""] | float]
    positive: eqx.AbstractVar[MeanField]

    def _start(self, machine, x, pos, s0, key):
        raise NotImplementedError

    def __call__(self, model, x, d=None, s0=None, *, key: PRNGKeyArray | None = None,
                 labels: Int[Array, " B"] | None = None) -> tuple[tuple[Array, ...], Stats]:
        if key is None:
            raise ConfigError(f"`{type(self).__name__}` samples its negative phase: pass `key`.")
        _check(model, x)
        pos = positive_phase(model, x, self.positive)
        k_start, k_run = jax.random.split(key)
        start = self._start(model, x, pos, s0, k_start)
        problem = binary_problem(model, start)
        neg = BlockGibbs(self.k, as_leaf(self.temperature)).sample(problem, k_run)
        system = model.system
        g_pos = system.param_grads(pos.states, model.params)
        g_neg = system.param_grads(neg, model.params)
        b_pos, b_neg = x.shape[0], start[0].shape[0]
        grads = tuple(gp / b_pos - gn / b_neg for gp, gn in zip(g_pos, g_neg))
        stats = Stats(
            loss=_reconstruction(model, pos),
            correct=jnp.asarray(0),
            free_states=neg,
            free_steps=jnp.asarray(self.k),
            nudged_steps=pos.steps,
            free_converged=jnp.asarray(True),  # a sampler runs its sweeps by design
            nudged_converged=pos.converged,
            free_result=jnp.asarray(RESULTS.fixed_horizon._value, jnp.int32),
            nudged_result=status_code(pos),
        )
        return grads, stats


def _sample_means(machine, means, key):
    """Binary states drawn with the given means (visible state kept)."""
    system = machine.system
    keys = jax.random.split(key, len(means))
    out = [means[0]]
    for k, m in zip(keys[1:], means[1:]):
        p = m if system.units == "01" else (m + 1.0) / 2.0
        out.append(jnp.where(jax.random.uniform(k, m.shape, m.dtype) < p, 1.0,
                             system.low).astype(m.dtype))
    return tuple(out)


class CD(_Boltzmann):
    """Contrastive divergence CD-k (Hinton 2002): the free phase starts at the data.

    The hidden layers are drawn from the positive phase's means, then `k` block Gibbs sweeps
    (visibles first) give the negative statistics; `s0` is not used.

    **Arguments:** `k` (sweeps, static), `temperature` (> 0, default 1), `positive` (the
    clamped phase's `MeanField`; default `MeanField(1e-6, 50)`).
    """

    k: int = eqx.field(static=True)
    temperature: Float[Array, ""] | float
    positive: MeanField

    def __init__(self, k: int = 1, *, temperature=1.0, positive: MeanField | None = None):
        BlockGibbs(k, temperature)  # checks k and the temperature
        self.k = int(k)
        self.temperature = as_leaf(temperature)
        self.positive = positive or MeanField(1e-6, 50)

    def _start(self, machine, x, pos, s0, key):
        return _sample_means(machine, pos.states, key)


class PCD(_Boltzmann):
    """Persistent contrastive divergence (Tieleman 2008): `k` sweeps of persistent chains.

    `s0` holds the chains (one `(chains, n_k)` binary array per state, any number of chains,
    e.g. `machine.init_state(100, key=key)`); the rule returns them advanced in
    `stats.free_states`, which the caller passes back as the next `s0`. With a deep machine and
    the default mean-field positive phase this is the DBM learning rule of Salakhutdinov &
    Hinton (2009).

    **Arguments:** `k` (sweeps per call, static), `temperature`, `positive` (as `CD`).
    """

    k: int = eqx.field(static=True)
    temperature: Float[Array, ""] | float
    positive: MeanField

    def __init__(self, k: int = 1, *, temperature=1.0, positive: MeanField | None = None):
        BlockGibbs(k, temperature)
        self.k = int(k)
        self.temperature = as_leaf(temperature)
        self.positive = positive or MeanField(1e-6, 50)

    def _start(self, machine, x, pos, s0, key):
        if s0 is None:
            raise ConfigError(
                "`PCD` needs its persistent chains as `s0` (e.g. `machine.init_state(100, "
                "key=key)`), and the returned `stats.free_states` passed back on the next call."
            )
        binary_problem(machine, s0)  # checks the shapes
        for i, s in enumerate(s0):
            check_binary(f"s0[{i}]", s, machine.units)
        return tuple(s0)



class _BinaryPhases(AbstractRule):
    """EP and CHL on binary units: two relaxations of the means (or samples) of a
    `BoltzmannMachine` on an energy with inputs `(x, d)` (e.g. `layered_hopfield_energy`)."""

    relaxation: eqx.AbstractVar[MeanField | BlockGibbs]

    def _relax(self, model, x, d, s0, beta, clamp_output, key):
        half = 0.5 if model.units == "01" else 0.0
        start = tuple(s0) if s0 is not None else tuple(
            jnp.full((x.shape[0], n), half, x.dtype) for n in model.state_sizes)
        clamp = ()
        if clamp_output:
            start = start[:-1] + (d,)
            clamp = (len(start) - 1,)
        problem = binary_problem(model, start, clamp=clamp, inputs=(x, d), beta=beta)
        return self.relaxation.solve(problem, key=key)

    def _stats(self, model, x, d, free, second, labels):
        sys = model.system
        y = sys.output(free.states, model.params, (x, d))
        labels = jnp.argmax(d, axis=-1) if labels is None else labels
        return Stats(
            loss=sys.cost(free.states, model.params, (x, d)) / x.shape[0],
            correct=jnp.sum(jnp.argmax(y, axis=-1) == labels),
            free_states=free.states, free_steps=free.steps, nudged_steps=second.steps,
            free_converged=free.converged, nudged_converged=second.converged,
            free_result=status_code(free), nudged_result=status_code(second))


def _check_supervised(model, x, d):
    if len(model.energy.inputs) != 2:
        raise ConfigError(
            f"`{model.energy.name}` has inputs {tuple(i.name for i in model.energy.inputs)}; EP "
            "and CHL on binary units need an energy with inputs (x, d), e.g. "
            "`layered_hopfield_energy(sizes)`."
        )
    check_batch(x, d)


class BinaryEP(_BinaryPhases):
    """Equilibrium propagation on binary units: `(dF/dtheta(m^beta) - dF/dtheta(m^0)) / beta`.

    With `MeanField` (the default) the phases are the mean-field fixed points `m = sigmoid(-dF(m)
    / T)`, stationary points of the variational free energy `E_q[F] - T H(q)` (`q` the
    factorised distribution with means `m`), so as `beta -> 0` the estimate tends to the
    gradient of the cost of the binary energy at the free fixed point's means. For the squared
    error on {0, 1} output units that cost is the expected one, `1/2 |m - d|^2 + 1/2 sum m (1 -
    m)`, linear in `m`: its gradient through the sigmoid vanishes once the outputs saturate, and
    they all switch off (92.9 % test error on digits, `benchmarks/bench_binary_rules.py`). Use a
    softmax readout, `layered_hopfield_energy(sizes, cost="cross_entropy")`: the cost is then
    the cross-entropy of the logits `rho(m_{L-1}) W_L + b_L`, its gradient `softmax - d` does not
    saturate, and EP learns. With `BlockGibbs` the phases are samples (a noisy estimate; not
    with a softmax readout). `stats.loss` is the cost at the free phase per example.

    **Arguments:** `beta` (a leaf), `relaxation` (default `MeanField(1e-9, 500, damping=0.5)`).
    """

    beta: Float[Array, ""] | float
    relaxation: MeanField | BlockGibbs

    def __init__(self, beta=0.1, relaxation: MeanField | BlockGibbs | None = None):
        self.beta = as_leaf(beta)
        self.relaxation = relaxation or MeanField(1e-9, 500, damping=0.5)

    def __call__(self, model, x, d, s0=None, *, key: PRNGKeyArray | None = None,
                 labels: Int[Array, " B"] | None = None):
        _check_supervised(model, x, d)
        if isinstance(self.relaxation, BlockGibbs) and model.system.mean_field_states:
            raise ConfigError(
                f"`BinaryEP` with `BlockGibbs` on `{model.energy.name}`: its softmax readout's "
                "cost is nonlinear in the states, so the nudged phase cannot be sampled by "
                "block Gibbs; use `MeanField` (the default)."
            )
        k1, k2 = jax.random.split(key) if key is not None else (None, None)
        beta = jnp.asarray(self.beta, x.dtype)
        free = self._relax(model, x, d, s0, jnp.zeros((), x.dtype), False, k1)
        nudged = self._relax(model, x, d, free.states, beta, False, k2)
        sys = model.system
        g0 = sys.param_grads(free.states, model.params, (x, d), 0.0)
        g1 = sys.param_grads(nudged.states, model.params, (x, d), beta)
        grads = tuple((a - b) / (beta * x.shape[0]) for a, b in zip(g1, g0))
        return grads, self._stats(model, x, d, free, nudged, labels)


class BinaryCHL(_BinaryPhases):
    """Contrastive Hebbian learning on binary units (the deterministic Boltzmann machine of
    Peterson & Anderson 1987): `dF/dtheta(output clamped to d) - dF/dtheta(free)`, the
    Boltzmann rule with the outputs as visibles; the limit `beta -> inf` of `beta` times
    `BinaryEP`'s estimate. `d` must be binary (one-hot targets).

    **Arguments:** `relaxation` (default `MeanField(1e-9, 500, damping=0.5)`).
    """

    relaxation: MeanField | BlockGibbs

    def __init__(self, relaxation: MeanField | BlockGibbs | None = None):
        self.relaxation = relaxation or MeanField(1e-9, 500, damping=0.5)

    def __call__(self, model, x, d, s0=None, *, key: PRNGKeyArray | None = None,
                 labels: Int[Array, " B"] | None = None):
        _check_supervised(model, x, d)
        if model.energy.output is not None:
            raise ConfigError(
                f"`BinaryCHL` clamps the output state to `d`, but `{model.energy.name}` reads its "
                "output out of a softmax readout (no output state); use an energy with output "
                "units (`layered_hopfield_energy(sizes)`), or `BinaryEP` for the readout."
            )
        check_binary("d", d, model.units)
        k1, k2 = jax.random.split(key) if key is not None else (None, None)
        zero = jnp.zeros((), x.dtype)
        free = self._relax(model, x, d, s0, zero, False, k1)
        clamped = self._relax(model, x, d, free.states, zero, True, k2)
        sys = model.system
        g0 = sys.param_grads(free.states, model.params, (x, d), zero)
        g1 = sys.param_grads(clamped.states, model.params, (x, d), zero)
        grads = tuple((a - b) / x.shape[0] for a, b in zip(g1, g0))
        return grads, self._stats(model, x, d, free, clamped, labels)
