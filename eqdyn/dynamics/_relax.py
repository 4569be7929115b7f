"""Relaxation to equilibrium on diffrax, stopped by a steady-state event.

A relaxation integrates the derived field (`-dF/ds`, or its leaky-integrator form) from an
initial state until the residual `max |ds/dt|` over the batch falls below `tol` (a diffrax
`Event` whose condition is the system's steady-state residual, see
`CompiledSystem.residual`), or until the horizon `t1` / `max_steps` runs out, in which
case the result says it did not converge. The teacher enters only through `beta`.
"""

from __future__ import annotations

import warnings

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from .._compile import run_once
from .._errors import ConfigError, ConvergenceError

__all__ = ["RelaxConfig", "RelaxResult", "relax", "relax_core", "trajectory", "SOLVERS",
           "BACKENDS", "max_norm"]

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
#: "diffrax": `diffrax.diffeqsolve` with a steady-state `Event` (any solver).
#: "fused": the same fixed-step Euler relaxation and stopping rule as one `lax.while_loop` that
#: evaluates the field once per step (diffrax evaluates it again for the event condition).
#: "blocks": exact block updates (nonlinear Gauss-Seidel, i.e. block coordinate descent on F):
#: the states split into two classes with no coupling inside a class (odd and even layers of a
#: layered network), and each class in turn jumps to its exact minimiser given the other.
#: Leaky formulation only, where that minimiser is closed form; same fixed points, same
#: steady-state test, far fewer field evaluations (see `_relax_blocks`).
BACKENDS = ("diffrax", "fused", "blocks")


