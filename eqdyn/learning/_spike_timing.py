"""EP's update from the spike-based STDP rule: `SpikeTiming`, a nudging whose nudged phase is a
spiking network that accumulates `d/dt dF/dtheta` along its synaptic traces.

EP's one-sided estimate is `(1/beta) [dF/dtheta(s^beta) - dF/dtheta(s^0)]`; along the nudged
phase that difference is the time integral of `d/dt dF/dtheta`, which for a weight is
`-(r_i dr_j/dt + r_j dr_i/dt)`: presynaptic activity times the rate of change of the
postsynaptic one, and the reverse (the STDP form, Bengio et al. 2015), here on the traces
`r` of the spikes (`CompiledSystem.param_rates_at_rates`). `Spiking(stdp=True)` accumulates
it step by step; the estimate averages the running integral over the phase's averaging window,
as `readout="traces"` averages the traces.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._errors import ConfigError
from ..dynamics import RESULTS, Spiking, relax_problem
from ._nudging import AbstractNudging

__all__ = ["SpikeTiming"]


class SpikeTiming(AbstractNudging):
    """One spiking nudged phase at `+beta` (or, with `random_sign`, at `+-beta`, the sign
    drawn per batch) whose weight update is the STDP form of the rule accumulated along the
    spike traces. The nudged relaxation must be `Spiking(..., stdp=True)`; the free one a
    `Spiking(..., readout="traces")` (the nudged phase starts from its averaged traces)."""

    random_sign: bool = True
    needs_key = True

    def estimate(self, model, x, d, free_states, beta, relaxation, key):
        if not (isinstance(relaxation, Spiking) and relaxation.stdp):
            raise ConfigError(f"`SpikeTiming` needs a spiking nudged phase that accumulates "
                              f"the STDP rule, Spiking(..., stdp=True); got {relaxation!r}.")
        if key is None:
            raise ConfigError("`key` is required for SpikeTiming nudging (spikes are drawn).")
        k_sign, k_spikes = jax.random.split(key)
        if self.random_sign:
            beta = jnp.where(jax.random.bernoulli(k_sign), beta, -beta)
        system, params, inputs = model.system, model.params, model.inputs(x, d)
        rec = relaxation.simulate(relax_problem(model, x, free_states, beta, d), key=k_spikes)
        # switching the cost on at the start moves dF/dtheta by beta dC/dtheta (a readout's
        # weights); the traces' integral carries the rest
        jump = tuple(a - b for a, b in zip(
            system.param_grads(free_states, params, inputs, beta),
            system.param_grads(free_states, params, inputs, 0.0)))
        scale = 1.0 / (beta * x.shape[0])
        grads = tuple(scale * (g + j) for g, j in zip(rec.stdp, jump))
        residual = relax_problem(model, x, rec.states, beta, d).residual(rec.states)
        converged = jnp.isfinite(residual)
        result = RESULTS.where(converged, RESULTS.fixed_horizon, RESULTS.nonfinite)
        return grads, rec.steps, converged, jnp.asarray(result._value, jnp.int32)
