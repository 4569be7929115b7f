"""Tests of the symbolic layer: derivation, code generation, printing, and the compiled system.

The numeric checks compare the SymPy-derived, generated JAX code against `jax.grad` of an
energy written by hand below from REFERENCE.md; the symbolic checks compare expressions
mathematically (element-wise on tiny concrete sizes), never as printed strings.
"""

from __future__ import annotations

import re
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.matrices.expressions.matexpr import MatrixElement

from eqdyn._errors import ConfigError, DerivationError
from eqdyn.models import compile_system, get_activation, hopfield_system, parse_arch
from eqdyn.symbolic import (
    BATCH,
    Energy,
    derive,
    generate_code,
    layered_hopfield_energy,
)

pytestmark = pytest.mark.usefixtures("cached_derivations")

# ------------------------------------------------------------------ independent reference

REF_RHO = {
    "hard_sigmoid": lambda u: jnp.clip(u, 0.0, 1.0),
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
}


def reference_energy(states, params, x, d, beta, rho):
    """F = E + beta C from REFERENCE.md, summed over the batch (s_0 = x, no rho on the input).

    E = 1/2 sum_k ||s_k||^2 - sum_k rho(s_{k-1}) W_k . rho(s_k) - sum_k b_k . rho(s_k)
    C = 1/2 ||y - d||^2
    """
    n = len(states)
    weights, biases = params[:n], params[n:]
    e = sum(0.5 * jnp.sum(s**2) for s in states)
    below = x
    for w, b, s in zip(weights, biases, states):
        r = rho(s)
        e = e - jnp.sum((below @ w) * r) - jnp.sum(b * r)
        below = r
    c = 0.5 * jnp.sum((states[-1] - d) ** 2)
    return e + beta * c


def _sweep_sizes(n_hidden: int) -> tuple[int, ...]:
    rng = np.random.default_rng(1000 + n_hidden)
    return tuple(int(v) for v in rng.integers(2, 7, size=n_hidden + 2))


def _random_problem(sizes, seed, batch=3):
    rng = np.random.default_rng(seed)
    states = tuple(jnp.asarray(rng.uniform(-0.5, 1.5, (batch, n))) for n in sizes[1:])
    weights = tuple(
        jnp.asarray(rng.normal(0.0, 0.7, (a, b))) for a, b in zip(sizes[:-1], sizes[1:])
    )
    biases = tuple(jnp.asarray(rng.normal(0.0, 0.5, (1, n))) for n in sizes[1:])
    x = jnp.asarray(rng.uniform(0.0, 1.0, (batch, sizes[0])))
    d = jnp.asarray(rng.uniform(0.0, 1.0, (batch, sizes[-1])))
    return states, weights + biases, x, d


def _max_err(a, b) -> float:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb):
        assert u.shape == v.shape
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(la, lb))


def _derivation(sizes):
    """The layered Hopfield derivation for `sizes`, via (and cached with) `hopfield_system`."""
    return hopfield_system(tuple(sizes), "sigmoid", "gradient").derivation


def test_hopfield_system_is_derive_then_compile():
    sizes = (3, 4, 2)
    system = hopfield_system(sizes, "tanh", "gradient")
    assert hopfield_system(sizes, "tanh", "gradient") is system  # cached
    fresh = compile_system(derive(layered_hopfield_energy(sizes)), "tanh")
    assert system.code.source == fresh.code.source
    assert system.formulation == "gradient" and system.activation.name == "tanh"


def _compile(fn, *args):
    """`jax.jit(fn)` compiled for `args` with XLA's backend optimisations off: these checks run
    tiny programs once, so compile time, not run time, is what costs."""
    lowered = jax.jit(fn).lower(*args)
    try:
        return lowered.compile(compiler_options={"xla_backend_optimization_level": 0})
    except Exception:  # pragma: no cover - option unknown to this XLA
        return lowered.compile()


