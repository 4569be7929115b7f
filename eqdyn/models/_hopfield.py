"""The layered Hopfield network of Scellier & Bengio (2017) as an `equinox.Module`."""

from __future__ import annotations

import re
from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import ConfigError
from ._activations import get_activation
from ._network import AbstractEnergyModel, glorot_uniform
from ._system import CompiledSystem, hopfield_system, resolve_formulation

__all__ = ["LayeredHopfield", "parse_arch"]


def parse_arch(arch: str | Sequence[int]) -> tuple[int, ...]:
    """Parse `"784-500-10"` (or a sequence of ints) into layer sizes, input first."""
    if isinstance(arch, str):
        if not re.fullmatch(r"\s*\d+(\s*-\s*\d+)+\s*", arch):
            raise ConfigError(
                f"`arch`={arch!r} is malformed; write layer sizes joined by '-', input first, "
                "e.g. '784-500-10' (at least an input and an output layer)."
            )
        sizes = tuple(int(p) for p in arch.split("-"))
    else:
        try:
            sizes = tuple(int(n) for n in arch)
        except (TypeError, ValueError):
            raise ConfigError(f"`arch`={arch!r} must be a string like '784-500-10' or ints.") from None
    if len(sizes) < 2 or any(n < 1 for n in sizes):
        raise ConfigError(
            f"`arch`={arch!r} needs at least two layers of positive size, e.g. '784-500-10'."
        )
    return sizes


class LayeredHopfield(AbstractEnergyModel):
    """A layered Hopfield network: its parameters, and the derived system that drives it.

    The energy is `eqdyn.symbolic.layered_hopfield_energy(sizes)`; its dynamics and learning rule
    are derived with SymPy and compiled to JAX once per `(sizes, activation, formulation)`.

    **Fields:**

    - `weights`: `W_k` of shape `(n_{k-1}, n_k)`, input side first.
    - `biases`: `b_k` of shape `(1, n_k)`.
    - `sizes`, `activation`, `formulation`: static configuration.
    """

    weights: tuple[Float[Array, "n_in n_out"], ...]
    biases: tuple[Float[Array, "1 n"], ...]
    sizes: tuple[int, ...] = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    formulation: str = eqx.field(static=True)

    def __init__(
        self,
        sizes: str | Sequence[int],
        activation: str = "hard_sigmoid",
        formulation: str | None = None,
        *,
        key: PRNGKeyArray,
        weights=None,
        biases=None,
        dtype=jnp.float32,
    ):
        """**Arguments:**

        - `sizes`: layer sizes, input first (`(784, 500, 10)` or `"784-500-10"`).
        - `activation`: `"hard_sigmoid"` (default, the paper's), `"sigmoid"` or `"tanh"`.
        - `formulation`: `"leaky"` (default for hard sigmoid) or `"gradient"`; see
          `eqdyn.models.compile_system`.
        - `key`: PRNG key for the Glorot-uniform initialisation (biases start at zero).
        - `weights`, `biases`: optional explicit values instead of the initialisation.
        """
        self.sizes = parse_arch(sizes)
        act = get_activation(activation)
        self.activation = act.name
        self.formulation = resolve_formulation(act, formulation)
        if self.formulation == "leaky" and not act.projection:
            raise ConfigError(
                f"`LayeredHopfield` with `formulation`='leaky' needs a projection activation "
                f"(hard_sigmoid): its squared-error cost acts on the output potential, which the "
                f"continuous Hopfield network of {act.name!r} cannot nudge consistently. Use "
                f"EnergyModel(layered_hopfield_energy(sizes, cost='cross_entropy'), "
                f"{act.name!r}, 'leaky') (a softmax readout), or formulation='gradient'."
            )
        if weights is None:
            weights = glorot_uniform(
                key, tuple((m, n, True) for m, n in zip(self.sizes[:-1], self.sizes[1:])),
                jnp.dtype(dtype))
        if biases is None:
            biases = [jnp.zeros((1, n), dtype) for n in self.sizes[1:]]
        self.weights = tuple(jnp.asarray(w) for w in weights)
        self.biases = tuple(jnp.asarray(b).reshape(1, -1) for b in biases)
        for i, (w, n_in, n_out) in enumerate(zip(self.weights, self.sizes[:-1], self.sizes[1:])):
            if w.shape != (n_in, n_out):
                raise ConfigError(
                    f"`weights[{i}]` has shape {w.shape}; layer sizes {self.sizes} need "
                    f"{(n_in, n_out)}."
                )

    # -- derived system ------------------------------------------------------------------
    @property
    def system(self) -> CompiledSystem:
        """The compiled system (cached per configuration; SymPy runs once)."""
        return hopfield_system(self.sizes, self.activation, self.formulation)

    @property
    def params(self) -> tuple[Array, ...]:
        """Parameters in the energy's order: `(W_1, ..., W_L, b_1, ..., b_L)`."""
        return (*self.weights, *self.biases)

    def with_params(self, params: Sequence[Array]) -> "LayeredHopfield":
        """A copy with parameters replaced (same order as `params`); also builds gradients."""
        n = len(self.weights)
        return eqx.tree_at(
            lambda m: (m.weights, m.biases), self, (tuple(params[:n]), tuple(params[n:]))
        )

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1
