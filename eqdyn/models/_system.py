"""Compile a symbolic derivation into JAX callables: the numeric system the dynamics run.

This is the bridge between the layers: SymPy runs once here (outside `jit`), the generated
source is executed with `jnp` and the activation bound, and the resulting plain functions are
all the dynamics and learning rules ever call. Nothing here touches SymPy at trace time.

Two formulations of the same energy are available:

- `"gradient"`: the gradient flow `ds/dt = -dF/ds` exactly as derived. Use it for smooth
  activations (sigmoid, tanh); every fixed point is a stationary point of `F`.
- `"leaky"`: the leaky-integrator (membrane potential) form `du/dt = -dF/ds |_{rho' = 1}`,
  i.e. the derived field with every `rho'` factor set to one, and the network state read out as
  `s = rho(u)`. For a *projection* activation (hard sigmoid: `rho' = 1` inside `[0, 1]`,
  `rho(rho(u)) = rho(u)`) the two forms agree wherever no unit is saturated, but the leaky form
  is Lipschitz: at a saturated unit the gradient form's field jumps sign across the boundary and
  adaptive solvers never settle, whereas `u` simply moves past the boundary. Its fixed points
  `u* = W rho(u*) + b` are exactly those of the paper's clipped iteration
  `s <- clip(s - eps dF/ds, 0, 1)`, i.e. the minima of `F` on the box `[0, 1]^n`, so EP's
  theorem applies to them.

  With a smooth activation (sigmoid, tanh) the leaky form is the continuous Hopfield network
  (Hopfield 1984): `du/dt = -u + W rho(u) + b`, fixed points `s = rho(W s + b)`, the model of
  Laborieux & Zenke (2022) whose discrete iteration `s <- rho(dPhi/ds)` is this ODE's Euler
  step at `dt = 1`. Its Lyapunov energy is `sum_i int^{s_i} rho^{-1} + E|_{rho = id}(s) -
  1/2 |s|^2`, a function of the rates `s = rho(u)` alone, so the learning rule `dF/dtheta`
  and the cost are evaluated at the rates with `rho` the identity (which changes nothing for
  a projection activation, where `rho(s) = s` on the box). This needs `F` to depend on each
  state only through `rho(s)`, apart from the leak `1/2 |s|^2`; a cost on the raw output
  potential (`1/2 |y - d|^2` with `y` a state) would make EP follow a different cost than
  the one reported, so it is refused (use the softmax readout, `cost="cross_entropy"`).
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from .._compile import run_once
from .._errors import ConfigError
from ..symbolic import Derivation, GeneratedCode, derive, generate_code, layered_hopfield_energy
from ..symbolic import python_name
from ._activations import Activation
from ._binding import (FORMULATIONS, call_kwargs, exec_generated, resolve_activations,
                       resolve_formulation)

#: system -> {shapes: whether the midpoint identity holds}: a cache beside the frozen systems
#: (not written into them), gone with them
_MIDPOINT_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

__all__ = [
    "CompiledSystem", "compile_system", "energy_system", "hopfield_system", "resolve_formulation",
    "resolve_activations", "FORMULATIONS",
]



@dataclasses.dataclass(frozen=True, eq=False)
class CompiledSystem:
    """JAX callables compiled from a `Derivation`, with the activation bound.

    All functions take tuples in the energy's order: `states` (one `(B, n_k)` array per state),
    `params` (one array per parameter), `inputs` (e.g. `(x, d)`) and the scalar `beta`.

    **Fields:** `derivation`, `code` (the generated source), `activation` (the activation of
    the leaky formulation's read-out, and of every opaque function unless `activations` says
    otherwise), `formulation`, `activations` (opaque function name -> `Activation`).
    """

    derivation: Derivation
    code: GeneratedCode
    activation: Activation
    formulation: str
    _fns: dict = dataclasses.field(repr=False)
    activations: dict = dataclasses.field(default_factory=dict, repr=False)

    @functools.cached_property
    def tau(self) -> tuple[float, ...]:
        """Per-state time constants (floats)."""
        e = self.derivation.energy
        return tuple(float(e.time_constant(s)) for s in e.states)

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(python_name(s.name) for s in self.derivation.energy.states)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(python_name(p.name) for p in self.derivation.energy.params)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(python_name(p.name) for p in self.derivation.energy.inputs)

    def _kw(self, states, params, inputs, beta) -> dict:
        return call_kwargs(self.derivation.energy, states, params, inputs, beta)

    def observe(self, states):
        """The network state `s` read out from the integrated variables (`rho(u)` if leaky)."""
        if self.formulation == "leaky":
            return tuple(self.activation.fn(u) for u in states)
        return tuple(states)

    def observe_velocity(self, states, field):
        """`ds/dt` of the observed state given the field (`rho'(u) du/dt` if leaky)."""
        if self.formulation == "leaky":
            return tuple(self.activation.d1(u) * f for u, f in zip(states, field))
        return tuple(field)

    def constants(self, states, params, inputs, beta=0.0):
        """State-independent products (e.g. `x W_1`), computed once per relaxation."""
        return self._fns["field"]["constants"](**self._kw(states, params, inputs, beta))

    def field(self, states, params, inputs, beta, constants=None):
        """The vector field `-dF/ds` (gradient form) or its leaky-integrator version."""
        return self._field_of(self._fns["field"], states, params, inputs, beta, constants)

    def _field_of(self, fns, states, params, inputs, beta, constants):
        kw = self._kw(states, params, inputs, beta)
        if constants is None:
            g = fns["state_grads"](**kw)
        else:
            kw.update(zip(self.code.constants, constants))
            g = fns["state_grads_hoisted"](**kw)
        return tuple(-gi if t == 1.0 else gi * (-1.0 / t) for gi, t in zip(g, self.tau))

    @functools.cached_property
    def _rate_fns(self) -> dict:
        # the field's code with every activation the identity behind a stop-gradient (and
        # rho' = 1): evaluated at rates r it is the field with rho(u) = r, and its derivative
        # along the states is the raw (leak and cost) dependence alone
        rate = Activation("rate", jax.lax.stop_gradient, lambda u: jnp.ones_like(u),
                          lambda u: jnp.zeros_like(u))
        return exec_generated(self.code, {n: rate for n in self.activations}, leaky=True)

    def field_at_rates(self, states, rates, params, inputs, beta, constants=None):
        """The leaky field at potentials `states` with every `rho(u_k)` replaced by `rates_k`
        (spiking units: the synapses' traces stand for the rates).

        The leaky field is `(-c u + g(rho(u)) - beta dC/du) / tau` with the leak and a
        squared-error cost affine in the raw potential; it is evaluated at the rates with
        `rho` the identity and moved to the potentials along that affine part (one
        Jacobian-vector product through the raw dependence only), so
        `field_at_rates(u, observe(u), ...) == field(u, ...)` (tested). Leaky formulation only.
        """
        if self.formulation != "leaky":
            raise ConfigError(
                "`field_at_rates` needs the leaky formulation (potentials u read out as rates "
                f"rho(u)); this system's is {self.formulation!r}: build the model with "
                "formulation='leaky'.")
        def f(v):
            return self._field_of(self._rate_fns, v, params, inputs, beta, constants)

        rates = tuple(rates)
        val, lin = jax.jvp(f, (rates,), (tuple(u - r for u, r in zip(states, rates)),))
        return tuple(a + b for a, b in zip(val, lin))

    def residual(self, states, field, per_example: bool = False):
        """The steady-state residual: `max |field|` over the batch and all units (over the
        units of each example, shape `(B,)`, with `per_example`).

        In the leaky formulation a potential beyond a bound of the projection activation that is
        still moving outwards leaves the state `s = rho(u)` unchanged, so it is not counted: the
        residual is then the projected-gradient (KKT) residual of `F` on the box. This matters
        whenever the box minimum has no interior counterpart, e.g. `beta = -1` in the paper's
        energy, where the output's leak `(1 + beta) y` vanishes and `u_y` drifts at constant
        speed while `rho(u_y)` sits at 0 or 1.
        """
        bounds = self.activation.bounds
        parts = []
        for u, f, t in zip(states, field, self.tau):
            a = jnp.abs(f) if t == 1.0 else jnp.abs(f) * t  # the force dF/ds, whatever tau
            if self.formulation == "leaky" and bounds is not None:
                lo, hi = bounds
                outward = ((u >= hi) & (f > 0)) | ((u <= lo) & (f < 0))
                a = jnp.where(outward, jnp.zeros_like(a), a)
            parts.append(jnp.max(a, axis=1) if per_example else jnp.max(a))
        return jnp.max(jnp.stack(parts), axis=0)

    def ode(self, t, y, args):
        """The field as a diffrax vector field, `args = (params, inputs, beta, constants)`.

        A bound method of a cached system compares equal across calls, so diffrax's internal
        `jit` is not retraced for every relaxation (a fresh closure would be).
        """
        params, inputs, beta, constants = args
        return self.field(y, params, inputs, beta, constants)

    def state_grads(self, states, params, inputs, beta):
        """`dF/ds_k` for every state (exact gradient, whatever the formulation)."""
        return self._fns["exact"]["state_grads"](**self._kw(states, params, inputs, beta))

    def param_grads(self, states, params, inputs, beta=0.0):
        """`dF/dtheta` for every parameter, summed over the batch, at the observed state."""
        obs = self.observe(states)
        return self._fns["exact"]["param_grads"](**self._kw(obs, params, inputs, beta))

    def param_grads_delta(self, states_a, states_b, params, inputs, beta_a=0.0, beta_b=0.0):
        """`dF/dtheta(s_a, beta_a) - dF/dtheta(s_b, beta_b)`: the difference EP's estimates take.

        Where `dF/dtheta` is a polynomial of degree <= 2 in the observed states and `beta` (a
        Hopfield energy: products of two states, or of a state and an input), the difference
        is exactly the directional derivative at the midpoint, `J(m) (a - b)`, one evaluation
        whose state-input products (`x^T rho(h)`, the largest matmul of a batch) are taken
        once on `rho(h_a) - rho(h_b)` instead of twice. `midpoint_is_exact` checks that
        identity on a random probe once per system and shapes; otherwise the two evaluations
        are subtracted.
        """
        if not self.midpoint_is_exact(params, inputs):
            return tuple(a - b for a, b in zip(
                self.param_grads(states_a, params, inputs, beta_a),
                self.param_grads(states_b, params, inputs, beta_b)))
        obs_a, obs_b = self.observe(states_a), self.observe(states_b)
        fn = self._fns["exact"]["param_grads"]
        dtype = obs_a[0].dtype

        def g(obs, beta):
            return fn(**self._kw(obs, params, inputs, beta))

        return _midpoint_difference(g, obs_a, obs_b, jnp.asarray(beta_a, dtype),
                                    jnp.asarray(beta_b, dtype))

    def midpoint_is_exact(self, params, inputs) -> bool:
        """Whether `param_grads_delta` may use the midpoint identity (see there); cached."""
        in_shapes = tuple((3, *jnp.shape(i)[1:]) if jnp.ndim(i) == 2 else jnp.shape(i)
                          for i in inputs)
        key = (tuple(jnp.shape(p) for p in params), in_shapes)
        cache = _MIDPOINT_CACHE.setdefault(self, {})
        if key not in cache:
            cache[key] = self._probe_midpoint(params, in_shapes)
        return cache[key]

    def _probe_midpoint(self, params, in_shapes) -> bool:
        import numpy as np

        dtype = jax.dtypes.canonicalize_dtype(jnp.float64)  # float32 unless x64 is on
        rng = np.random.default_rng(1)
        fn = self._fns["exact"]["param_grads"]
        e = self.derivation.energy
        try:
            sizes = [int(st.cols) for st in e.states]
        except TypeError:  # a state with a symbolic size: no probe
            return False
        P = tuple(np.asarray(rng.normal(size=jnp.shape(p)), dtype) for p in params)
        X = tuple(np.asarray(rng.uniform(-1, 1, size=sh), dtype) for sh in in_shapes)
        # potentials around and beyond [0, 1]: some states saturate
        A, B = (tuple(np.asarray(rng.uniform(-0.2, 1.2, size=(3, n)), dtype) for n in sizes)
                for _ in range(2))
        ba, bb = 0.7, -0.4

        def both(A, B, P, X):  # the two evaluations and the midpoint form: one program
            def g(o, beta):
                return fn(**self._kw(o, P, X, jnp.asarray(beta, dtype)))

            a, b = self.observe(A), self.observe(B)
            exact = [x - y for x, y in zip(g(a, ba), g(b, bb))]
            return exact, list(_midpoint_difference(g, a, b, jnp.asarray(ba, dtype),
                                                    jnp.asarray(bb, dtype)))

        with jax.ensure_compile_time_eval():
            exact, lin = jax.device_get(run_once(both, A, B, P, X))
        tol = 1e-9 if dtype == jnp.float64 else 1e-4
        return all(float(np.max(np.abs(x - y))) <= tol * (1.0 + float(np.max(np.abs(x))))
                   for x, y in zip(exact, lin))

    def param_rates(self, states, velocities, params, inputs, beta=0.0, beta_rate=0.0):
        """`d/dt dF/dtheta` along a trajectory: the STDP form of the learning rule.

        `states` are observed states `s` (not potentials) and `velocities` their time
        derivatives `ds_k/dt`; `beta_rate` is `dbeta/dt`. Equals the Jacobian-vector product of
        `param_grads` along `(velocities, beta_rate)`, computed by the derived formula.
        """
        kw = self._kw(states, params, inputs, beta)
        kw.update(zip(self.code.velocities, velocities))
        if self.code.beta_rate is not None:
            kw[self.code.beta_rate] = beta_rate
        return self._fns["exact"]["param_rates"](**kw)

    def param_rates_at_rates(self, rates, velocities, params, inputs, beta=0.0, beta_rate=0.0):
        """`param_rates` with every `rho` the identity: `d/dt dF/dtheta` along rates `r(t)`
        given as values (spiking units: the synaptic traces) and their time derivatives, the
        STDP form of the rule on traces (for weights `-(r_i dr_j/dt + r_j dr_i/dt)`). Leaky
        formulation only (see `field_at_rates`)."""
        if self.formulation != "leaky":
            raise ConfigError("`param_rates_at_rates` needs the leaky formulation; this "
                              f"system's is {self.formulation!r}.")
        kw = self._kw(tuple(rates), params, inputs, beta)
        kw.update(zip(self.code.velocities, velocities))
        if self.code.beta_rate is not None:
            kw[self.code.beta_rate] = beta_rate
        return self._rate_fns["param_rates"](**kw)

    def output(self, states, params, inputs):
        """The energy's prediction (e.g. the output layer) at the observed state."""
        obs = self.observe(states)
        return self._fns["exact"]["output"](**self._kw(obs, params, inputs, 0.0))[0]

    def cost_rows(self, states, params, inputs):
        """`C` of every example separately, shape `(B,)` (at the observed state)."""
        obs = self.observe(states)
        fn = self._fns["exact"]["cost"]

        batched = tuple(0 if (a.ndim == 2 and a.shape[0] == obs[0].shape[0]) else None
                        for a in inputs)

        def one(row_states, row_inputs):
            # each example as a batch of one: a batched input's row is 1-D inside the vmap and
            # needs its batch axis back (a 1-D `d` against a `(1, n)` `y` would broadcast the
            # generated `(y - d) * (y.T - d.T).T` into an n x n sum)
            st = tuple(a[None] for a in row_states)
            ins = tuple(a[None] if ax == 0 else a for a, ax in zip(row_inputs, batched))
            return fn(**self._kw(st, params, ins, 0.0))

        return jax.vmap(one, in_axes=(0, batched))(obs, tuple(inputs))

    def energy(self, states, params, inputs, beta):
        """`F = E + beta C` summed over the batch, at the observed state.

        In the leaky formulation of a smooth activation (the continuous Hopfield network) this
        is its Lyapunov energy, `F|_{rho = id}(s) - 1/2 |s|^2 + sum_i int^{s_i} rho^{-1}` with
        `s = rho(u)` and `int^s rho^{-1} = u rho(u) - P(u)` (`P` the activation's `integral`),
        which never increases along the dynamics (up to a constant).
        """
        obs = self.observe(states)
        f = self._fns["exact"]["energy"](**self._kw(obs, params, inputs, beta))
        if self.formulation == "leaky" and not self.activation.projection:
            prim = self.activation.integral
            if prim is None:
                raise ConfigError(
                    f"the energy of the continuous Hopfield network (leaky formulation) of "
                    f"{self.activation.name!r} needs an antiderivative of the activation; build "
                    "it with Activation(..., integral=P) (P' = rho) or Activation.from_sympy."
                )
            leak = self._fns.get("leak") or (1.0,) * len(states)
            f = f + sum(c * jnp.sum(u * s - prim(u) - 0.5 * s * s)
                        for c, u, s in zip(leak, states, obs))
        return f

    def cost(self, states, params, inputs):
        """`C` summed over the batch, at the observed state."""
        obs = self.observe(states)
        return self._fns["exact"]["cost"](**self._kw(obs, params, inputs, 0.0))


def _midpoint_difference(g, a, b, beta_a, beta_b) -> tuple:
    """`J_g(m) (a - b, beta_a - beta_b)` at the midpoint `m`: `g(a, beta_a) - g(b, beta_b)`
    exactly when `g` is a polynomial of degree <= 2 (see `param_grads_delta`)."""
    mid = tuple(0.5 * (x + y) for x, y in zip(a, b))
    diff = tuple(x - y for x, y in zip(a, b))
    _, delta = jax.jvp(g, (mid, 0.5 * (beta_a + beta_b)), (diff, beta_a - beta_b))
    return tuple(delta)


def compile_system(
    derivation, activation="hard_sigmoid", formulation: str | None = None
) -> CompiledSystem:
    """Generate and compile JAX code for a derivation, binding its opaque functions.

    **Arguments:**

    - `derivation`: from `eqdyn.symbolic.derive`, or an `Energy` (derived here).
    - `activation`: a registered name (`"hard_sigmoid"`, `"sigmoid"`, `"tanh"`, or your own,
      see `register_activation`) or an `Activation`, bound to every opaque function of the
      energy; or a mapping `{function name: activation}` for energies with several.
    - `formulation`: `"gradient"` or `"leaky"`; default `"leaky"` for projection activations
      (hard sigmoid) and `"gradient"` otherwise. `"leaky"` with a smooth activation is the
      continuous Hopfield network; it needs an energy that depends on each state only through
      `rho(s)` apart from the leak `1/2 |s|^2` (checked numerically here).

    **Returns:** a `CompiledSystem`.
    """
    from ..symbolic import Energy

    if isinstance(derivation, Energy):
        derivation = derive(derivation)
    if not isinstance(derivation, Derivation):
        raise ConfigError(
            f"`derivation`={derivation!r} must be an eqdyn.symbolic.Energy or Derivation."
        )
    act, mapping = resolve_activations(derivation.energy, activation)
    formulation = resolve_formulation(act, formulation)
    code = generate_code(derivation)
    smooth = formulation == "leaky" and any(not a.projection for a in mapping.values())
    if smooth:
        # the rule and the cost act on the rates s = rho(u): rho is the identity there
        exact = exec_generated(code, {n: (a if a.projection else _IDENTITY) for n, a in mapping.items()},
                      leaky=False)
    else:
        exact = exec_generated(code, mapping, leaky=False)
    field = exec_generated(code, mapping, leaky=True) if formulation == "leaky" else exact
    system = CompiledSystem(derivation, code, act, formulation,
                            {"exact": exact, "field": field}, mapping)
    if smooth:
        _check_leaky_smooth(system)
    return system


_IDENTITY = Activation("identity", lambda u: u, lambda u: jnp.ones_like(u),
                       lambda u: jnp.zeros_like(u))


def _check_leaky_smooth(system: CompiledSystem) -> None:
    """Refuse a leaky formulation with a smooth activation unless `tau du/dt + c u` equals
    `-(dF/ds - c s)` at the rates `s = rho(u)` with `rho` the identity, at `beta` 0 and 0.6
    (`c` > 0 the leak coefficient of each state, fitted; 1 unless the layers are scaled): the
    energy then depends on each state only through `rho(s)` (apart from the leak `c/2 |s|^2`)
    and the relaxation settles where EP's rule and the reported cost assume."""
    e = system.derivation.energy
    try:
        def rows(m):  # the batch dimension (a symbol) is probed with 3 examples
            return int(m.rows) if m.rows.is_number else 3

        st_shapes = [(rows(s), int(s.cols)) for s in e.states]
        p_shapes = [(int(p.rows), int(p.cols)) for p in e.params]
        in_shapes = [(rows(i), int(i.cols)) for i in e.inputs]
    except TypeError:  # symbolic sizes: nothing to probe with
        return
    with jax.ensure_compile_time_eval():  # the system may first be compiled inside a trace
        _probe_leaky_smooth(system, st_shapes, p_shapes, in_shapes)


def _probe_leaky_smooth(system, st_shapes, p_shapes, in_shapes) -> None:
    import numpy as np

    e = system.derivation.energy
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    rng = np.random.default_rng(2)
    U = tuple(np.asarray(rng.normal(size=sh), dtype) for sh in st_shapes)
    P = tuple(np.asarray(0.5 * rng.normal(size=sh), dtype) for sh in p_shapes)
    X = tuple(np.asarray(rng.uniform(0, 1, size=sh), dtype) for sh in in_shapes)
    tol = 1e-9 if dtype == jnp.float64 else 1e-4
    leaks = []
    for beta in (0.0, 0.6):
        b = jnp.asarray(beta, dtype)
        f = system.field(U, P, X, b)
        s = system.observe(U)
        g = system.state_grads(s, P, X, b)
        for k, (name, u, fk, sk, gk, t) in enumerate(zip(system.state_names, U, f, s, g,
                                                         system.tau)):
            # t f + g = leak (s - u), `leak` the coefficient of 1/2 |s|^2 (1 unless the
            # energy's layers are scaled, see eqdyn.symbolic.with_layer_scales)
            gap = np.asarray(sk - u)
            if beta == 0.0:
                leaks.append(float(np.sum(np.asarray(t * fk + gk) * gap) / np.sum(gap * gap)))
            lhs, rhs = np.asarray(t * fk + leaks[k] * u), np.asarray(leaks[k] * sk - gk)
            if leaks[k] <= 0 or np.max(np.abs(lhs - rhs)) > tol * (1.0 + np.max(np.abs(rhs))):
                where = "with the cost switched on (beta != 0)" if beta else "at beta = 0"
                smooth = sorted(a.name for a in system.activations.values()
                                if not a.projection) or [system.activation.name]
                raise ConfigError(
                    f"`formulation`='leaky' with the smooth activation {smooth[0]!r} needs an "
                    f"energy that depends on each state only through rho(state), apart from the "
                    f"leak 1/2 |s|^2; `{e.name}` does not for state `{name}` {where} (e.g. a "
                    "squared-error cost on the output potential). Use a softmax readout (the "
                    "built-in energy's cost='cross_entropy'), formulation='gradient', or a "
                    "projection activation such as 'hard_sigmoid'."
                )
    system._fns["leak"] = tuple(leaks)


@functools.lru_cache(maxsize=64)
def energy_system(energy, activation, formulation: str | None = None) -> CompiledSystem:
    """The compiled system of `energy` (cached per energy, activation and formulation).

    `activation` must be hashable here: a name, an `Activation`, or a tuple of
    `(function name, activation)` pairs.
    """
    if isinstance(activation, tuple):
        activation = dict(activation)
    return compile_system(derive(energy), activation, formulation)


@functools.lru_cache(maxsize=64)
def hopfield_system(
    sizes: Sequence[int], activation: str, formulation: str | None = None
) -> CompiledSystem:
    """The compiled layered Hopfield system for `sizes` (cached: one derivation per config)."""
    return compile_system(derive(layered_hopfield_energy(tuple(sizes))), activation, formulation)