def max_norm(tree) -> Array:
    """The largest absolute entry of a pytree of arrays (the residual norm)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.max(jnp.stack([jnp.max(jnp.abs(a)) for a in leaves]))


class RelaxConfig(eqx.Module):
    """How to relax: solver, step, stopping tolerance and horizon.

    **Fields:**

    - `solver`: one of `SOLVERS` (`"euler"`, `"tsit5"`, `"dopri5"`, `"kvaerno5"`, ...).
    - `dt0`: initial (adaptive) or fixed (`euler`, or `adaptive=False`) step in time units.
      With a fixed step, choose `t1` a multiple of `dt0`: diffrax then takes exactly `dt0`
      per step (otherwise the steps after the first are spread evenly up to `t1`).
    - `tol`: steady state when `max |ds/dt| < tol` over the batch.
    - `t1`: horizon; a relaxation that has not reached `tol` by then did not converge.
    - `max_steps`: solver step budget.
    - `adaptive`: PID step-size control (default: the solver's own default, see `SOLVERS`).
    - `rtol`, `atol`: PID tolerances for adaptive solvers; by default `rtol = tol` and
      `atol = tol / 100`. Looser local-error tolerances than the steady-state `tol` make an
      explicit adaptive solver hover at its stability limit near the fixed point, with a
      residual that never falls below `tol` (measured: Tsit5 with rtol 1e-3 on a sigmoid
      784-256-256-10 net stalls at residual 5e-3; with rtol 1e-4, atol 1e-6 it converges to
      1e-4 in 10 steps).
    - `on_failure`: `"warn"`, `"raise"` or `"ignore"` when `relax` does not converge.
    - `backend`: `"diffrax"` (default) or `"fused"` (fixed-step Euler in one `lax.while_loop`,
      one field evaluation per step; same steps and states as diffrax's Euler when `t1` is a
      multiple of `dt0`, checked in the tests), or `"blocks"` (exact block updates of the
      leaky formulation, alternating the two uncoupled classes of states; a "step" is then one
      sweep, the horizon is `min(max_steps, t1 / dt0)` sweeps and `t` counts sweeps; same
      fixed points and steady-state test, checked in the tests).
    - `anderson`: memory `m` of Anderson acceleration of the block sweeps (`backend="blocks"`
      only; 0, the default, is off): each sweep's class-A result is mixed with the last `m`
      (per example, a least-squares fit of the residuals), restarting an example whose
      residual grew. Same steady-state test, so the same fixed points where the fixed point is
      unique (tested); where a network has several, an accelerated relaxation may settle in
      another (seen from zero states on an untrained 784-500-500-500-10 net). Measured in
      training (`benchmarks/bench_cost.py --anderson 5`, MNIST, hard sigmoid, warm particles
      after 200 batches, quiet run of 2026-12-03): free sweeps per batch 9.1 -> 6.4
      (784-500-10), 18.0 -> 8.8 (784-500-500-10), 19.6 -> 10.3 (784-128-128-10); the mixing
      adds about 110-130 us to a sweep at batch 20 on a 2-core CPU, so per batch it is about
      even with plain sweeps: 0.68-1.11x over five networks (faster on 784-500-500-10, 6.65
      -> 5.98 ms; slower on 784-500-10, 0.73 -> 1.07 ms), about 1.1x on 784-500-500-500-10
      mid-training. Off by default and in every preset.
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
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ConfigError(f"`{name}`={v!r} must be a positive finite number.")
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


class RelaxResult(eqx.Module):
    """The outcome of a relaxation.

    **Fields:** `states` (integrated variables, one `(B, n_k)` array per layer), `steps`
    (solver steps taken), `residual` (`max |ds/dt|` at the end), `converged`, `t` (time reached).
    """

    states: tuple[Float[Array, "B n"], ...]
    steps: Int[Array, ""]
    residual: Float[Array, ""]
    converged: Bool[Array, ""]
    t: Float[Array, ""]


class _Field(eqx.Module):
    """The system's field as a diffrax vector field, with the components of clamped states set
    to zero (a Module, so equal across calls: diffrax does not retrace)."""

    system: object = eqx.field(static=True)
    clamped: tuple[bool, ...] | None = eqx.field(static=True, default=None)

    def __call__(self, t, y, args):
        f = self.system.ode(t, y, args)
        if self.clamped is None:
            return f
        return tuple(jnp.zeros_like(a) if c else a for a, c in zip(f, self.clamped))

    def residual(self, y, f):
        return self.system.residual(y, f)

    def observe(self, y):
        return tuple(y)


class _PairField(eqx.Module):
    """A complex relaxation (holomorphic EP: complex `beta`) as a real one.

    The state is `(Re s_1, ..., Re s_n, Im s_1, ..., Im s_n)`; the field is the holomorphic
    extension of the system's field evaluated on `s = Re s + i Im s`, split the same way. Real
    pairs keep diffrax's times, step control and events real.
    """

    inner: _Field

    @property
    def system(self):
        return self.inner.system

    def observe(self, y):
        n = len(y) // 2
        return tuple(jax.lax.complex(a, b) for a, b in zip(y[:n], y[n:]))

    @staticmethod
    def pair_args(args):
        params, inputs, beta, consts = args
        split = lambda a: (jnp.real(a), jnp.imag(a))  # noqa: E731
        return params, inputs, split(beta), tuple(split(c) for c in consts)

    @staticmethod
    def unpair_args(args):
        params, inputs, beta, consts = args
        join = lambda p: jax.lax.complex(*p)  # noqa: E731
        return params, inputs, join(beta), tuple(join(c) for c in consts)

    def __call__(self, t, y, args):
        f = self.inner(t, self.observe(y), self.unpair_args(args))
        return tuple(jnp.real(a) for a in f) + tuple(jnp.imag(a) for a in f)

    def residual(self, y, f):
        return self.inner.system.residual(self.observe(y), self.observe(f))


class _Steady(eqx.Module):
    """Steady-state event condition: the system's residual of the (masked) field below `tol`."""

    field: _Field | _PairField
    tol: float = eqx.field(static=True)

    def __call__(self, t, y, args, **kwargs):
        return self.field.residual(y, self.field(t, y, args)) < self.tol


def _relax_fused(field, args, s0, config: RelaxConfig) -> RelaxResult:
    dtype = s0[0].dtype
    dt = jnp.asarray(config.dt0, dtype)
    n_max = config.max_iterations

    def cond(carry):
        _, _, r, k = carry
        return (r >= config.tol) & (k < n_max)

    def body(carry):
        y, f, _, k = carry
        y = tuple(a + dt * b for a, b in zip(y, f))
        f = field(None, y, args)
        return y, f, field.residual(y, f), k + 1

    f0 = field(None, tuple(s0), args)
    init = (tuple(s0), f0, field.residual(tuple(s0), f0), jnp.asarray(0, jnp.int32))
    y, _, r, k = jax.lax.while_loop(cond, body, init)
    converged = (r < config.tol) & jnp.isfinite(r)
    return RelaxResult(y, k, r, converged, k.astype(dtype) * dt)


def block_structure(field, args, s0, free_phase: bool = False):
    """How `backend="blocks"` splits the states: `(classes, alpha0, alpha1)`.

    Measured once per system and shapes on a random probe (batch 1, random parameters, states
    inside the activation's range): which states' fields depend on which states (Jacobian-vector
    products with random tangents), and, for every free state, that its own Jacobian block is
    `-alpha I` with `alpha = alpha0 + beta * alpha1` (a scalar: no lateral coupling, which is
    what makes its minimiser given the other states closed form, `u + f / alpha`). The coupling
    graph must be two-colourable (a layered network: odd and even layers); `classes` are the two
    colours. Raises `ConfigError` saying why when the energy does not have this structure.
    With `free_phase` it is enough that the structure holds at `beta = 0` (then `alpha1 = 0`):
    e.g. a softmax readout makes the nudged field of the last hidden layer depend nonlinearly
    on that layer, while the free phase still splits into closed-form block minimisers.
    """
    if free_phase:
        try:
            return block_structure(field, args, s0)
        except ConfigError:  # remembered: see the cache below
            pass
    system = field.system
    params, inputs, _, _ = args
    clamped = getattr(field, "clamped", None) or (False,) * len(s0)
    in_shapes = tuple((1, *np.shape(i)[1:]) if np.ndim(i) == 2 else np.shape(i) for i in inputs)
    key = (tuple(clamped), tuple(a.shape[1:] for a in s0), tuple(p.shape for p in params),
           in_shapes, free_phase)
    cache = system.__dict__.setdefault("_block_cache", {})  # lives and dies with the system
    if key in cache:
        if isinstance(cache[key], ConfigError):  # a refusal, probed once
            raise cache[key]
        return cache[key]
    try:
        out = _probe_blocks(field, system, params, inputs, s0, clamped, in_shapes, free_phase)
    except ConfigError as e:
        cache[key] = e
        raise
    cache[key] = out
    return out


def _probe_blocks(field, system, params, inputs, s0, clamped, in_shapes, free_phase):
    """The probe behind `block_structure` (uncached)."""
    if system.formulation != "leaky":
        raise ConfigError(
            "`backend`='blocks' needs the leaky formulation (du/dt = -u + ..., e.g. the hard "
            "sigmoid's default), where each layer's minimiser is closed form; this system uses "
            f"formulation={system.formulation!r}. Use backend='fused' or 'diffrax'."
        )
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)  # float32 unless x64 is on
    rng = np.random.default_rng(0)
    n = len(s0)
    P = tuple(np.asarray(rng.normal(size=p.shape) * 0.3, dtype) for p in params)
    X = tuple(np.asarray(rng.uniform(0.2, 0.8, size=sh), dtype) for sh in in_shapes)
    U = tuple(np.asarray(rng.uniform(0.2, 0.8, size=(1, *a.shape[1:])), dtype) for a in s0)
    V = tuple(np.asarray(rng.normal(size=u.shape), dtype) for u in U)
    betas = (0.0,) if free_phase else (0.0, 1.0, 2.0)
    probed = [k for k in range(n) if not clamped[k]]

    def jvps(U, V, P, X):  # every free state's tangent, at three values of beta: one program
        def f(u, beta):
            b = jnp.asarray(beta, dtype)
            return field(None, u, (P, X, b, system.constants(u, P, X, b)))

        out = []
        for beta in betas:
            for k in probed:
                v = tuple(V[j] if j == k else jnp.zeros_like(u) for j, u in enumerate(U))
                out.append(jax.jvp(lambda u: f(u, beta), (U,), (v,))[1])
        return out

    with jax.ensure_compile_time_eval():
        results = jax.device_get(run_once(jvps, U, V, P, X))
    coupled = [[False] * n for _ in range(n)]
    alphas = {}
    it = iter(results)
    for beta in betas:
        for k in probed:
            jv = next(it)
            scale = max(float(np.max(np.abs(a))) for a in jv) + 1.0
            for j in range(n):
                if j != k and not clamped[j] and float(np.max(np.abs(jv[j]))) > 1e-6 * scale:
                    coupled[j][k] = coupled[k][j] = True
            a = -float(np.vdot(jv[k], V[k]) / np.vdot(V[k], V[k]))
            if float(np.max(np.abs(jv[k] + a * V[k]))) > 1e-4 * scale:
                raise ConfigError(
                    f"`backend`='blocks': the field of state {system.state_names[k]!r} is "
                    "not `-alpha u + (terms of other states)` (a lateral or nonlinear "
                    "self-coupling, e.g. a softmax readout nudging the last hidden layer), so "
                    "its block minimiser is not closed form. Use backend='fused' or 'diffrax' "
                    "(in training, for the nudged phase alone: nudged_backend)."
                )
            alphas[beta, k] = a
    free = probed
    alpha0 = tuple(alphas.get((0.0, k), 0.0) for k in range(n))
    alpha1 = tuple(alphas.get((1.0, k), alpha0[k]) - alpha0[k] for k in range(n))
    for k in free if not free_phase else ():
        if abs(alphas[2.0, k] - (alpha0[k] + 2 * alpha1[k])) > 1e-4 * (1 + abs(alpha0[k])):
            raise ConfigError(
                f"`backend`='blocks': the self-coupling of state {system.state_names[k]!r} is "
                "not affine in beta; use backend='fused' or 'diffrax'."
            )
    colour: dict[int, int] = {}
    for start in free:
        if start in colour:
            continue
        colour[start] = 0
        stack = [start]
        while stack:
            k = stack.pop()
            for j in free:
                if coupled[k][j]:
                    if j not in colour:
                        colour[j] = 1 - colour[k]
                        stack.append(j)
                    elif colour[j] == colour[k]:
                        raise ConfigError(
                            "`backend`='blocks' alternates two classes of mutually uncoupled "
                            f"states, but the coupling graph of {system.state_names} has an odd "
                            f"cycle (through {system.state_names[k]!r} and "
                            f"{system.state_names[j]!r}, e.g. a skip connection). Use "
                            "backend='fused' or 'diffrax'."
                        )
    classes = tuple(tuple(k for k in free if colour[k] == c) for c in (0, 1))
    return classes, alpha0, alpha1


