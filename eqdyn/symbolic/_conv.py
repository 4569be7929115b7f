"""Convolution and pooling as matrix-level nodes: the P_CNN energies of Ernoult et al. (2019)
and Laborieux et al. (2021).

A feature map of `C` channels of `H x W` pixels is a state like any other: a `B x (C*H*W)`
matrix, one row per example, each row the map flattened channel-major (`NCHW` order, as
`x.reshape(B, C, H, W)` reads it). A kernel of `Co` output channels is a `Co x (C*kh*kw)`
parameter (`K.reshape(Co, C, kh, kw)` is the `OIHW` kernel). The nodes here keep convolutions
at the matrix level, next to SymPy's products:

- `Conv2d(X, K, g)`: the cross-correlation of the maps `X` with the kernel `K` (stride and
  zero padding in the geometry `g`), `B x (Co*H'*W')`;
- `ConvTranspose2d(G, K, g)`: its adjoint in `X`, `d <G, Conv2d(X, K)> / dX`, the transposed
  convolution that carries feedback from an upper map down;
- `ConvKernelGrad(X, G, g)`: its adjoint in `K`, `d <G, Conv2d(X, K)> / dK`, the correlation of
  the two maps summed over the batch (the learning rule of a kernel);
- `Pool2d(Z, q)`: non-overlapping max or average pooling (`size x size`, stride `size`),
  `PoolUnpool2d(G, Z, q)` its adjoint (the gradient routed to each window's maximum of `Z`, or
  spread evenly) and `PoolJvp(Z, V, q)` its directional derivative (`V` at each window's
  maximum of `Z`, or averaged);
- `ChannelTile(b, hw)` / `ChannelSum(G, hw)`: a per-channel bias spread over the pixels, and
  its adjoint.

All of them are linear in every argument but the pooled map `Z` (through which max pooling is
piecewise linear: its derivative in `Z` is zero almost everywhere), so each node declares its
vector-Jacobian (`_vjp`) and Jacobian-vector (`_jvp`) rules as other nodes of this module; the
matrix calculus of `_calculus` applies them, and `_codegen` emits calls to the helper functions
of `HELPERS` (`jax.lax.conv_general_dilated`, `jax.lax.reduce_window`; the adjoints as their
exact `jax.vjp`/`jax.jvp`, which XLA compiles to the transposed convolutions). This module
imports SymPy only.
"""

from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixExpr

from .._errors import DerivationError

__all__ = [
    "Conv2d", "ConvTranspose2d", "ConvKernelGrad", "Pool2d", "PoolUnpool2d", "PoolJvp",
    "ChannelTile", "ChannelSum", "conv_geometry", "pool_geometry", "HELPERS",
]

_MAX, _AVG = 0, 1
POOLS = {"max": _MAX, "avg": _AVG}


def _ints(t) -> tuple[int, ...]:
    return tuple(int(v) for v in t)


def conv_geometry(in_shape, out_channels, kernel, stride=1, padding=0, *, term="conv",
                  floor: bool = False) -> sp.Tuple:
    """`(C, H, W, Co, kh, kw, stride, padding)` after checking that it tiles.

    `floor=True` accepts a stride that does not tile the padded map, as PyTorch and
    `lax.conv_general_dilated` do: the output has `(H + 2p - kh) // s + 1` rows, and the last
    rows and columns of the padded map that no window reaches are left out (a 3x3 kernel at
    stride 2 and padding 1 halves a 32x32 map, Hopfield-ResNet's downsampling).

    **Raises:** `DerivationError` naming `term` and the sizes when the kernel is larger than the
    (padded) map, or the stride does not tile it (unless `floor`).
    """
    C, H, W = _ints(in_shape)
    kh, kw = (int(kernel), int(kernel)) if isinstance(kernel, int) else _ints(kernel)
    s, p, Co = int(stride), int(padding), int(out_channels)
    if min(C, H, W, Co, kh, kw, s) < 1 or p < 0:
        raise DerivationError(
            f"{term}: every size must be positive (padding >= 0); got in_shape={(C, H, W)}, "
            f"out_channels={Co}, kernel={(kh, kw)}, stride={s}, padding={p}.")
    if kh > H + 2 * p or kw > W + 2 * p:
        raise DerivationError(
            f"{term}: the kernel {kh}x{kw} is larger than its feature map {H}x{W} (padding {p}); "
            "use a smaller kernel or more padding.")
    if not floor and ((H + 2 * p - kh) % s or (W + 2 * p - kw) % s):
        raise DerivationError(
            f"{term}: stride {s} does not tile the map {H}x{W} with kernel {kh}x{kw} and "
            f"padding {p} ((H + 2p - kh) = {H + 2 * p - kh} and (W + 2p - kw) = "
            f"{W + 2 * p - kw} must be multiples of the stride); change the stride or padding, or "
            "pass floor=True to leave out what the last stride step does not reach.")
    return sp.Tuple(C, H, W, Co, kh, kw, s, p)


