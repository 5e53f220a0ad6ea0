"""Online quantile tracking (Angelopoulos, Candès & Tibshirani 2023): their deterministic long-run
bound, delayed feedback, finite intervals where ACI's are infinite, recovery after a shift, an
exchangeable stream, chunked and masked streams, the factory by name, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.uq import AbsoluteResidual, AdaptiveConformal, Prediction, QuantileTracker, online_conformal
from sciflow.uq.conformal import QuantileScore, conformal_quantile

ALPHA = 0.1


def _shifted_stream(T=1500, shift_at=500, seed=0):
    """Point forecast 0; truth N(0, 1) (position 0), N(0, 1) then N(0, 9) (1), a mean drifting to 3 (2)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(T, 3, generator=g, dtype=torch.float64)
    y[shift_at:, 1] *= 3
    y[:, 2] += 3 * torch.arange(T, dtype=torch.float64) / T
    return Prediction(torch.zeros(T, 3, dtype=torch.float64)), y


def _reference(scores, q1, eta, alpha, delay):
    """The update written out for one scalar stream: q_{t+1} = q_t + eta (err_{t-delay} - alpha)."""
    q, qs, errs = q1, [], []
    for t, s in enumerate(scores.tolist()):
        if t > delay:
            q = q + eta * (float(errs[t - delay - 1]) - alpha)
        qs.append(q)
        errs.append(s > q)
    return torch.tensor(qs, dtype=torch.float64), torch.tensor(errs)


@pytest.mark.parametrize("delay", [0, 4])
def test_long_run_miscoverage_obeys_the_deterministic_bound_at_every_horizon(delay):
    pred, y = _shifted_stream()
    s = y.abs()  # the absolute residual of the zero forecast
    B = float(s.max())  # every score lies in [0, B]
    for eta in (0.01, 0.05, 0.5):
        res = QuantileTracker(ALPHA, lr=None, eta=eta, score=AbsoluteResidual(), delay=delay).run(pred, y)
        err = res.miscovered.double()
        T = torch.arange(1, err.shape[0] + 1, dtype=torch.float64)[:, None]
        bound = (B + eta * (delay + 1)) / (eta * T)  # Angelopoulos et al. 2023, Prop. 1 (delay 0)
        assert ((err.cumsum(0) / T - ALPHA).abs() <= bound + 1e-12).all(), eta
        # the proof's invariant: q_t in [-alpha eta (d+1), B + (1 - alpha) eta (d+1)]
        q = res.threshold
        assert q.min() >= -ALPHA * eta * (delay + 1) - 1e-12
        assert q.max() <= B + (1 - ALPHA) * eta * (delay + 1) + 1e-12
        assert torch.isfinite(res.upper - res.lower).all() and res.alpha_t is None


def test_thresholds_follow_the_update_rule_with_delay():
    pred, y = _shifted_stream(T=300)
    cal = y[:50].abs()
    for delay in (0, 3):
        qt = QuantileTracker(ALPHA, lr=0.1, score=AbsoluteResidual(), delay=delay).calibrate_scores(cal)
        eta = 0.1 * (cal.max(0).values - cal.min(0).values)
        torch.testing.assert_close(qt.eta, eta)
        q1 = conformal_quantile(cal, ALPHA)
        torch.testing.assert_close(qt.threshold, q1)
        res = qt.run(Prediction(pred.mean[50:]), y[50:])
        for j in range(3):
            qs, errs = _reference(y[50:, j].abs(), float(q1[j]), float(eta[j]), ALPHA, delay)
            torch.testing.assert_close(res.threshold[:, j], qs, rtol=0, atol=1e-12)
            assert torch.equal(res.miscovered[:, j], errs)
        torch.testing.assert_close(res.upper, pred.mean[50:] + res.threshold)
        torch.testing.assert_close(res.lower, pred.mean[50:] - res.threshold)
    # the truths of the last `delay` steps cannot move any interval issued up to the last step
    y2 = y.clone()
    y2[-3:] += 100.0
    a = QuantileTracker(ALPHA, lr=0.1, score=AbsoluteResidual(), delay=3).calibrate_scores(cal)
    b = QuantileTracker(ALPHA, lr=0.1, score=AbsoluteResidual(), delay=3).calibrate_scores(cal)
    assert torch.equal(a.run(pred, y).upper, b.run(pred, y2).upper)


