"""The STDP window under the pairing protocol (`eqdyn.analysis.stdp_window`, issue 28): sign
structure, and the fitted window against the analytic one of the linear filters."""

import numpy as np
import pytest

from eqdyn import ConfigError
from eqdyn.analysis import stdp_window
from eqdyn.analysis import analytic_window, two_exponential
from eqdyn.dynamics import LIF

# two pairs 500 ms apart, step 0.25 ms: the fast setting (the CLI's is 60 pairs at 1 Hz, 0.1 ms)
FAST = dict(n_pairs=2, rate_hz=2.0, dt=0.25)


@pytest.fixture(scope="module", params=[(10.0, 20.0), (5.0, 30.0)], ids=["10-20", "5-30"])
def study(request):
    tau_syn, tau_m = request.param
    return stdp_window(tau_syn=tau_syn, tau_m=tau_m, **FAST), tau_syn, tau_m


def test_one_spike_per_pulse_at_the_nominal_offset(study):
    r, _, _ = study
    assert np.all(r.pre_spikes == 2) and np.all(r.post_spikes == 2)
    # both neurons are alike, so their spikes keep the pulses' offsets exactly
    np.testing.assert_allclose(r.measured, r.offsets, atol=1e-9)


@pytest.mark.parametrize("rule", ["bengio", "xie-seung"])
def test_window_signs_and_decay(study, rule):
    r, _, _ = study
    dt, dw = r.measured, r.dw[rule]
    # within 50 ms (further out, at tau_syn 5 ms the window, e^-17, is below the next pair's
    # tail, measured -1e-7 at 100 ms)
    near = np.abs(dt) <= 50
    assert np.all(dw[near & (dt > 0)] > 0), "potentiation when the presynaptic spike leads"
    assert np.all(dw[near & (dt < 0)] < 0), "depression when it follows"
    # decaying with |dt| on each side, to under 5 % of the peak at 100 ms (measured at most
    # 1.6 %: the tau_m = 30 ms lobe)
    assert np.all(np.diff(dw[near & (dt > 0)]) < 0) and np.all(np.diff(dw[near & (dt < 0)]) < 0)
    assert abs(dw[-1]) < 0.05 * dw[dt > 0][0] and abs(dw[0]) < 0.05 * dw[dt > 0][0]


@pytest.mark.parametrize("rule", ["bengio", "xie-seung"])
def test_fitted_window_is_the_analytic_one(study, rule):
    r, tau_syn, tau_m = study
    f, a = r.fits[rule], analytic_window(rule, tau_syn, tau_m)
    assert a == r.analytic[rule]
    # the filters decay by exact exponentials per step: the taus come out exactly
    # (measured relative error <= 7e-8)
    for k in ("tau_plus", "tau_minus"):
        assert abs(f[k] - a[k]) <= 1e-5 * a[k], (k, f[k], a[k])
    # the amplitudes carry the step's O(dt / tau) error: measured <= 1.55 dt / tau_syn
    # (relative; Xie & Seung's A- at tau_syn 5 ms, dt 0.25 ms)
    h = r.settings["dt_ms"] / tau_syn
    for k in ("a_plus", "a_minus"):
        assert abs(f[k] - a[k]) <= 3 * h * a[k], (k, f[k], a[k])
    # and pointwise (measured <= 0.0143 at dt 0.25 ms)
    off = r.measured != 0
    err = np.max(np.abs(r.dw[rule] - two_exponential(r.measured, *a.values()))[off])
    assert err < 0.03


def test_bad_input():
    with pytest.raises(ConfigError, match="rate_hz.*10"):
        stdp_window(n_pairs=2, rate_hz=10.0)
    with pytest.raises(ConfigError, match="dt.*0.5.*refractory.*0.2"):
        stdp_window(n_pairs=2, dt=0.5, lif=LIF(refractory=0.2, tau_m=10.0, max_rate=1.0))
    with pytest.raises(ConfigError, match="tau_syn"):
        stdp_window(n_pairs=2, tau_syn=-1.0)
    with pytest.raises(ConfigError, match="rule"):
        analytic_window("hebb", 10.0, 20.0)


def test_cli_analyze_stdp_writes_json_and_png(tmp_path):
    import json

    from eqdyn.cli import main

    assert main(["analyze", "stdp", "--pairs", "2", "--pair-rate", "2", "--dt-ms", "0.25",
                 "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "stdp.json").read_text())
    assert (tmp_path / "stdp.png").stat().st_size > 10_000
    assert set(data["fits"]) == {"bengio", "xie-seung"}
    assert data["settings"]["n_pairs"] == 2 and len(data["offsets_ms"]) == 41
    assert abs(data["fits"]["bengio"]["tau_minus"] - 20.0) < 1e-3
