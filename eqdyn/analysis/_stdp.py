"""The STDP window of the rate rules under the pairing protocol (Bengio et al. 2015; Bi & Poo
1998): `stdp_window`.

A presynaptic and a postsynaptic LIF neuron (`eqdyn.dynamics.LIF`) are each made to fire by a
brief suprathreshold current pulse, the post pulse `dt_pair` after the pre pulse, `n_pairs`
times at `rate_hz`. Their spikes are filtered as in `eqdyn.dynamics.Spiking`: the presynaptic
trace `x` (time constant `tau_syn`: the synapse's estimate of the rate `rho(u_i)`), the
postsynaptic trace `y` (`tau_syn`: `rho(u_j)`) and the leaky postsynaptic potential `u`
(`tau_m`, one unit per spike, no reset: the potential the rule reads). Each step adds
`x * du` (Bengio et al.: presynaptic activity times the rate of change of the postsynaptic
potential, `dW ∝ rho(u_i) du_j/dt`) and `x * dy` (Xie & Seung: `dW ∝ rho(u_i) d rho(u_j)/dt`)
to the two weights.

For one pair at offset `D = t_post - t_pre` (pre leads when `D > 0`) the linear filters give
the window in closed form: `∫ x du = tau_m / (tau_syn + tau_m) exp(-D / tau_syn)` for `D > 0`
and `-tau_syn / (tau_syn + tau_m) exp(D / tau_m)` for `D < 0` (the jump of `u` at the post
spike samples `x`; the decay of `u` afterwards, weighted by `x`, subtracts), so the Bengio
window has `A+ = tau_m / (tau_syn + tau_m)`, `tau+ = tau_syn`, `A- = tau_syn / (tau_syn +
tau_m)`, `tau- = tau_m`, and Xie & Seung's `A± = 1/2`, `tau± = tau_syn`; both integrate to
zero over `D`. The simulation does not use these formulas; `analytic_window` states them and
the tests compare.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import ConfigError
from ..dynamics import LIF

__all__ = ["StdpStudy", "stdp_window", "analytic_window", "two_exponential", "RULES"]

#: the rules, in the order of the record's arrays
RULES = ("bengio", "xie-seung")


def two_exponential(dt, a_plus, tau_plus, a_minus, tau_minus):
    """The two-exponential window: `a_plus exp(-dt / tau_plus)` for `dt > 0` (pre leads),
    `-a_minus exp(dt / tau_minus)` for `dt < 0`, 0 at 0."""
    dt = np.asarray(dt, float)
    pos = a_plus * np.exp(-np.clip(dt, 0, None) / tau_plus)
    neg = -a_minus * np.exp(np.clip(dt, None, 0) / tau_minus)
    return np.where(dt > 0, pos, np.where(dt < 0, neg, 0.0))


def analytic_window(rule: str, tau_syn: float, tau_m: float) -> dict:
    """The window of one pair in continuous time for the linear filters (module docstring):
    `dict(a_plus, tau_plus, a_minus, tau_minus)`."""
    if rule == "bengio":
        s = tau_syn + tau_m
        return dict(a_plus=tau_m / s, tau_plus=tau_syn, a_minus=tau_syn / s, tau_minus=tau_m)
    if rule == "xie-seung":
        return dict(a_plus=0.5, tau_plus=tau_syn, a_minus=0.5, tau_minus=tau_syn)
    raise ConfigError(f"`rule`={rule!r} is not known; use one of {RULES}.")


def fit_window(dts, dw) -> dict:
    """Fit `two_exponential` to `dw(dts)` (ms) with `scipy.optimize.curve_fit`, leaving out
    `dt = 0`; returns `dict(a_plus, tau_plus, a_minus, tau_minus, rms)`."""
    from scipy.optimize import curve_fit

    dts, dw = np.asarray(dts, float), np.asarray(dw, float)
    keep = dts != 0
    pos, neg = keep & (dts > 0), keep & (dts < 0)
    p0 = [max(float(np.max(dw[pos], initial=0)), 1e-6), 20.0,
          max(float(-np.min(dw[neg], initial=0)), 1e-6), 20.0]
    p, _ = curve_fit(two_exponential, dts[keep], dw[keep], p0=p0,
                     bounds=([0, 1e-3, 0, 1e-3], [np.inf, 1e4, np.inf, 1e4]))
    rms = float(np.sqrt(np.mean((two_exponential(dts[keep], *p) - dw[keep]) ** 2)))
    return dict(a_plus=float(p[0]), tau_plus=float(p[1]), a_minus=float(p[2]),
                tau_minus=float(p[3]), rms=rms)


@dataclasses.dataclass
class StdpStudy:
    """The record `stdp_window` returns.

    `offsets` `(M,)` the nominal post-minus-pre pulse offsets (ms); `measured` `(M,)` the
    offsets of the first pair's simulated spikes; `dw[rule]` `(M,)` the weight change per
    pair; `fits[rule]` and `analytic[rule]` the two-exponential constants (`a_plus`,
    `tau_plus`, `a_minus`, `tau_minus`; fits also `rms`); `settings` the protocol's numbers;
    `pre_spikes`, `post_spikes` spikes per neuron over the protocol (one per pair expected).
    """

    offsets: np.ndarray
    measured: np.ndarray
    dw: dict
    fits: dict
    analytic: dict
    settings: dict
    pre_spikes: np.ndarray
    post_spikes: np.ndarray

    def to_json(self) -> dict:
        return dict(offsets_ms=[float(v) for v in self.offsets],
                    measured_offsets_ms=[float(v) for v in self.measured],
                    dw={k: [float(v) for v in a] for k, a in self.dw.items()},
                    fits=self.fits, analytic=self.analytic, settings=self.settings,
                    pre_spikes=[int(v) for v in self.pre_spikes],
                    post_spikes=[int(v) for v in self.post_spikes])


def _check(name, v, positive=True):
    if not np.isfinite(v) or (positive and v <= 0):
        raise ConfigError(f"`{name}`={v!r} must be a positive finite number.")


def stdp_window(offsets=None, *, n_pairs: int = 60, rate_hz: float = 1.0, dt: float = 0.1,
                tau_syn: float = 10.0, tau_m: float = 20.0, lif: LIF | None = None,
                pulse: float = 1.0, current: float = 2.0) -> StdpStudy:
    """Run the pairing protocol over `offsets` and fit the window of each rule.

    **Arguments:**

    - `offsets`: post-minus-pre offsets in ms (default -100 to 100 in steps of 5).
    - `n_pairs`, `rate_hz`: pairs, and how often they repeat (Bi & Poo: 60 at 1 Hz).
    - `dt`: the step (ms).
    - `tau_syn`, `tau_m`: the traces' and the postsynaptic potential's time constants (ms).
    - `lif`: the two neurons (default `LIF(threshold=1, reset=0, refractory=2, tau_m=10,
      max_rate=1)`, times in ms); the pulse injects `current` (threshold per ms, through the
      unit's rate input) for `pulse` ms: one spike per pulse.

    **Returns:** a `StdpStudy`; `dw` is per pair (the protocol's total over `n_pairs`).
    """
    offsets = np.arange(-100.0, 100.1, 5.0) if offsets is None else np.asarray(offsets, float)
    for name, v in (("rate_hz", rate_hz), ("dt", dt), ("tau_syn", tau_syn), ("tau_m", tau_m),
                    ("pulse", pulse), ("current", current)):
        _check(name, float(v))
    if not (isinstance(n_pairs, int) and n_pairs > 0):
        raise ConfigError(f"`n_pairs`={n_pairs!r} must be a positive integer.")
    period = 1000.0 / rate_hz
    span = float(np.max(np.abs(offsets)))
    if period <= span + 5 * max(tau_syn, tau_m):
        raise ConfigError(
            f"`rate_hz`={rate_hz!r}: pairs {period:g} ms apart overlap the offsets (up to "
            f"{span:g} ms) and the filters' decay (5 x {max(tau_syn, tau_m):g} ms); lower it "
            f"below {1000.0 / (span + 5 * max(tau_syn, tau_m)):.3g} Hz.")
    lif = LIF(threshold=1.0, reset=0.0, refractory=2.0, tau_m=10.0, max_rate=1.0) \
        if lif is None else lif
    lif.check_step(dt)
    with jax.enable_x64(True):
        out = _simulate(lif, np.rint(offsets / dt).astype(np.int64), n_pairs,
                        int(round(period / dt)), int(round((span + 20.0) / dt)),
                        max(int(round(pulse / dt)), 1), dt, tau_syn, tau_m, current)
    dw_b, dw_x, first_pre, first_post, n_pre, n_post = (np.asarray(a) for a in out)
    measured = (first_post - first_pre) * dt
    dw = {"bengio": dw_b / n_pairs, "xie-seung": dw_x / n_pairs}
    fits = {k: fit_window(measured, v) for k, v in dw.items()}
    analytic = {k: analytic_window(k, tau_syn, tau_m) for k in RULES}
    settings = dict(n_pairs=n_pairs, rate_hz=rate_hz, dt_ms=dt, tau_syn_ms=tau_syn,
                    tau_m_ms=tau_m, pulse_ms=pulse, current=current,
                    lif=dict(threshold=float(lif.threshold), reset=float(lif.reset),
                             refractory_ms=float(lif.refractory),
                             tau_m_ms=None if lif.tau_m is None else float(lif.tau_m)))
    return StdpStudy(offsets, measured, dw, fits, analytic, settings, n_pre, n_post)


def _simulate(lif, off, n_pairs, period, start, pulse_n, dt, tau_syn, tau_m, current):
    off = jnp.asarray(off)
    n_steps = start + n_pairs * period
    ds, dm = np.exp(-dt / tau_syn), np.exp(-dt / tau_m)

    def drive(phase):
        inside = (phase >= 0) & (phase < n_pairs * period) & (phase % period < pulse_n)
        return jnp.where(inside, current, 0.0)

    def body(carry, i):
        pre, post, x, y, u, wb, wx, fpre, fpost, npre, npost = carry
        pre, s_pre = lif.step(pre, drive(i - start + 0 * off), dt, None)
        post, s_post = lif.step(post, drive(i - start - off), dt, None)
        x = ds * x + s_pre
        y_new, u_new = ds * y + s_post, dm * u + s_post
        wb, wx = wb + x * (u_new - u), wx + x * (y_new - y)
        fpre = jnp.where((fpre < 0) & s_pre, i, fpre)
        fpost = jnp.where((fpost < 0) & s_post, i, fpost)
        return (pre, post, x, y_new, u_new, wb, wx, fpre, fpost, npre + s_pre,
                npost + s_post), None

    @jax.jit
    def run():
        z = jnp.zeros(off.shape, jnp.float64)
        neg = jnp.full(off.shape, -1, jnp.int64)
        cnt = jnp.zeros(off.shape, jnp.int64)
        init = (lif.init(z), lif.init(z), z, z, z, z, z, neg, neg, cnt, cnt)
        carry, _ = jax.lax.scan(body, init, jnp.arange(n_steps, dtype=jnp.int64))
        return carry[5:]

    return run()
