"""Ernoult et al. (2019), P-conv: the convolutional network of "Updates of Equilibrium Prop
Match Gradients of Backprop Through Time in an RNN with Static Input" (their code's
`--C_tab 64 32 1 --size_tab 10`, 5x5 kernels, no padding, 2x2 max pooling):
1x28x28 -> 32x12x12 -> 64x4x4 -> 10, squared error on the output. The `e19-pconv-mnist` preset
trains it (docs/presets.md).
"""

from eqdyn.symbolic import conv_hopfield_energy


def energy(sizes):
    if sizes[0] != 784 or sizes[-1] != 10:
        raise ValueError(f"this energy reads 1x28x28 images into 10 classes; `arch` is {sizes}")
    return conv_hopfield_energy((1, 28, 28), (32, 64), (10,), kernel_size=5, padding=0,
                                pool_kind="max")


activation = "hard_sigmoid"
