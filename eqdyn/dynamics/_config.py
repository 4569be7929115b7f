"""`RelaxConfig`: the 0.1 settings of a relaxation, kept for one release as a factory of the
relaxation objects (`RelaxConfig(...).relaxation()`); every function that takes a relaxation
takes a `RelaxConfig` too."""

from __future__ import annotations

import diffrax
import equinox as eqx
import numpy as np

from .._errors import ConfigError
from ._anderson import Anderson
from ._base import AbstractRelaxation
from ._blocks import BlockSweeps
from ._fused import FusedEuler
from ._integrate import Integrate

__all__ = ["RelaxConfig", "SOLVERS", "BACKENDS", "as_relaxation"]

#: Solvers by name: (diffrax class, adaptive by default).
SOLVERS = {
    "euler": (diffrax.Euler, False),
    "heun": (diffrax.Heun, True),
    "midpoint": (diffrax.Midpoint, True),
    "ralston": (diffrax.Ralston, True),
    "bosh3": (diffrax.Bosh3, True),
    "tsit5": (diffrax.Tsit5, True),
    "dopri5": (diffrax.Dopri5, True),
    "dopri8": (diffrax.Dopri8, True),
    "kvaerno3": (diffrax.Kvaerno3, True),
    "kvaerno5": (diffrax.Kvaerno5, True),
}

ON_FAILURE = ("warn", "raise", "ignore")
#: "diffrax": `Integrate`; "fused": `FusedEuler`; "blocks": `BlockSweeps` (see each).
BACKENDS = ("diffrax", "fused", "blocks")


