"""Shared pytest setup: float64 everywhere (the trainer and data code pin float32 themselves),
a reproducible per-test PRNG key, a persistent XLA compilation cache, and the test tiers.

Tiers (README, `.ci/run`):

- default (`pytest`): unit and oracle tests on small networks and every refusal; at most
  5 minutes on 2 CPU cores.
- `pytest -m integration`: notebooks, end-to-end training runs, CLI subprocesses, studies,
  multi-device and multi-process runs: the tests listed in `INTEGRATION` below.
- `pytest -m slow`: the MNIST reproductions (marked in their files).

The integration tests are listed here, by node id, rather than marked in each file: the list
is the one place that says what the default tier leaves out and why (each entry gives its
measured time), the test files stay free to move their imports and names, and an entry
that no longer names a test is an error at collection (so a renamed test cannot slip back
into the default tier, or out of CI, unnoticed).
"""

from __future__ import annotations

import functools
import os
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

# A persistent compilation cache for the test session (the harness's setting, not the
# library's): XLA programs compiled by one run are read back by the next, here and in the
# subprocesses the tests start (they inherit the environment). An existing
# JAX_COMPILATION_CACHE_DIR is kept.
# Under pytest-xdist each worker keeps its own cache folder, so no worker reads an entry another
# is writing; a worker of the next run reads back what the same-numbered worker wrote. (The
# workers inherit the controller's environment: the folder this file chose is re-chosen there.)
if "JAX_COMPILATION_CACHE_DIR" not in os.environ or os.environ.get("EQDYN_TEST_CACHE") == "1":
    os.environ["EQDYN_TEST_CACHE"] = "1"
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(
        Path(__file__).resolve().parents[1] / ".pytest_cache"
        / ("jax-compilation-cache-" + os.environ.get("PYTEST_XDIST_WORKER", "main")))
_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"]
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