def conv_out_shape(g) -> tuple[int, int, int]:
    """`(Co, H', W')` of a convolution geometry."""
    C, H, W, Co, kh, kw, s, p = _ints(g)
    return Co, (H + 2 * p - kh) // s + 1, (W + 2 * p - kw) // s + 1


def pool_geometry(kind: str, shape, size: int, *, term="pool") -> sp.Tuple:
    """`(kind, C, H, W, size)` after checking that `size` divides the map."""
    if kind not in POOLS:
        raise DerivationError(f"{term}: `pool`={kind!r} is not known; use one of {sorted(POOLS)}.")
    C, H, W = _ints(shape)
    size = int(size)
    if size < 1 or H % size or W % size:
        raise DerivationError(
            f"{term}: the {size}x{size} pooling does not tile the {H}x{W} map ({C} channels); "
            "its size must divide both sides.")
    return sp.Tuple(POOLS[kind], C, H, W, size)


def _check_cols(term, what, m, want):
    if sp.sympify(m.cols) != want:
        raise DerivationError(
            f"{term}: {what} `{m}` has {m.cols} columns per example, but the geometry needs "
            f"{want}; check the channels and map sizes of the layers.")


class _Node(MatrixExpr):
    """A matrix-level node with declared derivative rules (see the module docstring)."""

    _name = ""
    _hoistable = True  # computed once per relaxation when it depends on no state

    def __new__(cls, *args):
        args = [sp.sympify(a) for a in args]
        args[-1] = sp.Tuple(*args[-1]) if not isinstance(args[-1], sp.Tuple) else args[-1]
        obj = sp.Basic.__new__(cls, *args)
        obj._validate()
        return obj

    def _validate(self):
        pass

    @property
    def geom(self) -> tuple[int, ...]:
        return _ints(self.args[-1])

    @property
    def operands(self):
        return self.args[:-1]

    def doit(self, **hints):
        if not hints.get("deep", True):
            return self
        return type(self)(*[a.doit(**hints) for a in self.operands], self.args[-1])

    def _entry(self, i, j, **kwargs):
        raise DerivationError(f"`{self}` is a convolution node; it has no entrywise expansion.")

    def _latex(self, printer):
        ops = ", ".join(printer._print(a) for a in self.operands)
        return rf"\operatorname{{{self._name}}}\left({ops}\right)"

    def _sympystr(self, printer):
        return f"{self._name}(" + ", ".join(printer._print(a) for a in self.operands) + ")"

    def _code(self, emit) -> str:
        ops = ", ".join(emit(a) for a in self.operands)
        return f"_{type(self).__name__.lower()}({ops}, {self.geom})"


def _bilinear_jvp(node, ds):
    """`node(dA, B) + node(A, dB)` for a node linear in each of its two operands."""
    a, b = node.operands
    parts = []
    if ds[0] is not None:
        parts.append(type(node)(ds[0], b, node.args[-1]))
    if ds[1] is not None:
        parts.append(type(node)(a, ds[1], node.args[-1]))
    return parts[0] if len(parts) == 1 else sp.MatAdd(*parts)


