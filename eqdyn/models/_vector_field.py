"""Layered networks whose dynamics are not the gradient of an energy: separate feedforward and
feedback weights (Scellier, Goyal, Binas & Bengio 2018, "Generalization of Equilibrium
Propagation to Vector Field Dynamics"; the VF models of Ernoult et al. 2019).

With the input `x` clamped, layers `u_1 .. u_L` (potentials, rates `s_k = rho(u_k)`, `s_0 = x`),
feedforward weights `W_k` (`n_{k-1} x n_k`), feedback weights `B_k` (`n_k x n_{k-1}`, from layer
`k` down to `k-1`) and biases `b_k`, the leaky dynamics are

    du_k/dt = -u_k + s_{k-1} W_k + s_{k+1} B_{k+1} + b_k          (k < L)
    du_L/dt = -u_L + s_{L-1} W_L + b_L - beta (u_L - d)

With `B_k = W_k^T` this is exactly the leaky field of `LayeredHopfield` (the gradient of the
layered Hopfield energy with `rho' = 1`); otherwise no energy has it as its gradient. The cost is
`C = 1/2 ||s_L - d||^2` at the rates, as for `LayeredHopfield`. `relax`, `rbp_gradient` (the
exact gradient of the cost at the fixed point of this field) and `bptt_gradient` run on it
unchanged; EP's estimate is `eqdyn.learning.VectorFieldEP`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import ConfigError
from ._activations import Activation, get_activation
from ._hopfield import parse_arch
from ._network import AbstractEnergyModel, glorot_uniform
from ._system import CompiledSystem

__all__ = ["VectorFieldHopfield", "VectorFieldSystem", "vector_field_system", "alignment_angles"]


@dataclasses.dataclass(frozen=True, eq=False)
class VectorFieldSystem:
    """The compiled vector field of a `VectorFieldHopfield`: the subset of `CompiledSystem`'s
    interface that the relaxations and the references use (`field`, `ode`, `residual`,
    `constants`, `observe`, `cost`, `output`), in the leaky formulation.

    **Fields:** `sizes` (input first), `activation` (an `Activation`).
    """

    sizes: tuple[int, ...]
    activation: Activation
    formulation: str = "leaky"

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @functools.cached_property
    def tau(self) -> tuple[float, ...]:
        return (1.0,) * self.n_layers

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(f"h_{k}" for k in range(1, self.n_layers)) + ("y",)

    @property
    def param_names(self) -> tuple[str, ...]:
        L = self.n_layers
        return (tuple(f"W_{k}" for k in range(1, L + 1)) + tuple(f"B_{k}" for k in range(2, L + 1))
                + tuple(f"b_{k}" for k in range(1, L + 1)))

    def split(self, params):
        """`(W, B, b)`: feedforward weights, feedback weights (`B[0]` is `B_2`), biases."""
        L = self.n_layers
        return params[:L], params[L:2 * L - 1], params[2 * L - 1:]

    def observe(self, states):
        return tuple(self.activation.fn(u) for u in states)

    def observe_velocity(self, states, field):
        return tuple(self.activation.d1(u) * f for u, f in zip(states, field))

    def constants(self, states, params, inputs, beta=0.0):
        """The input drive `x W_1`, computed once per relaxation."""
        return (inputs[0] @ params[0],)

    def field(self, states, params, inputs, beta, constants=None):
        """`du_k/dt` of every layer (see the module docstring)."""
        W, B, b = self.split(params)
        x, d = inputs
        s = self.observe(states)
        drive0 = inputs[0] @ W[0] if constants is None else constants[0]
        out = []
        for k, u in enumerate(states):  # layer k + 1
            f = (drive0 if k == 0 else s[k - 1] @ W[k]) + b[k] - u
            if k + 1 < len(states):
                f = f + s[k + 1] @ B[k]
            else:
                f = f - beta * (u - d)
            out.append(f)
        return tuple(out)

    def rate_drive(self, rates, params, inputs):
        """The part of each layer's field that depends on the rates `rates` (`s_1 .. s_L`, the
        input clamped): `s_{k-1} W_k + s_{k+1} B_{k+1} + b_k`. Its Jacobian in the rates is the
        network's coupling matrix (used by `eqdyn.learning.homeostasis_loss`)."""
        W, B, b = self.split(params)
        s = (inputs[0], *rates)
        return tuple(s[k] @ W[k] + b[k] + (s[k + 2] @ B[k] if k + 2 < len(s) else 0.0)
                     for k in range(self.n_layers))

    # the steady-state test of the leaky formulation (bounds' outward forces ignored)
    residual = CompiledSystem.residual

    def ode(self, t, y, args):
        params, inputs, beta, constants = args
        return self.field(y, params, inputs, beta, constants)

    def cost(self, states, params, inputs):
        """`C = 1/2 ||rho(u_L) - d||^2` summed over the batch."""
        return 0.5 * jnp.sum((self.activation.fn(states[-1]) - inputs[1]) ** 2)

    def output(self, states, params, inputs):
        return self.activation.fn(states[-1])

    def cost_rows(self, states, params, inputs):
        return 0.5 * jnp.sum((self.activation.fn(states[-1]) - inputs[1]) ** 2, axis=1)

    def param_grads(self, *args, **kwargs):
        raise ConfigError(
            "a vector-field network has no energy, so no dF/dtheta: estimate its gradient with "
            "eqdyn.learning.VectorFieldEP (or rbp_gradient / bptt_gradient).")

    param_grads_delta = param_grads
    energy = param_grads


