"""Equilibrium Propagation for vector-field dynamics (Scellier, Goyal, Binas & Bengio 2018).

When the dynamics `du/dt = f(u, theta, beta)` are not the gradient of an energy (separate
feedforward and feedback weights, `eqdyn.models.VectorFieldHopfield`), EP's update is

    g = -(1 / (beta_a - beta_b)) (df/dtheta at u^0)^T (s^{beta_a} - s^{beta_b}) / B

(`s = rho(u)` the rates, `u^0` the free fixed point; `beta_a, beta_b` = `beta, 0` one-sided,
`beta, -beta` symmetric, or `+-beta, 0` with the sign drawn per batch (random-sign, Scellier &
Bengio 2017)): each weight moves by its presynaptic free rate times the change of
its postsynaptic rate between the phases, `dW_k ~ s_{k-1}^T (s_k^beta - s_k^0)`,
`dB_k ~ s_k^T (s_{k-1}^beta - s_{k-1}^0)`. As `beta -> 0` it tends to `(df/dtheta)^T
diag(rho') J^{-1} df/dbeta / B` (`du/dbeta = -J^{-1} df/dbeta`, `J = df/du`), where the exact
gradient (`rbp_gradient` on the same field, `df/dbeta = -dC/du`) is `(df/dtheta)^T J^{-T}
df/dbeta / B`: the two agree when the field is a gradient (`B_k = W_k^T`), where this is
symmetric EP, and drift apart as the feedback weights turn away from the transposed
feedforward ones (`eqdyn.models.alignment_angles`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import ConfigError
from ..dynamics import RelaxConfig
from ..models import VectorFieldHopfield
from ._phase import run_phase
from ._rule import (AbstractRule, Stats, as_leaf, check_batch, free_phase_stats, status_code,
                    worst_status)

__all__ = ["VectorFieldEP", "vector_field_update", "homeostasis_loss"]


def vector_field_update(model, x, d, free_states, states_a, states_b, span):
    """`-(df/dtheta at u^0)^T (rho(u_a) - rho(u_b)) / (span B)`: EP's update for a vector field
    from the free state `free_states` and two nudged states (`span = beta_a - beta_b`)."""
    system, params = model.system, model.params
    inputs = model.inputs(x, d)
    u0 = tuple(jax.lax.stop_gradient(a) for a in free_states)
    _, vjp = jax.vjp(lambda p: system.field(u0, p, inputs, 0.0), params)
    delta = tuple(a - b for a, b in zip(system.observe(states_a), system.observe(states_b)))
    (g,) = vjp(delta)
    scale = -1.0 / (span * x.shape[0])
    return tuple(scale * gi for gi in g)


def homeostasis_loss(model, x, free_states, key: PRNGKeyArray, n_probes: int = 5):
    """The Jacobian-homeostasis objective of Laborieux & Zenke (2024, "Improving equilibrium
    propagation without weight symmetry through Jacobian homeostasis", ICLR; the definition of
    their code, `homeo_loss` in github.com/Laborieux-Axel/generalized-holo-ep, models/dyn.py).

    With `J` the Jacobian of the field in the rates at the free fixed point (the potentials
    held) and `eps ~ N(0, I)`, the Hutchinson estimate of
    `E[|J eps|^2 - eps . J (J eps)] = |J|_F^2 - tr(J^2) = 1/2 |J - J^T|_F^2`, divided by the
    number of units, averaged over the batch and `n_probes` draws: zero when the Jacobian is
    symmetric, whatever the weights. For `VectorFieldHopfield` the field is linear in the
    rates and `J`'s blocks are `W_k^T` and `B_k^T`, so its expectation is
    `sum_k |W_k - B_k^T|_F^2 / N` (`N` the units of all layers), the same for every example.

    **Arguments:** the `model`, the clamped input `x`, the free fixed point `free_states`
    (not differentiated), a PRNG `key`, the number of probes `n_probes`.

    **Returns:** the scalar estimate (differentiable in `model.params`).
    """
    system = model.system
    inputs = model.inputs(x)
    rates = tuple(jax.lax.stop_gradient(r) for r in system.observe(free_states))
    n = sum(r.shape[1] for r in rates)

    def one(k):
        eps = tuple(jax.random.normal(kk, r.shape, r.dtype)
                    for kk, r in zip(jax.random.split(k, len(rates)), rates))
        drive = lambda r: system.rate_drive(r, model.params, inputs)  # noqa: E731
        _, j_eps = jax.jvp(drive, (rates,), (eps,))
        _, jj_eps = jax.jvp(drive, (rates,), (j_eps,))
        per = sum(jnp.sum(a * a, axis=1) - jnp.sum(e * c, axis=1)
                  for a, e, c in zip(j_eps, eps, jj_eps))
        return jnp.mean(per) / n

    return jnp.mean(jax.vmap(one)(jax.random.split(key, n_probes)))


class VectorFieldEP(AbstractRule):
    """EP's estimate for a network whose dynamics are a vector field (see the module docstring).

    **Arguments:**

    - `beta`: the nudging strength (> 0; an array leaf).
    - `symmetric`: nudge at `+beta` and `-beta` (default) or at `+beta` only (static).
    - `random_sign`: one nudged phase at `+beta` or `-beta`, the sign drawn per batch from the
      call's `key` (static; needs `symmetric=False`).
    - `homeostasis`: `None` (off) or the coefficient `c` of Laborieux & Zenke's (2024)
      Jacobian homeostasis: `c` times the gradient of `homeostasis_loss` at the free fixed
      point (`n_probes` Gaussian probes, static) is added to EP's estimate (their code's
      default `c` is 0.5, with 5 probes). Needs the call's `key`.
    - `free`, `nudged`: the phases' relaxations (relaxation objects or `RelaxConfig`s;
      `nudged` defaults to `free`).

    Call it as any rule: `grads, stats = rule(model, x, d, s0)` with `model` a
    `eqdyn.models.VectorFieldHopfield` (an energy model's rule is `EP`).
    """

    beta: Float[Array, ""] = eqx.field(converter=as_leaf)
    symmetric: bool = eqx.field(static=True, default=True)
    free: object = eqx.field(default_factory=RelaxConfig)
    nudged: object = None
    random_sign: bool = eqx.field(static=True, default=False, kw_only=True)
    homeostasis: object = eqx.field(default=None, kw_only=True,
                                    converter=lambda v: None if v is None else as_leaf(v))
    n_probes: int = eqx.field(static=True, default=5, kw_only=True)

    def __check_init__(self):
        if self.homeostasis is not None:
            c = jnp.asarray(self.homeostasis)
            if c.ndim != 0 or not bool(jnp.isfinite(c)) or not float(c) >= 0:
                raise ConfigError(f"`homeostasis`={float(c)!r} must be None or a finite "
                                  "number >= 0 (the coefficient of the Jacobian homeostasis).")
        if not (isinstance(self.n_probes, int) and self.n_probes >= 1):
            raise ConfigError(f"`n_probes`={self.n_probes!r} must be a positive integer.")
        b = jnp.asarray(self.beta)
        if b.ndim != 0 or not bool(jnp.isfinite(b)) or not float(b) > 0:
            raise ConfigError(f"`beta`={self.beta!r} must be a positive finite number.")
        if self.random_sign and self.symmetric:
            raise ConfigError("`random_sign`=True draws one nudged phase's sign per batch; it "
                              "excludes `symmetric`=True (pass symmetric=False).")

    def __call__(self, model, x, d, s0, *, key: PRNGKeyArray | None = None, labels=None
                 ) -> tuple[tuple[Array, ...], Stats]:
        if not isinstance(model, VectorFieldHopfield):
            raise ConfigError(
                f"`VectorFieldEP` needs a vector-field network (eqdyn.models."
                f"VectorFieldHopfield, separate feedforward and feedback weights); `model` is a "
                f"{type(model).__name__}. Train an energy model with eqdyn.learning.EP (e.g. "
                "EP(beta, Symmetric())), or build a VectorFieldHopfield.")
        for name, on in (("random_sign", self.random_sign),
                         ("homeostasis", self.homeostasis is not None)):
            if on and key is None:
                raise ConfigError(f"`key` is required with `{name}` (e.g. "
                                  "jax.random.PRNGKey(0)): it draws the nudging's sign or the "
                                  "homeostasis probes.")
        k_homeo = None if key is None else jax.random.fold_in(key, 1)
        check_batch(x, d, s0)
        nudged = self.free if self.nudged is None else self.nudged
        free = run_phase(self.free, model, x, s0, 0.0, d)
        beta = jnp.asarray(self.beta, x.dtype)
        if self.random_sign:
            beta = jnp.where(jax.random.bernoulli(key), beta, -beta)
        plus = run_phase(nudged, model, x, free.states, beta, d)
        if self.symmetric:
            minus = run_phase(nudged, model, x, free.states, -beta, d)
            low, span = minus.states, 2.0 * beta
            steps, conv = plus.steps + minus.steps, plus.converged & minus.converged
            code = worst_status(status_code(plus), status_code(minus))
        else:
            low, span = free.states, beta
            steps, conv, code = plus.steps, plus.converged, status_code(plus)
        grads = vector_field_update(model, x, d, free.states, plus.states, low, span)
        if self.homeostasis is not None:
            c = jnp.asarray(self.homeostasis, x.dtype)
            h = jax.grad(lambda p: homeostasis_loss(model.with_params(p), x, free.states,
                                                    k_homeo, self.n_probes))(model.params)
            grads = tuple(g + c * hg for g, hg in zip(grads, h))
        loss, correct = free_phase_stats(model, x, d, free.states, labels)
        return grads, Stats(loss, correct, tuple(free.states), free.steps, steps, free.converged,
                            conv, status_code(free), code)
