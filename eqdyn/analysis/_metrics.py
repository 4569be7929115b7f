"""Shared helpers of the studies: cosines and relative errors of pytrees, per-example field
Jacobians of a model, and the fixed-point sensitivity `du*/dbeta`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._feedforward import row_jacobians

__all__ = ["cosine", "relative_error", "field_jacobians", "fixed_point_sensitivity"]


def _flat(a) -> np.ndarray:
    """An array, or a pytree of arrays (e.g. a tuple of gradients), as one float64 vector."""
    return np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1)
                           for v in jax.tree_util.tree_leaves(a)])


def cosine(a, b) -> float:
    """Cosine similarity of two arrays or pytrees, flattened (`nan` if either is zero)."""
    a, b = _flat(a), _flat(b)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")


def relative_error(a, b) -> float:
    """`||a - b|| / ||b||` of two arrays or pytrees, flattened."""
    a, b = _flat(a), _flat(b)
    nb = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / nb) if nb > 0 else float("nan")


def field_jacobians(model, x, d, states, beta=0.0):
    """Per-example Jacobians of the model's field at `states`, `(B, N, N)` (`N` units per
    example), and `dfield/dbeta` `(B, N)`."""
    return row_jacobians(model.system.field, model.params, model.inputs(x, d), states, beta)


def fixed_point_sensitivity(model, x, d, states) -> tuple:
    """`du*/dbeta` at the free fixed point `states`: `-(dG/du)^{-1} dG/dbeta`, `G` the field.

    In the gradient formulation `dG/du = -H` is symmetric and this is `-H^{-1} dC/ds`, the
    adjoint of recurrent backprop for the summed cost; in the leaky formulation the Jacobian is
    not symmetric and this forward sensitivity is what `(s^beta - s^0)/beta` tends to.
    """
    jac, dg_db = field_jacobians(model, x, d, states)
    flat = jnp.linalg.solve(jac, -dg_db[..., None])[..., 0]
    sizes = [a.shape[1] for a in states]
    return tuple(jnp.split(flat, np.cumsum(sizes)[:-1], axis=1))