def _block_min(u, f, a, bounds):
    """The exact minimiser of `F` along one state's block, from its field `f = -a u + r`.

    `a > 0`: `u + f / a` (where `f` vanishes). `a <= 0` (e.g. `beta = -1` cancelling the
    output's leak): `F` is linear or concave along the block, so on the activation's range the
    minimum is at the bound the force points to (the leaky potential is put on that bound,
    where the steady-state test ignores an outward force); without bounds there is none (nan).
    """
    pos = a > 0
    inner = u + f / jnp.where(pos, a, 1.0)
    if bounds is None:
        return jnp.where(pos, inner, jnp.nan)
    lo, hi = bounds
    edge = jnp.where(f > 0, jnp.asarray(hi, u.dtype), jnp.where(f < 0, jnp.asarray(lo, u.dtype), u))
    return jnp.where(pos, inner, edge)


def _relax_blocks(field, args, s0, config: RelaxConfig, free_phase=False) -> RelaxResult:
    """Exact block updates (nonlinear Gauss-Seidel): class A, then class B, per sweep.

    After class B jumps to its minimiser its field is zero (to rounding), so the residual at
    the end of a sweep is that of class A, whose field is what the next sweep's update of A
    needs anyway: one field evaluation per class per sweep (XLA drops the other class's
    components), the same steady-state test as the integrators, and the same fixed points
    (those of `du/dt = f(u)`). Block coordinate descent on `F` in the observed states, so `F`
    never increases. `free_phase` (`beta` is a Python zero): the structure need only hold at
    `beta = 0`. With `config.anderson = m > 0` the sweep is the fixed-point map of class A
    (class B is a function of it) and `_anderson_mix` extrapolates its last `m` results
    before class B jumps: still two field evaluations per sweep, the same test, no descent
    guarantee.
    """
    (cls_a, cls_b), alpha0, alpha1 = block_structure(field, args, s0, free_phase)
    beta = args[2]
    dtype = s0[0].dtype
    alpha = tuple(jnp.asarray(a0, dtype) + beta * jnp.asarray(a1, dtype)
                  for a0, a1 in zip(alpha0, alpha1))
    bounds = field.system.activation.bounds
    n_max = config.max_iterations
    m = config.anderson

    def jump(y, f, cls):
        return tuple(_block_min(u, fk, alpha[k], bounds) if k in cls else u
                     for k, (u, fk) in enumerate(zip(y, f)))

    def only(f, cls):
        return tuple(fk if k in cls else jnp.zeros_like(fk) for k, fk in enumerate(f))

    def cond(carry):
        _, _, r, k, _ = carry
        return (r >= config.tol) & (k < n_max)

    def body(carry):
        y, f_a, _, k, hist = carry
        g = jump(y, f_a, cls_a)  # the sweep map's value at class A: G(x_k)
        if m:
            x_next, hist = _anderson_mix(tuple(y[i] for i in cls_a),
                                         tuple(g[i] for i in cls_a), hist, k, m, config.tol)
            g = _put(g, cls_a, x_next)
        y = jump(g, field(None, g, args), cls_b)
        f_a = only(field(None, y, args), cls_a)
        return y, f_a, field.residual(y, f_a), k + 1, hist

    y0 = tuple(s0)
    f0 = field(None, y0, args)
    hist = None
    if m:
        hist = _anderson_history(tuple(y0[i] for i in cls_a), m)
    init = (y0, only(f0, cls_a), field.residual(y0, f0), jnp.asarray(0, jnp.int32), hist)
    y, _, r, k, _ = jax.lax.while_loop(cond, body, init)
    converged = (r < config.tol) & jnp.isfinite(r)
    return RelaxResult(y, k, r, converged, k.astype(dtype))


