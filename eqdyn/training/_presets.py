"""Named training settings (data only). What each preset measured, and which result file
holds it, is in docs/presets.md; `eqdyn train --preset NAME` uses one, flags override it."""

from __future__ import annotations

__all__ = ["PRESETS"]

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
    "fmnist-1h": dict(_SB17, dataset="fashion-mnist", arch="784-500-10", lr=(0.1, 0.05),
                      epochs=25, beta=1.0),
}
