"""Learning rules as objects with one interface, `rule(model, x, d, s0, *, key, labels) ->
(grads, Stats)`: EP with its nudgings, CHL, the exact references (RBP, BPTT, backprop),
continual EP and the clock-free learner; and the trainer."""

from ._rule import AbstractRule as AbstractRule
from ._rule import AbstractLocalRule as AbstractLocalRule
from ._rule import Stats as Stats
from ._rule import free_phase_stats as free_phase_stats
from ._nudging import AbstractNudging as AbstractNudging
from ._nudging import OneSided as OneSided
from ._nudging import RandomSign as RandomSign
from ._nudging import Symmetric as Symmetric
from ._nudging import Holomorphic as Holomorphic
from ._nudging import check_holomorphic as check_holomorphic
from ._nudging import require_holomorphic as require_holomorphic
from ._phase import NoisyPhase as NoisyPhase
from ._ep import EP as EP
from ._ep import NUDGINGS as NUDGINGS
from ._rules import CHL as CHL
from ._rules import RBP as RBP
from ._rules import BPTT as BPTT
from ._rules import Backprop as Backprop
from ._local import ContinualEP as ContinualEP
from ._local import ClockFree as ClockFree
from ._local import PLASTICITY as PLASTICITY

from ._ep import VARIANTS as VARIANTS
from ._ep import EPConfig as EPConfig
from ._ep import EPResult as EPResult
from ._ep import ep_gradient as ep_gradient
from ._continual import CEP_VARIANTS as CEP_VARIANTS
from ._continual import continual_ep_step as continual_ep_step
from ._trainer import ALGOS as ALGOS
from ._trainer import OPTIMIZERS as OPTIMIZERS
from ._trainer import PRESETS as PRESETS
from ._trainer import SCHEDULES as SCHEDULES
from ._trainer import TrainConfig as TrainConfig
from ._trainer import TrainedRun as TrainedRun
from ._trainer import checkpoint_layout as checkpoint_layout
from ._trainer import evaluate as evaluate
from ._trainer import load_run as load_run
from ._trainer import load_trained as load_trained
from ._trainer import make_optimizer as make_optimizer
from ._trainer import resolve_config as resolve_config
from ._trainer import train as train
from ._references import bptt_gradient as bptt_gradient
from ._references import chl_gradient as chl_gradient
from ._references import feedforward_backprop_gradient as feedforward_backprop_gradient
from ._references import feedforward_predict as feedforward_predict
from ._references import rbp_gradient as rbp_gradient
from ._compare import COMPARE_ALGOS as COMPARE_ALGOS
from ._compare import compare as compare
from ._compare import format_table as format_table
