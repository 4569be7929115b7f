"""Figures of training runs: learning curves (`eqdyn plot`, every run's curves.png) and the
bars of `eqdyn compare`. Re-exported by `eqdyn.analysis.plots`."""

from __future__ import annotations

import numpy as np

from ._figure import _plt

__all__ = ["plot_runs", "plot_compare"]


def _history(metrics: dict, key: str):
    """One column of a run's per-epoch history, NaN where an epoch lacks it."""
    vals = [h.get(key) for h in metrics.get("history", [])]
    return np.array([np.nan if v is None else float(v) for v in vals], dtype=float)


def plot_runs(runs):
    """Learning curves of one or several training runs, overlaid (`eqdyn plot`, and every
    `eqdyn train` run's `curves.png`).

    **Arguments:**

    - `runs`: a list of `(label, metrics)` pairs, `metrics` a run's `metrics.json` (or its
      `checkpoint.json`: a run still training) as a dict with `history`.

    **Returns:** a figure of four panels (2 x 2) against the epoch: the mean cost (training, solid, and
    validation, dashed), the error rate in % (training, solid, and validation, dashed; log
    axis), the mean relaxation steps per batch (free phase, solid, nudged phase, dashed) and
    the share of relaxations that reached the steady state (free, solid; nudged, dashed).
    When a run has separate feedback weights (`alignment_deg` in its history), a fifth panel
    (2 x 3) draws the angle between each `W_k` and `B_k^T`.
    """
    plt = _plt()
    aligned = any("alignment_deg" in h for _, m in runs for h in m.get("history", []))
    fig, axes = plt.subplots(2, 3 if aligned else 2, figsize=(18 if aligned else 12, 8.0))
    axes = axes.ravel()
    if aligned:
        axes, extra = axes[[0, 1, 3, 4]], axes[[2, 5]]
        extra[1].axis("off")
    colors = plt.cm.tab10(np.arange(len(runs)) % 10)
    for (label, m), c in zip(runs, colors):
        epoch = _history(m, "epoch")
        if epoch.size == 0:
            continue
        test = m.get("test_accuracy")
        tag = label if test is None else f"{label} (test {100 * test:.2f}%)"
        # markers while the epochs are few, so that a one-epoch run shows its points
        style = dict(color=c, marker="o", ms=3) if epoch.size <= 30 else dict(color=c)
        axes[0].plot(epoch, _history(m, "loss"), **style, label=tag)
        axes[0].plot(epoch, _history(m, "val_loss"), **style, ls="--")
        axes[1].plot(epoch, 100 * (1 - _history(m, "train_accuracy")), **style, label=tag)
        axes[1].plot(epoch, 100 * (1 - _history(m, "val_accuracy")), **style, ls="--")
        axes[2].plot(epoch, _history(m, "free_steps"), **style, label=tag)
        axes[2].plot(epoch, _history(m, "nudged_steps"), **style, ls="--")
        axes[3].plot(epoch, 100 * _history(m, "free_converged"), **style, label=tag)
        axes[3].plot(epoch, 100 * _history(m, "nudged_converged"), **style, ls="--")
        hist = m.get("history", [])
        for k in range(len(hist[0].get("alignment_deg", ())) if aligned else 0):
            extra[0].plot(epoch, [h["alignment_deg"][k] for h in hist], **style,
                          ls=("-", "--", ":", "-.")[k % 4], label=f"{label}: W_{k + 2}, B_{k + 2}^T")
    axes[0].set_title("cost C (solid: training, dashed: validation)")
    axes[0].set_ylabel("mean cost per example")
    axes[1].set_title("error (solid: training, dashed: validation)")
    axes[1].set_ylabel("error rate (%)")
    if np.any([np.nanmax(100 * (1 - _history(m, "train_accuracy")), initial=0) > 0
               for _, m in runs]):
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        axes[1].set_yscale("log")  # ticks 1, 2, 5, 10, ... rather than 2 x 10^0
        axes[1].yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes[1].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axes[1].yaxis.set_minor_formatter(NullFormatter())
    axes[2].set_title("relaxation (solid: free, dashed: nudged)")
    axes[2].set_ylabel("mean steps (or sweeps) per batch")
    axes[3].set_title("at steady state (solid: free, dashed: nudged)")
    axes[3].set_ylabel("relaxations that converged (%)")
    axes[3].set_ylim(-5, 105)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if aligned:
        extra[0].set(title="angle between W_k and B_k^T", xlabel="epoch", ylabel="degrees")
        extra[0].grid(alpha=0.3)
        extra[0].legend(fontsize=8)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_compare(rows):
    """Bars of an `eqdyn compare` table: test (and validation) accuracy and wall time per
    learning rule.

    **Arguments:**

    - `rows`: the records `eqdyn.learning.compare` returns (or its JSON's `rows`).

    **Returns:** a figure of two panels: the test error in % per rule (validation beside it
    where there is a validation split) and each rule's wall-clock seconds.
    """
    plt = _plt()
    names = [r["algo"] for r in rows]
    x = np.arange(len(rows))
    test = np.array([100 * (1 - r["test_accuracy"]) for r in rows])
    val = np.array([np.nan if r.get("val_accuracy") is None else 100 * (1 - r["val_accuracy"])
                    for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(rows) + 4), 4.0))
    width = 0.4 if np.any(np.isfinite(val)) else 0.7
    bars = axes[0].bar(x - (width / 2 if width < 0.5 else 0), test, width, label="test")
    axes[0].bar_label(bars, fmt="%.2f", fontsize=8)
    if width < 0.5:
        axes[0].bar(x + width / 2, val, width, label="validation", alpha=0.6)
        axes[0].legend(fontsize=8)
    axes[0].set_ylabel("error rate (%)")
    axes[0].set_title("error after training (lower is better)")
    bars = axes[1].bar(x, [r["wall_seconds"] for r in rows], 0.7, color="tab:gray")
    axes[1].bar_label(bars, fmt="%.0f", fontsize=8)
    axes[1].set_ylabel("wall-clock seconds")
    axes[1].set_title("training time")
    cfg = rows[0].get("config", {}) if rows else {}
    for ax in axes:
        ax.set_xticks(x, names)
        ax.grid(alpha=0.3, axis="y")
    if cfg:
        n = cfg.get("epochs")
        fig.suptitle(f"{cfg.get('dataset')} {cfg.get('arch')}, {n} epoch{'' if n == 1 else 's'}"
                     ", same initial weights and batches", fontsize=10)
    fig.tight_layout()
    return fig