class Conv2d(_Node):
    """`X * K`: the cross-correlation of the maps `X` (`B x C*H*W`) with the kernel `K`."""

    _name = "conv"

    def _validate(self):
        x, k = self.operands
        C, H, W, Co, kh, kw, s, p = self.geom
        _check_cols("Conv2d", "the input maps", x, C * H * W)
        if k.shape != (Co, C * kh * kw):
            raise DerivationError(
                f"Conv2d: the kernel `{k}` has shape {k.shape}; {Co} output channels of {C} input "
                f"channels and a {kh}x{kw} kernel need ({Co}, {C * kh * kw}).")

    @property
    def shape(self):
        Co, Ho, Wo = conv_out_shape(self.geom)
        return (self.operands[0].rows, sp.Integer(Co * Ho * Wo))

    def _vjp(self, adj):
        x, k = self.operands
        g = self.args[-1]
        return [(x, ConvTranspose2d(adj, k, g)), (k, ConvKernelGrad(x, adj, g))]

    def _jvp(self, ds):
        return _bilinear_jvp(self, ds)


class ConvTranspose2d(_Node):
    """`d <G, X * K> / dX`: the transposed convolution of the maps `G` with `K`."""

    _name = "conv^T"

    def _latex(self, printer):
        g, k = self.operands
        return rf"\operatorname{{conv}}^{{\top}}\left({printer._print(g)}, {printer._print(k)}\right)"

    @property
    def shape(self):
        C, H, W = self.geom[:3]
        return (self.operands[0].rows, sp.Integer(C * H * W))

    def _vjp(self, adj):
        gr, k = self.operands
        g = self.args[-1]
        return [(gr, Conv2d(adj, k, g)), (k, ConvKernelGrad(adj, gr, g))]

    def _jvp(self, ds):
        return _bilinear_jvp(self, ds)


class ConvKernelGrad(_Node):
    """`d <G, X * K> / dK`: the correlation of the maps `X` and `G`, summed over the batch."""

    _name = "corr"

    @property
    def shape(self):
        C, H, W, Co, kh, kw, s, p = self.geom
        return (sp.Integer(Co), sp.Integer(C * kh * kw))

    def _vjp(self, adj):
        x, gr = self.operands
        g = self.args[-1]
        return [(x, ConvTranspose2d(gr, adj, g)), (gr, Conv2d(x, adj, g))]

    def _jvp(self, ds):
        return _bilinear_jvp(self, ds)