def test_tracking_recovers_after_a_shift_with_finite_intervals_where_aci_goes_infinite():
    pred, y = _shifted_stream(T=2000)
    cal = 300
    test_pred, test_y = Prediction(pred.mean[cal:]), y[cal:]
    scores = y[:cal].abs()
    qt = QuantileTracker(ALPHA, lr=0.05, score=AbsoluteResidual()).calibrate_scores(scores).run(test_pred, test_y)
    aci = AdaptiveConformal(ALPHA, 0.05, AbsoluteResidual()).calibrate_scores(scores).run(test_pred, test_y)
    assert (qt.coverage() - 0.9).abs().max() < 0.02  # every position at 0.9, as ACI
    assert (aci.coverage() - 0.9).abs().max() < 0.02
    assert qt.summary()["infinite_fraction"] == 0 and aci.summary()["infinite_fraction"] > 0.005
    # after the variance jump (position 1) the half-width settles near the new 90 % quantile, 1.645 x 3
    half = (qt.upper[-500:, 1] - qt.lower[-500:, 1]) / 2
    assert abs(float(half.median()) / (1.645 * 3) - 1) < 0.15
    # within 200 steps of the jump the local coverage is back above 0.8
    local = (~qt.miscovered[500 - cal + 200:500 - cal + 400, 1]).double().mean()
    assert local > 0.8, local


def test_exchangeable_stream_stays_at_the_split_conformal_interval():
    g = torch.Generator().manual_seed(1)
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64)
    y = torch.randn(4000, 2, generator=g, dtype=torch.float64) * sigma
    pred = Prediction(torch.zeros_like(y), variance=(sigma**2).expand_as(y))
    cal = y[:500].abs() / sigma  # the default score: |y - mean| / std
    qt = QuantileTracker(ALPHA, lr=0.01).calibrate_scores(cal)
    res = qt.run(Prediction(pred.mean[500:], variance=pred.variance[500:]), y[500:])
    s = res.summary()
    assert abs(s["coverage"] - 0.9) < 0.015 and s["worst_position_coverage"] > 0.88
    ratio = (res.upper - res.lower).median(0).values / (2 * 1.6449 * sigma)  # the oracle 90 % interval
    assert ((ratio - 1).abs() < 0.05).all(), ratio


def test_chunks_continue_the_stream_and_unobserved_truths_do_not_move_q():
    pred, y = _shifted_stream(T=400, shift_at=200)
    cal = y[:40].abs()
    whole = QuantileTracker(ALPHA, lr=0.1, score=AbsoluteResidual(), delay=2).calibrate_scores(cal).run(pred, y)
    qt = QuantileTracker(ALPHA, lr=0.1, score=AbsoluteResidual(), delay=2).calibrate_scores(cal)
    parts = [qt.run(Prediction(pred.mean[a:b]), y[a:b]) for a, b in ((0, 1), (1, 150), (150, 400))]
    for name in ("lower", "upper", "threshold", "miscovered"):
        assert torch.equal(torch.cat([getattr(p, name) for p in parts]), getattr(whole, name)), name
    observed = torch.ones_like(y, dtype=torch.bool)
    observed[100:200, 1] = False
    y_gap = y.masked_fill(~observed, math.nan)  # whatever fills them never reaches a number
    res = QuantileTracker(ALPHA, lr=0.1, score=AbsoluteResidual()).calibrate_scores(cal).run(pred, y_gap, observed)
    assert (res.threshold[100:201, 1] == res.threshold[100, 1]).all() and not res.miscovered[100:200, 1].any()
    keep = torch.cat([torch.arange(100), torch.arange(200, 400)])
    cut = QuantileTracker(ALPHA, lr=0.1, score=AbsoluteResidual()).calibrate_scores(cal[:, 1:2])
    cut = cut.run(Prediction(pred.mean[keep, 1:2]), y[keep, 1:2])
    assert torch.equal(cut.threshold[:, 0], res.threshold[keep, 1])


