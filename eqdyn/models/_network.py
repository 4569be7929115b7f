"""Networks defined by an energy: the interface the dynamics and learning rules run on.

`AbstractEnergyModel` is everything `relax`, the EP estimators, the references and the trainer
need from a network: its compiled system, its parameters in the energy's order, and how inputs,
states and predictions are laid out. `EnergyModel` makes one from any `eqdyn.symbolic.Energy`
(lateral or skip connections, a softmax readout, per-layer time constants, several
activations); `LayeredHopfield` is the built-in layered energy of Scellier & Bengio (2017).
"""

from __future__ import annotations

import abc
import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import sympy as sp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._compile import cheap_jit
from .._errors import ConfigError
from ..symbolic import Conv2d, Energy
from ._activations import Activation
from ._system import CompiledSystem, energy_system, resolve_activations, resolve_formulation

__all__ = ["AbstractEnergyModel", "EnergyModel", "glorot_init", "param_groups"]


def param_groups(names: Sequence[str]) -> tuple[int, ...]:
    """Learning-rate group of each parameter: the trailing integer of its name, from 0.

    `W_1, W_2, b_1, b_2` -> `(0, 1, 0, 1)`: a layer's weight and bias share the k-th rate, as
    in Scellier & Bengio's per-layer rates. A name without a trailing integer (`W_out`, `L`)
    gets a group after the numbered ones, one per name, in order of appearance.
    """
    numbered = {}
    for n in names:
        m = re.search(r"(\d+)\D*$", n)
        if m:
            numbered[n] = int(m.group(1))
    ranks = {k: i for i, k in enumerate(sorted(set(numbered.values())))}
    groups, extra = [], {}
    for n in names:
        if n in numbered:
            groups.append(ranks[numbered[n]])
        else:
            extra.setdefault(n, len(ranks) + len(extra))
            groups.append(extra[n])
    return tuple(groups)


class AbstractEnergyModel(eqx.Module):
    """A network whose dynamics and learning rule are derived from an energy.

    Subclasses provide `system` (a `CompiledSystem`), `params` (a tuple in the energy's
    parameter order) and `with_params`. Everything else follows from the energy: by convention
    its inputs are `(x, d)`, data first and target last.
    """

    @property
    @abc.abstractmethod
    def system(self) -> CompiledSystem:
        ...

    # `params` (a field or property: the parameters in the energy's order) and
    # `with_params(params) -> model` are provided by every concrete model.

    # -- layout ---------------------------------------------------------------------------
    @property
    def energy(self) -> Energy:
        return self.system.derivation.energy

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.energy.params)

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.energy.states)

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """Units per state (columns of each `B x n_k` state)."""
        return tuple(int(s.cols) for s in self.energy.states)

    @property
    def input_size(self) -> int:
        """Columns of the data input `x`."""
        return int(self.energy.data.cols)

    @property
    def n_outputs(self) -> int:
        """Columns of the target `d` (the number of classes)."""
        e = self.energy
        return int(e.target.cols if e.target is not None else e.prediction.cols)

    @property
    def output_is_state(self) -> bool:
        """Whether the prediction is the last state (needed by contrastive Hebbian learning)."""
        e = self.energy
        return e.output is None or e.output == e.states[-1]

    @property
    def lr_groups(self) -> tuple[int, ...]:
        """Learning-rate group of each parameter (see `param_groups`)."""
        return param_groups(self.param_names)

    # -- use ------------------------------------------------------------------------------
    def init_state(self, batch: int, dtype=None) -> tuple[Array, ...]:
        """Zero states for a batch."""
        dtype = dtype or self.params[0].dtype
        return tuple(jnp.zeros((batch, n), dtype) for n in self.state_sizes)

    def inputs(self, x: Float[Array, "B n_in"], d: Float[Array, "B n_out"] | None = None):
        """The clamped inputs `(x, d)` in the energy's order (zero target if `d` is None)."""
        if d is None:
            d = jnp.zeros((x.shape[0], self.n_outputs), x.dtype)
        return (x, d) if len(self.energy.inputs) == 2 else (x,)

    def output(self, states, x: Float[Array, "B n_in"] | None = None) -> Float[Array, "B n_out"]:
        """The prediction (the observed output layer, or the readout's logits)."""
        if x is None:
            pred = self.energy.prediction
            if self.energy.data is not None and pred.has(self.energy.data):
                raise ConfigError(
                    f"the output of `{self.energy.name}` depends on the input; pass `x`."
                )
            x = jnp.zeros((states[0].shape[0], self.input_size), states[0].dtype)
        return self.system.output(states, self.params, self.inputs(x))

    def predict(self, states, x=None) -> Int[Array, " B"]:
        """Predicted classes: argmax of the output."""
        return jnp.argmax(self.output(states, x), axis=-1)


