"""Dynamics on diffrax: relaxation to a steady state, with the teacher entering through beta."""

from ._relax import SOLVERS as SOLVERS
from ._relax import RelaxConfig as RelaxConfig
from ._relax import RelaxResult as RelaxResult
from ._relax import max_norm as max_norm
from ._relax import relax as relax
from ._relax import relax_core as relax_core
