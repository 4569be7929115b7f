"""Training dynamics: EP against an exact gradient from the same initialisation.

Two copies of a network start from the same weights and see the same batches in the same
order; one learns with EP, the other with recurrent backprop (RBP, the exact gradient of the
loss at the free fixed point). At every step the study records both losses and, on the EP
copy, the cosine between EP's estimate and the RBP gradient of that same copy on that batch
(per parameter and overall): how well the local rule follows the gradient along training.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ConfigError
from ..dynamics import RelaxConfig
from ..learning import VARIANTS, EPConfig, ep_gradient, rbp_gradient
from ._early import cosine

__all__ = ["TrainingDynamics", "training_dynamics"]


@dataclasses.dataclass
class TrainingDynamics:
    """The record `training_dynamics` returns: `steps` `(S,)`; `loss_ep`, `loss_rbp` `(S,)`
    (mean cost at the free fixed point of each copy on the step's batch, before its update);
    `cosine` `(S,)` between EP's estimate and the RBP gradient of the EP copy, all parameters
    flattened; `cosine_per_param` `(S, P)`; `param_names`; `accuracy_ep`, `accuracy_rbp`
    `(S,)` on the step's batch."""

    steps: np.ndarray
    loss_ep: np.ndarray
    loss_rbp: np.ndarray
    cosine: np.ndarray
    cosine_per_param: np.ndarray
    param_names: tuple
    accuracy_ep: np.ndarray
    accuracy_rbp: np.ndarray
    variant: str
    beta: float

    def to_json(self) -> dict:
        return dict(steps=self.steps.tolist(), loss_ep=self.loss_ep.tolist(),
                    loss_rbp=self.loss_rbp.tolist(), cosine=self.cosine.tolist(),
                    cosine_per_param=self.cosine_per_param.tolist(),
                    param_names=list(self.param_names), accuracy_ep=self.accuracy_ep.tolist(),
                    accuracy_rbp=self.accuracy_rbp.tolist(), variant=self.variant,
                    beta=self.beta)


def training_dynamics(model, x, y, *, n_steps: int = 100, batch_size: int = 20,
                      lr: float = 0.05, beta: float = 0.1, variant: str = "symmetric",
                      config: RelaxConfig | None = None, seed: int = 0) -> TrainingDynamics:
    """Train two copies of `model` (EP and RBP, plain SGD at `lr`) on the same batches.

    **Arguments:**

    - `model`: the network (float64 advised for the cosines).
    - `x`, `y`: training inputs `(N, n_in)` and integer labels `(N,)`.
    - `n_steps`, `batch_size`: SGD steps on batches drawn (seeded) without replacement.
    - `lr`, `beta`, `variant`: learning rate of both copies; EP's nudge and variant (not
      random-sign: its sign is a draw, not part of the comparison).
    - `config`: the relaxation of every phase (default Euler 0.5 to a residual of 1e-6).
    """
    if variant not in VARIANTS or variant == "random-sign":
        raise ConfigError(f"`variant`={variant!r}: use one-sided, symmetric or holomorphic.")
    x = jnp.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ConfigError(f"`x` {x.shape} and `y` {y.shape} must be (N, n_in) and (N,).")
    if not (isinstance(n_steps, int) and n_steps > 0 and 0 < batch_size <= x.shape[0]):
        raise ConfigError(f"`n_steps`={n_steps!r} must be positive and `batch_size`="
                          f"{batch_size!r} between 1 and the {x.shape[0]} examples.")
    config = config or RelaxConfig(dt0=0.5, tol=1e-6, t1=2000.0, max_steps=8192,
                                   on_failure="ignore")
    ep_cfg = EPConfig(beta=beta, variant=variant, free=config, nudged=config)
    n_out = model.n_outputs

    @eqx.filter_jit
    def step(m_ep, m_rbp, xb, lb):
        db = jax.nn.one_hot(lb, n_out, dtype=xb.dtype)
        s0 = m_ep.init_state(xb.shape[0], xb.dtype)
        g_ep, a_ep = ep_gradient(m_ep, xb, db, s0, ep_cfg, labels=lb)
        g_ref, _ = rbp_gradient(m_ep, xb, db, a_ep.free_states, config, labels=lb)
        g_rbp, a_rbp = rbp_gradient(m_rbp, xb, db, s0, config, labels=lb)
        m_ep = m_ep.with_params(tuple(p - lr * g for p, g in zip(m_ep.params, g_ep)))
        m_rbp = m_rbp.with_params(tuple(p - lr * g for p, g in zip(m_rbp.params, g_rbp)))
        return m_ep, m_rbp, g_ep, g_ref, a_ep.loss, a_rbp.loss, a_ep.correct, a_rbp.correct

    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(x.shape[0])
                            for _ in range(-(-n_steps * batch_size // x.shape[0]))])
    m_ep = m_rbp = model
    rows = []
    for k in range(n_steps):
        idx = order[k * batch_size:(k + 1) * batch_size]
        m_ep, m_rbp, g_ep, g_ref, l_ep, l_rbp, c_ep, c_rbp = step(
            m_ep, m_rbp, x[idx], jnp.asarray(y[idx], jnp.int32))
        per = [cosine(a, b) for a, b in zip(g_ep, g_ref)]
        rows.append((float(l_ep), float(l_rbp), cosine(g_ep, g_ref), per,
            float(c_ep) / batch_size, float(c_rbp) / batch_size))
    return TrainingDynamics(
        steps=np.arange(1, n_steps + 1), loss_ep=np.array([r[0] for r in rows]),
        loss_rbp=np.array([r[1] for r in rows]), cosine=np.array([r[2] for r in rows]),
        cosine_per_param=np.array([r[3] for r in rows]),
        param_names=tuple(model.system.param_names), accuracy_ep=np.array([r[4] for r in rows]),
        accuracy_rbp=np.array([r[5] for r in rows]), variant=variant, beta=float(beta),
    )
