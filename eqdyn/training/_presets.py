"""Named training settings (data only). What each preset measured, and which result file
holds it, is in docs/presets.md; `eqdyn train --preset NAME` uses one, flags override it."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PRESETS", "preset_energy"]


def preset_energy(name: str) -> str:
    """The absolute path of a preset's energy file, shipped in `eqdyn/training/_preset_energies`
    (so that a preset resolves from any working directory and from an installed wheel)."""
    return str(Path(__file__).resolve().parent / "_preset_energies" / name)


# Scellier & Bengio (2017), Table 2: the settings the three sb17 presets share.
_SB17 = dict(
    dataset="mnist", activation="hard_sigmoid", variant="random-sign", batch_size=20,
    persistent=True, solver="euler", dt0=0.5, optimizer="sgd", backend="blocks",
)

#: Named settings of `resolve_config(preset=...)` (see docs/presets.md for their provenance).
PRESETS: dict[str, dict] = {
    "sb17-1h": dict(_SB17, arch="784-500-10", lr=(0.1, 0.05), epochs=25, beta=1.0),
    "sb17-2h": dict(_SB17, arch="784-500-500-10", lr=(0.8, 0.2, 0.02), epochs=60, beta=2.0,
                    nudged_t1=3.0, nudged_backend="fused", eval_batch=50),
    "sb17-3h": dict(_SB17, arch="784-500-500-500-10", lr=(0.256, 0.064, 0.016, 0.004),
                    epochs=160, beta=2.0, nudged_t1=4.0, nudged_backend="fused", eval_batch=50),
    "sb17-3h-fast": dict(_SB17, arch="784-500-500-500-10", lr=(0.256, 0.064, 0.016, 0.004),
                         epochs=44, beta=2.0, nudged_t1=4.0, nudged_backend="fused",
                         eval_batch=50, val_size=0, eval_persistent=True, anderson=3, tol=0.01,
                         schedule="cosine", cosine_hold=0.6),
    "lz22-mnist": dict(
        dataset="mnist", arch="784-256-256-10", activation="steep_sigmoid", formulation="leaky",
        cost="cross_entropy", algo="ep", variant="one-sided", beta=0.1, lr=(0.05,),
        batch_size=20, epochs=50, val_size=0, persistent=False, optimizer="sgd",
        backend="blocks", nudged_backend="fused", solver="euler", dt0=1.0, free_t1=350.0,
        nudged_t1=350.0),
    "lz22-mnist-holo": dict(
        dataset="mnist", arch="784-256-256-10", activation="steep_sigmoid", formulation="leaky",
        cost="cross_entropy", algo="ep", variant="holomorphic", beta=0.4, n_points=10,
        lr=(0.05,), batch_size=20, epochs=50, val_size=0, persistent=False, optimizer="sgd",
        backend="blocks", nudged_backend="fused", solver="euler", dt0=1.0, free_t1=350.0,
        nudged_t1=350.0),
    # issue 28: sb17-1h's network with spiking phases (Poisson units at 20 Hz per unit of
    # time, fused Euler steps of 0.05, fixed horizons 10 + 5, states from zero); symmetric EP
    # on common spikes and a cosine schedule (random-sign EP with sb17-1h's constant rates:
    # 5.35 % test error in 10 epochs; docs/spiking.md)
    "sb17-1h-spiking": dict(_SB17, arch="784-500-10", lr=(0.1, 0.05), epochs=15, beta=1.0,
                            variant="symmetric", common_noise=True, schedule="cosine",
                            spike_rate=20.0, dt0=0.05, free_t1=10.0, nudged_t1=5.0,
                            persistent=False, backend="fused"),
    "fmnist-1h": dict(_SB17, dataset="fashion-mnist", arch="784-500-10", lr=(0.1, 0.05),
                      epochs=25, beta=1.0),
    # issue 29: convolutional networks (their energy files ship in eqdyn, see preset_energy)
    "e19-pconv-mnist": dict(
        dataset="mnist", energy=preset_energy("e19_pconv_mnist.py"), arch="784-10",
        activation="hard_sigmoid", formulation="leaky", algo="ep", variant="one-sided",
        beta=0.4, lr=(0.15, 0.035, 0.015), batch_size=20, epochs=40, val_size=0,
        persistent=False, optimizer="sgd", solver="euler", backend="fused", dt0=1.0,
        free_t1=200.0, nudged_t1=10.0),
    "l21-cifar10": dict(
        dataset="cifar10", energy=preset_energy("l21_cifar10.py"), arch="3072-10",
        activation="hard_sigmoid", formulation="leaky", algo="ep", variant="symmetric",
        beta=1.0, lr=(0.25, 0.15, 0.1, 0.08, 0.05), optimizer="sgd", momentum=0.9,
        weight_decay=3e-4, schedule="cosine", batch_size=128, epochs=120, val_size=0,
        persistent=False, solver="euler", backend="fused", dt0=1.0, free_t1=250.0,
        nudged_t1=25.0),
    # Elayedam & Srinivasan (2025), Hopfield-ResNet13: their code's CIFAR-10 defaults (centered
    # EP = symmetric nudging; 120 / 50 fixed-point iterations as Euler steps at dt 1)
    "hr25-cifar10": dict(
        dataset="cifar10", energy=preset_energy("hr25_cifar10.py"), arch="3072-10",
        activation="relu6", formulation="leaky", algo="ep", variant="symmetric", beta=0.1,
        lr=(0.03,), optimizer="sgd", momentum=0.9, weight_decay=2.5e-4, schedule="cosine",
        batch_size=128, epochs=300, val_size=0, persistent=False, solver="euler",
        backend="fused", dt0=1.0, free_t1=120.0, nudged_t1=50.0, eval_t1=120.0),
}
