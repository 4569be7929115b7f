"""Convolutional energy terms, and the layered convolutional energy of Ernoult et al. (2019) and
Laborieux et al. (2021).

A convolutional layer `s_k` is a `B x (C_k*H_k*W_k)` state (see `eqdyn.symbolic._conv` for the
layout); the P_CNN coupling of a map `s_{k-1}` to the next map `s_k` is

    - < P(K_k * rho(s_{k-1})), rho(s_k) >

(`*` the convolution with stride and padding, `P` max or average pooling), so that the field of
`s_k` is `P(K_k * rho(s_{k-1}))` and the feedback into `s_{k-1}` the transposed convolution of
the unpooled `rho(s_k)`. After the last map the network reads out densely, as after a flatten:
a dense coupling `- rho(s_L) W rho(y)^T` (a flattened map is the same matrix).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import sympy as sp

from .._errors import DerivationError
from ._conv import (ChannelTile, Conv2d, Pool2d, conv_geometry, conv_out_shape, pool_geometry)
from ._energy import BATCH, Energy, elementwise

__all__ = ["feature_map", "kernel", "conv", "pool", "conv_coupling", "channel_bias",
           "conv_hopfield_energy"]


def feature_map(name: str, channels: int, height: int, width: int | None = None) -> sp.MatrixSymbol:
    """A batched feature map: a `B x (C*H*W)` matrix symbol (channel-major rows)."""
    width = height if width is None else width
    return sp.MatrixSymbol(name, BATCH, int(channels) * int(height) * int(width))


def kernel(name: str, in_channels: int, out_channels: int, size) -> sp.MatrixSymbol:
    """A convolution kernel: a `O x (C*kh*kw)` matrix symbol (`reshape(O, C, kh, kw)`)."""
    kh, kw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return sp.MatrixSymbol(name, int(out_channels), int(in_channels) * kh * kw)


def _kernel_size(k, in_channels, size, term):
    if size is not None:
        return (int(size), int(size)) if isinstance(size, int) else tuple(int(v) for v in size)
    area, rem = divmod(int(k.cols), int(in_channels))
    side = math.isqrt(area) if area > 0 else 0
    if rem or side * side != area:
        raise DerivationError(
            f"{term}: the kernel `{k.name}` has shape {k.shape}, which is not a square kernel "
            f"over {in_channels} input channels (its columns must be C*kh*kw); check the "
            "channels, or give `kernel_size`.")
    return side, side


def _label(x) -> str:
    """A map's name for error messages: `c_1`, or `rho(c_1)` for an activation of it."""
    if isinstance(x, sp.MatrixSymbol):
        return x.name
    expr, fn = getattr(x, "expr", None), getattr(x, "function", None)
    if expr is not None and fn is not None:  # an elementwise application
        name = getattr(getattr(fn, "expr", None), "func", None)
        return f"{getattr(name, '__name__', 'f')}({_label(expr)})"
    return str(x)


def conv(x, k, in_shape, *, stride: int = 1, padding: int = 0, kernel_size=None,
         floor: bool = False):
    """`K * x`: the convolution node of the maps `x` (shape `in_shape = (C, H, W)`); `floor`
    accepts a stride that does not tile the map (see `conv_geometry`)."""
    term = f"conv({_label(x)}, {k.name})"
    C = int(in_shape[0])
    if int(k.cols) % C:
        raise DerivationError(
            f"{term}: the kernel `{k.name}` has {k.cols} columns, not a multiple of the {C} "
            "channels of its input map; the channels of the layers do not match.")
    g = conv_geometry(in_shape, k.rows, _kernel_size(k, C, kernel_size, term), stride, padding,
                      term=term, floor=floor)
    want = int(in_shape[0]) * int(in_shape[1]) * int(in_shape[2])
    if sp.sympify(x.cols) != want:
        raise DerivationError(
            f"{term}: the input map has {x.cols} units per example but in_shape={tuple(in_shape)} "
            f"needs {want}; the channels or sizes of the layers do not match.")
    return Conv2d(x, k, g)


def pool(z, shape, kind: str = "max", size: int = 2):
    """Non-overlapping `size x size` max (`kind="max"`) or average (`"avg"`) pooling of `z`."""
    return Pool2d(z, pool_geometry(kind, shape, size, term=f"{kind}pool"))


