"""One phase of a learning rule: a relaxation of the model at a given `beta`, deterministic or
noisy (a `Langevin` relaxation, which needs a key), through one call (`run_phase`)."""

from __future__ import annotations

from ..dynamics import Langevin, RelaxConfig, RelaxResult, Spiking, relax_core

__all__ = ["run_phase", "is_noisy", "noisy_phase"]


def is_noisy(relaxation) -> bool:
    """Whether `relaxation` draws noise (and so needs a key): `Langevin`, `Spiking`."""
    return isinstance(relaxation, (Langevin, Spiking))


def noisy_phase(config: RelaxConfig, temperature) -> Langevin:
    """The noisy counterpart of the phase `config` describes: Euler-Maruyama at `temperature`
    with its step `dt0` for its whole horizon `t1`, fused for the fixed-step backends (block
    sweeps have no noisy counterpart) and diffrax's SDE solve for `backend="diffrax"`."""
    backend = "fused" if config.backend in ("fused", "blocks") else "diffrax"
    return Langevin(temperature, dt=config.dt0, t1=config.t1, tol=config.tol, backend=backend)


def run_phase(relaxation, model, x, s0, beta, d, key=None) -> RelaxResult:
    """Relax `model` from `s0` at `beta` (a Python zero for a free phase) with `relaxation`;
    `key` only for a noisy one."""
    return relax_core(model, x, s0, beta, d, relaxation, key=key if is_noisy(relaxation) else None)
