"""Learning rules (EP estimators) and the trainer."""

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
from ._trainer import checkpoint_layout as checkpoint_layout
from ._trainer import evaluate as evaluate
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