@pytest.mark.parametrize("n_hidden", [1, 2, 3, 4])
@pytest.mark.parametrize("act", ["hard_sigmoid", "sigmoid", "tanh"])
def test_compiled_gradients_match_handwritten_energy(act, n_hidden):
    """The system's `state_grads`, `param_grads` and `energy` vs `jax.grad` of the hand-written
    energy (and, at depth 2, vs `jax.grad` of the compiled energy), for beta = 0 and 0.7.
    Random states in [-0.5, 1.5]: the hard sigmoid's kinks at 0 and 1 have measure zero.
    """
    sizes = _sweep_sizes(n_hidden)
    system = hopfield_system(sizes, act, "gradient")
    rho = REF_RHO[act]
    states, params, x, d = _random_problem(sizes, seed=17 * n_hidden + len(act))
    assert all(s.dtype == jnp.float64 for s in states)

    # autodiff of the compiled energy too, at one depth per activation (compile time)
    check_own = n_hidden == 2

    def one(states, params, x, d, beta):
        inputs = (x, d)
        ref = lambda s, p: reference_energy(s, p, x, d, beta, rho)  # noqa: E731
        own = lambda s, p: system.energy(s, p, inputs, beta)  # noqa: E731
        out = dict(
            ref_f=ref(states, params),
            ref_grads=jax.grad(ref, argnums=(0, 1))(states, params),
            ds=system.state_grads(states, params, inputs, beta),
            dp=system.param_grads(states, params, inputs, beta),
            f=system.energy(states, params, inputs, beta),
        )
        if check_own:
            out["own_grads"] = jax.grad(own, argnums=(0, 1))(states, params)
        return out

    betas = jnp.asarray([0.0, 0.7])
    batched = jax.vmap(one, in_axes=(None, None, None, None, 0))
    out = _compile(batched, states, params, x, d, betas)(states, params, x, d, betas)
    ref_ds, ref_dp = out["ref_grads"]
    assert len(out["ds"]) == len(states) and len(out["dp"]) == len(params)
    assert _max_err(out["ds"], ref_ds) < 1e-10
    assert _max_err(out["dp"], ref_dp) < 1e-10
    assert _max_err(out["f"], out["ref_f"]) < 1e-10
    if check_own:
        own_ds, own_dp = out["own_grads"]
        assert _max_err(out["ds"], own_ds) < 1e-10
        assert _max_err(out["dp"], own_dp) < 1e-10
    # beta only enters the output's gradient, as beta (y - d)
    gap = np.asarray(out["ds"][-1][1]) - np.asarray(out["ds"][-1][0])
    assert np.max(np.abs(gap - 0.7 * (np.asarray(states[-1]) - np.asarray(d)))) < 1e-12


def test_compiled_energy_with_dtype_float32_stays_float32():
    sizes = _sweep_sizes(1)
    system = compile_system(_derivation(sizes), "sigmoid", "gradient")
    states, params, x, d = _random_problem(sizes, seed=3)
    f32 = lambda t: tuple(a.astype(jnp.float32) for a in t)  # noqa: E731
    fn = jax.jit(lambda s, p, i, b: (system.state_grads(s, p, i, b), system.energy(s, p, i, b)))
    g, f = fn(f32(states), f32(params), f32((x, d)), jnp.float32(0.5))
    assert all(a.dtype == jnp.float32 for a in g) and f.dtype == jnp.float32


# ------------------------------------------------------------------ symbolic checks


def _explicit(expr, batch=2):
    """Expand a matrix-level expression on concrete sizes; entries become plain Symbols."""
    expr = sp.sympify(expr).subs(BATCH, batch)
    if getattr(expr, "is_Matrix", False):
        expr = expr.as_explicit()
    else:
        expr = expr.replace(
            lambda e: isinstance(e, sp.Trace), lambda e: e.arg.as_explicit().trace()
        )
    atoms = expr.atoms(MatrixElement)
    names = {a: sp.Symbol(f"{a.parent.name}[{a.i},{a.j}]", real=True) for a in atoms}
    return expr.xreplace(names), names


def _entry_symbol(m: sp.MatrixSymbol, i: int, j: int) -> sp.Symbol:
    return sp.Symbol(f"{m.name}[{i},{j}]", real=True)