def _put(y, cls, parts):
    """`y` with its states of `cls` replaced by `parts` (in the order of `cls`)."""
    out = list(y)
    for i, p in zip(cls, parts):
        out[i] = p
    return tuple(out)


#: an example restarts its Anderson history when its residual norm grows by more than this
_ANDERSON_RESTART = 1.0


def _anderson_history(x, m):
    """The empty history of `_anderson_mix` for iterates shaped like `x` (a tuple of `(B, n_i)`
    arrays, handled as one `(B, n)` state, `n = sum n_i`): the differences of the last `m`
    values of `G` and of the residual (`(B, m, n)`, the slot axis after the batch), the
    previous `G` and residual, the Gram matrices of the residual differences (`(B, m, m)`),
    the previous squared residual norm `(B,)` and which slots hold a difference `(B, m)`."""
    b, n = x[0].shape[0], sum(a.shape[1] for a in x)
    dt = jnp.result_type(*(a.dtype for a in x))
    z = jnp.zeros((b, m, n), dt)
    return (z, z, jnp.zeros((b, n), dt), jnp.zeros((b, n), dt), jnp.zeros((b, m, m), dt),
            jnp.zeros((b,), dt), jnp.zeros((b, m), bool))


#: memories above this solve Anderson's normal equations with LAPACK (the unrolled
#: factorisation traces ~m^3/6 operations)
_UNROLLED_SOLVE_MAX = 8