class Pool2d(_Node):
    """Non-overlapping max or average pooling of the maps `Z`."""

    def _validate(self):
        kind, C, H, W, size = self.geom
        _check_cols("Pool2d", "the pooled maps", self.operands[0], C * H * W)

    @property
    def _name(self):
        return "maxpool" if self.geom[0] == _MAX else "avgpool"

    @property
    def kind(self) -> str:
        """`"max"` or `"avg"`."""
        return "max" if self.geom[0] == _MAX else "avg"

    @property
    def shape(self):
        kind, C, H, W, size = self.geom
        return (self.operands[0].rows, sp.Integer(C * (H // size) * (W // size)))

    def _vjp(self, adj):
        (z,) = self.operands
        return [(z, PoolUnpool2d(adj, z, self.args[-1]))]

    def _jvp(self, ds):
        (z,) = self.operands
        if self.geom[0] == _AVG:
            return Pool2d(ds[0], self.args[-1])
        return PoolJvp(z, ds[0], self.args[-1])


class PoolUnpool2d(_Node):
    """The adjoint of `Pool2d(Z)` applied to `G`: `G` routed back to each window's maximum of
    `Z` (max pooling), or spread evenly over the window (average pooling)."""

    _name = "unpool"

    def _latex(self, printer):
        gr, z = self.operands
        kind = "max" if self.geom[0] == _MAX else "avg"
        return (rf"\operatorname{{unpool}}^{{{kind}}}_{{{printer._print(z)}}}"
                rf"\left({printer._print(gr)}\right)")

    @property
    def shape(self):
        return self.operands[1].shape

    def _vjp(self, adj):  # linear in G; piecewise constant in Z (zero derivative a.e.)
        gr, z = self.operands
        return [(gr, PoolJvp(z, adj, self.args[-1]))]

    def _jvp(self, ds):
        gr, z = self.operands
        if ds[0] is None:
            return None
        return PoolUnpool2d(ds[0], z, self.args[-1])


class PoolJvp(_Node):
    """The derivative of `Pool2d(Z)` along `V`: `V` at each window's maximum of `Z` (max
    pooling) or averaged over the window (average pooling)."""

    _name = "pool'"

    def _latex(self, printer):
        z, v = self.operands
        return rf"\operatorname{{pool}}'_{{{printer._print(z)}}}\left({printer._print(v)}\right)"

    @property
    def shape(self):
        kind, C, H, W, size = self.geom
        return (self.operands[0].rows, sp.Integer(C * (H // size) * (W // size)))

    def _vjp(self, adj):
        z, v = self.operands
        return [(v, PoolUnpool2d(adj, z, self.args[-1]))]

    def _jvp(self, ds):
        z, v = self.operands
        if ds[1] is None:
            return None
        return PoolJvp(z, ds[1], self.args[-1])


class ChannelTile(_Node):
    """A `rows x C` matrix (a per-channel bias) repeated over the `hw` pixels of each channel."""

    _name = "tile"

    @property
    def shape(self):
        (hw,) = self.geom
        return (self.operands[0].rows, self.operands[0].cols * hw)

    def _vjp(self, adj):
        return [(self.operands[0], ChannelSum(adj, self.args[-1]))]

    def _jvp(self, ds):
        return ChannelTile(ds[0], self.args[-1])


class ChannelSum(_Node):
    """The sum of a `rows x C*hw` map over the `hw` pixels of each channel (`ChannelTile`'s
    adjoint)."""

    _name = "chsum"

    @property
    def shape(self):
        (hw,) = self.geom
        return (self.operands[0].rows, sp.Integer(int(self.operands[0].cols) // hw))

    def _vjp(self, adj):
        return [(self.operands[0], ChannelTile(adj, self.args[-1]))]

    def _jvp(self, ds):
        return ChannelSum(ds[0], self.args[-1])


#: Source of the helper functions the generated code calls (needs `jax` and `jnp` in scope).
HELPERS = '''
def _conv2d(x, k, g):
    C, H, W, Co, kh, kw, s, p = g
    dt = jnp.result_type(x, k)
    # channel-minor (NHWC / HWIO) inside: the P_CNN's EP estimate runs 2.2x faster so than in
    # NCHW / OIHW on XLA's CPU backend, transposes included (benchmarks/bench_conv_layout.py)
    y = jax.lax.conv_general_dilated(
        x.reshape(-1, C, H, W).astype(dt).transpose(0, 2, 3, 1),
        k.reshape(Co, C, kh, kw).astype(dt).transpose(2, 3, 1, 0), (s, s),
        ((p, p), (p, p)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y.transpose(0, 3, 1, 2).reshape(y.shape[0], -1)


def _convtranspose2d(gr, k, g):
    C, H, W = g[:3]
    x0 = jnp.zeros((gr.shape[0], C * H * W), jnp.result_type(gr, k))
    return jax.vjp(lambda x: _conv2d(x, k, g), x0)[1](gr.astype(x0.dtype))[0]


def _convkernelgrad(x, gr, g):
    C, H, W, Co, kh, kw = g[:6]
    k0 = jnp.zeros((Co, C * kh * kw), jnp.result_type(x, gr))
    return jax.vjp(lambda k: _conv2d(x, k, g), k0)[1](gr.astype(k0.dtype))[0]


def _pool2d(z, q):
    kind, C, H, W, s = q
    z4 = z.reshape(-1, C, H, W)
    if kind == 0:
        y = jax.lax.reduce_window(z4, -jnp.inf, jax.lax.max, (1, 1, s, s), (1, 1, s, s), "VALID")
    else:
        y = jax.lax.reduce_window(z4, 0.0, jax.lax.add, (1, 1, s, s), (1, 1, s, s), "VALID")
        y = y / (s * s)
    return y.reshape(y.shape[0], -1)


def _poolunpool2d(gr, z, q):
    dt = jnp.result_type(gr, z)  # a complex gr on a real z (holomorphic EP) keeps its imag part
    return jax.vjp(lambda a: _pool2d(a, q), z.astype(dt))[1](gr.astype(dt))[0]


def _pooljvp(z, v, q):
    dt = jnp.result_type(z, v)
    return jax.jvp(lambda a: _pool2d(a, q), (z.astype(dt),), (v.astype(dt),))[1]


def _channeltile(b, g):
    return jnp.repeat(b, g[0], axis=1)


def _channelsum(m, g):
    return m.reshape(m.shape[0], -1, g[0]).sum(axis=2)
'''
