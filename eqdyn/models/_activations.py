"""Numeric activation functions (JAX), with the derivatives the derived dynamics call.

The symbolic layer keeps the activation an opaque function `rho` whose derivative is another
opaque function `rho'`; here each name is bound to JAX code. An activation is a *projection*
when `rho' = 1` wherever `rho` is not saturated and `rho(rho(u)) = rho(u)` (the hard sigmoid):
its leaky-integrator formulation relaxes to the minima of `F` on the box. With a smooth
activation the leaky formulation is the continuous Hopfield network (see
`eqdyn.models.compile_system`), whose energy needs `integral`, an antiderivative of `rho`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp

from .._errors import ConfigError

__all__ = ["Activation", "ACTIVATIONS", "clipped_relu", "get_activation", "register_activation"]


@dataclasses.dataclass(frozen=True)
class Activation:
    """An elementwise activation `rho` and its derivatives.

    **Fields:**

    - `name`: registry name.
    - `fn`: `rho(u)`.
    - `d1`: `rho'(u)`.
    - `d2`: `rho''(u)` or `None` (needed only by second-order analyses).
    - `projection`: `True` when `rho` is the projection onto its range with `rho' = 1` inside
      (the hard sigmoid); the leaky-integrator formulation is then its default.
    - `latex`: how `rho` is written in equations.
    - `bounds`: the range `(lo, hi)` a projection clips to (used by the steady-state test of the
      leaky formulation: a potential past a bound that keeps moving outwards no longer changes
      the state).
    - `holomorphic`: `rho` extends to a complex-analytic function that `fn`/`d1` compute on
      complex arrays (sigmoid, tanh, softplus; not the hard sigmoid). Holomorphic EP relaxes
      the network at complex `beta` and needs it.
    - `integral`: an antiderivative `P` of `rho` (`P' = rho`) or `None`: the Lyapunov energy
      of the continuous Hopfield network (leaky formulation, smooth `rho`) holds
      `int^s rho^{-1} = u rho(u) - P(u)`.
    """

    name: str
    fn: Callable
    d1: Callable
    d2: Callable | None = None
    projection: bool = False
    latex: str = r"\rho"
    bounds: tuple[float, float] | None = None
    expr: object = None
    holomorphic: bool = False
    integral: Callable | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"`name`={self.name!r} of an activation must be a non-empty string.")
        if not callable(self.fn):
            raise ConfigError(f"`fn` of activation {self.name!r} must be callable, got {self.fn!r}.")
        if self.d1 is None or not callable(self.d1):
            raise ConfigError(
                f"activation {self.name!r} has no derivative `d1` (got {self.d1!r}); the derived "
                "dynamics need rho'. Pass `d1`, or build it with Activation.from_sympy."
            )
        if self.d2 is not None and not callable(self.d2):
            raise ConfigError(f"`d2` of activation {self.name!r} must be callable or None.")

    @classmethod
    def from_sympy(cls, name: str, expr, var=None, **kwargs) -> "Activation":
        """An activation from a SymPy expression in one variable; derivatives by SymPy.

        **Arguments:**

        - `name`: registry name (also how equations print it, unless `latex` is given).
        - `expr`: e.g. `sympy.log(1 + sympy.exp(u))` (softplus) or `u / (1 + abs(u))`.
        - `var`: the variable (default: the expression's only free symbol).
        - `kwargs`: `projection`, `bounds`, `latex` as for the constructor.

        `fn`, `d1` and `d2` are compiled to `jnp` code through eqdyn's code generator.
        """
        import sympy as sp

        from ..symbolic import scalar_function_source

        expr = sp.sympify(expr)
        if var is None:
            free = sorted(expr.free_symbols, key=str)
            if len(free) != 1:
                raise ConfigError(
                    f"activation {name!r} = {expr} has free symbols {[str(f) for f in free]}; "
                    "pass `var` (the argument) and substitute numbers for the others."
                )
            var = free[0]
        real = sp.Symbol(str(var), real=True)  # so that |u|' = sign(u), not re/im parts
        expr, var = expr.subs(var, real), real
        from ..symbolic import python_name

        def compile_(e, fname):
            ns = {"jnp": jnp}
            exec(scalar_function_source(e, var, fname), ns)  # noqa: S102
            return ns[python_name(fname)]

        fns = {}
        for order, e in enumerate((expr, sp.diff(expr, var), sp.diff(expr, var, 2))):
            fns[order] = compile_(e, f"{name}_d{order}")
        try:  # an antiderivative, when SymPy finds a real closed form that compiles
            prim = sp.integrate(expr, var)
            if not prim.has(sp.Integral, sp.I):
                fns[3] = compile_(prim, f"{name}_integral")
        except Exception:  # noqa: BLE001 - SymPy or the printer may fail; then there is none
            pass
        kwargs.setdefault("latex", r"\rho")
        # analytic unless built from pieces (|u|, max, min, piecewise, step, sign, re/im)
        kinks = (sp.Abs, sp.Max, sp.Min, sp.Piecewise, sp.Heaviside, sp.sign, sp.re, sp.im,
                 sp.conjugate, sp.floor, sp.ceiling)
        kwargs.setdefault("holomorphic", not expr.has(*kinks))
        kwargs.setdefault("integral", fns.get(3))
        return cls(name, fns[0], fns[1], fns[2], expr=expr, **kwargs)


def _hard_sigmoid(u):
    return jnp.clip(u, 0.0, 1.0)


def _hard_sigmoid_d1(u):
    return jnp.where((u >= 0.0) & (u <= 1.0), jnp.ones_like(u), jnp.zeros_like(u))


def clipped_relu(cap: float = 6.0, name: str | None = None) -> Activation:
    """The clipped ReLU `min(max(u, 0), cap)` (ReLU6 at `cap = 6`; the hard sigmoid at 1).

    A projection onto `[0, cap]` with `rho' = 1` inside (its leaky formulation relaxes to the
    minima of `F` on the box `[0, cap]^n`), the activation of Hopfield-ResNet (Elayedam &
    Srinivasan 2025, ReLU6 in their code). `"relu6"` is registered.

    **Arguments:** `cap` (a positive float), `name` (default `"clipped_relu{cap}"`).

    **Returns:** an `Activation` (not registered: `register_activation` adds it by name).
    """
    cap = float(cap)
    if not cap > 0.0:
        raise ConfigError(f"`cap`={cap!r} of a clipped ReLU must be positive (it clips to "
                          "[0, cap]; the hard sigmoid is cap=1).")

    def fn(u):
        return jnp.clip(u, 0.0, cap)

    def d1(u):
        return jnp.where((u >= 0.0) & (u <= cap), jnp.ones_like(u), jnp.zeros_like(u))

    return Activation(name or f"clipped_relu{cap:g}", fn, d1, jnp.zeros_like, True,
                      bounds=(0.0, cap))


def _sigmoid(u):
    return 1.0 / (1.0 + jnp.exp(-u))


def _sigmoid_d1(u):
    s = _sigmoid(u)
    return s * (1.0 - s)


def _sigmoid_d2(u):
    s = _sigmoid(u)
    return s * (1.0 - s) * (1.0 - 2.0 * s)


def _steep_sigmoid(u):
    return 1.0 / (1.0 + jnp.exp(-4.0 * (u - 0.5)))


def _steep_sigmoid_d1(u):
    s = _steep_sigmoid(u)
    return 4.0 * s * (1.0 - s)


def _steep_sigmoid_d2(u):
    s = _steep_sigmoid(u)
    return 16.0 * s * (1.0 - s) * (1.0 - 2.0 * s)


def _tanh_d1(u):
    return 1.0 - jnp.tanh(u) ** 2


def _tanh_d2(u):
    t = jnp.tanh(u)
    return -2.0 * t * (1.0 - t**2)


ACTIVATIONS: dict[str, Activation] = {
    "hard_sigmoid": Activation(
        "hard_sigmoid", _hard_sigmoid, _hard_sigmoid_d1, lambda u: jnp.zeros_like(u), True,
        bounds=(0.0, 1.0),
    ),
    "relu6": clipped_relu(6.0, "relu6"),
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_d1, _sigmoid_d2, holomorphic=True,
                          integral=lambda u: jnp.logaddexp(0.0, u)),
    "tanh": Activation("tanh", jnp.tanh, _tanh_d1, _tanh_d2, holomorphic=True,
                       integral=lambda u: jnp.logaddexp(u, -u)),
    # 1 / (1 + exp(-4 (u - 1/2))): the smooth, holomorphic stand-in for the hard sigmoid with
    # the same slope 1 and value 1/2 at u = 1/2 (the sigmoid of Laborieux et al.'s MLPs)
    "steep_sigmoid": Activation("steep_sigmoid", _steep_sigmoid, _steep_sigmoid_d1,
                                _steep_sigmoid_d2, holomorphic=True,
                                integral=lambda u: 0.25 * jnp.logaddexp(0.0, 4.0 * u - 2.0)),
}


def register_activation(activation: Activation, *, overwrite: bool = False) -> None:
    """Add `activation` to the registry under `activation.name`."""
    if not isinstance(activation, Activation):
        raise ConfigError(f"`activation`={activation!r} must be an eqdyn.Activation.")
    if activation.name in ACTIVATIONS and not overwrite:
        raise ConfigError(
            f"an activation named {activation.name!r} is already registered; pass overwrite=True."
        )
    ACTIVATIONS[activation.name] = activation


def get_activation(name: str | Activation) -> Activation:
    """Look up an activation by name (or pass an `Activation` through)."""
    if isinstance(name, Activation):
        return name
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"`activation`={name!r} is not known; choose one of {sorted(ACTIVATIONS)} "
            "or register your own with eqdyn.register_activation."
        ) from None