def test_weight_gradient_is_the_hebbian_product():
    dv = _derivation((3, 2, 2))
    e = dv.energy
    x, _ = e.inputs
    h1, y = e.states
    w1, w2, b1, b2 = e.params
    (rho,) = e.functions
    R = lambda m: ElementwiseApplyFunction(rho, m)  # noqa: E731
    expected = {
        w1: -x.T * R(h1),
        w2: -R(h1).T * R(y),
        b1: -sp.OneMatrix(1, BATCH) * R(h1),
        b2: -sp.OneMatrix(1, BATCH) * R(y),
    }
    for p, want in expected.items():
        got = dv.param_grads[p]
        assert got.shape == p.shape
        diff = (got - want).subs(BATCH, 2).as_explicit()
        assert sp.simplify(diff) == sp.zeros(*p.shape), p


@pytest.mark.parametrize(
    "sizes", [(2, 2, 2), pytest.param((2, 2, 2, 2), id="2-2-2-2")]  # integration tier
)
def test_matrix_derivative_matches_elementwise_differentiation(sizes):
    dv = _derivation(sizes)
    e = dv.energy
    f_explicit, _ = _explicit(e.expr)
    assert not f_explicit.atoms(MatrixElement)
    checked = 0
    for table in (dv.state_grads, dv.param_grads):
        for m, grad in table.items():
            g, _ = _explicit(grad)
            rows = 2 if m.rows == BATCH else int(m.rows)
            assert g.shape == (rows, int(m.cols))
            for i in range(rows):
                for j in range(int(m.cols)):
                    ref = sp.diff(f_explicit, _entry_symbol(m, i, j))
                    assert sp.expand(g[i, j] - ref) == 0, (m, i, j, g[i, j], ref)
                    checked += 1
    assert checked > 0
    # the gradient of a state really depends on the activation's derivative
    g_h1, _ = _explicit(dv.state_grads[e.states[0]])
    assert g_h1[0, 0].has(sp.Derivative)


def test_state_gradient_has_leaky_integrator_form():
    # dF/dy = y - rho'(y) * (rho(h) W + b) + beta (y - d): check one entry symbolically
    dv = _derivation((2, 2, 2))
    e = dv.energy
    h1, y = e.states
    w1, w2, b1, b2 = e.params
    _, d = e.inputs
    g, _ = _explicit(dv.state_grads[y])
    rho = e.functions[0]
    sym = lambda m, i, j: _entry_symbol(m, i, j)  # noqa: E731
    yy = sym(y, 0, 1)
    drive = sum(rho(sym(h1, 0, k)) * sym(w2, k, 1) for k in range(2)) + sym(b2, 0, 1)
    want = yy - sp.Derivative(rho(yy), yy) * drive + e.beta * (yy - sym(d, 0, 1))
    assert sp.expand(g[0, 1] - want) == 0


# ------------------------------------------------------------------ code generation


def _normalise_digits(src: str) -> str:
    return re.sub(r"\d+", "#", src)


def test_generated_code_is_matrix_level_and_width_independent():
    small = generate_code(_derivation((7, 5, 3))).source
    large = generate_code(_derivation((784, 500, 10))).source
    assert "_matmul(" in small and "@" not in small  # every product through the helper
    assert small.count("_matmul(") == large.count("_matmul(")
    assert len(small.splitlines()) == len(large.splitlines())
    assert _normalise_digits(small) == _normalise_digits(large)
    # no per-neuron indexing of states or weights
    assert not re.search(r"(h_1|W_1|y)\[", large)
    code = generate_code(_derivation((7, 5, 3)))
    assert set(code.functions) == {"rho", "rho_d1"}
    assert code.arguments == ("h_1", "y", "W_1", "W_2", "b_1", "b_2", "x", "d", "beta")
    assert code.constants == ("_c0",)  # x @ W_1 is hoisted


