"""Figures of the analysis records (matplotlib). Each function returns a `Figure`."""

from __future__ import annotations

import numpy as np

from ._figure import _plt
from ._figure import save_figure as save_figure
from ._plot_runs import plot_compare as plot_compare
from ._plot_runs import plot_runs as plot_runs

__all__ = ["plot_early_inference", "plot_early_inference_sweep", "plot_xie_seung", "plot_bias",
           "plot_convergence", "plot_training", "plot_gdu", "plot_gdu_study", "plot_noise",
           "plot_runs", "plot_compare", "plot_stdp", "save_figure"]


def plot_early_inference(r):
    """One network, one feedback strength: cosine of each layer's velocity with backprop
    through the network's own feedforward computation over time after the nudge (dotted:
    arrival times), and the velocity's norm relative to the output's peak (log-log)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(r.layers)))
    peak = max(np.max(np.linalg.norm(r.velocity[k].reshape(len(r.times), -1), axis=1))
               for k in range(len(r.layers)) if r.distance[k] == 0)
    for k, (name, dist) in enumerate(zip(r.layers, r.distance)):
        label = f"{name} ({dist:g} from output)"
        axes[0].semilogx(r.times, r.cos_time[k], color=colors[k], label=label)
        speed = np.linalg.norm(r.velocity[k].reshape(len(r.times), -1), axis=1) / peak
        axes[1].loglog(r.times, np.where(speed > 0, speed, np.nan), color=colors[k], label=label)
        if np.isfinite(r.arrival[k]):
            for ax in axes:
                ax.axvline(r.arrival[k], color=colors[k], ls=":", lw=1)
    g = "" if r.gamma is None else f", γ = {r.gamma:g}"
    axes[0].set_title("cos(ds_k/dt, backprop through the own feedforward pass)"
                      + (f"\nREFUSED: {r.refused[:60]}..." if r.refused else ""))
    axes[0].set_ylabel("cosine similarity")
    axes[0].set_ylim(-1.05, 1.05)
    axes[1].set_title("||ds_k/dt|| / peak of the output's")
    for ax in axes:
        ax.set_xlabel("time after the nudge (units of τ)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"Early inference{g}: free fixed point {r.ff_distance_total:.2g} from the "
                 f"feedforward pass; output-layer check {r.output_check:.6f}")
    fig.tight_layout()
    return fig


def plot_early_inference_sweep(s):
    """Over feedback strengths: cosine of each layer's leading early-time direction with
    backprop through the own feedforward pass (plotted as 1 - cos, log), amplitude against
    distance from the output per gamma, and the free fixed point's distance from the
    feedforward pass."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(s.layers)))
    for k, (name, dist) in enumerate(zip(s.layers, s.distance)):
        axes[0].loglog(s.gammas, np.maximum(1 - s.cos_lead[:, k], 1e-12), "o-",
                       color=colors[k], label=f"{name} ({dist:g} from output)")
    axes[0].set_xlabel("feedback strength γ")
    axes[0].set_ylabel("1 - cos(leading direction, backprop)")
    axes[0].set_title("claim vs feedback strength")
    axes[0].invert_xaxis()
    order = np.argsort(s.distance)
    gcol = plt.cm.plasma(np.linspace(0, 0.85, len(s.gammas)))
    for i, g in enumerate(s.gammas):
        axes[1].semilogy(np.asarray(s.distance)[order], s.amplitude[i][order], "o-",
                         color=gcol[i], label=f"γ = {g:g}")
    axes[1].set_xlabel("distance from the output (layers)")
    axes[1].set_ylabel("peak ||ds_k/dt|| / output's")
    axes[1].set_title("amplitude vs depth")
    axes[2].loglog(s.gammas, s.ff_distance, "o-", color="k")
    axes[2].set_xlabel("feedback strength γ")
    axes[2].set_ylabel("||u* - u_ff|| / ||u_ff||")
    axes[2].set_title("free fixed point vs feedforward pass")
    axes[2].invert_xaxis()
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_xie_seung(r):
    """Relative error of EP's and CHL's updates (per-layer rates gamma^-(L-k)) and of EP's raw
    contrasts against backprop's, over gamma."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.loglog(r.gammas, r.rel_ep, "o-", label=f"EP (symmetric, β = {r.beta:g}), rates γ^-(L-k)")
    if np.any(np.isfinite(r.rel_chl)):
        ax.loglog(r.gammas, r.rel_chl, "s-", label="CHL (output clamped), rates γ^-(L-k)")
    ax.loglog(r.gammas, r.rel_raw, "^:", label="EP, one rate for all layers")
    ax.set_xlabel("feedback strength γ")
    ax.set_ylabel("||Δθ - Δθ_backprop|| / ||Δθ_backprop||")
    ax.set_title("Xie & Seung (2003): contrastive updates vs backprop")
    ax.invert_xaxis()
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
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
    labels = [r["arch"] + (" (trained)" if r.get("trained") else "") for r in c.rows]
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
    for r, lab in zip(c.rows, labels):
        e = np.asarray(r["energies"])
        # F(end) is the reference, so the last point (zero) is left off the log axis
        axes[2].plot(r["energy_times"][:-1], e[:-1] - e[-1], label=lab)
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


def _gdu_beta_index(r, beta):
    """Index of `beta` in the record's grid (nearest on a log scale); by default the beta of
    the smallest mean error over neurons and weights."""
    if beta is None:
        s = r.summary()
        total = np.asarray(s["error_neurons"]) + np.asarray(s["error_params"])
        return int(np.nanargmin(total)) if np.isfinite(total).any() else 0
    return int(np.argmin(np.abs(np.log(np.abs(r.betas)) - np.log(abs(beta)))))


def _gdu_curves(r, i, axes):
    """EP's updates (solid) and BPTT's gradients (circles) of a few components per layer, and
    the two metrics against the step, on `axes` (4 axes)."""
    plt = _plt()
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(r.state_names)))
    ep_rates, bp_rates = r.param_rates()
    weights = [j for j, n in enumerate(r.param_names) if n.startswith("W")] or list(
        range(len(r.param_names)))
    wcolors = plt.cm.plasma(np.linspace(0, 0.8, len(weights)))
    every = max(1, len(r.times) // 25)
    for k, name in enumerate(r.state_names):
        ref = r.bptt_neurons[k].reshape(len(r.times), -1)
        ep = r.ep_neurons[k][i].reshape(len(r.times), -1)
        for n, c in enumerate(np.argsort(-np.abs(ref).max(axis=0))[:2]):
            axes[0].plot(r.times, ep[:, c], color=colors[k], lw=1.2,
                         label=f"{name}: ΔEP_s" if n == 0 else None)
            axes[0].plot(r.times, ref[:, c], "o", color=colors[k], ms=3, mfc="none", markevery=every,
                         label=f"{name}: -∇_s BPTT" if n == 0 else None)
    for c_, j in zip(wcolors, weights):
        ref = bp_rates[j].reshape(len(r.times), -1)
        ep = ep_rates[j][i].reshape(len(r.times), -1)
        for n, c in enumerate(np.argsort(-np.abs(ref).max(axis=0))[:2]):
            axes[1].plot(r.times, ep[:, c], color=c_, lw=1.2,
                         label=f"{r.param_names[j]}: ΔEP_θ" if n == 0 else None)
            axes[1].plot(r.times, ref[:, c], "o", color=c_, ms=3, mfc="none", markevery=every,
                         label=f"{r.param_names[j]}: -∇_θ BPTT" if n == 0 else None)
    for k, name in enumerate(r.state_names):
        axes[2].semilogy(r.times, r.error_neurons[i, k], color=colors[k], label=f"{name}")
        axes[3].plot(r.times, r.sign_neurons[i, k], color=colors[k], label=f"{name}")
    for c_, j in zip(wcolors, weights):
        axes[2].semilogy(r.times, r.error_params[i, j], color=c_, ls="--",
                         label=r.param_names[j])
        axes[3].plot(r.times, r.sign_params[i, j], color=c_, ls="--", label=r.param_names[j])
    unit = "steps" if r.dt == 1 else "units of τ"
    xlabel = f"t·dt: nudged time = time before the end of BPTT's free phase ({unit})"
    for ax, big in ((axes[0], r.bptt_neurons), (axes[1], bp_rates)):
        top = max(float(np.max(np.abs(a))) for a in big)
        ax.set_yscale("symlog", linthresh=max(top * 1e-4, 1e-300))  # values span decades
    for ax, title, ylabel in zip(axes, (
            "neurons: EP (lines) vs BPTT (circles)", "weights: EP (lines) vs BPTT (circles)",
            "relative error (solid: neurons, dashed: weights)",
            "sign agreement (solid: neurons, dashed: weights)"), (
            "neural update (per β, per unit time)", "weight update (per β, per unit time)",
            "||ΔEP - (-∇)|| / max(||ΔEP||, ||∇||)", "fraction of entries with matching sign")):
        ax.set_title(title)
        ax.set_ylabel(ylabel)
    axes[3].set_ylim(-0.02, 1.02)
    for ax in axes:
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, ncol=2)


def plot_gdu(r, beta=None):
    """One `GDU` record at one beta (default: the one of smallest error): a few components of
    EP's neural and weight updates against BPTT's gradients over the nudged steps, and the
    relative error and sign agreement per layer."""
    plt = _plt()
    i = _gdu_beta_index(r, beta)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    _gdu_curves(r, i, axes.ravel())
    setting = "discrete time" if r.dt == 1 else f"Euler, dt = {r.dt:g}"
    fig.suptitle(f"GDU ({setting}): β = {r.betas[i]:.0e}, free phase T = {r.n_free} steps "
                 f"(residual {r.free_residual:.1e}), K = {r.n_nudged} nudged steps")
    fig.tight_layout()
    return fig


def plot_gdu_study(s, beta=None):
    """A `GDUStudy`: mean relative error and sign agreement against beta for each step `dt`
    and free-phase length (first architecture), and both against depth at one beta (the
    grid's point nearest `beta`, default the smallest-error point of the first converged
    discrete-time run)."""
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    axes = axes.ravel()
    first = s.rows[0]["arch"]
    colors = {}
    for r in s.rows:
        if r["arch"] != first:
            continue
        lab = (f"{'discrete' if r['dt'] == 1 else 'Euler dt=' + format(r['dt'], 'g')}, "
               f"T·dt = {r['free_time']:g} (residual {r['free_residual']:.0e})")
        line, = axes[0].loglog(s.betas, r["error_neurons"], marker="o", ms=3, label=lab)
        c = line.get_color()
        axes[0].loglog(s.betas, r["error_params"], marker="s", ms=3, ls="--", color=c)
        axes[1].semilogx(s.betas, r["sign_neurons"], marker="o", ms=3, color=c, label=lab)
        axes[1].semilogx(s.betas, r["sign_params"], marker="s", ms=3, ls="--", color=c)
        colors[(r["dt"], r["free_time"])] = (c, lab)
    longest = max(r["free_time"] for r in s.rows)
    ref = next((k for k, r in enumerate(s.rows) if r["dt"] == 1 and r["free_time"] == longest),
               0)
    i = _gdu_beta_index(s.records[ref], beta)
    for key, (c, lab) in colors.items():
        rows = [r for r in s.rows if (r["dt"], r["free_time"]) == key]
        depth = [r["depth"] for r in rows]
        axes[2].semilogy(depth, [r["error_neurons"][i] for r in rows], "o-", color=c, label=lab)
        axes[2].semilogy(depth, [r["error_params"][i] for r in rows], "s--", color=c)
        axes[3].plot(depth, [r["sign_neurons"][i] for r in rows], "o-", color=c, label=lab)
        axes[3].plot(depth, [r["sign_params"][i] for r in rows], "s--", color=c)
    for ax in axes[:2]:
        ax.set_xlabel("β (nudging strength)")
    for ax in axes[2:]:
        ax.set_xlabel("hidden layers")
        ax.set_xticks(sorted({r["depth"] for r in s.rows}))
    for ax in axes[::2]:
        ax.set_ylabel("relative error, mean over layers and steps")
    for ax in axes[1::2]:
        ax.set_ylabel("fraction of entries with matching sign (mean)")
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_title(f"error vs β ({first}; solid: neurons, dashed: weights)")
    axes[1].set_title(f"sign agreement vs β ({first})")
    axes[2].set_title(f"error vs depth at β = {s.betas[i]:.0e}")
    axes[3].set_title(f"sign agreement vs depth at β = {s.betas[i]:.0e}")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    axes[3].legend(fontsize=7)
    fig.suptitle(f"GDU: EP's updates vs BPTT's gradients ({s.activation}, nudged horizon "
                 f"{s.horizon:g} τ; solid: neurons, dashed: weights)")
    fig.tight_layout()
    return fig


def plot_noise(r):
    """Relative error of each estimator against recurrent backprop under neuron noise: one dot
    per noise draw, a bar for the noiseless estimate (its bias), a diamond for the draws'
    average; and the cosines the same way (log scale of 1 - cosine)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.6 * len(r.labels) + 2.2))
    rows = np.arange(len(r.labels))[::-1]
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, r.n_keys)
    for y, lab in zip(rows, r.labels):
        for ax, vals, quiet, mean in (
                (axes[0], r.errors[lab], r.noiseless_error[lab], r.mean_error[lab]),
                (axes[1], 1 - np.asarray(r.cosines[lab]), 1 - r.noiseless_cosine[lab],
                 1 - r.mean_cosine[lab])):
            ax.scatter(np.maximum(vals, 1e-8), y + jitter, s=10, color="C0", alpha=0.6,
                       label="one noise draw" if y == rows[0] else None)
            ax.scatter([max(mean, 1e-8)], [y], marker="D", color="C1", zorder=3,
                       label="average of the draws" if y == rows[0] else None)
            ax.plot([max(quiet, 1e-8)] * 2, [y - 0.3, y + 0.3], color="k", lw=2,
                    label="noiseless estimate" if y == rows[0] else None)
    for ax, name in ((axes[0], "||g - g_RBP|| / ||g_RBP||"), (axes[1], "1 - cos(g, g_RBP)")):
        ax.set_xscale("log")
        ax.set_yticks(rows)
        ax.set_yticklabels(r.labels if ax is axes[0] else [])
        ax.set_xlabel(name)
        ax.grid(alpha=0.3, which="both", axis="x")
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(f"EP under neuron noise: std {r.noise_std:g} per step of dt {r.dt:g} "
                 f"(T = {r.temperature:g}), {r.n_keys} draws")
    fig.tight_layout()
    return fig


