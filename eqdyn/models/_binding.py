"""Binding a derivation's generated code to JAX: which activation each opaque function of the
energy is, which formulation the system runs in, and the namespace the generated source runs in
(with the complex-aware product `matmul` and the keyword arguments of its functions)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._errors import ConfigError, DerivationError
from ..symbolic import GeneratedCode, python_name
from ._activations import Activation, get_activation

FORMULATIONS = ("gradient", "leaky")


def _ones(u):
    return 1.0


def call_kwargs(energy, states, params, inputs, beta) -> dict:
    """The keyword arguments of the generated functions of `energy` (checked counts)."""
    names = [tuple(python_name(s.name) for s in group)
             for group in (energy.states, energy.params, energy.inputs)]
    if len(states) != len(energy.states) or len(params) != len(energy.params):
        raise ConfigError(
            f"expected {len(energy.states)} states and {len(energy.params)} parameters "
            f"({names[0]}, {names[1]}); got {len(states)} and {len(params)}."
        )
    kw = dict(zip(names[0], states))
    kw.update(zip(names[1], params))
    kw.update(zip(names[2], inputs))
    if energy.scalars:
        kw[python_name(energy.beta.name)] = beta
    return kw


def matmul(a, b):
    """`a @ b` for the generated code (bound there as `_matmul`), decided at trace time.

    A complex array times a real one (either order; holomorphic EP's complex states times the
    real weights) is one real product of the stacked real and imaginary parts, `[Re a; Im a] @
    b` split back (`a @ [Re b, Im b]` for real `a`), instead of `a @ b`, which converts the real
    operand to complex at every evaluation and takes a complex product (about 4x the real
    one's work). Equal to `a @ b` up to rounding (`(x + iy) w = xw + i yw`: the complex
    product only adds zero terms), and differentiates like it. Measured on CPU, float32, in one
    process: a `(20, 256) @ (256, 256)` product 50 us against 230 us, `(20, 784) @ (784, 256)`
    180 us against 720 us; a whole lz22-mnist-holo EP estimate 2.05x faster, noisy holomorphic
    EP 1.75x (fused) and 1.3x (diffrax) (benchmarks/bench_complex_matmul.py). Real operands
    (and complex by complex) are `a @ b`, unchanged, so real-only code pays nothing.
    """
    ac, bc = jnp.iscomplexobj(a), jnp.iscomplexobj(b)
    if ac == bc or jnp.ndim(a) not in (1, 2) or jnp.ndim(b) not in (1, 2):
        return a @ b
    if ac:  # complex @ real: the real and imaginary rows as one batch
        r = jnp.stack([jnp.real(a), jnp.imag(a)]) @ b
        return jax.lax.complex(r[0], r[1])
    if jnp.ndim(b) == 1:  # real @ complex vector
        r = a @ jnp.stack([jnp.real(b), jnp.imag(b)], axis=-1)
        return jax.lax.complex(r[..., 0], r[..., 1])
    m = b.shape[1]  # real @ complex matrix: the real and imaginary columns side by side
    r = a @ jnp.concatenate([jnp.real(b), jnp.imag(b)], axis=1)
    return jax.lax.complex(r[..., :m], r[..., m:])


def exec_generated(code: GeneratedCode, activations: dict, leaky: bool) -> dict:
    ns: dict = {"jnp": jnp, "jax": jax, "_matmul": matmul}
    bind = {}
    for fname, act in activations.items():
        py = python_name(fname)
        bind[py] = act.fn
        bind[f"{py}_d1"] = _ones if leaky else act.d1
        if act.d2 is not None:
            bind[f"{py}_d2"] = act.d2
    for name in code.functions:
        fn = bind.get(python_name(name))
        if fn is None:
            raise DerivationError(
                f"the derived code calls `{name}`, but no activation provides it (bound: "
                f"{sorted(bind)}). Bind every opaque function of the energy to an activation "
                "with a derivative (`activation={'rho': ..., 'phi': ...}`); second derivatives "
                "need `d2`."
            )
        ns[name] = fn
    exec(compile(code.source, "<eqdyn generated code>", "exec"), ns)  # noqa: S102
    return ns


def resolve_activations(energy, activation) -> tuple[Activation, dict]:
    """Bind each opaque function of `energy` to an `Activation`.

    `activation` is one activation (name or object) for every function, or a mapping from
    function name to activation. Returns `(main, mapping)`, `main` the activation of the
    first function (the leaky formulation's read-out).
    """
    names = energy.function_names
    if isinstance(activation, dict):
        unknown = set(activation) - set(names)
        if unknown:
            raise ConfigError(
                f"`activation` binds {sorted(unknown)}, which `{energy.name}` does not use; its "
                f"opaque functions are {list(names)}."
            )
        missing = [n for n in names if n not in activation]
        if missing:
            raise ConfigError(
                f"`activation` does not bind {missing} of `{energy.name}`; give an activation "
                f"for each of {list(names)}."
            )
        mapping = {n: get_activation(activation[n]) for n in names}
    else:
        act = get_activation(activation)
        mapping = {n: act for n in names}
    main = mapping[names[0]] if names else get_activation(
        activation if not isinstance(activation, dict) else "hard_sigmoid")
    return main, mapping


def resolve_formulation(activation: str | Activation, formulation: str | None) -> str:
    """Check `formulation` against `activation`; `None` picks the default.

    The default is `"leaky"` for projection activations (hard sigmoid) and `"gradient"`
    otherwise. `"leaky"` with a smooth activation is the continuous Hopfield network (see the
    module docstring); `compile_system` checks that the energy allows it.
    """
    act = get_activation(activation)
    if formulation is None:
        return "leaky" if act.projection else "gradient"
    if formulation not in FORMULATIONS:
        raise ConfigError(f"`formulation`={formulation!r} is not known; use one of {FORMULATIONS}.")
    return formulation