def test_deep_wide_derivation_is_fast_and_compact():
    t0 = time.perf_counter()
    dv = derive(layered_hopfield_energy((784, 500, 500, 10)))  # uncached on purpose
    src = generate_code(dv).source
    assert time.perf_counter() - t0 < 10.0
    small = generate_code(_derivation((7, 5, 5, 3))).source
    assert _normalise_digits(src) == _normalise_digits(small)
    assert len(src) < 10_000


# ------------------------------------------------------------------ errors

_B = BATCH
_S = sp.MatrixSymbol("s", _B, 3)
_W = sp.MatrixSymbol("W", 3, 3)


def _energy(*terms, **kw):
    kw.setdefault("states", (_S,))
    kw.setdefault("params", (_W,))
    return Energy(internal=tuple(terms), cost=kw.pop("cost", ()), **kw)


def test_non_scalar_term_is_refused():
    with pytest.raises(DerivationError, match="not a scalar"):
        _energy(_S * _W)


def test_undeclared_matrix_symbol_is_refused():
    q = sp.MatrixSymbol("Q", 3, 3)
    with pytest.raises(DerivationError, match="`Q`.*neither a state, a parameter nor an input"):
        _energy(sp.Trace(_S * q * _S.T))


def test_undeclared_scalar_symbol_is_refused():
    a = sp.Symbol("a")
    with pytest.raises(DerivationError, match=r"scalar symbol\(s\) \['a'\].*not declared"):
        _energy(a * sp.Trace(_S * _S.T))


def test_cost_without_beta_is_refused():
    with pytest.raises(DerivationError, match="no scalars"):
        _energy(sp.Trace(_S * _S.T), cost=(sp.Trace(_S * _S.T),))


@pytest.mark.parametrize(
    "params, scalars",
    [((sp.MatrixSymbol("s", 3, 3),), ()), ((_W,), (sp.Symbol("W"),))],
)
def test_duplicate_names_are_refused(params, scalars):
    with pytest.raises(DerivationError, match="more than once"):
        _energy(sp.Trace(_S * _S.T), params=params, scalars=scalars)


def test_same_name_with_another_shape_is_refused():
    # a symbol used with inconsistent shapes is a different MatrixSymbol of the same name
    w_other = sp.MatrixSymbol("W", 3, 4)
    with pytest.raises(DerivationError, match="uses `W` with shape \\(3, 4\\).*declared with "
                       "shape \\(3, 3\\).*inconsistent shapes"):
        _energy(sp.Trace(_S * _W * _S.T), sp.Trace(w_other * w_other.T))


def test_non_matrix_derivative_is_refused_by_derive():
    with pytest.raises(DerivationError, match="Determinant.*function of matrices other than a "
                       "plain trace"):
        derive(_energy(sp.Trace(_S * _W * _S.T), sp.Determinant(_W)))


@pytest.mark.parametrize(
    "term, node",
    [
        (sp.Trace(_S * sp.Inverse(_W) * _S.T), "Inverse"),
        (sp.Trace(_S * sp.MatPow(_W, 3) * _S.T), "MatPow"),
    ],
)
def test_unsupported_matrix_operations_are_refused_by_derive(term, node):
    # the differentiator's grammar is the code generator's: what cannot be compiled to
    # matrix-level code is refused when deriving, naming the term and the node
    with pytest.raises(DerivationError, match=f"term 0 .*no matrix-level derivative rule.*{node}"):
        derive(_energy(term))


def test_custom_energy_compiles_and_matches_autodiff():
    # a non-Hopfield energy through the whole pipeline: F = 1/2 |s|^2 - tr(s W x^T) + beta/2 |s|^2
    x = sp.MatrixSymbol("x", _B, 3)
    beta = sp.Symbol("beta")
    e = Energy(
        internal=(sp.Rational(1, 2) * sp.Trace(_S * _S.T), -sp.Trace(_S * _W * x.T)),
        cost=(sp.Rational(1, 2) * sp.Trace(_S * _S.T),),
        states=(_S,), params=(_W,), inputs=(x,), scalars=(beta,), name="custom",
    )
    system = compile_system(derive(e), "tanh")
    rng = np.random.default_rng(0)
    s, w, xv = (jnp.asarray(rng.normal(size=shape)) for shape in ((2, 3), (3, 3), (2, 3)))
    (g,) = system.state_grads((s,), (w,), (xv,), 0.5)
    np.testing.assert_allclose(g, 1.5 * s - xv @ w.T, atol=1e-12)
    (gw,) = system.param_grads((s,), (w,), (xv,), 0.5)
    np.testing.assert_allclose(gw, -(s.T @ xv), atol=1e-12)