def _spd_solve(a, b):
    """Solve `a x = b` for a batch of small symmetric positive definite matrices (`a`
    `(B, m, m)`, `b` `(B, m)`) by a Cholesky factorisation unrolled over `m`: a few dozen
    elementwise operations on `(B,)` lanes, which XLA fuses, instead of a LAPACK call (and its
    copies) per sweep. Pivots are floored at the dtype's smallest normal number (a round-off
    pivot then gives a huge, non-finite or merely poor solution, which `_anderson_mix` turns
    into a plain step). Above `_UNROLLED_SOLVE_MAX` it is `jnp.linalg.solve`."""
    m = a.shape[-1]
    if m > _UNROLLED_SOLVE_MAX:
        return jnp.linalg.solve(a, b[..., None])[..., 0]
    zero = jnp.zeros_like(b[:, 0])
    floor = jnp.finfo(b.dtype).tiny
    low = [[None] * m for _ in range(m)]
    for j in range(m):
        low[j][j] = jnp.sqrt(jnp.maximum(
            a[:, j, j] - sum((low[j][k] ** 2 for k in range(j)), zero), floor))
        for i in range(j + 1, m):
            low[i][j] = (a[:, i, j] - sum((low[i][k] * low[j][k] for k in range(j)), zero)) \
                / low[j][j]
    y = []
    for i in range(m):  # L y = b
        y.append((b[:, i] - sum((low[i][k] * y[k] for k in range(i)), zero)) / low[i][i])
    x = [None] * m
    for i in reversed(range(m)):  # L^T x = y
        x[i] = (y[i] - sum((low[k][i] * x[k] for k in range(i + 1, m)), zero)) / low[i][i]
    return jnp.stack(x, axis=-1)