def plot_stdp(r):
    """The STDP window of each rule under the pairing protocol: the simulated weight change
    per pair (markers) against the post-minus-pre spike offset, the fitted two-exponential
    window (line) and the analytic one of the linear filters (dotted)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    grid = np.linspace(float(np.min(r.measured)), float(np.max(r.measured)), 801)
    grid = grid[grid != 0]
    from ._stdp import two_exponential

    for (rule, dw), color in zip(r.dw.items(), ("C0", "C3")):
        f, a = r.fits[rule], r.analytic[rule]
        ax.plot(r.measured, dw, "o", ms=4, color=color,
                label=f"{rule}: A+ {f['a_plus']:.3f}, τ+ {f['tau_plus']:.1f} ms, "
                f"A- {f['a_minus']:.3f}, τ- {f['tau_minus']:.1f} ms")
        ax.plot(grid, two_exponential(grid, f["a_plus"], f["tau_plus"], f["a_minus"],
                                      f["tau_minus"]), color=color, lw=1)
        ax.plot(grid, two_exponential(grid, *a.values()), color="k", ls=":", lw=1)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("Δt = t_post - t_pre (ms)")
    ax.set_ylabel("Δw per pair")
    s = r.settings
    ax.set_title(f"STDP window: {s['n_pairs']} pairs at {s['rate_hz']:g} Hz, τ_syn "
                 f"{s['tau_syn_ms']:g} ms, τ_m {s['tau_m_ms']:g} ms (dotted: analytic)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
