"""Elayedam & Srinivasan (2025), Hopfield-ResNet13 of "Scaling Equilibrium Propagation to
Deeper Neural Network Architectures" (their code's `ConvHopfieldResEnergy32`, `--network
hopfieldresnet13`): 3x32x32 -> four residual blocks of (128, 256, 512, 512) channels, maps of
128x32x32, 128x16x16, 256x16x16, 256x8x8, 512x8x8, 512x4x4, 512x4x4 and 512x2x2 units, 3x3
convolutions (the second of each block at stride 2) and 1x1 stride-2 residual convolutions
between non-adjacent maps, a dense readout of the last map to 10 classes under the squared
error, the clipped ReLU (ReLU6). The `hr25-cifar10` preset trains it (docs/presets.md).
"""

from eqdyn.symbolic import hopfield_resnet_energy


def energy(sizes):
    if sizes[0] != 3072 or sizes[-1] != 10:
        raise ValueError(f"this energy reads 3x32x32 images into 10 classes; `arch` is {sizes}")
    return hopfield_resnet_energy((3, 32, 32), (128, 256, 512, 512), 10, cost="squared_error")


activation = "relu6"