# The reasons say what each test runs; times, where given, were measured 2026-12-07 on the
# shared 2-core machine (load 7-11 from other jobs: 2-3x what the machine takes alone), one
# file at a time with `pytest FILE --durations=0`.
INTEGRATION: dict[str, str] = {
    # end-to-end training runs (`train`, `compare`, `sweep`, or the CLI's train/compare/sweep)
    "test_algorithms.py::test_new_rules_learn_digits": "3 training runs on digits (27+6+4 s)",
    "test_algorithms.py::test_noisy_holomorphic_ep_learns_digits": "training run (27 s)",
    "test_algorithms.py::test_resuming_a_cosine_run_with_more_epochs_is_refused":
        "trains an epoch to have a run to refuse (32 s)",
    "test_analysis.py::test_convergence_study_of_a_trained_run": "training run and a study",
    "test_bench_anderson.py::test_reads_the_training_particles": "training run (module fixture)",
    "test_bench_anderson.py::test_checkpoint_layout_finds_the_parameters": "the same run",
    "test_bench_anderson.py::test_load_run_restores_every_split": "the same run",
    "test_bench_anderson.py::test_compares_plain_and_anderson_sweeps": "the same run, rescored",
    "test_bench_epoch.py::test_quick_run_on_a_deeper_net": "timed training epochs",
    "test_cli.py::test_train_then_resume": "CLI training runs",
    "test_cli.py::test_train_other_learning_rules": "CLI training runs (CHL, RBP, BPTT)",
    "test_cli.py::test_compare_same_initialisation_table": "CLI compare: two training runs",
    "test_cli.py::test_resume_a_custom_energy_run": "CLI training runs",
    "test_cli.py::test_resume_guards": "CLI training runs",
    "test_cli_bugs.py::test_compare_with_a_dataset_name": "CLI compare: training runs",
    "test_cli_bugs.py::test_sweep_with_a_dataset_name": "CLI sweep: training runs",
    "test_cli_bugs.py::test_val_loss_is_the_mean_cost_computed_by_hand": "CLI training run",
    "test_continuous.py::test_train_continuous_on_digits": "training run",
    "test_continuous_hopfield.py::test_the_continuous_hopfield_network_learns_digits":
        "training run",
    "test_custom_energies.py::test_train_custom_energy_file_learns_digits": "training run",
    "test_custom_energies.py::test_resuming_a_custom_energy_run_refuses_a_changed_file":
        "trains a run to refuse",
    "test_fast_paths.py::test_anderson_training_learns_as_well_in_fewer_sweeps": "2 training runs",
    "test_fast_paths.py::test_training_compiles_once_across_runs": "training runs",
    "test_learning.py::test_train_writes_run_directory": "training run (module fixture run_a)",
    "test_learning.py::test_train_learns_digits_in_float32": "run_a",
    "test_learning.py::test_train_chunk_is_traced_once": "run_a",
    "test_learning.py::test_a_failed_background_write_does_not_hide_the_error_that_stopped_"
    "training": "training run",
    "test_learning.py::test_resume_is_bit_exact": "run_a and two more runs",
    "test_learning.py::test_eval_persistent_scores_from_tracked_particles_and_resumes_exactly":
        "three training runs",
    "test_learning.py::test_resume_errors": "run_a",
    "test_rescore.py": "training runs, rescored by benchmarks/rescore.py",
    "test_training.py::test_a_huge_learning_rate_warns_and_keeps_a_sound_checkpoint":
        "training run",
    "test_training.py::test_a_sound_run_does_not_warn_and_counts_its_failures_on_the_epoch_"
    "line": "training run",
    "test_resume_signal.py::test_a_run_killed_mid_training_resumes_bit_exactly":
        "eqdyn train processes killed by a signal and resumed: 5 runs (500 s at load 10, 90 s "
        "of CPU)",
    "test_scale.py::test_vmapped_sweep_matches_runs_one_by_one": "a sweep and its runs one by one",
    "test_scale.py::test_cli_sweep_writes_table_and_json": "CLI sweep",
    # studies (many relaxations, many betas or noise draws)
    "test_analysis.py::test_bias_slopes_are_one_two_and_n": "study: EP's bias against beta",
    "test_analysis.py::test_convergence_study_energy_descends_and_spectrum_predicts_settling":
        "study: convergence",
    "test_analysis.py::test_training_dynamics_symmetric_ep_follows_the_gradient":
        "study: training dynamics",
    "test_analysis.py::test_gdu_holds_as_beta_to_zero_with_a_converged_free_phase":
        "study: GDU (module fixture gdu_runs)",
    "test_analysis.py::test_gdu_error_grows_first_order_in_beta": "gdu_runs",
    "test_analysis.py::test_gdu_fails_with_an_unconverged_free_phase": "gdu_runs",
    "test_analysis.py::test_gdu_bptt_steps_sum_to_bptt_gradient": "gdu_runs",
    "test_analysis.py::test_holomorphic_ep_holds_under_noise_where_classic_ep_does_not":
        "study: noise (module fixture noise_record)",
    "test_analysis.py::test_noise_plot_and_bad_input": "noise_record",
    "test_analysis.py::test_cli_analyze_writes_json_and_png": "CLI analysis study and plot",
    "test_analysis.py::test_cli_analyze_gdu_writes_json_and_png": "CLI GDU study and plot",
    # subprocesses (each imports JAX afresh) and notebooks (each in a fresh kernel)
    "test_bench_wall.py::test_one_run_times_a_whole_training_process": "eqdyn train process",
    "test_bench_wall.py::test_one_run_reports_a_failing_command": "eqdyn train process",
    "test_cli.py::test_help_runs_as_a_program": "python -m eqdyn.cli process",
    "test_custom_energies.py::test_example_energy_file_derives_and_checks_from_the_cli":
        "eqdyn derive process",
    "test_derivations.py::test_script_runs_from_the_command_line": "derivation script process",
    "test_notebooks.py::test_notebook_runs": "7 notebooks, each in a fresh kernel",
    # slow unit tests (marked `slow` before the tiers; 10-35 s each)
    "test_algorithms.py::test_noisy_holomorphic_ep_tends_to_the_exact_estimate[diffrax]":
        "diffrax's Langevin path (the fused one stays in the default tier)",
    "test_algorithms.py::test_complex_langevin_puts_the_noise_on_the_real_parts_only[diffrax]":
        "diffrax's Langevin path",
    "test_algorithms.py::test_complex_states_never_make_complex_copies_of_the_weights[diffrax]":
        "diffrax's Langevin path",
    "test_algorithms.py::test_noisy_holomorphic_ep_is_robust_to_neuron_noise": "many noise draws",
    "test_dynamics.py::test_sigmoid_relaxation_converges_kvaerno5": "implicit solver's compile",
    "test_dynamics.py::test_divergence_raises_even_when_ignoring_failures": "long divergence",
    "test_learning.py::test_ep_bias_order_fit": "five betas (the default tier fits two)",
    "test_symbolic.py::test_matrix_derivative_matches_elementwise_differentiation[2-2-2-2]":
        "SymPy on a deeper net",
    "test_learning.py::test_paper_code_nudging_is_beta_two_and_weak_nudging_has_a_dead_window":
        "relaxations at many betas (96 s)",
    "test_learning.py::test_donating_chunk_matches_the_plain_chunk_and_consumes_the_particles":
        "two compilations of the whole training chunk (66 s)",
    "test_numpy_reference.py::test_training_steps_with_persistent_particles_match"
    "[blocks-sizes2-2.0]": "a deeper net (33 s; the two other cases stay in the default tier)",
    "test_algorithms.py::test_complex_by_real_matmul_is_the_complex_product":
        "many small compilations, eager (23 s)",
    # the slowest of the default tier on 2026-12-07 at load ~10 (whole tier 17.7 min); each
    # has a faster sibling that stays in the default tier
    "test_cli_bugs.py::test_tol_zero_trains_fixed_step_counts_and_plot_overlays":
        "two CLI training runs and a plot (65 s)",
    "test_algorithms.py::test_holomorphic_ep_error_order_is_n":
        "holomorphic EP at many radii (38 s; exactness at finite beta stays)",
    "test_continuous.py::test_integrated_rule_equals_two_phase_ep[sigmoid-False-stdp]":
        "a long Euler episode (35 s; the trace and hard-sigmoid cases stay)",
    "test_algorithms.py::test_continual_ep_tends_to_ep_as_the_rate_vanishes[hard_sigmoid]":
        "many rates (24 s; the sigmoid case stays)",
    "test_cli_bugs.py::test_tol_zero_counts_fixed_counts_as_converged_in_every_rule"
    "[cep-nudged_converged]": "a CLI training run (19 s; the other rules stay)",
    "test_continuous.py::test_online_plasticity_matches_consolidation_for_small_rates":
        "two long episodes (17 s)",
    # multi-device and multi-process runs
    "test_scale.py::test_sharded_training_matches_one_device_step_by_step":
        "4 forced host devices, in a subprocess",
    "test_scale.py::test_sweep_on_four_devices_matches_one": "4 devices, in a subprocess",
    "test_scale.py::test_two_processes_on_localhost_match_one_process":
        "jax.distributed: two processes and a third for the single-process reference",
    # the slowest of the default tier on 2026-12-07 (557 tests, 11.7 min under pytest-xdist's two
    # workers at load 3-4; times per test as --durations gave them there): every test of 5.4 s or
    # more, but for the in-process resume, one derived-gradient case and the SciPy episode oracle
    "test_continuous.py::test_default_episode_is_within_one_percent_of_two_phase_ep[sigmoid-0]":
        "38 s",
    "test_custom_energies.py::test_matrix_rules_equal_entrywise_sympy_derivatives":
        "32 s",
    "test_continuous.py::test_each_example_gets_its_teacher_when_it_is_at_rest":
        "27 s",
    "test_continuous.py::test_integrated_rule_equals_two_phase_ep[sigmoid-True-stdp]":
        "27 s",
    "test_continuous.py::test_gates_open_only_at_rest_and_energy_descends_before":
        "23 s",
    "test_continuous.py::test_integrated_rule_equals_two_phase_ep[hard_sigmoid-False-trace]":
        "22 s",
    "test_analysis.py::test_sensitivity_is_minus_inverse_hessian_times_cost_gradient":
        "22 s",
    "test_fast_paths.py::test_blocks_reach_the_fixed_points_of_the_dynamics[0.0]":
        "21 s",
    "test_custom_energies.py::test_symmetric_ep_matches_recurrent_backprop_on_custom_energies[variant0]":
        "20 s",
    "test_algorithms.py::test_holomorphic_ep_is_exact_at_finite_beta":
        "20 s",
    "test_rules.py::test_the_bias_study_compiles_once_per_variant":
        "17 s",
    "test_algorithms.py::test_noisy_holomorphic_ep_tends_to_the_exact_estimate[fused]":
        "17 s",
    "test_continuous.py::test_integrated_rule_equals_two_phase_ep[sigmoid-True-trace]":
        "16 s",
    "test_continuous.py::test_scheduled_ramp_gives_the_same_update":
        "16 s",
    "test_rules.py::test_every_rule_has_one_interface":
        "16 s",
    "test_fast_paths.py::test_anderson_carried_gram_matches_its_history":
        "16 s",
    "test_cli.py::test_derive_prints_equations_and_checks":
        "16 s",
    "test_continuous.py::test_noisy_ep_phases_use_the_fused_langevin_for_fused_and_blocks_configs":
        "15 s",
    "test_relaxations.py::test_complex_langevin_is_the_langevin_function":
        "15 s",
    "test_early_inference.py::test_feedforward_backprop_matches_an_unrolled_feedforward_network":
        "15 s",
    "test_dynamics.py::test_linear_dynamics_match_matrix_exponential":
        "15 s",
    "test_rules.py::test_a_rule_written_outside_eqdyn_matches_rbp":
        "15 s",
    "test_algorithms.py::test_complex_relaxation_keeps_precision_and_reaches_the_fixed_point":
        "14 s",
    "test_cli_bugs.py::test_tol_zero_counts_fixed_counts_as_converged_in_every_rule[bptt-free_converged]":
        "14 s",
    "test_rules.py::test_train_with_a_rule_written_outside_eqdyn":
        "13 s",
    "test_fast_paths.py::test_blocks_refuse_energies_without_closed_form_layers":
        "13 s",
    "test_algorithms.py::test_complex_states_never_make_complex_copies_of_the_weights[fused]":
        "12 s",
    "test_continuous_hopfield.py::test_the_lyapunov_energy_never_increases":
        "12 s",
    "test_algorithms.py::test_complex_langevin_puts_the_noise_on_the_real_parts_only[fused]":
        "12 s",
    "test_continuous.py::test_noisy_ep_tends_to_the_deterministic_estimate_and_checks_its_inputs[diffrax]":
        "12 s",
    "test_custom_energies.py::test_symmetric_ep_matches_recurrent_backprop_on_custom_energies[variant1]":
        "12 s",
    "test_vector_field.py::test_symmetric_vector_field_is_the_layered_hopfield_field_and_its_ep":
        "12 s",
    "test_fast_paths.py::test_anderson_forgets_a_nonfinite_slot":
        "11 s",
    "test_fast_paths.py::test_ep_estimate_is_the_same_with_blocks[symmetric]":
        "11 s",
    "test_continuous.py::test_fused_langevin_at_zero_temperature_is_fused_euler[(0.22945265618534655+0.1932653061713073j)]":
        "11 s",
    "test_custom_energies.py::test_registered_activation_works_by_name_everywhere":
        "11 s",
    "test_algorithms.py::test_holomorphic_ep_with_two_points_is_symmetric_ep":
        "10 s",
    "test_conv.py::test_fused_euler_and_block_sweeps_reach_the_same_conv_fixed_point":
        "10 s",
    "test_spiking.py::test_ep_from_the_spike_based_stdp_rule":
        "10 s",
    "test_dynamics.py::test_sigmoid_relaxation_converges[euler]":
        "10 s",
    "test_fast_paths.py::test_anderson_block_sweeps_reach_the_same_fixed_points[0.0]":
        "10 s",
    "test_docs.py::test_site_builds_strict":
        "10 s",
    "test_relaxations.py::test_relax_config_is_a_factory_of_the_same_relaxations":
        "9 s",
    "test_custom_energies.py::test_derived_gradients_match_handwritten_energies[sizes2-variant2-softplus]":
        "9 s",
    "test_fast_paths.py::test_ep_estimate_is_the_same_with_blocks[one-sided]":
        "9 s",
    "test_boltzmann.py::test_block_gibbs_result_annealing_and_refusals":
        "9 s",
    "test_continuous.py::test_langevin_samples_the_gibbs_distribution_of_a_quadratic_energy[diffrax]":
        "8 s",
    "test_rules.py::test_train_ep_with_a_relaxation_written_outside_eqdyn":
        "8 s",
    "test_boltzmann.py::test_binary_ep_matches_the_gradient_of_the_mean_field_cost":
        "8 s",
    "test_rules.py::test_clock_free_rule_is_the_episode":
        "7 s",
    "test_custom_energies.py::test_derived_gradients_match_handwritten_energies[sizes3-variant3-sigmoid]":
        "7 s",
    "test_learning.py::test_reference_gradient_is_plausible":
        "7 s",
    "test_spiking.py::test_ep_with_spiking_phases_follows_the_rate_estimate":
        "7 s",
    "test_continuous.py::test_fused_langevin_at_zero_temperature_is_fused_euler[0.3]":
        "7 s",
    "test_algorithms.py::test_continual_ep_tends_to_ep_as_the_rate_vanishes[sigmoid]":
        "7 s",
    "test_references.py::test_bptt_converges_to_rbp":
        "7 s",
    "test_custom_energies.py::test_energy_model_layout_and_parameter_checks":
        "7 s",
    "test_dynamics.py::test_leaky_hard_sigmoid_matches_clipped_iteration":
        "6 s",
    "test_early_inference.py::test_a_custom_energy_gets_a_reference":
        "6 s",
    "test_boltzmann.py::test_block_gibbs_matches_exact_enumeration":
        "6 s",
    "test_continuous_hopfield.py::test_ep_converges_to_rbp_at_its_order[one-sided-1.0]":
        "6 s",
    "test_relaxations.py::test_an_integrator_failure_is_solver_failed":
        "6 s",
    "test_custom_energies.py::test_time_constants_slow_a_linear_relaxation_exactly":
        "6 s",
    "test_relaxations.py::test_trajectory_takes_an_integrate":
        "6 s",
    "test_learning.py::test_ep_bias_order[symmetric-1.7-2.3]":
        "6 s",
    "test_rules.py::test_symmetric_ep_approaches_rbp":
        "6 s",
    "test_training.py::test_divergence_in_a_later_epoch_keeps_the_last_good_checkpoint":
        "6 s",
    "test_continuous.py::test_fused_langevin_has_the_stationary_law_of_the_diffrax_path":
        "6 s",
    "test_fast_paths.py::test_anderson_mixing_accelerates_a_slow_linear_iteration":
        "6 s",
    "test_learning.py::test_arch_must_fit_the_dataset":
        "6 s",
    "test_boltzmann.py::test_label_log_probs_match_enumeration":
        "6 s",
    "test_conv.py::test_derived_conv_energy_matches_jax_grad_of_handwritten_energy[max]":
        "6 s",
    "test_references.py::test_chl_clamps_output_and_aligns_with_rbp":
        "6 s",
    "test_global_state.py::test_derivation_checks_run_in_float64_without_flipping_x64":
        "6 s",
    "test_fast_paths.py::test_blocks_descend_the_energy_sweep_by_sweep":
        "6 s",
    "test_continuous_hopfield.py::test_ep_converges_to_rbp_at_its_order[symmetric-2.0]":
        "5 s",
    "test_conv.py::test_holomorphic_ep_on_average_pooling_matches_rbp":
        "20 s (the default tier at 4.5 min with it)",
    "test_early_inference.py::test_sigmoid_network_matches_its_own_feedforward_backprop_at_full_feedback":
        "10-14 s",
    "test_dynamics.py::test_sigmoid_relaxation_converges[tsit5]":
        "9 s in CI's default tier (4 min 23 s with it); every relaxation's fixed point stays",
    "test_fast_paths.py::test_blocks_reach_the_fixed_points_of_the_dynamics[0.7]":
        "10 s in CI's default tier; beta 1 and -1 stay",
    # issue 29: convolutional and vector-field energies
    "test_conv.py::test_ep_matches_rbp_and_bptt_on_a_conv_energy":
        "tight relaxations, RBP, two EP phases and BPTT on a conv net (16 s)",
    "test_conv.py::test_derive_check_of_the_example_conv_energy_file":
        "the CLI in a subprocess (19 s)",
    "test_vector_field.py::test_asymmetric_vector_field_ep_against_rbp_on_the_same_field":
        "RBP, BPTT, two nudged phases and a dense Jacobian (11 s)",
    "test_conv.py::test_conv_energy_file_trains_on_digits_through_the_trainer":
        "15 epochs of conv EP on digits (28 s)",
    "test_conv.py::test_conv_presets_build_and_take_a_training_step":
        "compiles the e19 and l21 conv networks' training steps (27 s + 131 s)",
    "test_conv.py::test_residual_conv_coupling_between_non_adjacent_maps":
        "derivation check and a tight fused relaxation of a 3-map residual net (27 s)",
    # issue 28: spiking units and the STDP window
    "test_stdp.py::test_cli_analyze_stdp_writes_json_and_png": "CLI study and plot (x64 on)",
    "test_spiking.py::test_spiking_ep_learns_digits": "3 epochs of spiking EP on digits (17 s)",
    "test_spiking.py::test_cli_trains_spiking_ep_on_digits": "two CLI training runs (17, 21 s)",
    # issue 27: Boltzmann machines (compiles a 20,000-chain PCD step / a 1,000-step AIS scan)
    "test_boltzmann.py::test_pcd_with_many_chains_matches_the_exact_gradient":
        "PCD-30 on 20,000 chains and CD-1 vs the exact gradient (15 s)",
    "test_boltzmann.py::test_ais_log_partition_matches_exact_enumeration":
        "AIS with 1,000 temperatures vs enumeration (15 s)",
    "test_boltzmann.py::test_dbm_pcd_negative_phase_matches_enumeration":
        "PCD-30 on 20,000 chains of a 3-2-2 DBM vs enumeration (14 s)",
    "test_boltzmann.py::test_fit_boltzmann_learns_and_refuses_bad_data": "a training run (18 s)",
    "test_boltzmann.py::test_cli_rbm_train_resume_and_evaluate": "CLI training runs and AIS",
    # issue 29 vf (session 4)
    "test_vector_field.py::test_random_sign_vector_field_ep_tends_to_its_limit_with_either_sign":
        "two tight nudged phases of random-sign vector-field EP and its dense limit (57 s loaded)",
    "test_vector_field_train.py::test_cli_trains_vector_field_ep_and_rbp_on_digits_with_the_angle_in_the_curves":
        "two CLI training runs on digits",
    "test_vector_field.py::test_jacobian_homeostasis_is_the_asymmetry_of_the_couplings":
        "4,000 Hutchinson probes and their gradient, two EP estimates (82 s loaded)",
    # issue 29 resnet (session 4)
    "test_conv_resnet.py::test_resnet_energy_matches_jax_grad_of_handwritten_energy":
        "derivation of a 2-block residual net against jax.grad (6 s warm, 32 s cold)",
    "test_conv_resnet.py::test_centered_ep_matches_rbp_on_the_resnet":
        "RBP and two tight nudged phases of a 2-block residual net (56 s at load 10)",
    "test_conv_resnet.py::test_hr25_preset_builds_and_takes_a_training_step":
        "compiles the Hopfield-ResNet13 training step",
    "test_conv_resnet.py::test_derive_check_of_the_small_resnet_energy_file":
        "the CLI in a subprocess (61 s at load 10)",
    # issue 28 (session 4)
    "test_spiking.py::test_training_sweep_over_step_and_rate":
        "two tiny training runs, rate and spiking (32 s at load 7)",
    # issues 27, 28 (session 5)
    "test_spiking.py::test_symmetric_ep_on_common_spikes_is_less_noisy":
        "96 spiking EP estimates, three compilations (17 s at load 3)",
    "test_boltzmann.py::test_rbm_cli_weight_decay_and_linear_schedule":
        "a CLI training run (6 s at load 3)",
    # issue 29 (session 5)
    "test_bench_preset_epoch.py::test_preset_epoch_is_timed_and_extrapolated":
        "two epochs of the e19-pconv-mnist preset on synthetic data (37 s at load 6)",
}


