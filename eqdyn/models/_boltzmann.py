"""Boltzmann machines: the compiled energy gaps of binary units, and a network that samples them.

`binary_system(energy, units)` compiles the gaps `dF_k` derived by `eqdyn.symbolic.binary_units`
to JAX (the same code generator as the continuous dynamics), so that
`p(s_k = 1 | rest) = sigmoid(-dF_k / T)` is one matrix product per layer. `BoltzmannMachine`
holds the parameters of such an energy (by default `eqdyn.symbolic.boltzmann_energy`: an RBM or
a deep Boltzmann machine) for the samplers of `eqdyn.dynamics` (`BlockGibbs`, `MeanField`) and
the rules of `eqdyn.learning` (`CD`, `PCD`, `DBMRule`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import ConfigError
from ..symbolic import Energy, binary_units, boltzmann_energy, generate_code, python_name
from ._binding import call_kwargs, exec_generated

__all__ = ["BinarySystem", "binary_system", "BoltzmannMachine", "check_binary"]


@dataclasses.dataclass(frozen=True, eq=False)
class BinarySystem:
    """JAX callables for the energy gaps of binary units (from `eqdyn.symbolic.binary_units`).

    Functions take tuples in the energy's order: `states` (one `(B, n_k)` array of 0/1, or
    -1/1, per state), `params`, `inputs` and the scalar `beta` (0 where the energy has none).

    **Fields:** `binary` (the `BinaryDerivation`), `code` (the generated source).
    """

    binary: object
    code: object
    _fns: dict = dataclasses.field(repr=False)

    @property
    def units(self) -> str:
        return self.binary.units

    @property
    def low(self) -> float:
        """The value of an "off" unit: 0.0 or -1.0."""
        return 0.0 if self.units == "01" else -1.0

    @property
    def blocks(self) -> tuple[tuple[int, ...], ...]:
        """The states a block Gibbs sweep updates together (odd and even layers)."""
        return self.binary.blocks

    @property
    def mean_field_states(self) -> tuple[int, ...]:
        """States whose gap holds a nonlinear cost's gradient (exact under mean field only)."""
        return self.binary.mean_field_states

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(python_name(s.name) for s in self.binary.energy.states)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(python_name(p.name) for p in self.binary.energy.params)

    def _kw(self, states, params, inputs, beta) -> dict:
        return call_kwargs(self.binary.energy, states, params, inputs, beta)

    def gaps(self, states, params, inputs=(), beta=0.0):
        """`dF_k = F(s_k = 1) - F(s_k = low)` of every unit given the others, per state."""
        return self._fns["state_grads"](**self._kw(states, params, inputs, beta))

    def prob_on(self, states, params, inputs=(), beta=0.0, temperature=1.0):
        """`p(s_k = 1 | rest) = sigmoid(-dF_k / T)` per state."""
        return tuple(jax.nn.sigmoid(-g / temperature)
                     for g in self.gaps(states, params, inputs, beta))

    def mean(self, p):
        """The mean of a unit that is on with probability `p` (`p`, or `2p - 1` on {-1, 1})."""
        return p if self.units == "01" else 2.0 * p - 1.0

    def output(self, states, params, inputs=()):
        """The energy's prediction: its `output` expression (a softmax readout's logits) or
        its last state."""
        return self._fns["output"](**self._kw(states, params, inputs, 0.0))[0]

    def cost(self, states, params, inputs=()):
        """The cost `C` at `states` (means), summed over the batch: `F(beta=1) - F(beta=0)`."""
        return (self.energy(states, params, inputs, 1.0)
                - self.energy(states, params, inputs, 0.0))

    def energy_rows(self, states, params, inputs=(), beta=0.0):
        """`F` of every example (chain) separately, shape `(B,)`."""
        fn = self._fns["energy"]

        def one(*row):
            st = tuple(a[None] for a in row)
            return fn(**self._kw(st, params, inputs, beta))

        return jax.vmap(one)(*states)

    def energy(self, states, params, inputs=(), beta=0.0):
        """`F` summed over the batch."""
        return self._fns["energy"](**self._kw(states, params, inputs, beta))

    def param_grads(self, states, params, inputs=(), beta=0.0):
        """`dF/dtheta` summed over the batch (for the weights `-s_{k-1}^T s_k`)."""
        return self._fns["param_grads"](**self._kw(states, params, inputs, beta))


def _compile(energy: Energy, units: str) -> BinarySystem:
    bd = binary_units(energy, units)
    code = generate_code(bd.derivation())
    return BinarySystem(bd, code, exec_generated(code, {}, leaky=False))


