"""Laborieux et al. (2021), the CIFAR-10 network of "Scaling Equilibrium Propagation to Deep
ConvNets by Drastically Reducing its Gradient Estimator Bias" (their code's `--channels 128 256
512 512 --kernels 3 3 3 3 --pools 'mmmm' --paddings 1 1 1 0 --fc 10 --loss 'cel' --softmax`):
3x32x32 -> 128x16x16 -> 256x8x8 -> 512x4x4 -> 512x1x1, a softmax readout of the last map
(cross-entropy cost). The `l21-cifar10` preset trains it (docs/presets.md).
"""

from eqdyn.symbolic import conv_hopfield_energy


def energy(sizes):
    if sizes[0] != 3072 or sizes[-1] != 10:
        raise ValueError(f"this energy reads 3x32x32 images into 10 classes; `arch` is {sizes}")
    return conv_hopfield_energy((3, 32, 32), (128, 256, 512, 512), (10,), kernel_size=3,
                                padding=(1, 1, 1, 0), pool_kind="max", cost="cross_entropy")


activation = "hard_sigmoid"
