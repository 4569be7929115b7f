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


def convergence_study(archs=(), *, activation: str = "sigmoid", batch: int = 8,
                      solvers=("euler", "tsit5"), tol: float = 1e-4, seed: int = 0,
                      dtype=jnp.float64, t1: float = 4000.0, run_dirs=()) -> ConvergenceStudy:
    """Settling time and Jacobian spectrum of Glorot-initialised networks of each `arch`, and
    of the trained networks in `run_dirs`.

    **Arguments:**

    - `archs`: architectures, e.g. `["20-32-10", "20-32-32-10"]` or tuples of sizes.
    - `activation`: of the `LayeredHopfield` networks.
    - `batch`: random inputs, uniform in [0, 1], seeded by `seed` (weights too); for a trained
      network, the first `batch` test examples of its data set.
    - `solvers`: names from `eqdyn.dynamics.SOLVERS` (Euler with dt 0.5, others adaptive), or
      `"blocks"` (exact block sweeps, leaky formulation only).
    - `tol`: the steady-state residual; `t1` the horizon.
    - `run_dirs`: directories written by `eqdyn train --run-dir` (their last checkpoint, cast
      to `dtype`), studied beside the random networks (`trained` in the rows).
    """
    if not archs and not run_dirs:
        raise ConfigError("`archs` is empty; give at least one architecture, e.g. ['20-32-10'], "
                          "or a trained run in `run_dirs`.")
    rows = []
    for arch in archs:
        sizes = parse_arch(arch) if isinstance(arch, str) else tuple(arch)
        key = jax.random.PRNGKey(seed)
        model = LayeredHopfield(sizes, activation, key=key, dtype=dtype)
        x = jax.random.uniform(jax.random.fold_in(key, 1), (batch, sizes[0]), dtype)
        rows.append(_study_one(model, x, sizes, solvers, tol, t1, dtype))
    for run_dir in run_dirs:
        from ..data import load_dataset
        from ..training import load_trained

        model, cfg, epoch = load_trained(run_dir, dtype=dtype)
        data = load_dataset(cfg.dataset, cfg.data_dir)
        x = jnp.asarray(data.x_test[:batch], dtype)
        row = _study_one(model, x, parse_arch(cfg.arch), solvers, tol, t1, dtype)
        row.update(trained=dict(run_dir=str(run_dir), epochs=epoch, dataset=cfg.dataset,
                                activation=cfg.activation))
        rows.append(row)
    return ConvergenceStudy(rows, float(tol), activation, tuple(solvers))


def _study_one(model, x, sizes, solvers, tol, t1, dtype) -> dict:
    batch = x.shape[0]
    s0 = model.init_state(batch, dtype)
    steps, seconds = {}, {}
    euler_res = None
    for name in solvers:
        if name == "blocks":
            cfg = RelaxConfig(backend="blocks", dt0=0.5, tol=tol, t1=t1, max_steps=100000,
                              on_failure="ignore")
        else:
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
        if name == "euler" or (euler_res is None and name != "blocks"):
            euler_res = res  # the Euler run, or the first solver's if Euler is not listed
    if euler_res is None:
        raise ConfigError(f"`solvers`={tuple(solvers)!r} needs one integrator besides 'blocks' "
                          "(the settling time and energy are measured along its trajectory).")
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
    return dict(
        arch="-".join(map(str, sizes)), depth=len(sizes) - 2,
        width=int(max(sizes[1:-1], default=0)),
        steps=steps, seconds=seconds, t_settle=float(euler_res.t),
        converged=bool(euler_res.converged), slowest_rate=slowest, fastest_rate=fastest,
        predicted_t=float(np.log(1.0 / tol) / slowest) if slowest > 0 else None,
        energy_increase=increase, energies=energies.tolist(),
        energy_times=[float(t) for t in ts], trained=None,
    )
