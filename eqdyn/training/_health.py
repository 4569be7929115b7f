"""Failures are never silent: per-epoch counts of relaxations that did not converge, the
epoch line, the warnings after a bad epoch and the error that stops a diverged run."""

from __future__ import annotations

import math
import warnings

import numpy as np

from .._errors import ConvergenceError

__all__ = ["failure_counts", "format_epoch", "check_epoch", "divergence_error"]

#: An epoch warns when more than this fraction of a phase's relaxations did not converge.
MOST = 0.5
#: ... or when, in a run's first epoch, the loss of its last tenth exceeds this multiple of the
#: untrained network's (measured: digits 64-16-10 at `lr` 1e4 rises from 1.53 to 2.5; at 0.1
#: it falls to 0.49) ...
ROSE = 1.25
#: ... or when it did not fall at all and the training accuracy is below this multiple of
#: chance (1 / classes; the same net in float64, as the tests run it, goes from 1.53 to 1.69
#: at 10.3 %) ...
CHANCE = 1.5
#: ... or when an epoch's loss exceeds this multiple of the best earlier epoch's.
EXPLODED = 1.5


def pct(v) -> str:
    """A percentage, or "-" for an empty split (no validation set: nan)."""
    return f"{100 * v:.2f}%" if v is not None and math.isfinite(v) else "-"


#: the code of `RESULTS.fixed_horizon` (a phase that ran its whole horizon by design)
_FIXED_HORIZON = 3


def _by_status(codes) -> dict:
    """How many batches' relaxations ended with each status other than success, by the name
    of its `eqdyn.dynamics.RESULTS` entry (`{"max_steps_reached": 3}`)."""
    from ..dynamics import RESULTS

    names = {int(getattr(RESULTS, n)._value): n for n in
             ("successful", "max_steps_reached", "nonfinite", "fixed_horizon", "solver_failed")}
    codes = np.asarray(codes, int).ravel()
    return {names.get(c, str(c)): int(np.sum(codes == c)) for c in np.unique(codes) if c != 0}


def _not_converged(st: dict, phase: str) -> int:
    """Batches whose `phase` relaxation failed: by status code where the rule reports one
    (anything but successful or fixed_horizon: a noisy or `--tol 0` phase runs its horizon by
    design), else by the `converged` flag."""
    if f"{phase}_result" in st:
        codes = np.asarray(st[f"{phase}_result"], int)
        return int(np.sum((codes != 0) & (codes != _FIXED_HORIZON)))
    return int(np.size(st[f"{phase}_converged"])) - int(
        np.sum(np.asarray(st[f"{phase}_converged"], bool)))


def failure_counts(st: dict) -> dict:
    """The relaxations of an epoch that failed: one free and one nudged relaxation per batch
    (a whole batch relaxes together), counted from the per-batch status codes of the training
    chunks (`_not_converged`), and the statuses they ended with (`free_status`,
    `nudged_status`: counts by `RESULTS` name, fixed_horizon included)."""
    n = int(np.size(st["free_converged"]))
    free, nudged = _not_converged(st, "free"), _not_converged(st, "nudged")
    out = dict(relaxations=2 * n, free_not_converged=free, nudged_not_converged=nudged,
               not_converged_fraction=(free + nudged) / max(1, 2 * n))
    for phase in ("free", "nudged"):
        if f"{phase}_result" in st:
            out[f"{phase}_status"] = _by_status(st[f"{phase}_result"])
    return out


