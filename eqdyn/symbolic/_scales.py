"""Feedback strength as a parameter of the energy, and the network's own feedforward computation.

A layered energy is a sum of terms, each *owned* by the highest state it involves (states in
the energy's order, input side first): the leak `1/2 |s_k|^2`, the bias term and the coupling
`-rho(s_{k-1}) W_k rho(s_k)^T` of layer `k` are owned by `s_k`. Multiplying every term owned by
`s_k` by a scale `c_k`, and the time constant of `s_k` by the same `c_k`, gives an energy whose
dynamics are

    ds_k/dt = -s_k + rho'(s_k) (rho(s_{k-1}) W_k + b_k) + (c_{k+1}/c_k) rho'(s_k) rho(s_{k+1}) W_{k+1}^T

(gradient formulation; the leaky one drops the `rho'` factors): the bottom-up drive is
unchanged and the top-down feedback is weighted by `gamma = c_{k+1}/c_k`. It is still a
gradient flow of one energy (`tau_k ds_k/dt = -dF/ds_k`), so EP's theorem holds at every
`gamma`; and EP's `dF/dW_k` carries the factor `c_k`, which is Xie & Seung's (2003) per-layer
learning rate `gamma^-(L-k)`.

As `gamma -> 0` the dynamics of layer `k` lose the terms owned by the layers above it and
become `tau_k ds_k/dt = -dE_k/ds_k` with `E_k` the terms `s_k` owns: the network's own
feedforward computation. `feedforward_energy` writes it as an energy whose layer-`k` terms see
the layers below through *inputs* (copies `z_j` of `s_j`), so that its derivative with respect
to `s_k` is `dE_k/ds_k` alone; evaluated with `z_j = s_j` it is the feedforward field.
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from .._errors import DerivationError
from ._energy import Energy

__all__ = ["term_owners", "layer_scales", "with_layer_scales", "feedforward_energy"]


def term_owners(energy: Energy) -> tuple[int | None, ...]:
    """For each internal term, the index of the highest state it involves (`None`: no state)."""
    index = {s: i for i, s in enumerate(energy.states)}
    out = []
    for term in energy.internal:
        found = [index[m] for m in sp.sympify(term).atoms(sp.MatrixSymbol) if m in index]
        out.append(max(found) if found else None)
    return tuple(out)


def layer_scales(n_states: int, gamma) -> tuple[sp.Expr, ...]:
    """`c_k = gamma^-(n-1-k)`: the last state (the output side) has scale 1 and
    `c_{k+1}/c_k = gamma`. `gamma` is made an exact rational (`nsimplify`)."""
    g = sp.nsimplify(sp.sympify(gamma), rational=True)
    if not (g.is_number and g.is_real and g > 0):
        raise DerivationError(f"`gamma`={gamma!r} must be a positive number (1 = full feedback).")
    return tuple(g ** (-(n_states - 1 - k)) for k in range(n_states))


def with_layer_scales(energy: Energy, gamma=None, *, scales: Sequence | None = None) -> Energy:
    """`energy` with the terms owned by state `k` multiplied by `c_k` and `tau_k` by `c_k`.

    **Arguments:**

    - `energy`: any `Energy` whose states are ordered input side first (the layered energy,
      or a custom one built from `eqdyn.symbolic.terms`).
    - `gamma`: the feedback strength `c_{k+1}/c_k` (`1` gives `energy` back, up to its name);
      the scales are `c_k = gamma^-(n-1-k)`, 1 for the last state, so the cost (not scaled)
      nudges the output exactly as before.
    - `scales`: instead of `gamma`, one positive number per state.

    **Returns:** the scaled `Energy` (same symbols, so the same parameters fit it).
    """
    n = len(energy.states)
    if (gamma is None) == (scales is None):
        raise DerivationError("give exactly one of `gamma` and `scales` to with_layer_scales.")
    if scales is None:
        cs = layer_scales(n, gamma)
        tag = f"gamma={gamma:g}" if isinstance(gamma, (int, float)) else f"gamma={gamma}"
    else:
        cs = tuple(sp.nsimplify(sp.sympify(c), rational=True) for c in scales)
        if len(cs) != n or not all(c.is_number and c.is_real and c > 0 for c in cs):
            raise DerivationError(
                f"`scales`={tuple(scales)} must give one positive number per state "
                f"({n}: {[s.name for s in energy.states]})."
            )
        tag = f"scales={tuple(str(c) for c in cs)}"
    owners = term_owners(energy)
    internal = tuple(t if k is None or cs[k] == 1 else cs[k] * t
                     for t, k in zip(energy.internal, owners))
    tau = tuple(cs[k] * energy.time_constant(s) for k, s in enumerate(energy.states))
    return Energy(internal=internal, cost=energy.cost, states=energy.states,
                  params=energy.params, inputs=energy.inputs, scalars=energy.scalars,
                  functions=energy.functions, name=f"{energy.name}[{tag}]", tau=tau,
                  output=energy.output)


def feedforward_energy(energy: Energy) -> Energy:
    """The `gamma -> 0` limit of `energy`'s dynamics, as an energy with extra inputs.

    Every internal term owned by state `k` has each lower state `s_j` (`j < k`) replaced by a
    new input `z_j` (named `ff_<s_j>`, same shape). The derivative of the result with respect
    to `s_k` is `dE_k/ds_k(s_k, z)`, the derivative of the terms `s_k` owns alone; with `z_j =
    s_j` the field is the feedforward computation (block lower triangular: layer `k` depends on
    the layers below it only). Terms involving no state are dropped, and so is the cost (the
    feedforward pass is free); time constants are kept.

    **Returns:** an `Energy` with the same states and parameters, inputs `(x, z_1, ...,
    z_{n-1})` (the data input of `energy` first, then one `z` per state but the last) and no
    scalars.
    """
    if energy.data is None:
        raise DerivationError(f"`{energy.name}` has no data input; a feedforward pass needs one.")
    states = energy.states
    zs = tuple(sp.MatrixSymbol(f"ff_{s.name}", *s.shape) for s in states[:-1])
    owners = term_owners(energy)
    internal = []
    for term, k in zip(energy.internal, owners):
        if k is None:
            continue
        internal.append(sp.sympify(term).xreplace({states[j]: zs[j] for j in range(k)}))
    for t in internal:
        if energy.target is not None and t.has(energy.target):
            raise DerivationError(
                f"an internal term of `{energy.name}` uses the target `{energy.target.name}`; "
                "the feedforward pass cannot depend on it."
            )
    return Energy(internal=tuple(internal), cost=(), states=states, params=energy.params,
                  inputs=(energy.data, *zs), scalars=(), functions=energy.functions,
                  name=f"feedforward({energy.name})", tau=energy.tau, output=None)