@functools.lru_cache(maxsize=32)
def vector_field_system(sizes: tuple[int, ...], activation: str) -> VectorFieldSystem:
    """The (cached) vector field of a layered network: one object per configuration, so that
    jitted relaxations are not retraced."""
    return VectorFieldSystem(tuple(sizes), get_activation(activation))


def alignment_angles(model: "VectorFieldHopfield") -> tuple[Array, ...]:
    """The angle in degrees between each feedforward weight `W_k` and its transposed feedback
    weight `B_k^T` (k = 2..L; 0: symmetric, 90: orthogonal, as tracked by Ernoult et al. 2019)."""
    W, B, _ = model.system.split(model.params)
    out = []
    for w, bk in zip(W[1:], B):
        cos = jnp.sum(w * bk.T) / (jnp.linalg.norm(w) * jnp.linalg.norm(bk) + 1e-30)
        out.append(jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0))))
    return tuple(out)


class VectorFieldHopfield(AbstractEnergyModel):
    """A layered network with separate feedforward and feedback weights (not an energy model).

    **Fields:** `params` (`W_1..W_L`, `B_2..B_L`, `b_1..b_L`); static `sizes`, `activation`.
    """

    params: tuple[Array, ...]
    sizes: tuple[int, ...] = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    formulation: str = eqx.field(static=True, default="leaky")

    def __init__(self, sizes: str | Sequence[int], activation: str = "hard_sigmoid", *,
                 key: PRNGKeyArray | None = None, params: Sequence[Array] | None = None,
                 symmetric: bool = False, dtype=jnp.float32):
        """**Arguments:**

        - `sizes`: layer sizes, input first (`"784-500-10"`).
        - `activation`: a projection activation (the leaky formulation; default hard sigmoid).
        - `key`: PRNG key for Glorot-uniform weights (feedforward and feedback drawn
          independently, biases zero), unless `params` is given.
        - `params`: explicit `(W_1..W_L, B_2..B_L, b_1..b_L)`.
        - `symmetric`: start with `B_k = W_k^T` (the layered Hopfield network's dynamics).
        """
        self.sizes = parse_arch(sizes)
        act = get_activation(activation)
        if not act.projection:
            raise ConfigError(
                f"`VectorFieldHopfield` runs the leaky formulation and needs a projection "
                f"activation (e.g. 'hard_sigmoid'); `activation`={act.name!r} is not one.")
        self.activation = act.name
        self.formulation = "leaky"
        n = self.sizes
        L = len(n) - 1
        if params is None:
            if key is None:
                raise ConfigError("`key` is required to initialise the parameters "
                                  "(or pass `params`).")
            spec = tuple((a, b, True) for a, b in zip(n[:-1], n[1:]))
            spec += tuple((b, a, True) for a, b in zip(n[1:-1], n[2:]))
            spec += tuple((1, m, False) for m in n[1:])
            params = glorot_uniform(key, spec, jnp.dtype(dtype))
            if symmetric:
                params = (*params[:L], *(w.T for w in params[1:L]), *params[2 * L - 1:])
        params = tuple(jnp.asarray(p) for p in params)
        want = ([(a, b) for a, b in zip(n[:-1], n[1:])] + [(b, a) for a, b in zip(n[1:-1], n[2:])]
                + [(1, m) for m in n[1:]])
        if len(params) != len(want) or any(p.shape != w for p, w in zip(params, want)):
            raise ConfigError(
                f"`params` must be (W_1..W_L, B_2..B_L, b_1..b_L) with shapes {want}; got "
                f"{[p.shape for p in params]}.")
        self.params = params

    @property
    def system(self) -> VectorFieldSystem:
        return vector_field_system(self.sizes, self.activation)

    def with_params(self, params: Sequence[Array]) -> "VectorFieldHopfield":
        return eqx.tree_at(lambda m: m.params, self, tuple(params))

    @property
    def energy(self):
        raise ConfigError("a `VectorFieldHopfield` has no energy: its dynamics are a vector "
                          "field with separate feedforward and feedback weights.")

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.system.param_names

    @property
    def state_names(self) -> tuple[str, ...]:
        return self.system.state_names

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return self.sizes[1:]

    @property
    def input_size(self) -> int:
        return self.sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.sizes[-1]

    @property
    def output_is_state(self) -> bool:
        return True

    def inputs(self, x: Float[Array, "B n_in"], d: Float[Array, "B n_out"] | None = None):
        if d is None:
            d = jnp.zeros((x.shape[0], self.n_outputs), x.dtype)
        return (x, d)

    def output(self, states, x=None) -> Float[Array, "B n_out"]:
        return self.system.activation.fn(states[-1])

    def alignment_angles(self) -> tuple[Array, ...]:
        """See `alignment_angles`."""
        return alignment_angles(self)

