"""Convergence of the free relaxation: settling time against depth and width, and its cause.

For each architecture: relax a batch from zero states with each solver to `tol` and record the
solver steps and the time `t*` the steady state was reached; at the fixed point, the spectrum
of the field's Jacobian per example (decay rates `-Re lambda`), whose slowest rate `r_min`
predicts the settling time of the last stretch, `t ~ log(r0 / tol) / r_min` (`r0` the
residual at which the linear regime starts, taken as 1); and along the Euler trajectory, the
energy `F`, which must never increase (the dynamics are a gradient flow, or its leaky form,
whose fixed points are the minima of F on the box).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ConfigError
from ..dynamics import RelaxConfig, relax_core, trajectory
from ..models import LayeredHopfield, parse_arch
from ._early import field_jacobians

__all__ = ["ConvergenceStudy", "convergence_study"]


@dataclasses.dataclass
class ConvergenceStudy:
    """The record `convergence_study` returns: one dict per architecture in `rows` with
    `arch`, `depth` (hidden layers), `width`, `steps` and `seconds` per solver, `t_settle`
    (time the Euler relaxation reached tol), `slowest_rate`, `fastest_rate` (over the batch),
    `predicted_t` (`log(1/tol) / slowest_rate`), `energy_increase` (largest increase of F
    between saved times of the Euler trajectory, relative to |F|)."""

    rows: list
    tol: float
    activation: str
    solvers: tuple

    def to_json(self) -> dict:
        return dict(rows=self.rows, tol=self.tol, activation=self.activation,
                    solvers=list(self.solvers))


def convergence_study(archs, *, activation: str = "sigmoid", batch: int = 8,
                      solvers=("euler", "tsit5"), tol: float = 1e-4, seed: int = 0,
                      dtype=jnp.float64, t1: float = 4000.0) -> ConvergenceStudy:
    """Settling time and Jacobian spectrum of Glorot-initialised networks of each `arch`.

    **Arguments:**

    - `archs`: architectures, e.g. `["20-32-10", "20-32-32-10"]` or tuples of sizes.
    - `activation`: of the `LayeredHopfield` networks.
    - `batch`: random inputs, uniform in [0, 1], seeded by `seed` (weights too).
    - `solvers`: names from `eqdyn.dynamics.SOLVERS` (Euler with dt 0.5, others adaptive).
    - `tol`: the steady-state residual; `t1` the horizon.
    """
    if not archs:
        raise ConfigError("`archs` is empty; give at least one architecture, e.g. ['20-32-10'].")
    rows = []
    for arch in archs:
        sizes = parse_arch(arch) if isinstance(arch, str) else tuple(arch)
        key = jax.random.PRNGKey(seed)
        model = LayeredHopfield(sizes, activation, key=key, dtype=dtype)
        x = jax.random.uniform(jax.random.fold_in(key, 1), (batch, sizes[0]), dtype)
        s0 = model.init_state(batch, dtype)
        steps, seconds = {}, {}
        euler_res = None
        for name in solvers:
            cfg = RelaxConfig(solver=name, dt0=0.5, tol=tol, t1=t1, max_steps=100000,
                              on_failure="ignore")
            run = jax.jit(lambda m, x, s, c=cfg: relax_core(m, x, s, 0.0, None, c))
            res = run(model, x, s0)
            jax.block_until_ready(res.states)
            t0 = time.perf_counter()
            res = run(model, x, s0)
            jax.block_until_ready(res.states)
            seconds[name] = time.perf_counter() - t0
            steps[name] = int(res.steps) if bool(res.converged) else None
            if name == "euler" or euler_res is None:
                euler_res = res  # the Euler run, or the first solver's if Euler is not listed
        jac, _ = field_jacobians(model, x, None, euler_res.states)
        rates = -np.linalg.eigvals(np.asarray(jac)).real
        slowest = float(np.min(rates))
        fastest = float(np.max(rates))
        # energy along the Euler trajectory
        t_end = max(float(euler_res.t), 1.0)
        ts = jnp.linspace(t_end / 50, t_end, 50, dtype=dtype)
        tr = trajectory(model, x, s0, ts, config=RelaxConfig(
            solver="euler", dt0=0.5, max_steps=int(np.ceil(t_end / 0.5)) + 16))
        inputs = model.inputs(x, None)
        energies = np.asarray(jax.vmap(
            lambda st: model.system.energy(st, model.params, inputs, 0.0))(tr.states))
        increase = float(np.max(np.diff(energies)) / max(1e-30, np.max(np.abs(energies))))
        rows.append(dict(
            arch="-".join(map(str, sizes)), depth=len(sizes) - 2,
            width=int(max(sizes[1:-1], default=0)),
            steps=steps, seconds=seconds, t_settle=float(euler_res.t),
            converged=bool(euler_res.converged), slowest_rate=slowest, fastest_rate=fastest,
            predicted_t=float(np.log(1.0 / tol) / slowest) if slowest > 0 else None,
            energy_increase=increase, energies=energies.tolist(),
            energy_times=[float(t) for t in ts],
        ))
    return ConvergenceStudy(rows, float(tol), activation, tuple(solvers))
