"""Learning rules as objects with one interface, `rule(model, x, d, s0, *, key, labels) ->
(grads, Stats)`: EP with its nudgings, CHL, the exact references (RBP, BPTT, backprop),
continual EP and the clock-free learner. The trainer is `eqdyn.training`."""

from ._rule import AbstractRule as AbstractRule
from ._rule import AbstractLocalRule as AbstractLocalRule
from ._rule import Stats as Stats
from ._rule import free_phase_stats as free_phase_stats
from ._rule import worst_status as worst_status
from ._nudging import AbstractNudging as AbstractNudging
from ._nudging import OneSided as OneSided
from ._nudging import RandomSign as RandomSign
from ._spike_timing import SpikeTiming as SpikeTiming
from ._nudging import Symmetric as Symmetric
from ._nudging import Holomorphic as Holomorphic
from ._nudging import check_holomorphic as check_holomorphic
from ._nudging import require_holomorphic as require_holomorphic
from ._phase import noisy_phase as noisy_phase
from ._ep import EP as EP
from ._ep import NUDGINGS as NUDGINGS
from ._rules import CHL as CHL
from ._rules import RBP as RBP
from ._rules import BPTT as BPTT
from ._rules import Backprop as Backprop
from ._local import ContinualEP as ContinualEP
from ._local import ClockFree as ClockFree
from ._local import PLASTICITY as PLASTICITY
from ._boltzmann import CD as CD
from ._boltzmann import BinaryCHL as BinaryCHL
from ._boltzmann import BinaryEP as BinaryEP
from ._boltzmann import PCD as PCD
from ._boltzmann import positive_phase as positive_phase
from ._vector_field import VectorFieldEP as VectorFieldEP
from ._vector_field import vector_field_update as vector_field_update
from ._vector_field import homeostasis_loss as homeostasis_loss

from ._ep import VARIANTS as VARIANTS
from ._ep import EPConfig as EPConfig
from ._ep import EPResult as EPResult
from ._ep import ep_gradient as ep_gradient
from ._continual import CEP_VARIANTS as CEP_VARIANTS
from ._continual import continual_ep_step as continual_ep_step
from ._references import bptt_gradient as bptt_gradient
from ._references import chl_gradient as chl_gradient
from ._references import feedforward_backprop_gradient as feedforward_backprop_gradient
from ._references import feedforward_predict as feedforward_predict
from ._references import rbp_gradient as rbp_gradient

#: trainer names that lived here before 0.2 (`eqdyn.training` holds them now)
_MOVED = ("ALGOS", "OPTIMIZERS", "PRESETS", "SCHEDULES", "TrainConfig", "TrainedRun",
          "checkpoint_layout", "evaluate", "load_run", "load_trained", "make_optimizer",
          "resolve_config", "train", "COMPARE_ALGOS", "compare", "format_table")


def __getattr__(name):
    if name in _MOVED:  # imported on first use: eqdyn.training imports this package
        from .. import training

        return getattr(training, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