@functools.lru_cache(maxsize=64)
def binary_system(energy: Energy, units: str = "01") -> BinarySystem:
    """The compiled gaps of `energy`'s binary units (cached per energy and unit set).

    **Arguments:** `energy` (an `eqdyn.symbolic.Energy`), `units` (`"01"` or `"pm1"`).

    **Returns:** a `BinarySystem`. **Raises:** `DerivationError` (from `binary_units`) for an
    energy whose gaps block Gibbs sampling cannot use.
    """
    return _compile(energy, units)


class BoltzmannMachine(eqx.Module):
    """A Boltzmann machine: binary units with the energy gaps of an `Energy`.

    **Fields:** `params` (arrays in the energy's parameter order), `energy` and `units` (static).

    Build one with `BoltzmannMachine.layered(sizes, key=...)` (an RBM for two sizes, a deep
    Boltzmann machine for more; the visible layer is state 0) or from any energy whose gaps
    `binary_units` accepts with `BoltzmannMachine(energy, params)`.
    """

    params: tuple[Array, ...]
    energy: Energy = eqx.field(static=True)
    units: str = eqx.field(static=True, default="01")

    def __check_init__(self):
        shapes = tuple((int(p.rows), int(p.cols)) for p in self.energy.params)
        got = tuple(tuple(jnp.shape(p)) for p in self.params)
        if got != shapes:
            raise ConfigError(
                f"`params` have shapes {got}, but `{self.energy.name}` needs {shapes} (in the "
                f"order {tuple(p.name for p in self.energy.params)})."
            )

    @classmethod
    def layered(cls, sizes: Sequence[int], *, key: PRNGKeyArray, scale: float = 0.01,
                units: str = "01", leak: bool = False, dtype=jnp.float32) -> BoltzmannMachine:
        """A layered machine on `boltzmann_energy(sizes, leak=leak)`: weights drawn from
        `N(0, scale^2)` (Hinton's practical guide: 0.01), biases zero."""
        return cls.init(boltzmann_energy(tuple(sizes), leak=leak), key=key, scale=scale,
                        units=units, dtype=dtype)

    @classmethod
    def init(cls, energy: Energy, *, key: PRNGKeyArray, scale: float = 0.01,
             units: str = "01", dtype=jnp.float32) -> BoltzmannMachine:
        """A machine on any `energy` whose gaps `binary_units` accepts (e.g.
        `layered_hopfield_energy(sizes)` for EP and CHL on binary units): parameters with a
        row (`1 x n`, biases) zero, the others drawn from `N(0, scale^2)`."""
        keys = jax.random.split(key, len(energy.params))
        params = []
        for k, p in zip(keys, energy.params):
            shape = (int(p.rows), int(p.cols))
            params.append(jnp.zeros(shape, dtype) if shape[0] == 1
                          else scale * jax.random.normal(k, shape, dtype))
        return cls(tuple(params), energy, units)

    @property
    def system(self) -> BinarySystem:
        return binary_system(self.energy, self.units)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.energy.params)

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return tuple(int(s.cols) for s in self.energy.states)

    def with_params(self, params) -> BoltzmannMachine:
        return BoltzmannMachine(tuple(params), self.energy, self.units)

    def init_state(self, batch: int, *, key: PRNGKeyArray | None = None, dtype=None):
        """States for `batch` chains: uniformly random units with `key`, else all off."""
        dtype = dtype or self.params[0].dtype
        low = self.system.low
        if key is None:
            return tuple(jnp.full((batch, n), low, dtype) for n in self.state_sizes)
        keys = jax.random.split(key, len(self.state_sizes))
        return tuple(jnp.where(jax.random.bernoulli(k, 0.5, (batch, n)), 1.0, low).astype(dtype)
                     for k, n in zip(keys, self.state_sizes))

    def energy_rows(self, states, inputs=(), beta=0.0) -> Float[Array, " B"]:
        """`F` of every chain."""
        return self.system.energy_rows(states, self.params, inputs, beta)


def check_binary(name: str, x, units: str = "01") -> None:
    """Refuse (outside a trace) data that are not binary for the unit set `units`."""
    if isinstance(x, jax.core.Tracer):
        return
    import numpy as np

    a = np.asarray(x)
    allowed = (0.0, 1.0) if units == "01" else (-1.0, 1.0)
    bad = ~np.isin(a, allowed)
    if bad.any():
        raise ConfigError(
            f"`{name}` has {int(bad.sum())} entries that are not in {set(allowed)} (e.g. "
            f"{a[bad].flat[0]!r}); binary units need binary data: threshold it first "
            "(e.g. `(x > 0.5).astype(x.dtype)`)."
        )
