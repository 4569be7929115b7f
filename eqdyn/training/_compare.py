"""Compare learning rules on equal footing: same network, initialisation, data and relaxation."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from .._errors import ConfigError
from ._config import resolve_config, validate
from ._health import pct
from ._loop import train

__all__ = ["COMPARE_ALGOS", "compare", "format_table"]

#: Names accepted by `compare`, and the `TrainConfig` settings each one stands for.
COMPARE_ALGOS: dict[str, dict] = {
    "ep": dict(algo="ep", variant="one-sided"),
    "ep-rs": dict(algo="ep", variant="random-sign"),
    "ep-sym": dict(algo="ep", variant="symmetric"),
    "ep-holo": dict(algo="ep", variant="holomorphic"),
    "cep": dict(algo="cep", variant="one-sided"),
    "continuous": dict(algo="continuous", variant="random-sign"),
    "chl": dict(algo="chl"),
    "rbp": dict(algo="rbp"),
    "bptt": dict(algo="bptt"),
    "backprop": dict(algo="backprop"),
}


def compare(
    algos: Sequence[str],
    *,
    preset: str | None = None,
    progress: Callable[[str], None] | None = print,
    dataset=None,
    **overrides,
) -> list[dict]:
    """Train each learning rule in `algos` from the same initialisation; one record per rule.

    **Arguments:**

    - `algos`: names from `COMPARE_ALGOS` (`ep` one-sided, `ep-rs` random-sign, `ep-sym`
      symmetric, `ep-holo` holomorphic, `cep` continual EP, `continuous` clock-free EP, `chl`,
      `rbp`, `bptt`, `backprop` through the feedforward network).
    - `preset`, `overrides`: the shared training settings (as for `resolve_config`); the seed,
      and so the initial weights and the batch order, is the same for every rule.
    - `progress`: called with one line per finished rule.
    - `dataset`: an already loaded `Dataset`, or the name of one (`"digits"`, `"mnist"`,
      ...: the `dataset` setting); loaded once from the settings otherwise.

    **Returns:** a list of dicts with `algo`, `train_accuracy`, `val_accuracy`,
    `test_accuracy`, `wall_seconds`, `mean_free_steps`, `mean_nudged_steps`, `config`.
    """
    if isinstance(dataset, str):  # a name: the setting, as `eqdyn --dataset` passes it
        overrides["dataset"], dataset = dataset, None
    algos = list(algos)
    unknown = [a for a in algos if a not in COMPARE_ALGOS]
    if unknown or not algos:
        raise ConfigError(
            f"`algos`={','.join(algos)!r} contains unknown name(s) {unknown}; choose from "
            f"{', '.join(COMPARE_ALGOS)} (comma-separated)."
        )
    for key in ("algo", "variant"):
        if overrides.get(key) is not None:
            raise ConfigError(f"`{key}` is set per rule by `algos`; do not pass it to compare.")
    base = resolve_config(preset, **overrides)
    if dataset is None:
        from ..data import load_dataset

        dataset = load_dataset(base.dataset, base.data_dir, val_size=base.val_size)
    cfgs = {}
    for name in algos:
        cfgs[name] = dataclasses.replace(base, **COMPARE_ALGOS[name])
        validate(cfgs[name])  # e.g. ep-holo with a hard sigmoid fails now, not after hours
    rows = []
    for name in algos:
        cfg = cfgs[name]
        t0 = time.perf_counter()
        m = train(cfg, progress=None, dataset=dataset)
        row = dict(
            algo=name,
            train_accuracy=m["train_accuracy"],
            val_accuracy=m["val_accuracy"],
            test_accuracy=m["test_accuracy"],
            wall_seconds=time.perf_counter() - t0,
            mean_free_steps=m["mean_free_steps"],
            mean_nudged_steps=m["mean_nudged_steps"],
            config=cfg.to_json(),
        )
        rows.append(row)
        if progress:
            progress(format_table([row], header=False))
    return rows


def format_table(rows: Sequence[dict], header: bool = True) -> str:
    """A plain-text table of `compare` records."""
    lines = []
    if header:
        lines.append(f"{'algo':<10} {'train':>8} {'val':>8} {'test':>8} {'wall s':>8} "
                     f"{'free steps':>11} {'2nd-phase steps':>16}")
    for r in rows:
        lines.append(
            f"{r['algo']:<10} {100 * r['train_accuracy']:>7.2f}% {pct(r['val_accuracy']):>8} "
            f"{100 * r['test_accuracy']:>7.2f}% {r['wall_seconds']:>8.1f} "
            f"{r['mean_free_steps']:>11.1f} {r['mean_nudged_steps']:>16.1f}"
        )
    return "\n".join(lines)