def test_energy_without_hoistable_constants_compiles():
    e = _energy(sp.Rational(1, 2) * sp.Trace(_S * _S.T), -sp.Trace(_S * _W * _S.T))
    compile_system(derive(e), "sigmoid")


def test_energy_without_scalars_evaluates():
    x = sp.MatrixSymbol("x", _B, 3)
    e = Energy(
        internal=(sp.Rational(1, 2) * sp.Trace(_S * _S.T), -sp.Trace(x * _W * _S.T)),
        cost=(), states=(_S,), params=(_W,), inputs=(x,),
    )
    system = compile_system(derive(e), "sigmoid")
    system.state_grads((jnp.ones((2, 3)),), (jnp.eye(3),), (jnp.ones((2, 3)),), 0.0)


@pytest.mark.parametrize("sizes", [(3,), (3, 0, 2), ()])
def test_layered_energy_bad_sizes(sizes):
    with pytest.raises(DerivationError, match="at least two positive layer sizes"):
        layered_hopfield_energy(sizes)


def test_layered_energy_unknown_cost():
    with pytest.raises(DerivationError, match="`cost`='hinge' is not known.*squared_error"):
        layered_hopfield_energy((3, 2), cost="hinge")


@pytest.mark.parametrize("arch", ["784-x-10", "784", "", "784--10", "-784-10"])
def test_parse_arch_malformed(arch):
    with pytest.raises(ConfigError, match="malformed"):
        parse_arch(arch)


@pytest.mark.parametrize("arch", [(784,), (784, 0, 10), ("a", 3)])
def test_parse_arch_bad_sequences(arch):
    with pytest.raises(ConfigError, match="arch"):
        parse_arch(arch)


def test_parse_arch_ok():
    assert parse_arch(" 784 - 500-10 ") == (784, 500, 10)
    assert parse_arch([3, 2]) == (3, 2)


def test_unknown_activation_lists_known_ones():
    with pytest.raises(ConfigError, match=r"'relu'.*hard_sigmoid.*sigmoid.*tanh"):
        get_activation("relu")
    with pytest.raises(ConfigError, match="relu"):
        hopfield_system((3, 2, 2), "relu", "gradient")


def test_leaky_formulation_of_a_smooth_activation_needs_a_cost_on_the_rates():
    dv = _derivation((3, 2, 2))  # squared error on the output potential
    with pytest.raises(ConfigError, match="leaky.*smooth activation 'sigmoid'.*rho\\(state\\)"):
        compile_system(dv, "sigmoid", "leaky")
    with pytest.raises(ConfigError, match="formulation"):
        compile_system(dv, "sigmoid", "semi-implicit")
    assert compile_system(dv, "hard_sigmoid").formulation == "leaky"
    assert compile_system(dv, "tanh").formulation == "gradient"


# ------------------------------------------------------------------ printing


def test_latex_and_text():
    dv = _derivation((3, 2, 2))
    tex = dv.latex()
    assert r"\rho'" in tex
    assert r"\odot" in tex
    assert r"\mathbf{1}" in tex
    assert "Lambda" not in tex and "_d" not in tex
    text = str(dv)
    assert "dy/dt" in text and "dh_1/dt" in text and "dF/dW_1" in text
    assert "rho'(h_1)" in text
    rep = dv._repr_latex_()
    assert rep.startswith("$") and rep.endswith("$") and len(rep) > 2
    erep = dv.energy._repr_latex_()
    assert erep.startswith("$") and erep.endswith("$") and "F =" in erep
    assert len(dv.equations_latex()) == len(dv.state_grads) + len(dv.param_grads)