def _anderson_mix(x, gx, hist, k, m, tol=0.0):
    """One step of Anderson acceleration (type II, memory `m`) of the fixed-point map `G`.

    `x`: the iterate `x_k` and `gx`: `G(x_k)`, tuples of `(B, n_i)` arrays (the class-A states,
    mixed as one vector per example); every example of the batch is its own fixed-point
    problem with its own mixing coefficients. Returns `x_{k+1} = G(x_k) - dG gamma` with
    `gamma` the (lightly regularised) least-squares fit `min |g_k - dg gamma|` of the residual
    `g = G(x) - x` by the last `m` residual differences `dg` (slot `(k - 1) mod m`, circular), and the
    new history (see `_anderson_history`); at `k = 0` (no history) it is the plain step
    `G(x_0)`. The fixed points are those of `G`: at one, `g = 0` and the mix returns `G(x)`.
    `tol`: an example whose residual's 2-norm is below it takes the plain step (stricter than
    the relaxation's max-norm test, so examples near rest are still mixed a little longer).

    Written for a CPU at small batches, where each XLA kernel costs microseconds whatever its
    size: the Gram matrices are carried and updated by one row per step (batched
    matrix-vector products), a restart masks slots instead of zeroing the history, the solve is
    an unrolled Cholesky (`_spd_solve`), and no row reduction is left to YNNPACK (tens of
    microseconds each here). Measured on 784-500-500-500-10 at batch 20 (fixed sweeps, quiet
    machine): about 110-130 us per sweep over a plain sweep's 320-350 us, down from ~200 us
    in commit 1888fc2 (LAPACK solve, zeroed histories, a YNNPACK row maximum) and ~450 us
    before it (Gram matrices recomputed each sweep by batched einsums over `(m, B, n)`).
    """
    h_g, h_r, g_prev, r_prev, gram, n_prev, valid = hist
    sizes = [a.shape[1] for a in x]
    dt = h_g.dtype  # the history's (carried) dtype, whatever a jump promoted G(x) to
    cat = (lambda t: t[0].astype(dt)) if len(x) == 1 else (
        lambda t: jnp.concatenate([a.astype(dt) for a in t], axis=1))
    g = cat(gx)
    r = g - cat(x)
    slot = jnp.mod(k - 1, m)
    # no differences before sweep 2: the first sweep's class-A jump used the initial class-B
    # states, not the minimisers given x_0, so (x_0, G(x_0)) is off the map's graph
    record = k >= 2
    new_r = r - r_prev
    h_g = h_g.at[:, slot].set(g - g_prev)
    h_r = h_r.at[:, slot].set(new_r)
    row = jnp.matmul(h_r, new_r[:, :, None])[..., 0]  # (B, m): the new slot against all
    rhs = jnp.matmul(h_r, r[:, :, None])[..., 0]
    gram = gram.at[:, slot, :].set(row).at[:, :, slot].set(row)
    norm = jnp.matmul(r[:, None, :], r[:, :, None])[:, 0, 0]  # |g_k|^2
    # safeguard: an example whose residual grew (the map's kinks, e.g. units crossing the
    # hard sigmoid's bounds, broke the local linear model) forgets its whole history
    keep = ~record | (norm <= _ANDERSON_RESTART * n_prev)
    valid = valid.at[:, slot].set(record) & keep[:, None]
    # slots never filled or forgotten are selected away (not multiplied by 0: a forgotten
    # slot may hold a non-finite difference)
    a = jnp.where(valid[:, :, None] & valid[:, None, :], gram, 0.0)
    rhs = jnp.where(valid, rhs, 0.0)
    scale = jnp.trace(a, axis1=1, axis2=2)[:, None, None] / m
    eps = jnp.finfo(dt).eps
    reg = (100 * eps * scale + jnp.finfo(dt).tiny) * jnp.eye(m, dtype=dt)
    gamma = _spd_solve(a + reg, rhs)  # exactly 0 on empty slots (their rhs is 0)
    # plain steps for an example whose fit failed, or whose residual's 2-norm is already
    # below `tol` (so is its max-norm, the loop's test; mixing would only amplify rounding)
    ok = jnp.all(jnp.isfinite(gamma), axis=1) & ~(norm < tol * tol)
    mix = sum(jnp.where(valid[:, i:i + 1], gamma[:, i:i + 1] * h_g[:, i], 0.0)
              for i in range(m))
    x_next = jnp.where(ok[:, None], g - mix, g)
    out, o = [], 0
    for a_i, n_i in zip(x, sizes):
        out.append(x_next[:, o:o + n_i].astype(a_i.dtype))
        o += n_i
    return tuple(out), (h_g, h_r, g, r, gram, norm, valid)


