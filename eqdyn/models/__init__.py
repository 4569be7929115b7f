"""Concrete networks and the compiled numeric systems they run."""

from ._activations import ACTIVATIONS as ACTIVATIONS
from ._activations import Activation as Activation
from ._activations import get_activation as get_activation
from ._activations import register_activation as register_activation
from ._energy_file import load_energy_file as load_energy_file
from ._hopfield import LayeredHopfield as LayeredHopfield
from ._network import AbstractEnergyModel as AbstractEnergyModel
from ._network import EnergyModel as EnergyModel
from ._network import glorot_init as glorot_init
from ._network import param_groups as param_groups
from ._hopfield import parse_arch as parse_arch
from ._system import FORMULATIONS as FORMULATIONS
from ._system import CompiledSystem as CompiledSystem
from ._system import compile_system as compile_system
from ._system import energy_system as energy_system
from ._system import hopfield_system as hopfield_system
from ._system import resolve_activations as resolve_activations
from ._system import resolve_formulation as resolve_formulation
from ._reference import check_hopfield_derivation as check_hopfield_derivation
from ._reference import hopfield_energy_reference as hopfield_energy_reference
from ._reference import check_derivation as check_derivation
from ._boltzmann import BinarySystem as BinarySystem
from ._boltzmann import BoltzmannMachine as BoltzmannMachine
from ._boltzmann import binary_system as binary_system
from ._boltzmann import check_binary as check_binary
