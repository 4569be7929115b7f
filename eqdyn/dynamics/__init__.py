"""Dynamics on diffrax: relaxation to a steady state, with the teacher entering through beta
(relaxations are objects: `Integrate`, `FusedEuler`, `BlockSweeps`, `Langevin`, `Spiking`, or a user's
`AbstractRelaxation`); continuous-time learning episodes (neurons, synapses and teacher in one
solve)."""

from ._anderson import Anderson as Anderson
from ._base import RESULTS as RESULTS
from ._base import AbstractRelaxation as AbstractRelaxation
from ._base import RelaxProblem as RelaxProblem
from ._base import RelaxResult as RelaxResult
from ._base import max_norm as max_norm
from ._blocks import BlockSweeps as BlockSweeps
from ._config import SOLVERS as SOLVERS
from ._config import RelaxConfig as RelaxConfig
from ._continuous import EpisodeResult as EpisodeResult
from ._continuous import episode as episode
from ._fused import FusedEuler as FusedEuler
from ._integrate import Integrate as Integrate
from ._langevin import SDE_SOLVERS as SDE_SOLVERS
from ._langevin import Langevin as Langevin
from ._langevin import LangevinResult as LangevinResult
from ._optimistix import OptimistixRoot as OptimistixRoot
from ._langevin import langevin as langevin
from ._relax import Trajectory as Trajectory
from ._spiking import LIF as LIF
from ._spiking import AbstractUnit as AbstractUnit
from ._spiking import Poisson as Poisson
from ._spiking import SpikeRecord as SpikeRecord
from ._spiking import Spiking as Spiking
from ._spiking import record_spikes as record_spikes
from ._relax import relax as relax
from ._relax import relax_core as relax_core
from ._relax import relax_problem as relax_problem
from ._relax import trajectory as trajectory
from ._gibbs import BlockGibbs as BlockGibbs
from ._gibbs import MeanField as MeanField
from ._gibbs import binary_problem as binary_problem
from ._gibbs import sample_chain as sample_chain
from ._teachers import AbstractTeacher as AbstractTeacher
from ._teachers import Custom as Custom
from ._teachers import OnSteady as OnSteady
from ._teachers import Ramp as Ramp