def format_epoch(h: dict, epochs: int) -> str:
    """The one line `train` prints per epoch."""
    failed = h.get("free_not_converged", 0) + h.get("nudged_not_converged", 0)
    return (
        f"epoch {h['epoch']:>3}/{epochs}  loss {h['loss']:.4f}  train {100 * h['train_accuracy']:.2f}%"
        f"  val {pct(h['val_accuracy'])}  free steps {h['free_steps']:.1f}"
        f"  nudged {h['nudged_steps']:.1f}  converged {100 * h['free_converged']:.0f}%"
        f"/{100 * h['nudged_converged']:.0f}%"
        + (f" ({failed} of {h['relaxations']} relaxations did not)" if failed else "")
        + ("" if "alignment_deg" not in h else
           "  angle " + "/".join(f"{a:.1f}" for a in h["alignment_deg"]) + " deg")
        + f"  {h['seconds']:.1f}s"
    )


def _step_advice(cfg) -> str:
    lr = ",".join(f"{v / 10:g}" for v in cfg.lr)
    return (f"lower the learning rate, e.g. `lr`={lr} (`--lr {lr}`; now "
            f"{','.join(f'{v:g}' for v in cfg.lr)}), or the relaxation's step `dt0` (now "
            f"{cfg.dt0:g})")


def check_epoch(cfg, h: dict, history: list, st: dict, n_classes: int, say) -> None:
    """Warn (`RuntimeWarning`, and a line through `say`) after an epoch in which most
    relaxations of a phase did not converge, or the loss is not finite or exploded, or (in a
    run's first epoch) rose, or did not fall while the accuracy stayed at chance."""
    problems = []
    n = h["relaxations"] // 2
    for phase, t1 in (("free", cfg.free_t1), ("nudged", cfg.nudged_t1)):
        failed = h[f"{phase}_not_converged"]
        if n and failed > MOST * n:
            problems.append(
                f"{failed} of {n} {phase} relaxations did not reach a steady state (residual "
                f"< `tol`={cfg.tol:g} within `{phase}_t1`={t1:g}, `max_steps`={cfg.max_steps})")
    loss = np.asarray(st["loss"], float)
    k = max(1, loss.size // 10)
    end = float(np.mean(loss[-k:]))
    best = min((e["loss"] for e in history[:-1]), default=math.inf)
    if not math.isfinite(h["loss"]):
        problems.append(f"the loss is not finite ({h['loss']})")
    elif len(history) == 1 and (end > ROSE * loss[0] or (
            end >= loss[0] and h["train_accuracy"] < CHANCE / n_classes)):
        # batch 1 of a run is scored before any update: the untrained network's loss
        problems.append(
            f"the loss {'rose' if end > ROSE * loss[0] else 'did not fall'} from {loss[0]:.4g} "
            f"(the untrained network, batch 1) to {end:.4g} (the mean of the last {k} batches), "
            f"training accuracy {100 * h['train_accuracy']:.1f}%")
    elif h["loss"] > EXPLODED * best:
        problems.append(f"the loss exploded to {h['loss']:.4g} (best earlier epoch {best:.4g})")
    if not problems:
        return
    msg = (f"epoch {h['epoch']}: " + "; ".join(problems) + ". Training may not be working: "
           + _step_advice(cfg) + (", or give the relaxations more time (`free_t1`, "
                                  "`nudged_t1`, `max_steps`)" if n and any(
                                      "steady state" in p for p in problems) else "")
           + ".")
    say("warning: " + msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def divergence_error(cfg, epoch: int, batch: int | None, n_batches: int, run_dir,
                     done: int) -> ConvergenceError:
    """The error that stops a run whose parameters or states became non-finite, naming the
    epoch and batch, where the last good checkpoint is, and how to start again."""
    where = f"batch {batch} of {n_batches}" if batch is not None else "the last batch"
    kept = (f"The last good checkpoint (after epoch {done}) is kept in {str(run_dir)!r}, "
            "untouched; `--resume` continues only with its saved settings, so start again "
            "in a new run directory"
            if run_dir is not None and done else "Start again")
    return ConvergenceError(
        f"training diverged in epoch {epoch}, {where}: the parameters or the free states "
        f"became non-finite (NaN or inf) under `algo`={cfg.algo!r}. {kept} with a smaller "
        f"step: {_step_advice(cfg)}."
    )