def _self_couplings(energy: Energy) -> set:
    """Parameters whose every term involves one state and nothing else batched (lateral)."""
    batched = {*energy.states, *energy.inputs}
    out = set()
    for p in energy.params:
        seen = set()
        for t in energy.terms:
            if t.has(p):
                seen |= {m for m in t.atoms(sp.MatrixSymbol) if m in batched}
        if len(seen) == 1 and next(iter(seen)) in energy.states:
            out.add(p)
    return out


def glorot_init(key: PRNGKeyArray, energy: Energy, dtype=jnp.float32) -> tuple[Array, ...]:
    """Default parameters: Glorot-uniform couplings, PyTorch's convolution kernels; zero biases
    and lateral weights.

    A parameter of shape `(m, n)` with `m > 1` is drawn from `U(-a, a)`, `a = sqrt(6/(m+n))`
    (Scellier & Bengio's initialisation); a `(1, n)` parameter (a bias) and a parameter that
    couples a layer to itself (lateral weights: every term it is in involves a single state)
    start at zero, so a fresh network with lateral weights starts as the plain layered one.
    (Random lateral weights with self-connections measurably slow learning: 46 % vs 94 % test
    accuracy after 3 epochs on digits, 64-256-10, hard sigmoid.)

    A convolution kernel (`Co x C*kh*kw`, the kernel of a `conv` node) is drawn from
    `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, `fan_in = C*kh*kw`: PyTorch's default `Conv2d`
    initialisation (`kaiming_uniform_(w, a=sqrt(5))`), which the published convolutional EP
    code runs (Ernoult et al. 2019 keep `nn.Conv2d`'s default; Laborieux et al. 2021's
    `my_init` calls it explicitly, then scales by their `--scale`). The matrix formula would
    take `m + n = Co + C*kh*kw` for the fans, a wider bound than any convolution convention.
    """
    lateral, kernels = _self_couplings(energy), _conv_kernels(energy)
    spec = tuple((int(p.shape[0]), int(p.shape[1]), not (int(p.shape[0]) == 1 or p in lateral),
                  1.0 / math.sqrt(int(p.shape[1])) if p in kernels else None)
                 for p in energy.params)
    return glorot_uniform(key, spec, jnp.dtype(dtype))


def _conv_kernels(energy: Energy) -> set:
    """The parameters that are the kernel of a convolution in `energy`."""
    params = set(energy.params)
    found = set()
    for term in (*energy.internal, *energy.cost):
        for node in sp.preorder_traversal(term):
            if isinstance(node, Conv2d) and node.operands[1] in params:
                found.add(node.operands[1])
    return found


@functools.partial(cheap_jit, static_argnums=(1, 2))
def glorot_uniform(key: PRNGKeyArray, spec: tuple[tuple, ...], dtype):
    """`jax.random.split(key, len(spec))`, then for each `(m, n, draw)` a `(m, n)` array drawn
    from `U(-a, a)`, `a = sqrt(6/(m+n))`, or zeros where `draw` is False; an entry `(m, n,
    draw, a)` with `a` not None gives the bound itself.

    One program, compiled cheaply (`eqdyn._compile`): the same bits as drawing each array
    with `jax.random.uniform` op by op, in a third of the compile time.
    """
    keys = jax.random.split(key, max(1, len(spec)))
    out = []
    for k, (m, n, draw, *bound) in zip(keys, spec):
        if draw:
            lim = bound[0] if bound and bound[0] is not None else math.sqrt(6.0 / (m + n))
            out.append(jax.random.uniform(k, (m, n), dtype, -lim, lim))
        else:
            out.append(jnp.zeros((m, n), dtype))
    return tuple(out)


