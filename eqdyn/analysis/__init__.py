"""Analyses: early inference against backprop through the network's own feedforward
computation (and Xie & Seung's weak-feedback limit), GDU (EP's step-by-step updates against
BPTT's gradients), EP's bias against beta, EP under neuron noise, convergence of the
relaxation, the STDP window of the rate rules under the pairing protocol. Each study returns
a record with `to_json()`; `eqdyn.analysis.plots` draws it."""

from ._bias import BiasStudy as BiasStudy
from ._bias import bias_vs_beta as bias_vs_beta
from ._convergence import ConvergenceStudy as ConvergenceStudy
from ._convergence import convergence_study as convergence_study
from ._early import EarlyInference as EarlyInference
from ._early import EarlyInferenceSweep as EarlyInferenceSweep
from ._early import early_inference as early_inference
from ._early import early_inference_sweep as early_inference_sweep
from ._early import linear_response as linear_response
from ._feedforward import feedforward_backprop as feedforward_backprop
from ._feedforward import feedforward_pass as feedforward_pass
from ._feedforward import fixed_point as fixed_point
from ._feedforward import mlp_backprop_errors as mlp_backprop_errors
from ._feedforward import with_feedback as with_feedback
from ._gdu import GDU as GDU
from ._gdu import GDUStudy as GDUStudy
from ._gdu import gdu as gdu
from ._gdu import gdu_study as gdu_study
from ._gdu import relative_mse as relative_mse
from ._metrics import cosine as cosine
from ._metrics import field_jacobians as field_jacobians
from ._metrics import fixed_point_sensitivity as fixed_point_sensitivity
from ._metrics import relative_error as relative_error
from ._noise import NoiseStudy as NoiseStudy
from ._noise import noise_study as noise_study
from ._training import TrainingDynamics as TrainingDynamics
from ._training import training_dynamics as training_dynamics
from ._stdp import StdpStudy as StdpStudy
from ._stdp import analytic_window as analytic_window
from ._stdp import fit_window as fit_window
from ._stdp import stdp_window as stdp_window
from ._stdp import two_exponential as two_exponential
from ._studies import STUDIES as STUDIES
from ._studies import run_study as run_study
from ._xie_seung import XieSeungStudy as XieSeungStudy
from ._xie_seung import xie_seung_study as xie_seung_study
from ._boltzmann import AISResult as AISResult
from ._boltzmann import ais_log_partition as ais_log_partition
from ._boltzmann import autocorrelation as autocorrelation
from ._boltzmann import base_rate_bias as base_rate_bias
from ._boltzmann import effective_sample_size as effective_sample_size
from ._boltzmann import exact_log_partition as exact_log_partition
from ._boltzmann import free_energy as free_energy
from ._boltzmann import label_log_probs as label_log_probs
from ._boltzmann import log_likelihood as log_likelihood