def test_quantile_score_intervals_and_negative_thresholds():
    """CQR scores can be negative; a threshold below every score gives an empty interval, never NaN."""
    g = torch.Generator().manual_seed(4)
    y = torch.randn(600, 2, generator=g, dtype=torch.float64)
    lo, hi = torch.full_like(y, -3.0), torch.full_like(y, 3.0)  # far too wide bands: scores ~ -2 and below
    pred = Prediction(torch.zeros_like(y), lower=lo, upper=hi)
    res = QuantileTracker(ALPHA, lr=0.2, score=QuantileScore()).calibrate_scores(
        QuantileScore().score(Prediction(torch.zeros_like(y[:100]), lower=lo[:100], upper=hi[:100]), y[:100])
    ).run(Prediction(pred.mean[100:], lower=lo[100:], upper=hi[100:]), y[100:])
    assert (res.threshold[-100:] < 0).all()  # the bands shrink: CQR's negative q
    assert abs(res.summary()["coverage"] - 0.9) < 0.03 and torch.isfinite(res.upper).all()


def test_online_conformal_builds_each_method_by_name():
    pred, y = _shifted_stream(T=200)
    cal = y[:50].abs()
    out = {}
    for name in ("aci", "dtaci", "quantile"):
        m = online_conformal(name, ALPHA, score=AbsoluteResidual(), delay=1).calibrate_scores(cal)
        out[name] = m.run(Prediction(pred.mean[50:]), y[50:])
    ref = AdaptiveConformal(ALPHA, 0.005, AbsoluteResidual(), delay=1).calibrate_scores(cal)
    assert torch.equal(out["aci"].upper, ref.run(Prediction(pred.mean[50:]), y[50:]).upper)
    assert out["quantile"].alpha_t is None and out["dtaci"].alpha_t is not None
    with pytest.raises(ValueError, match="allowed values: aci, dtaci, quantile, pid"):
        online_conformal("pi")
    with pytest.raises(ValueError, match="dtaci chooses its own step size"):
        online_conformal("dtaci", rate=0.1)
    with pytest.raises(ValueError, match="window does not apply"):
        online_conformal("quantile", window=100)


def test_bad_input_is_refused_with_a_message():
    pred, y = _shifted_stream(T=20)
    with pytest.raises(ValueError, match="one of lr"):
        QuantileTracker(ALPHA, lr=0.1, eta=0.1)
    with pytest.raises(ValueError, match="one of lr"):
        QuantileTracker(ALPHA, lr=None)
    with pytest.raises(ValueError, match="lr must be"):
        QuantileTracker(ALPHA, lr=-1.0)
    with pytest.raises(ValueError, match="eta must be"):
        QuantileTracker(ALPHA, lr=None, eta=torch.tensor([0.1, 0.0]))
    with pytest.raises(ValueError, match="delay"):
        QuantileTracker(ALPHA, delay=-1)
    with pytest.raises(ValueError, match="alpha"):
        QuantileTracker(1.5)
    with pytest.raises(ValueError, match="call calibrate_scores first, or give eta"):
        QuantileTracker(ALPHA).run(pred, y)
    with pytest.raises(ValueError, match="do not vary"):
        QuantileTracker(ALPHA).calibrate_scores(torch.ones(10, 3))
    with pytest.raises(ValueError, match="calibration scores contain NaN"):
        QuantileTracker(ALPHA).calibrate_scores(torch.tensor([[1.0], [math.nan]]))
    qt = QuantileTracker(ALPHA, score=AbsoluteResidual()).calibrate_scores(y[:10].abs())
    with pytest.raises(ValueError, match="event shape"):
        qt.run(Prediction(pred.mean[:, :2]), y[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        qt.run(pred, y.masked_fill(torch.zeros_like(y, dtype=torch.bool).index_fill(0, torch.tensor([3]), True),
                                   math.nan))
    qt.run(pred, y)
    with pytest.raises(ValueError, match="before the stream"):
        qt.calibrate_scores(y[:10].abs())
