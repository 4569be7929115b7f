"""Exact and classical reference gradients to compare Equilibrium Propagation against.

All four follow `ep_gradient`'s convention: they return `(grads, aux)`, `grads` a tuple in the
order of `model.params` holding the gradient of the MEAN cost over the batch (descend it), and
`aux` a small `equinox.Module` of diagnostics.

- `rbp_gradient`: recurrent backprop (Almeida-Pineda), i.e. implicit differentiation of the
  free fixed point. Exact for `J = C(s*)/B`; EP's estimate tends to it as `beta -> 0`.
- `bptt_gradient`: backprop through time through `n_steps` fixed Euler steps of the free
  dynamics. Exact for the truncated computation; tends to `rbp_gradient` as the horizon grows.
- `chl_gradient`: contrastive Hebbian learning, the second phase with the output clamped to
  the target (EP's `beta -> infinity` limit, without the `1/beta`).
- `feedforward_backprop_gradient`: ordinary backprop through the feedforward network with the
  same weights, `s_k = rho(s_{k-1} W_k + b_k)`, `s_0 = x`: the familiar baseline.

`rbp_gradient`, `bptt_gradient` and `chl_gradient` use only the compiled system's field
(`CompiledSystem.field` / `ode`) and its exact `cost` / `param_grads`; SymPy never runs here.
Each compiles its work as one program (`equinox.filter_jit`; once per model structure, shapes
and static option such as `solver`, `dt`, `n_steps`), after checking its inputs eagerly; inside a
caller's trace it inlines.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jax.flatten_util import ravel_pytree
from jaxtyping import Array

from .._errors import ConfigError
from ..dynamics import RelaxConfig, relax_core
from ..models import get_activation
from ._rule import check_batch

__all__ = [
    "RBP_SOLVERS",
    "DENSE_MAX_DIM",
    "RBPResult",
    "BPTTResult",
    "CHLResult",
    "FeedforwardResult",
    "rbp_gradient",
    "bptt_gradient",
    "chl_gradient",
    "feedforward_backprop_gradient",
    "feedforward_predict",
]

#: Linear solvers for the RBP adjoint system.
RBP_SOLVERS = ("auto", "dense", "gmres")
#: With `solver="auto"`, the dense solve is used below this many state units per example.
DENSE_MAX_DIM = 4096


def _labels(d, labels):
    return jnp.argmax(d, axis=-1) if labels is None else labels


# ---------------------------------------------------------------------------------- RBP


class RBPResult(eqx.Module):
    """Auxiliary outputs of `rbp_gradient`.

    **Fields:**

    - `free_states`: the free fixed point (integrated variables, `u*`; observe with
      `system.observe`).
    - `steps`, `converged`: solver steps and convergence flag of the free relaxation.
    - `adjoint`: `lambda`, the solution of `(dG/du)^T lambda = dJ/du` at `u*` (one `(B, n_k)`
      array per state). In the gradient formulation `G = -dF/ds`, so `lambda = -H^{-1} dJ/ds`;
      since `J` is the *mean* cost and the nudging acts on the summed one,
      `(s^beta - s^0)/beta -> B lambda` as `beta -> 0`.
    - `adjoint_converged`: the linear solve succeeded (finite; GMRES reached its tolerance).
    - `loss`: the mean cost at the free fixed point.
    - `correct`: number of correct predictions at the free fixed point.
    """

    free_states: tuple[Array, ...]
    steps: Array
    converged: Array
    adjoint: tuple[Array, ...]
    adjoint_converged: Array
    loss: Array
    correct: Array


def _split(flat, like):
    """Split `(B, N)` into one `(B, n_k)` array per state, shaped like `like`."""
    out, start = [], 0
    for a in like:
        n = a.shape[1]
        out.append(flat[:, start:start + n])
        start += n
    return tuple(out)


def _dense_adjoint(lin, states, rhs):
    """Solve `A_b^T lam_b = rhs_b` per example, `A_b` the per-example Jacobian block of `lin`.

    `lin` is the linearised field (a linear map on state tuples). The field of example `b`
    depends only on row `b` of the states, so the Jacobian is block-diagonal over the batch and
    one tangent with unit `j` set in *every* row gives column `j` of every block at once:
    `N` Jacobian-vector products build all `B` blocks of size `N x N`.
    """
    n_units = sum(a.shape[1] for a in states)
    batch = states[0].shape[0]
    dtype = states[0].dtype
    eye = jnp.eye(n_units, dtype=dtype)

    def column(e):
        tangent = _split(jnp.broadcast_to(e, (batch, n_units)), states)
        return jnp.concatenate(lin(tangent), axis=1)  # (B, N): d field_i / d u_j, all rows

    cols = jax.vmap(column)(eye)  # (N_j, B, N_i)
    a_t = jnp.transpose(cols, (1, 0, 2))  # (B, N_j, N_i) = A_b^T
    b = jnp.concatenate(rhs, axis=1)
    lam = jnp.linalg.solve(a_t, b[..., None])[..., 0]
    return _split(lam, states), jnp.all(jnp.isfinite(lam))


def _gmres_adjoint(vjp_u, states, rhs, rtol, atol):
    """Matrix-free `(dG/du)^T lam = rhs` with GMRES on the whole batch (VJPs of the field)."""
    structure = jax.eval_shape(lambda: tuple(states))
    operator = lx.FunctionLinearOperator(lambda v: vjp_u(v)[0], structure)
    sol = lx.linear_solve(operator, tuple(rhs), lx.GMRES(rtol=rtol, atol=atol), throw=False)
    lam = tuple(sol.value)
    flat = ravel_pytree(lam)[0]
    ok = (sol.result == lx.RESULTS.successful) & jnp.all(jnp.isfinite(flat))
    return lam, ok


def rbp_gradient(
    model,
    x,
    d,
    s0,
    relax_config: RelaxConfig | None = None,
    *,
    solver: str = "auto",
    rtol: float = 1e-10,
    atol: float = 1e-12,
    labels=None,
):
    """Recurrent backprop: the exact gradient of the mean cost at the free fixed point.

    The free phase (`beta = 0`) is relaxed to `u*` with `relax_config`. The fixed point solves
    `G(u*, theta) = 0`, `G` the relaxation's vector field (`system.field`: `-dF/ds` in the
    gradient formulation, its leaky-integrator form with `s = rho(u)` otherwise), and
    `J(theta) = C(observe(u*(theta)))/B`. By the implicit function theorem

        dJ/dtheta = dJ/dtheta|_explicit - (dG/dtheta)^T lambda,   (dG/du)^T lambda = dJ/du,

    all at `u*`. Differentiating the field itself (not `d2F/ds2`) makes this the adjoint of the
    map the relaxation actually settles on: in the leaky (hard-sigmoid) formulation a saturated
    unit has `rho' = 0` and is correctly held fixed, and the result is the gradient of the box-
    constrained minimum that EP's estimate converges to. In the gradient formulation
    `dG/du = -H`, `H = d2F/ds2`, and this is Almeida-Pineda's `H lambda' = dC/ds`,
    `dJ/dtheta = -(d2F/dtheta ds) lambda'`, with `lambda' = -lambda`.

    **Arguments:**

    - `model`: e.g. an `eqdyn.LayeredHopfield`.
    - `x`, `d`: input `(B, n_in)` and target `(B, n_out)`.
    - `s0`: initial state of the free phase.
    - `relax_config`: a `RelaxConfig` for the free phase (default `RelaxConfig()`). The
      gradient is exact only as far as the relaxation converged: use a tight `tol`.
    - `solver`: the adjoint solve. `"dense"` builds the `N x N` Jacobian block of every example
      (`N` = state units per example; the field of one example does not depend on another's
      state, so the Jacobian is block-diagonal over the batch) with `N` Jacobian-vector
      products and solves them with LU; `"gmres"` is matrix-free on the whole batch
      (vector-Jacobian products, `lineax.GMRES`); `"auto"` (default) is `"dense"` when
      `N < DENSE_MAX_DIM` (4096) and `"gmres"` otherwise.
    - `rtol`, `atol`: GMRES tolerances (ignored by `"dense"`).
    - `labels`: optional integer labels to count correct predictions (default: argmax of `d`).

    **Returns:** `(grads, aux)`: `grads` a tuple in the order of `model.params`, `aux` an
    `RBPResult`.
    """
    if solver not in RBP_SOLVERS:
        raise ConfigError(f"`solver`={solver!r} is not known; use one of {RBP_SOLVERS}.")
    relax_config = relax_config or RelaxConfig()
    check_batch(x, d, s0)
    return _rbp_jit(model, x, d, s0, relax_config, solver, rtol, atol, labels)


def _rbp(model, x, d, s0, relax_config, solver, rtol, atol, labels):
    system = model.system
    params = model.params
    inputs = model.inputs(x, d)
    batch = x.shape[0]

    free = relax_core(model, x, s0, 0.0, d, relax_config)
    u = tuple(jax.lax.stop_gradient(a) for a in free.states)

    def field(states, p):
        return system.field(states, p, inputs, 0.0)

    def mean_cost(states, p):
        return system.cost(states, p, inputs) / batch

    loss, (dj_du, dj_dp) = jax.value_and_grad(mean_cost, argnums=(0, 1))(u, params)

    n_units = sum(a.shape[1] for a in u)
    method = solver
    if method == "auto":
        method = "dense" if n_units < DENSE_MAX_DIM else "gmres"
    if method == "dense":
        _, lin = jax.linearize(lambda s: field(s, params), u)
        lam, ok = _dense_adjoint(lin, u, dj_du)
    else:
        _, vjp_u = jax.vjp(lambda s: field(s, params), u)
        lam, ok = _gmres_adjoint(vjp_u, u, dj_du, rtol, atol)

    _, vjp_p = jax.vjp(lambda p: field(u, p), params)
    (implicit,) = vjp_p(lam)
    grads = tuple(e - i for e, i in zip(dj_dp, implicit))
    correct = jnp.sum(model.predict(u, x) == _labels(d, labels))
    aux = RBPResult(u, free.steps, free.converged, lam, ok, loss, correct)
    return grads, aux


# One compiled program per model structure, shapes and static settings: called eagerly, the
# functions below would otherwise dispatch (and compile) op by op, 5x slower on a small net
# (rbp_gradient on a 4-5-3-2 energy: 14 s eager, 2.7 s jitted, measured 2026-12-07). Inside a
# caller's trace they inline. The input checks stay outside, where the values are concrete.
_rbp_jit = eqx.filter_jit(_rbp)


# --------------------------------------------------------------------------------- BPTT


class BPTTResult(eqx.Module):
    """Auxiliary outputs of `bptt_gradient`.

    **Fields:** `final_states` (integrated variables after the last Euler step), `residual`
    (`max |field|` there, see `CompiledSystem.residual`), `loss` (mean cost at the final
    state), `correct` (correct predictions at the final state).
    """

    final_states: tuple[Array, ...]
    residual: Array
    loss: Array
    correct: Array


def bptt_gradient(model, x, d, s0, *, dt: float, n_steps: int, labels=None):
    """Backprop through time through a fixed-step Euler free relaxation.

    Runs `u <- u + dt * field(u)` (`beta = 0`) for `n_steps` steps from `s0` in a `lax.scan`
    and differentiates `J = C(observe(u_T))/B` through it with `jax.grad`. This is the exact
    gradient of the truncated computation; when the relaxation has converged the gradient
    converges to `rbp_gradient`'s (geometrically in `n_steps`). `s0` is treated as a constant.

    **Arguments:**

    - `model`: e.g. an `eqdyn.LayeredHopfield`.
    - `x`, `d`: input `(B, n_in)` and target `(B, n_out)`.
    - `s0`: initial state (zeros, or persistent particles).
    - `dt`: Euler step (> 0; below 2 for stability on the layered Hopfield energy).
    - `n_steps`: number of Euler steps (a positive int; static).
    - `labels`: optional integer labels to count correct predictions (default: argmax of `d`).

    **Returns:** `(grads, aux)`: `grads` a tuple in the order of `model.params`, `aux` a
    `BPTTResult`.
    """
    if not (isinstance(dt, (int, float)) and dt > 0 and math.isfinite(dt)):
        raise ConfigError(f"`dt`={dt!r} must be a positive finite number (a Python float).")
    if not (isinstance(n_steps, int) and not isinstance(n_steps, bool) and n_steps > 0):
        raise ConfigError(f"`n_steps`={n_steps!r} must be a positive integer.")
    check_batch(x, d, s0)
    return _bptt_jit(model, x, d, s0, dt, n_steps, labels)


def _bptt(model, x, d, s0, dt, n_steps, labels):
    system = model.system
    params = model.params
    inputs = model.inputs(x, d)
    batch = x.shape[0]
    u0 = tuple(jax.lax.stop_gradient(jnp.asarray(a)) for a in s0)

    def unroll(p):
        consts = system.constants(u0, p, inputs, 0.0)

        def step(u, _):
            f = system.field(u, p, inputs, 0.0, consts)
            return tuple(a + dt * fa for a, fa in zip(u, f)), None

        u_t, _ = jax.lax.scan(step, u0, None, length=n_steps)
        return system.cost(u_t, p, inputs) / batch, u_t

    (loss, u_t), grads = jax.value_and_grad(unroll, has_aux=True)(params)
    residual = system.residual(u_t, system.field(u_t, params, inputs, 0.0))
    correct = jnp.sum(model.predict(u_t, x) == _labels(d, labels))
    return tuple(grads), BPTTResult(u_t, residual, loss, correct)


_bptt_jit = eqx.filter_jit(_bptt)


# ---------------------------------------------------------------------------------- CHL


class CHLResult(eqx.Module):
    """Auxiliary outputs of `chl_gradient`.

    **Fields:** `free_states`, `clamped_states` (integrated variables at the two fixed points;
    the clamped output is the target), `free_steps`, `clamped_steps`, `free_converged`,
    `clamped_converged`, `loss` (mean cost at the free fixed point), `correct` (correct
    predictions at the free fixed point).
    """

    free_states: tuple[Array, ...]
    clamped_states: tuple[Array, ...]
    free_steps: Array
    clamped_steps: Array
    free_converged: Array
    clamped_converged: Array
    loss: Array
    correct: Array


def chl_gradient(
    model, x, d, s0, relax_config: RelaxConfig | None = None, *, clamped_config=None, labels=None
):
    """Contrastive Hebbian learning: free phase, then a phase with the output clamped to `d`.

    The clamped phase starts from the free fixed point with the output state set to the target
    and relaxes only the hidden layers (the output's field is masked to zero, so it stays at
    `d` exactly). In the leaky formulation the output potential is set to `u_y = d`, so the
    observed output `rho(u_y) = d` for targets in the activation's range (`[0, 1]` for the hard
    sigmoid; outside it, the observed output is `rho(d)`). The estimate is

        grads = (1/B) [dF/dtheta(s^clamped) - dF/dtheta(s^0)],

    EP's one-sided estimate with `beta -> infinity` without the `1/beta` factor: descending it
    is the CHL update (Hebbian at the clamped state, anti-Hebbian at the free one). It is not
    the gradient of the cost, but for layered nets it usually points the same way.

    **Arguments:**

    - `model`: e.g. an `eqdyn.LayeredHopfield`.
    - `x`, `d`: input `(B, n_in)` and target `(B, n_out)`.
    - `s0`: initial state of the free phase.
    - `relax_config`: a `RelaxConfig` for the free phase (default `RelaxConfig()`).
    - `clamped_config`: a `RelaxConfig` for the clamped phase (default: `relax_config`).
    - `labels`: optional integer labels to count correct predictions (default: argmax of `d`).

    **Returns:** `(grads, aux)`: `grads` a tuple in the order of `model.params`, `aux` a
    `CHLResult`.
    """
    relax_config = relax_config or RelaxConfig()
    clamped_config = clamped_config or relax_config
    if not model.output_is_state:
        raise ConfigError(
            f"contrastive Hebbian learning clamps the output state to the target, but the "
            f"prediction of `{model.energy.name}` is `{model.energy.prediction}`, not a state "
            "(e.g. a softmax readout). Use EP or a reference gradient instead."
        )
    check_batch(x, d, s0)
    return _chl_jit(model, x, d, s0, relax_config, clamped_config, labels)


def _chl(model, x, d, s0, relax_config, clamped_config, labels):
    system = model.system
    params = model.params
    inputs = model.inputs(x, d)
    batch = x.shape[0]
    free = relax_core(model, x, s0, 0.0, d, relax_config)
    start = (*free.states[:-1], jnp.asarray(d, free.states[-1].dtype))
    flags = (False,) * (len(start) - 1) + (True,)
    cl = relax_core(model, x, start, 0.0, d, clamped_config, clamped=flags)
    clamped, c_steps, c_conv = cl.states, cl.steps, cl.converged
    g_clamped = system.param_grads(clamped, params, inputs)
    g_free = system.param_grads(free.states, params, inputs)
    grads = tuple((a - b) / batch for a, b in zip(g_clamped, g_free))
    loss = system.cost(free.states, params, inputs) / batch
    correct = jnp.sum(model.predict(free.states, x) == _labels(d, labels))
    aux = CHLResult(
        free.states, clamped, free.steps, c_steps, free.converged, c_conv, loss, correct
    )
    return grads, aux


_chl_jit = eqx.filter_jit(_chl)


# ------------------------------------------------------------------------- feedforward BP


class FeedforwardResult(eqx.Module):
    """Auxiliary outputs of `feedforward_backprop_gradient`.

    **Fields:** `output` (`s_L`, shape `(B, n_out)`), `loss` (mean cost), `correct` (correct
    predictions: argmax of the output).
    """

    output: Array
    loss: Array
    correct: Array


def feedforward_backprop_gradient(model, x, d, *, labels=None):
    """Plain backprop through the feedforward network with the model's weights.

    `s_0 = x`, `s_k = rho(s_{k-1} W_k + b_k)` for `k = 1..L` (the input enters without an
    activation, as in the energy), output `y = s_L`, loss `mean_b 1/2 ||y_b - d_b||^2`,
    differentiated with `jax.grad`. No relaxation: the familiar baseline.

    **Arguments:**

    - `model`: e.g. an `eqdyn.LayeredHopfield` (only `weights`, `biases`, `activation` are used).
    - `x`, `d`: input `(B, n_in)` and target `(B, n_out)`.
    - `labels`: optional integer labels to count correct predictions (default: argmax of `d`).

    **Returns:** `(grads, aux)`: `grads` a tuple in the order of `model.params`, `aux` a
    `FeedforwardResult`.
    """
    check_batch(x, d)
    return _feedforward_jit(model, x, d, labels)


def _feedforward_bp(model, x, d, labels):
    batch = x.shape[0]

    def loss_fn(p):
        s = _feedforward(model, p, x)
        return 0.5 * jnp.sum((s - d) ** 2) / batch, s

    (loss, y), grads = jax.value_and_grad(loss_fn, has_aux=True)(tuple(model.params))
    correct = jnp.sum(jnp.argmax(y, axis=-1) == _labels(d, labels))
    return tuple(grads), FeedforwardResult(y, loss, correct)


_feedforward_jit = eqx.filter_jit(_feedforward_bp)


def _feedforward(model, params, x):
    if not hasattr(model, "weights"):
        raise ConfigError(
            "the feedforward network needs a layered model (weights between adjacent layers), "
            f"not {type(model).__name__}; use rbp_gradient or bptt_gradient."
        )
    rho = get_activation(model.activation).fn
    n = len(model.weights)
    s = x
    for w, b in zip(params[:n], params[n:]):
        s = rho(s @ w + b)
    return s


def feedforward_predict(model, x):
    """The output `s_L` of the feedforward network with the model's weights (see
    `feedforward_backprop_gradient`), shape `(B, n_out)`."""
    return _feedforward(model, tuple(model.params), x)
