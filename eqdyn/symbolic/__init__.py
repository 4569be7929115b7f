"""The symbolic layer: energies in SymPy, their derivatives, printing and code generation.

Imports SymPy only, never JAX.
"""

from ._binary import UNITS as UNITS
from ._binary import BinaryDerivation as BinaryDerivation
from ._binary import binary_units as binary_units
from ._binary import boltzmann_energy as boltzmann_energy
from ._codegen import GeneratedCode as GeneratedCode
from ._codegen import generate_code as generate_code
from ._codegen import python_name as python_name
from ._codegen import CONV_HELPERS as CONV_HELPERS
from ._codegen import scalar_function_source as scalar_function_source
from ._conv import ChannelSum as ChannelSum
from ._conv import ChannelTile as ChannelTile
from ._conv import Conv2d as Conv2d
from ._conv import ConvKernelGrad as ConvKernelGrad
from ._conv import ConvTranspose2d as ConvTranspose2d
from ._conv import Pool2d as Pool2d
from ._conv import PoolJvp as PoolJvp
from ._conv import PoolUnpool2d as PoolUnpool2d
from ._conv import conv_geometry as conv_geometry
from ._conv import pool_geometry as pool_geometry
from ._conv_energy import conv_hopfield_energy as conv_hopfield_energy
from ._resnet_energy import hopfield_resnet_energy as hopfield_resnet_energy
from ._energy import BATCH as BATCH
from ._energy import Derivation as Derivation
from ._energy import Energy as Energy
from ._energy import derive as derive
from ._energy import elementwise as elementwise
from ._energy import layered_hopfield_energy as layered_hopfield_energy
from ._energy import BETA_RATE as BETA_RATE
from ._energy import velocity_symbol as velocity_symbol
from ._nodes import RowLogSumExp as RowLogSumExp
from ._nodes import RowSoftmax as RowSoftmax
from ._nodes import row_logsumexp as row_logsumexp
from ._nodes import row_softmax as row_softmax
from ._printing import to_latex as to_latex
from ._scales import feedforward_energy as feedforward_energy
from ._scales import layer_scales as layer_scales
from ._scales import term_owners as term_owners
from ._scales import with_layer_scales as with_layer_scales
from . import terms as terms  # building blocks for energies
from ._printing import to_text as to_text