def relax_core(model, x, s0, beta, d, config: RelaxConfig, clamped=None) -> RelaxResult:
    """Jittable relaxation of `model` with input `x`, target `d` and nudging `beta` from `s0`.

    `clamped` (optional, one bool per state) holds the flagged states at their values in `s0`
    (their field is masked to zero), e.g. the output in contrastive Hebbian learning.

    A complex `beta` (holomorphic EP) relaxes the holomorphic extension of the dynamics: the
    states are complex (real parts and imaginary parts integrated as real arrays) and so are
    the returned ones; the activation must be holomorphic.
    """
    system = model.system
    field = _Field(system, None if clamped is None else tuple(bool(c) for c in clamped))
    params = model.params
    inputs = model.inputs(x, d)
    real_dtype = jnp.real(jnp.asarray(s0[0])).dtype
    if jnp.iscomplexobj(beta) or jnp.iscomplexobj(s0[0]):
        cdtype = jnp.result_type(real_dtype, jnp.complex64)
        beta = jnp.asarray(beta, dtype=cdtype)
        s0 = tuple(jnp.asarray(a, cdtype) for a in s0)
        consts = system.constants(s0, params, inputs, beta)
        pair = _PairField(field)
        y0 = tuple(jnp.real(a) for a in s0) + tuple(jnp.imag(a) for a in s0)
        args = _PairField.pair_args((params, inputs, beta, consts))
        res = _relax_real(pair, args, y0, config, real_dtype)
        return RelaxResult(pair.observe(res.states), res.steps, res.residual, res.converged,
                           res.t)
    free_phase = _python_zero(beta)
    beta = jnp.asarray(beta, dtype=s0[0].dtype)
    consts = system.constants(s0, params, inputs, beta)
    return _relax_real(field, (params, inputs, beta, consts), tuple(s0), config, real_dtype,
                       free_phase)


def _python_zero(beta) -> bool:
    """Whether `beta` is a zero known at trace time (a Python or NumPy number, not a traced
    array): a free phase, whose block structure may hold where a nudged one's does not (a
    softmax readout couples the last layer to itself)."""
    return (isinstance(beta, (int, float, np.number)) and not isinstance(beta, bool)
            and beta == 0)


def _relax_real(field, args, s0, config: RelaxConfig, dtype, free_phase=False) -> RelaxResult:
    if config.backend == "fused":
        return _relax_fused(field, args, s0, config)
    if config.backend == "blocks":
        if isinstance(field, _PairField):
            raise ConfigError(
                "`backend`='blocks' relaxes real states only; holomorphic EP (complex beta) "
                "needs backend='fused' or 'diffrax'."
            )
        return _relax_blocks(field, args, s0, config, free_phase)

    solver, controller = config.solver_and_controller()
    event = diffrax.Event(_Steady(field, config.tol))
    # times in the state's dtype, so a float32 model stays float32 under x64
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        solver,
        t0=jnp.asarray(0.0, dtype),
        t1=jnp.asarray(config.t1, dtype),
        dt0=jnp.asarray(config.dt0, dtype),
        y0=tuple(s0),
        args=args,
        saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=controller,
        event=event,
        max_steps=config.max_steps,
        throw=False,
    )
    states = tuple(a[-1] for a in sol.ys)
    residual = field.residual(states, field(0.0, states, args))
    converged = (sol.result == diffrax.RESULTS.event_occurred) | (residual < config.tol)
    converged = converged & jnp.isfinite(residual)
    return RelaxResult(states, sol.stats["num_steps"], residual, converged, sol.ts[-1])


_relax_jit = eqx.filter_jit(relax_core)


class Trajectory(eqx.Module):
    """States and field of a relaxation saved at given times (see `trajectory`).

    **Fields:** `ts` `(T,)`; `states` and `field` one `(T, B, n_k)` array per state
    (integrated variables and their time derivatives); `steps` (solver steps taken).
    """

    ts: Array
    states: tuple[Array, ...]
    field: tuple[Array, ...]
    steps: Array


def trajectory(model, x, s0, ts, *, beta=0.0, d=None, config: RelaxConfig | None = None):
    """Integrate the dynamics from `s0` at nudging `beta` and save the state at the times `ts`.

    No steady-state event: the solve runs to `ts[-1]` (one compiled program per shape).
    `config` gives the solver, `dt0`, tolerances and `max_steps` (its `t1` and `tol` are not
    used). Returns a `Trajectory`.
    """
    config = config or RelaxConfig()
    dtype = s0[0].dtype
    # beta and the times as arrays: Python floats would be static and recompile per value
    return _trajectory(model, x, tuple(s0), jnp.asarray(ts, dtype), jnp.asarray(beta, dtype),
                       d, config)


