"""A small P_CNN energy (Ernoult et al. 2019): two 3x3 convolutions with 2x2 max pooling on
8x8 one-channel maps, then a dense output layer; derive and check it with

    eqdyn derive --energy derivations/energies/conv_pcnn.py --check

(the layer sizes of `--arch` are not used: the geometry is written here).
"""

from eqdyn.symbolic import conv_hopfield_energy

energy = conv_hopfield_energy((1, 8, 8), (2, 3), (4,), kernel_size=3, padding=1, pool_kind="max")
activation = "sigmoid"