def conv_coupling(pre, k, post, in_shape, rho=None, *, stride: int = 1, padding: int = 0,
                  pool_kind: str | None = None, pool_size: int = 2, kernel_size=None,
                  pre_raw: bool = False, post_raw: bool = False, floor: bool = False) -> sp.Expr:
    """`- < P(K * rho(pre)), rho(post) >`: the P_CNN coupling of two feature maps.

    **Arguments:** `pre` (maps of shape `in_shape = (C, H, W)`), `k` (a `kernel`), `post` (maps
    of the convolution's output shape, pooled by `pool_kind` `"max"`/`"avg"` if given), `rho`
    (default `terms.RHO`), `stride`, `padding`, `pool_size`, `kernel_size` (default: square,
    from `k`), `pre_raw`/`post_raw` (the layer itself instead of `rho` of it), `floor` (a
    stride that does not tile the map, as PyTorch floors it: see `conv_geometry`).

    **Raises:** `DerivationError` naming the sizes when the kernel is larger than the map, the
    stride or pooling does not tile it, or the channels do not match.
    """
    from .terms import RHO

    rho = rho or RHO
    a = pre if pre_raw else elementwise(rho, pre)
    z = conv(a, k, in_shape, stride=stride, padding=padding, kernel_size=kernel_size,
             floor=floor)
    out = conv_out_shape(z.args[-1])
    if pool_kind is not None:
        z = pool(z, out, pool_kind, pool_size)
        out = (out[0], out[1] // pool_size, out[2] // pool_size)
    n = out[0] * out[1] * out[2]
    if sp.sympify(post.cols) != n:
        raise DerivationError(
            f"conv_coupling({getattr(pre, 'name', pre)}, {k.name}, {post.name}): the upper map "
            f"`{post.name}` has {post.cols} units per example, but the convolution of "
            f"{tuple(int(v) for v in in_shape)} gives {out} = {n}"
            + (f" after {pool_kind} pooling" if pool_kind else "")
            + "; the channels or sizes of the layers do not match.")
    b = post if post_raw else elementwise(rho, post)
    return -sp.Trace(z * b.T)


def channel_bias(b, s, hw: int, rho=None) -> sp.Expr:
    """`- < tile(b), rho(s) >`: a bias per channel (`b` is `1 x C`) over `hw` pixels each."""
    from .terms import RHO

    tiled = ChannelTile(sp.OneMatrix(BATCH, 1) * b, sp.Tuple(int(hw)))
    return -sp.Trace(tiled * elementwise(rho or RHO, s).T)


def conv_hopfield_energy(
    in_shape: Sequence[int],
    channels: Sequence[int],
    dense: Sequence[int],
    *,
    kernel_size: int = 5,
    padding: int | Sequence[int] = 0,
    pool_kind: str | None = "max",
    pool_size: int = 2,
    cost: str = "squared_error",
    rho=None,
) -> Energy:
    """A layered convolutional energy: P_CNN maps, then dense layers (Ernoult et al. 2019).

    `F = sum_k 1/2 ||s_k||^2 - sum_k <P(K_k * rho(s_{k-1})), rho(s_k)> - sum_k <tile(c_k),
    rho(s_k)> - sum_j rho(h_{j-1}) W_j rho(h_j)^T - sum_j b_j rho(h_j)^T + beta C`, with the
    input `x` (a `B x C_0*H*W` image batch) entering the first convolution unactivated.

    **Arguments:**

    - `in_shape`: `(C, H, W)` of the input, e.g. `(1, 28, 28)`.
    - `channels`: output channels of each convolution, e.g. `(32, 64)`.
    - `dense`: sizes of the dense layers after the last map, the output last, e.g. `(10,)`.
    - `kernel_size`: of every convolution (stride 1, as in both papers); `padding`: of every
      convolution, or one per convolution (Laborieux et al. 2021: `(1, 1, 1, 0)`).
    - `pool_kind`: `"max"` (default), `"avg"` or `None`; `pool_size`: its window and stride.
    - `cost`: `"squared_error"` on the output state, or `"cross_entropy"`: a softmax readout
      `z = rho(h) W_out + b_out` of the last map or dense layer (Laborieux et al. 2021), then
      the last entry of `dense` is the number of classes and not a state.
    - `rho`: the opaque activation (default `terms.RHO`).

    **Returns:** an `Energy` with states `(c_1, ..., c_M, h_{M+1}, ..., y)`, parameters `(K_1,
    ..., K_M, a_1, ..., a_M, W_{M+1}, ..., b_{M+1}, ...)` (kernels, channel biases, dense
    weights, dense biases): the dense layers are numbered after the maps, so that each layer's
    parameters share a learning-rate group (`eqdyn.models.param_groups`).
    """
    from . import terms as T

    if not channels or not dense:
        raise DerivationError(f"`channels`={tuple(channels)} and `dense`={tuple(dense)} must "
                              "each name at least one layer.")
    if cost not in ("squared_error", "cross_entropy"):
        raise DerivationError(f"`cost`={cost!r} is not known; use 'squared_error' or "
                              "'cross_entropy'.")
    rho = rho or T.RHO
    pads = ((int(padding),) * len(channels) if isinstance(padding, int)
            else tuple(int(v) for v in padding))
    if len(pads) != len(channels):
        raise DerivationError(f"`padding`={tuple(pads)} gives {len(pads)} values for "
                              f"{len(channels)} convolutions; give one, or one per convolution.")
    shape = tuple(int(v) for v in in_shape)
    x = T.layer("x", shape[0] * shape[1] * shape[2])
    maps, kernels, cbias, terms = [], [], [], []
    prev, prev_shape = x, shape
    for i, c in enumerate(channels, start=1):
        k = kernel(f"K_{i}", prev_shape[0], c, kernel_size)
        g = conv_geometry(prev_shape, c, kernel_size, 1, pads[i - 1], term=f"conv layer {i}")
        out = conv_out_shape(g)
        if pool_kind is not None:
            pool_geometry(pool_kind, out, pool_size, term=f"conv layer {i}")
            out = (out[0], out[1] // pool_size, out[2] // pool_size)
        s = feature_map(f"c_{i}", *out)
        terms.append(conv_coupling(prev, k, s, prev_shape, rho, padding=pads[i - 1],
                                   pool_kind=pool_kind, pool_size=pool_size, pre_raw=(i == 1)))
        cb = T.bias(f"a_{i}", c)
        terms.append(channel_bias(cb, s, out[1] * out[2], rho))
        maps.append(s)
        kernels.append(k)
        cbias.append(cb)
        prev, prev_shape = s, out
    n_prev = prev_shape[0] * prev_shape[1] * prev_shape[2]
    n_dense_states = len(dense) if cost == "squared_error" else len(dense) - 1
    M = len(channels)
    hidden = [T.layer("y" if (j == len(dense) - 1) else f"h_{M + j + 1}", n)
              for j, n in enumerate(dense[:n_dense_states])]
    sizes = [n_prev, *dense]
    W = [T.weight(f"W_{M + j + 1}", sizes[j], sizes[j + 1]) for j in range(len(dense))]
    b = [T.bias(f"b_{M + j + 1}", n) for j, n in enumerate(dense)]
    below = prev
    for j, h in enumerate(hidden):
        terms.append(T.coupling(below, W[j], h, rho))
        terms.append(T.bias_term(b[j], h, rho))
        below = h
    states = (*maps, *hidden)
    terms = [T.leak(s) for s in states] + terms
    beta = sp.Symbol("beta", real=True)
    d = T.layer("d", dense[-1])
    if cost == "squared_error":
        cost_terms, output = (T.squared_error(hidden[-1], d),), None
    else:
        logits = T.readout(below, W[-1], b[-1], rho)
        cost_terms, output = tuple(T.cross_entropy(logits, d)), logits
    tag = f"{shape}-{tuple(channels)}-{tuple(dense)}-k{kernel_size}p{pads}-{pool_kind}"
    return Energy(
        internal=tuple(terms), cost=cost_terms, states=states,
        params=(*kernels, *cbias, *W, *b), inputs=(x, d), scalars=(beta,), functions=(rho,),
        name=f"conv_hopfield{tag}" + (", cross_entropy" if cost == "cross_entropy" else ""),
        output=output)