def _entry_names(item: pytest.Item) -> tuple[str, ...]:
    """The keys of `INTEGRATION` that can name `item`: its file, file::function and node id."""
    path = Path(str(item.fspath)).name
    name = getattr(item, "originalname", None) or item.name
    return (path, f"{path}::{name}", f"{path}::{item.name}")


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    modules = {}
    for item in items:
        modules.setdefault(Path(str(item.fspath)).name, getattr(item, "module", None))
        if any(k in INTEGRATION for k in _entry_names(item)):
            item.add_marker(pytest.mark.integration)
    # an entry whose file was collected must still name one of its test functions
    for entry in INTEGRATION:
        path, _, name = entry.partition("::")
        module = modules.get(path)
        if module is not None and name and not hasattr(module, name.split("[")[0]):
            raise pytest.UsageError(
                f"tests/conftest.py INTEGRATION lists {entry!r}, but {path} has no test "
                f"{name.split('[')[0]!r}: rename or remove the entry."
            )


@pytest.fixture
def key(request) -> jax.Array:
    """A fresh `jax.random.PRNGKey`, seeded from the test's node id (stable across runs)."""
    return jax.random.PRNGKey(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def rng(key) -> np.random.Generator:
    """A numpy generator seeded like `key` (cheaper for test data: no XLA compilation)."""
    return np.random.default_rng(np.asarray(key))


@pytest.fixture(scope="module")
def cached_derivations():
    """Memoise SymPy derivations while a module runs (opt in with `usefixtures`).

    `hopfield_system` derives every `(sizes, activation, formulation)` afresh, although the
    derivation depends on the sizes only; SymPy then dominates the test time.
    """
    import eqdyn.models._system as system_mod

    mp = pytest.MonkeyPatch()
    mp.setattr(system_mod, "derive", functools.lru_cache(maxsize=None)(system_mod.derive))
    yield
    mp.undo()
