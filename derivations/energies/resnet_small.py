"""A small Hopfield-ResNet energy (Elayedam & Srinivasan 2025): two residual blocks of 2 and 3
channels on 3x8x8 images (maps 2x8x8, 2x4x4, 3x4x4, 3x2x2), a squared-error readout of 4
classes; the `hr25-cifar10` preset's energy at a size that derives and checks in seconds:

    eqdyn derive --energy derivations/energies/resnet_small.py --check

(the layer sizes of `--arch` are not used: the geometry is written here).
"""

from eqdyn.symbolic import hopfield_resnet_energy

energy = hopfield_resnet_energy((3, 8, 8), (2, 3), 4)
activation = "relu6"