def _activation_key(activation):
    if isinstance(activation, Mapping):
        return tuple(sorted((str(k), v if isinstance(v, (str, Activation)) else v)
                            for k, v in activation.items()))
    return activation


class EnergyModel(AbstractEnergyModel):
    """A network built from any `eqdyn.symbolic.Energy`: parameters plus the derived system.

    ```python
    energy = my_energy()                      # an eqdyn.symbolic.Energy
    model = eqdyn.EnergyModel(energy, "sigmoid", key=jax.random.PRNGKey(0))
    res = eqdyn.relax(model, x)               # the derived dynamics
    grads, aux = eqdyn.ep_gradient(model, x, d, res.states, eqdyn.EPConfig(beta=0.5, ...))
    ```

    **Fields:** `params` (tuple in `energy.params` order); static: `spec` (the `Energy`),
    `activation`, `formulation`.
    """

    params: tuple[Array, ...]
    spec: Energy = eqx.field(static=True)
    activation: object = eqx.field(static=True)
    formulation: str = eqx.field(static=True)

    def __init__(
        self,
        energy: Energy,
        activation: str | Activation | Mapping = "hard_sigmoid",
        formulation: str | None = None,
        *,
        key: PRNGKeyArray | None = None,
        params: Sequence[Array] | Mapping[str, Array] | None = None,
        init: Callable | None = None,
        dtype=jnp.float32,
    ):
        """**Arguments:**

        - `energy`: the `Energy` (inputs `(x, d)`; see `eqdyn.symbolic.terms` for the building
          blocks).
        - `activation`: bound to every opaque function of the energy, or a mapping
          `{function name: activation}`.
        - `formulation`: `"gradient"` or `"leaky"` (see `eqdyn.models.compile_system`).
        - `key`: PRNG key for `init` (default `glorot_init`).
        - `params`: explicit parameter values (a sequence in `energy.params` order, or a
          mapping by name) instead of `init`.
        - `init`: `init(key, energy, dtype) -> tuple of arrays`.
        """
        if not isinstance(energy, Energy):
            raise ConfigError(f"`energy`={energy!r} must be an eqdyn.symbolic.Energy.")
        if energy.data is None or len(energy.inputs) > 2:
            raise ConfigError(
                f"`energy` `{energy.name}` has inputs {[i.name for i in energy.inputs]}; a "
                "network needs the data input first and, if it has a cost, the target last: "
                "inputs=(x, d)."
            )
        for p in energy.params:
            if not all(sp.sympify(v).is_Integer for v in p.shape):
                raise ConfigError(
                    f"parameter `{p.name}` has shape {p.shape}; parameter shapes must be numbers."
                )
        main, _ = resolve_activations(energy, dict(activation) if isinstance(activation, Mapping)
                                      else activation)
        self.spec = energy
        self.activation = _activation_key(activation)
        self.formulation = resolve_formulation(main, formulation)
        if params is None:
            if key is None:
                raise ConfigError("`key` is required to initialise the parameters "
                                  "(or pass `params`).")
            params = (init or glorot_init)(key, energy, dtype)
        if isinstance(params, Mapping):
            missing = [p.name for p in energy.params if p.name not in params]
            extra = set(params) - {p.name for p in energy.params}
            if missing or extra:
                raise ConfigError(
                    f"`params` must give exactly {[p.name for p in energy.params]}; missing "
                    f"{missing}, unknown {sorted(extra)}."
                )
            params = [params[p.name] for p in energy.params]
        params = tuple(jnp.asarray(v) for v in params)
        if len(params) != len(energy.params):
            raise ConfigError(
                f"`params` has {len(params)} arrays; `{energy.name}` has "
                f"{len(energy.params)} parameters {[p.name for p in energy.params]}."
            )
        for v, p in zip(params, energy.params):
            want = tuple(int(n) for n in p.shape)
            if v.shape != want:
                raise ConfigError(f"`params[{p.name!r}]` has shape {v.shape}; expected {want}.")
        self.params = params

    @property
    def system(self) -> CompiledSystem:
        """The compiled system (cached per energy, activation and formulation)."""
        return energy_system(self.spec, self.activation, self.formulation)

    def with_params(self, params: Sequence[Array]) -> "EnergyModel":
        return eqx.tree_at(lambda m: m.params, self, tuple(params))

