"""The Hopfield-ResNet energy (Elayedam & Srinivasan 2025): convolutional maps with residual
couplings between non-adjacent maps.

Each of the blocks `k = 1 .. M` has two maps: `a_k`, a 3x3 convolution (stride 1, padding 1) of
the block's input, and `b_k`, a 3x3 convolution of `a_k` at stride 2 (padding 1: the map halves)
plus the residual coupling, a 1x1 convolution of the block's input at stride 2. The block's
input is the image for the first block and `b_{k-1}` after. The couplings are the plain
`- < K * rho(pre), rho(post) >` terms of `conv_coupling` (no pooling), so the energy stays
symmetric; the residual coupling closes a triangle (`b_{k-1}`, `a_k`, `b_k`), which block
sweeps refuse (an odd cycle) and the fused Euler loop relaxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from .._errors import DerivationError
from ._conv import conv_geometry, conv_out_shape
from ._conv_energy import channel_bias, conv_coupling, feature_map, kernel
from ._energy import Energy

__all__ = ["hopfield_resnet_energy"]


def hopfield_resnet_energy(
    in_shape: Sequence[int],
    channels: Sequence[int] = (128, 256, 512, 512),
    n_classes: int = 10,
    *,
    cost: str = "squared_error",
    rho=None,
) -> Energy:
    """Hopfield-ResNet: `2 M` maps in `M` residual blocks, a dense readout of the last map.

    With `M = 4` blocks of `(128, 256, 512, 512)` channels on `3 x 32 x 32` images this is the
    authors' `ConvHopfieldResEnergy32` (Hopfield-ResNet13: 12 convolutions and the dense
    readout, 13 weight tensors): maps of 128x32x32, 128x16x16, 256x16x16, 256x8x8, 512x8x8,
    512x4x4, 512x4x4 and 512x2x2 units. In each block (input `p`, maps `a`, `b`):

        - < K_a * rho(p), rho(a) > - < K_b *_2 rho(a), rho(b) > - < S *_2 rho(p), rho(b) >
        - < tile(c_a), rho(a) > - < tile(c_b), rho(b) >

    (`*_2` at stride 2; the image enters unactivated), the leak `1/2 ||s||^2` of every map, and
    the readout `z = rho(b_M) W + b` of the last map: `cost="squared_error"` puts
    `1/2 ||z - d||^2` on it (the authors' default MSE loss, on their linear output layer;
    see docs/conv.md for the difference), `"cross_entropy"` a softmax.

    **Arguments:**

    - `in_shape`: `(C, H, W)` of the input; `H` and `W` must halve `M` times.
    - `channels`: the channels of each block (default the paper's `(128, 256, 512, 512)`).
    - `n_classes`: columns of the readout.
    - `cost`: `"squared_error"` or `"cross_entropy"` (on the readout).
    - `rho`: the opaque activation (default `terms.RHO`; the paper's is the clipped ReLU,
      `"relu6"` in `eqdyn.models`).

    **Returns:** an `Energy` with states `(c_1, ..., c_{2M})` (`a_k = c_{2k-1}`, `b_k = c_{2k}`),
    parameters `(K_1, ..., K_{2M}, S_2, S_4, ..., a_1, ..., a_{2M}, W_{2M+1}, b_{2M+1})`:
    kernels, residual kernels (named after the map they feed, so each shares its map's
    learning-rate group), channel biases, the readout.

    **Raises:** `DerivationError` when a map does not halve, or `cost` is unknown.
    """
    from . import terms as T

    if cost not in ("squared_error", "cross_entropy"):
        raise DerivationError(f"`cost`={cost!r} is not known; use 'squared_error' or "
                              "'cross_entropy'.")
    if not channels:
        raise DerivationError(f"`channels`={tuple(channels)} must name at least one block.")
    rho = rho or T.RHO
    shape = tuple(int(v) for v in in_shape)
    x = T.layer("x", shape[0] * shape[1] * shape[2])
    maps, kernels, skips, cbias, terms = [], [], [], [], []
    prev, prev_shape, raw = x, shape, True
    for k, c in enumerate(channels, start=1):
        ia, ib = 2 * k - 1, 2 * k
        a_shape = (int(c), prev_shape[1], prev_shape[2])
        b_shape = conv_out_shape(conv_geometry(a_shape, c, 3, 2, 1, floor=True,
                                               term=f"block {k}"))
        if conv_out_shape(conv_geometry(prev_shape, c, 1, 2, 0, floor=True,
                                        term=f"block {k}")) != b_shape:
            raise DerivationError(f"block {k}: the residual 1x1 stride-2 convolution of the "
                                  f"{prev_shape} map does not give the {b_shape} map.")
        a, b = feature_map(f"c_{ia}", *a_shape), feature_map(f"c_{ib}", *b_shape)
        Ka, Kb = kernel(f"K_{ia}", prev_shape[0], c, 3), kernel(f"K_{ib}", c, c, 3)
        S = kernel(f"S_{ib}", prev_shape[0], c, 1)
        terms += [conv_coupling(prev, Ka, a, prev_shape, rho, padding=1, pre_raw=raw),
                  conv_coupling(a, Kb, b, a_shape, rho, stride=2, padding=1, floor=True),
                  conv_coupling(prev, S, b, prev_shape, rho, stride=2, floor=True, pre_raw=raw)]
        for s, n, m in ((a, ia, a_shape), (b, ib, b_shape)):
            cb = T.bias(f"a_{n}", c)
            terms.append(channel_bias(cb, s, m[1] * m[2], rho))
            cbias.append(cb)
        maps += [a, b]
        kernels += [Ka, Kb]
        skips.append(S)
        prev, prev_shape, raw = b, b_shape, False
    n_last = prev_shape[0] * prev_shape[1] * prev_shape[2]
    out = 2 * len(channels) + 1
    W, bo = T.weight(f"W_{out}", n_last, int(n_classes)), T.bias(f"b_{out}", int(n_classes))
    d = T.layer("d", int(n_classes))
    z = T.readout(prev, W, bo, rho)
    cost_terms = ((T.squared_error(z, d),) if cost == "squared_error"
                  else tuple(T.cross_entropy(z, d)))
    beta = sp.Symbol("beta", real=True)
    return Energy(
        internal=tuple(T.leak(s) for s in maps) + tuple(terms), cost=cost_terms,
        states=tuple(maps), params=(*kernels, *skips, *cbias, W, bo), inputs=(x, d),
        scalars=(beta,), functions=(rho,), output=z,
        name=f"hopfield_resnet{shape}-{tuple(int(c) for c in channels)}-{int(n_classes)}, {cost}")