@eqx.filter_jit
def _trajectory(model, x, s0, ts, beta, d, config):
    system = model.system
    field = _Field(system)
    params = model.params
    inputs = model.inputs(x, d)
    dtype = s0[0].dtype
    beta = jnp.asarray(beta, dtype)
    ts = jnp.asarray(ts, dtype)
    args = (params, inputs, beta, system.constants(s0, params, inputs, beta))
    solver, controller = config.solver_and_controller()
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), solver, t0=jnp.asarray(0.0, dtype), t1=ts[-1],
        dt0=jnp.asarray(config.dt0, dtype), y0=tuple(s0), args=args,
        saveat=diffrax.SaveAt(ts=ts), stepsize_controller=controller,
        max_steps=config.max_steps,
    )
    f = jax.vmap(lambda y: field(0.0, y, args))(sol.ys)
    return Trajectory(ts, tuple(sol.ys), tuple(f), sol.stats["num_steps"])


def _check_batch(name, a, shape_tail, hint):
    a = jnp.asarray(a)
    if a.ndim != 2 or a.shape[1:] != shape_tail:
        raise ConfigError(f"`{name}` has shape {a.shape}; expected (batch, {shape_tail[0]}). {hint}")
    if not bool(jnp.all(jnp.isfinite(a))):
        raise ConfigError(f"`{name}` contains NaN or inf; clean the data before relaxing.")
    return a


def relax(
    model,
    x: Float[Array, "B n_in"],
    s0=None,
    *,
    beta: float = 0.0,
    d: Float[Array, "B n_out"] | None = None,
    config: RelaxConfig | None = None,
) -> RelaxResult:
    """Relax `model` to equilibrium for the input batch `x`.

    **Arguments:**

    - `model`: an `eqdyn.AbstractEnergyModel` (e.g. `LayeredHopfield`, `EnergyModel`).
    - `x`: clamped input, shape `(B, n_in)`.
    - `s0`: initial state (tuple of `(B, n_k)` arrays); zeros if `None`.
    - `beta`: nudging strength (0 for the free phase).
    - `d`: target for the output, shape `(B, n_out)`; required when `beta != 0`.
    - `config`: a `RelaxConfig`.

    **Returns:** a `RelaxResult`. Warns (`RuntimeWarning`) or raises `ConvergenceError` per
    `config.on_failure` when the steady state was not reached; always raises on non-finite states.
    """
    config = config or RelaxConfig()
    x = _check_batch("x", x, (model.input_size,), "Flatten inputs to rows.")
    if d is not None:
        d = _check_batch("d", d, (model.n_outputs,), "Targets are one row per example.")
        if d.shape[0] != x.shape[0]:
            raise ConfigError(f"`d` has {d.shape[0]} rows but `x` has {x.shape[0]}.")
    elif beta != 0:
        raise ConfigError(f"`beta`={beta} nudges the output, so a target `d` is required.")
    if s0 is None:
        s0 = model.init_state(x.shape[0], x.dtype)
    else:
        s0 = tuple(jnp.asarray(s) for s in s0)
        want = tuple((x.shape[0], n) for n in model.state_sizes)
        got = tuple(s.shape for s in s0)
        if got != want:
            raise ConfigError(f"`s0` has shapes {got}; expected {want} (one array per layer).")
    # beta as an array: a Python float would be a static argument and recompile per value;
    # except zero, which tells the block sweeps they relax a free phase
    res = _relax_jit(model, x, s0, 0.0 if _python_zero(beta) else jnp.asarray(beta, x.dtype),
                     d, config)
    if not np.isfinite(float(res.residual)):
        raise ConvergenceError(
            f"the relaxation produced non-finite states (residual {float(res.residual)}) with "
            f"solver {config.solver!r}, dt0={config.dt0}; reduce `dt0`, use an adaptive solver, "
            "or check the weights for divergence."
        )
    if not bool(res.converged) and config.on_failure != "ignore":
        msg = (
            f"relaxation did not reach a steady state: residual {float(res.residual):.3g} > "
            f"tol {config.tol:g} after {int(res.steps)} steps (t = {float(res.t):g}, horizon "
            f"t1 = {config.t1:g}). Increase `t1`/`max_steps`, loosen `tol`, or change `solver`."
        )
        if config.on_failure == "raise":
            raise ConvergenceError(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return res
