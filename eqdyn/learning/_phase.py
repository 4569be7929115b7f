"""One phase of a learning rule: a relaxation of the model at a given `beta`, deterministic or
noisy, through one call (`run_phase`)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._errors import ConfigError
from ..dynamics import RelaxConfig, RelaxResult, langevin, relax_core

__all__ = ["NoisyPhase", "run_phase", "is_noisy"]


class NoisyPhase(eqx.Module):
    """A phase with neuron noise: Euler-Maruyama at `temperature` for the whole horizon of
    `config` (fixed steps `config.dt0` up to `config.t1`), its `backend` picking the
    integrator ("fused" or "blocks": the fused loop; "diffrax": diffrax's SDE solve).

    The result reports what was measured: the residual of the deterministic field at the
    final (noisy) state, `converged` where that is below `config.tol`.
    """

    config: RelaxConfig = eqx.field(static=True)
    temperature: float = eqx.field(static=True)

    def __check_init__(self):
        t = self.temperature
        if not (isinstance(t, (int, float)) and t > 0 and t != float("inf")):
            raise ConfigError(f"`temperature`={t!r} must be a finite number > 0 (a noiseless "
                              "phase is a plain relaxation).")


def is_noisy(relaxation) -> bool:
    """Whether `relaxation` draws noise (and so needs a key)."""
    return isinstance(relaxation, NoisyPhase)


def run_phase(relaxation, model, x, s0, beta, d, key=None) -> RelaxResult:
    """Relax `model` from `s0` at `beta` (a Python zero for a free phase) with `relaxation`."""
    if not isinstance(relaxation, NoisyPhase):
        return relax_core(model, x, s0, beta, d, relaxation)
    if key is None:
        raise ConfigError("`key` is required with neuron noise (a noisy phase).")
    cfg = relaxation.config
    backend = "fused" if cfg.backend in ("fused", "blocks") else "diffrax"
    res = langevin(model, x, s0, temperature=relaxation.temperature, key=key, t1=cfg.t1,
                   dt=cfg.dt0, beta=beta, d=d, require_gibbs=False, backend=backend)
    states = res.states
    system = model.system
    params, inputs = model.params, model.inputs(x, d)
    real = jnp.real(jnp.asarray(x)).dtype
    field = system.field(states, params, inputs, beta)
    residual = jnp.real(system.residual(states, field)).astype(real)
    return RelaxResult(states, res.steps, residual, residual < cfg.tol,
                       jnp.asarray(cfg.t1, real))
