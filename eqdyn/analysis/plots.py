"""Figures of the analysis records (matplotlib). Each function returns a `Figure`."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_early_inference", "plot_bias", "plot_convergence", "plot_training",
           "save_figure"]


def _plt():
    # the caller's backend is kept (inline in notebooks); `eqdyn analyze` selects Agg
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> None:
    """Write `fig` to `path` (PNG at 120 dpi) through a temporary file, atomically."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    tmp.replace(path)


def plot_early_inference(r):
    """Three panels against time after the nudge (log axis): cosine and relative error of
    `(s^beta - s^0)/beta` against the fixed-point sensitivity (EP's theorem), and cosine of
    `ds/dt / beta` against plain backprop's error derivatives (the claim), per layer; dotted
    lines mark each layer's arrival time."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(r.layers)))
    for k, (name, dist) in enumerate(zip(r.layers, r.distance)):
        label = f"{name} ({dist} from output)"
        axes[0].semilogx(r.times, r.cos_adjoint[k], color=colors[k], label=label)
        axes[1].loglog(r.times, r.rel_adjoint[k], color=colors[k], label=label)
        if np.any(np.isfinite(r.cos_backprop_velocity[k])):
            axes[2].semilogx(r.times, r.cos_backprop_velocity[k], color=colors[k], label=label)
        if np.isfinite(r.arrival[k]):
            for ax in axes:
                ax.axvline(r.arrival[k], color=colors[k], ls=":", lw=1)
    axes[0].set_title("EP's theorem: (s^β(t) - s^0)/β vs ds*/dβ")
    axes[0].set_ylabel("cosine similarity")
    axes[1].set_title("relative error vs ds*/dβ")
    axes[1].set_ylabel("||q(t) - ds*/dβ|| / ||ds*/dβ||")
    axes[2].set_title("claim: (ds/dt)/β vs backprop's -dC/ds")
    axes[2].set_ylabel("cosine similarity")
    for ax in axes:
        ax.set_xlabel("time after the nudge (units of τ)")
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-1.05, 1.05)
    axes[2].set_ylim(-1.05, 1.05)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Early inference, β = {r.beta:g} (dotted: arrival at "
                 f"{100 * r.arrival_fraction:g} % of the final response)")
    fig.tight_layout()
    return fig


def plot_bias(b):
    """Relative error of each EP variant against recurrent backprop over beta (log-log), with
    the fitted slopes in the legend."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    markers = {"one-sided": "o", "symmetric": "s", "holomorphic": "^"}
    for v, errs in b.errors.items():
        name = f"holomorphic, N={b.n_points}" if v == "holomorphic" else v
        ax.loglog(b.betas, errs, marker=markers.get(v, "x"),
                  label=f"{name}: slope {b.slopes[v]:.2f}")
    ax.axhline(b.floor, color="grey", ls=":", lw=1, label="resolution floor")
    ax.set_xlabel("β (nudging strength)")
    ax.set_ylabel("||g_EP - g_RBP|| / ||g_RBP||")
    ax.set_title("Bias of EP's gradient estimate")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_training(r):
    """Loss of the EP and RBP copies per step, and `1 - cosine` between EP's estimate and the
    exact gradient along training (log scale: the cosine is often within 1e-6 of 1)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(r.steps, r.loss_ep, label=f"EP ({r.variant}, β = {r.beta:g})")
    axes[0].plot(r.steps, r.loss_rbp, label="recurrent backprop", ls="--")
    axes[0].set_xlabel("SGD step")
    axes[0].set_ylabel("mean cost at the free fixed point (batch)")
    axes[0].set_title("learning curves from the same initialisation")
    axes[0].legend(fontsize=8)
    axes[1].semilogy(r.steps, np.maximum(1 - r.cosine, 1e-16), label="all parameters")
    for j, name in enumerate(r.param_names):
        axes[1].semilogy(r.steps, np.maximum(1 - r.cosine_per_param[:, j], 1e-16), lw=0.8,
                         alpha=0.7, label=name)
    axes[1].set_xlabel("SGD step")
    axes[1].set_ylabel("1 - cosine(EP estimate, RBP gradient)")
    axes[1].set_title("alignment of EP's update with the gradient")
    axes[1].legend(fontsize=7, ncol=2)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def plot_convergence(c):
    """Solver steps to `tol` per architecture, measured settling time vs the prediction of the
    slowest decay rate, and the energy along the Euler trajectory."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    labels = [r["arch"] for r in c.rows]
    xs = np.arange(len(labels))
    width = 0.8 / max(1, len(c.solvers))
    for i, s in enumerate(c.solvers):
        vals = [r["steps"].get(s) or 0 for r in c.rows]
        axes[0].bar(xs + i * width, vals, width, label=s)
    axes[0].set_xticks(xs + width * (len(c.solvers) - 1) / 2, labels, rotation=20, fontsize=8)
    axes[0].set_ylabel(f"solver steps to residual < {c.tol:g}")
    axes[0].set_title("steps to equilibrium (0 = not converged)")
    axes[0].legend(fontsize=8)
    pred = [r["predicted_t"] or np.nan for r in c.rows]
    meas = [r["t_settle"] for r in c.rows]
    axes[1].scatter(pred, meas)
    for p_, m_, lab in zip(pred, meas, labels):
        axes[1].annotate(lab, (p_, m_), fontsize=7)
    lim = [0, 1.1 * np.nanmax(pred + meas)]
    axes[1].plot(lim, lim, color="grey", ls=":", lw=1, label="measured = predicted")
    axes[1].set_xlabel("log(1/tol) / slowest decay rate (time units)")
    axes[1].set_ylabel("measured settling time (time units)")
    axes[1].set_title("settling time vs slowest mode")
    axes[1].legend(fontsize=8)
    for r in c.rows:
        e = np.asarray(r["energies"])
        # F(end) is the reference, so the last point (zero) is left off the log axis
        axes[2].plot(r["energy_times"][:-1], e[:-1] - e[-1], label=r["arch"])
    axes[2].set_yscale("log")
    axes[2].set_xlabel("time (units of τ)")
    axes[2].set_ylabel("F(t) - F(end)")
    axes[2].set_title("energy descent (Euler, free phase)")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"Convergence of the free relaxation ({c.activation})")
    fig.tight_layout()
    return fig
