"""The trainer: run configuration and presets, the registry of named choices, run
directories and checkpoints, optimisers, evaluation, the training loop, sweeps and
comparisons of learning rules."""

from ._checkpoint import CheckpointWriter as CheckpointWriter
from ._checkpoint import load_checkpoint as load_checkpoint
from ._checkpoint import load_checkpoint_leaves as load_checkpoint_leaves
from ._checkpoint import write_bytes as write_bytes
from ._checkpoint import write_json as write_json
from ._compare import COMPARE_ALGOS as COMPARE_ALGOS
from ._compare import compare as compare
from ._compare import format_table as format_table
from ._config import DEFAULT_ARCH as DEFAULT_ARCH
from ._config import TrainConfig as TrainConfig
from ._config import build_model as build_model
from ._config import resolve_config as resolve_config
from ._config import validate as validate
from ._evaluate import evaluate as evaluate
from ._loop import epoch_order as epoch_order
from ._loop import train as train
from ._loop import train_chunk as train_chunk
from ._optim import LOCAL_OPTIMIZER as LOCAL_OPTIMIZER
from ._optim import make_optimizer as make_optimizer
from ._presets import PRESETS as PRESETS
from ._registry import ALGOS as ALGOS
from ._registry import BACKENDS as BACKENDS
from ._registry import CEP_VARIANTS as CEP_VARIANTS
from ._registry import COSTS as COSTS
from ._registry import FORMULATIONS as FORMULATIONS
from ._registry import LOCAL_RULES as LOCAL_RULES
from ._registry import OPTIMIZERS as OPTIMIZERS
from ._registry import PLASTICITY as PLASTICITY
from ._registry import SCHEDULES as SCHEDULES
from ._registry import SOLVERS as SOLVERS
from ._registry import VARIANTS as VARIANTS
from ._registry import relax_configs as relax_configs
from ._registry import build_rule as build_rule
from ._run_io import RESUMABLE as RESUMABLE
from ._run_io import TrainedRun as TrainedRun
from ._run_io import checkpoint_layout as checkpoint_layout
from ._run_io import load_run as load_run
from ._run_io import load_trained as load_trained
from ._run_io import read_run_config as read_run_config
from ._run_io import read_run_settings as read_run_settings
from ._run_io import state_template as state_template
from ._sweep import SWEEPABLE as SWEEPABLE
from ._sweep import format_sweep_table as format_sweep_table
from ._sweep import sweep as sweep
