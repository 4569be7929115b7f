"""A small P_CNN for scikit-learn's 8x8 digits: a 3x3 convolution (padding 1) to 8 channels,
2x2 max pooling, a dense output layer of 10 (Ernoult et al. 2019's layout, scaled down):

    eqdyn train --dataset digits --energy derivations/energies/conv_digits.py --arch 64-128-10

(`--arch` gives the input and output sizes the trainer checks; the maps are written here.)
"""

from eqdyn.symbolic import conv_hopfield_energy


def energy(sizes):
    if sizes[0] != 64:
        raise ValueError(f"this energy reads 1x8x8 images (64 inputs); `--arch` starts with {sizes[0]}")
    return conv_hopfield_energy((1, 8, 8), (8,), (sizes[-1],), kernel_size=3, padding=1,
                                pool_kind="max")


activation = "hard_sigmoid"
