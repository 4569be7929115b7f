"""eqdyn: continuous-time energy-based networks and Equilibrium Propagation.

Derive (SymPy) -> integrate (diffrax) -> learn (JAX). See README.md for a tour.
"""

__version__ = "0.1.0"

from ._errors import CheckpointError as CheckpointError
from ._errors import ConfigError as ConfigError
from ._errors import ConvergenceError as ConvergenceError
from ._errors import DataError as DataError
from ._errors import DerivationError as DerivationError
from ._errors import EqdynError as EqdynError
from .data import Dataset as Dataset
from .data import load_dataset as load_dataset
from .dynamics import RESULTS as RESULTS
from .dynamics import AbstractRelaxation as AbstractRelaxation
from .dynamics import Anderson as Anderson
from .dynamics import BlockSweeps as BlockSweeps
from .dynamics import FusedEuler as FusedEuler
from .dynamics import Integrate as Integrate
from .dynamics import Langevin as Langevin
from .dynamics import OptimistixRoot as OptimistixRoot
from .dynamics import RelaxConfig as RelaxConfig
from .dynamics import RelaxProblem as RelaxProblem
from .dynamics import RelaxResult as RelaxResult
from .dynamics import Spiking as Spiking
from .dynamics import relax as relax
from .dynamics import relax_core as relax_core
from .learning import EPConfig as EPConfig
from .learning import ep_gradient as ep_gradient
from .models import Activation as Activation
from .models import AbstractEnergyModel as AbstractEnergyModel
from .models import EnergyModel as EnergyModel
from .models import LayeredHopfield as LayeredHopfield
from .models import compile_system as compile_system
from .models import register_activation as register_activation
from .symbolic import Energy as Energy
from .symbolic import derive as derive
from .symbolic import layered_hopfield_energy as layered_hopfield_energy
from .training import PRESETS as PRESETS
from .training import TrainConfig as TrainConfig
from .training import evaluate as evaluate
from .training import load_run as load_run
from .training import load_trained as load_trained
from .training import resolve_config as resolve_config
from .training import train as train