class RelaxConfig(eqx.Module):
    """How to relax: solver, step, stopping tolerance and horizon (the 0.1 settings).

    Kept for one release: `RelaxConfig(...).relaxation()` returns the equivalent relaxation
    object (same steps and states, tested), and whatever takes a relaxation takes a
    `RelaxConfig` too. New code passes the objects (`Integrate`, `FusedEuler`, `BlockSweeps`,
    `Langevin`).

    **Fields:**

    - `solver`: one of `SOLVERS` (`"euler"`, `"tsit5"`, `"dopri5"`, `"kvaerno5"`, ...).
    - `dt0`: initial (adaptive) or fixed (`euler`, or `adaptive=False`) step in time units.
      With a fixed step, choose `t1` a multiple of `dt0`: diffrax then takes exactly `dt0`
      per step (otherwise the steps after the first are spread evenly up to `t1`).
    - `tol`: steady state when `max |ds/dt| < tol` over the batch. `tol=0` turns the test
      off: every relaxation runs its full horizon (a fixed number of steps, `t1 / dt0`, the
      papers' protocol) and counts as converged (result `fixed_horizon`) when it got there
      with finite states; an adaptive solver then needs explicit `rtol` and `atol`.
    - `t1`: horizon; a relaxation that has not reached `tol` by then did not converge.
    - `max_steps`: solver step budget.
    - `adaptive`: PID step-size control (default: the solver's own default, see `SOLVERS`).
    - `rtol`, `atol`: PID tolerances for adaptive solvers; by default `rtol = tol` and
      `atol = tol / 100`. Looser local-error tolerances than the steady-state `tol` make an
      explicit adaptive solver hover at its stability limit (see `Integrate`).
    - `on_failure`: `"warn"`, `"raise"` or `"ignore"` when `relax` does not converge.
    - `backend`: `"diffrax"` (default: `Integrate`), `"fused"` (`FusedEuler`) or `"blocks"`
      (`BlockSweeps`; a "step" is then one sweep, the horizon is `min(max_steps, t1 / dt0)`
      sweeps and `t` counts sweeps).
    - `anderson`: memory `m` of Anderson acceleration of the block sweeps (`backend="blocks"`
      only; 0, the default, is off): `BlockSweeps(acceleration=Anderson(m))`, see `Anderson`.
    """

    solver: str = eqx.field(static=True, default="euler")
    dt0: float = eqx.field(static=True, default=0.5)
    tol: float = eqx.field(static=True, default=1e-4)
    t1: float = eqx.field(static=True, default=500.0)
    max_steps: int = eqx.field(static=True, default=4096)
    adaptive: bool | None = eqx.field(static=True, default=None)
    rtol: float | None = eqx.field(static=True, default=None)
    atol: float | None = eqx.field(static=True, default=None)
    on_failure: str = eqx.field(static=True, default="warn")
    backend: str = eqx.field(static=True, default="diffrax")
    anderson: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"`backend`={self.backend!r} is not known; use one of {BACKENDS}."
            )
        if self.backend in ("fused", "blocks") and self.solver != "euler":
            raise ConfigError(
                f"`backend`={self.backend!r} does not integrate with `solver`={self.solver!r} "
                "(fused is fixed-step Euler, blocks are exact block updates); keep "
                "solver='euler' with it, or use backend='diffrax' for other solvers."
            )
        if self.solver not in SOLVERS:
            raise ConfigError(
                f"`solver`={self.solver!r} is not known; choose one of {sorted(SOLVERS)}."
            )
        for name in ("dt0", "tol", "t1"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v)
                    and (v > 0 or (name == "tol" and v == 0))):
                raise ConfigError(f"`{name}`={v!r} must be a positive finite number"
                                  + (" (or 0: run the full horizon)." if name == "tol" else "."))
        if self.tol == 0 and self.is_adaptive and (self.rtol is None or self.atol is None):
            raise ConfigError(
                f"`tol`=0 (run the full horizon) with the adaptive `solver`={self.solver!r} "
                "leaves its step-size control without tolerances (rtol and atol default to tol): "
                "give `rtol` and `atol`, or use a fixed step (solver 'euler').")
        if not (isinstance(self.max_steps, int) and self.max_steps > 0):
            raise ConfigError(f"`max_steps`={self.max_steps!r} must be a positive integer.")
        if not (isinstance(self.anderson, int) and not isinstance(self.anderson, bool)
                and 0 <= self.anderson <= 32):
            raise ConfigError(f"`anderson`={self.anderson!r} must be an integer memory in "
                              "0..32 (0: plain block sweeps; 3-8 is usual).")
        if self.anderson and self.backend != "blocks":
            raise ConfigError(
                f"`anderson`={self.anderson} accelerates the block sweeps; it needs "
                f"backend='blocks', not {self.backend!r} (or set anderson=0).")
        if self.on_failure not in ON_FAILURE:
            raise ConfigError(
                f"`on_failure`={self.on_failure!r} is not known; use one of {ON_FAILURE}."
            )

    @property
    def max_iterations(self) -> int:
        """Steps (or sweeps) of the fixed-step backends: the horizon `t1 / dt0`, at most
        `max_steps`."""
        return min(int(np.ceil(self.t1 / self.dt0 - 1e-9)), self.max_steps)

    @property
    def is_adaptive(self) -> bool:
        return SOLVERS[self.solver][1] if self.adaptive is None else bool(self.adaptive)

    def solver_and_controller(self):
        """The diffrax solver and step-size controller these settings describe."""
        solver_cls, _ = SOLVERS[self.solver]
        if self.is_adaptive:
            rtol = self.tol if self.rtol is None else self.rtol
            atol = self.tol * 1e-2 if self.atol is None else self.atol
            return solver_cls(), diffrax.PIDController(rtol=rtol, atol=atol)
        return solver_cls(), diffrax.ConstantStepSize()

    def relaxation(self) -> AbstractRelaxation:
        """The relaxation object these settings describe, with the same steps and states:
        `Integrate` (backend "diffrax"), `FusedEuler` ("fused") or `BlockSweeps` ("blocks",
        `max_sweeps = max_iterations`, `Anderson(anderson)` when `anderson > 0`)."""
        if self.backend == "fused":
            return FusedEuler(dt=self.dt0, t1=self.t1, tol=self.tol, max_steps=self.max_steps)
        if self.backend == "blocks":
            return BlockSweeps(max_sweeps=self.max_iterations, tol=self.tol,
                               acceleration=Anderson(self.anderson) if self.anderson else None)
        solver, controller = self.solver_and_controller()
        return Integrate(solver, controller, dt0=self.dt0, t1=self.t1, tol=self.tol,
                         max_steps=self.max_steps)


def as_relaxation(relaxation) -> AbstractRelaxation:
    """`relaxation` as an `AbstractRelaxation` (a `RelaxConfig` is converted; `None` is the
    default `RelaxConfig()`'s)."""
    if relaxation is None:
        relaxation = RelaxConfig()
    if isinstance(relaxation, RelaxConfig):
        return relaxation.relaxation()
    if not isinstance(relaxation, AbstractRelaxation):
        raise ConfigError(
            f"`relaxation`={relaxation!r} is not a relaxation; pass an AbstractRelaxation "
            "(FusedEuler(...), BlockSweeps(...), Integrate(diffrax.Tsit5(), ...), ...) or a "
            "RelaxConfig.")
    return relaxation
