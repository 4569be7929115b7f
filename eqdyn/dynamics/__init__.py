"""Dynamics on diffrax: relaxation to a steady state, with the teacher entering through beta;
continuous-time learning episodes (neurons, synapses and teacher in one solve)."""

from ._continuous import AbstractTeacher as AbstractTeacher
from ._continuous import Custom as Custom
from ._continuous import EpisodeResult as EpisodeResult
from ._continuous import OnSteady as OnSteady
from ._continuous import Ramp as Ramp
from ._continuous import episode as episode
from ._langevin import SDE_SOLVERS as SDE_SOLVERS
from ._langevin import LangevinResult as LangevinResult
from ._langevin import langevin as langevin
from ._relax import SOLVERS as SOLVERS
from ._relax import RelaxConfig as RelaxConfig
from ._relax import RelaxResult as RelaxResult
from ._relax import max_norm as max_norm
from ._relax import relax as relax
from ._relax import relax_core as relax_core
from ._relax import Trajectory as Trajectory
from ._relax import trajectory as trajectory
