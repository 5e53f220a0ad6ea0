"""Conformal PID control (Angelopoulos, Candès & Tibshirani 2023): the integrator's saturation bound
on an adversarial stream (where quantile tracking alone breaks it), the update written out, a
scorecaster that forecasts trends and cycles exactly, intervals that follow a predictable cycle
of the scores, an exchangeable stream, chunked and masked streams, the factory, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.uq import (AbsoluteResidual, ARScorecaster, ConformalPID, Prediction, QuantileTracker,
                        online_conformal)
from sciflow.uq.conformal import conformal_quantile
from sciflow.uq.conformal_pid import saturation

ALPHA = 0.1


def _x_sat(n, csat):
    n1 = torch.as_tensor(n, dtype=torch.float64) + 1
    return math.pi / 2 * csat * n1 / torch.log(n1)


def test_saturation_is_the_scaled_tangent_and_infinite_beyond_pi_over_2():
    x = torch.tensor([0.0, 1.0, -1.0, 40.0, -40.0, 2.0], dtype=torch.float64)
    n = torch.tensor([0, 9, 9, 9, 9, 99])
    r = saturation(x, n, torch.tensor(3.0, dtype=torch.float64), 2.0)
    arg = x[:3] * math.log(10) / (2.0 * 10)
    torch.testing.assert_close(r[:3], 3.0 * torch.tan(arg), rtol=0, atol=1e-15)
    assert r[3] == math.inf and r[4] == -math.inf  # |40 log 10 / 20| > pi / 2
    torch.testing.assert_close(r[5], 3.0 * torch.tan(torch.tensor(2.0 * math.log(100) / 200, dtype=torch.float64)))


@pytest.mark.parametrize("delay", [0, 3])
def test_integrator_caps_the_accumulated_error_where_quantile_tracking_alone_cannot(delay):
    """Scores that grow geometrically outrun any fixed learning rate: quantile tracking misses
    almost always, while the saturating integrator keeps |E_n| <= max_m x_sat(m) + d + 1."""
    T, csat = 3000, 0.5
    t = torch.arange(T, dtype=torch.float64)
    y = torch.stack([torch.exp(t / 150), -torch.exp(-t / 150)], 1)  # one stream grows, one shrinks to 0
    pred = Prediction(torch.zeros_like(y))
    eta = 1e-3
    pid = ConformalPID(ALPHA, lr=None, eta=eta, ki=1e-3, csat=csat, score=AbsoluteResidual(), delay=delay)
    res = pid.run(pred, y)
    err = res.miscovered.double()
    # the truths that had arrived before each interval was issued, and their integrated error
    E = (err - ALPHA).cumsum(0)
    n = torch.arange(1, T + 1)
    bound = torch.cummax(_x_sat(n, csat), 0).values + delay + 1
    assert (E.abs() <= bound[:, None] + 1e-9).all()
    assert torch.isinf(res.threshold[:, 0]).any()  # the integrator saturated: +inf (the whole line)
    assert abs(float(err[:, 0].mean()) - ALPHA) <= float(bound[-1]) / T  # the O(1 / log T) long-run bound
    qt = QuantileTracker(ALPHA, lr=None, eta=eta, score=AbsoluteResidual(), delay=delay).run(pred, y)
    E_qt = (qt.miscovered.double() - ALPHA).cumsum(0)
    assert (E_qt[:, 0] > bound).any() and float(qt.miscovered[:, 0].double().mean()) > 0.5


def _reference_pi(scores, q1, eta, ki, csat, alpha, delay):
    """P + I written out for one scalar stream."""
    q, E, n, qs, errs = q1, 0.0, 0, [], []
    for t, s in enumerate(scores.tolist()):
        if t > delay:
            e = float(errs[t - delay - 1])
            q, E, n = q + eta * (e - alpha), E + e - alpha, n + 1
        arg = E * math.log(n + 1) / (csat * (n + 1))
        r = ki * math.tan(arg) if abs(arg) < math.pi / 2 else math.copysign(math.inf, arg)
        qs.append(q + r)
        errs.append(s > q + r)
    return torch.tensor(qs, dtype=torch.float64), torch.tensor(errs)


def test_thresholds_follow_the_pid_update_with_delay():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(400, 3, generator=g, dtype=torch.float64) * torch.linspace(1, 4, 400)[:, None]
    pred = Prediction(torch.zeros_like(y))
    cal = y[:60].abs()
    for delay in (0, 2):
        pid = ConformalPID(ALPHA, lr=0.05, ki=0.5, csat=0.2, score=AbsoluteResidual(), delay=delay)
        res = pid.calibrate_scores(cal).run(Prediction(pred.mean[60:]), y[60:])
        span = cal.max(0).values - cal.min(0).values
        q1 = conformal_quantile(cal, ALPHA)
        for j in range(3):
            qs, errs = _reference_pi(y[60:, j].abs(), float(q1[j]), 0.05 * float(span[j]), 0.5 * float(span[j]),
                                     0.2, ALPHA, delay)
            torch.testing.assert_close(res.threshold[:, j], qs, rtol=0, atol=1e-12)
            assert torch.equal(res.miscovered[:, j], errs)
        assert (pid.count == 340 - delay - 1).all()


def test_ar_scorecaster_forecasts_trends_and_cycles_exactly():
    t = torch.arange(400, dtype=torch.float64)
    cycle = 2 + torch.sin(2 * math.pi * t / 24)
    trend = 1 + 0.01 * t
    for ahead in (1, 6):
        for order, period, s in ((1, None, trend), (0, 24, cycle)):
            sc = ARScorecaster(order=order, period=period, forgetting=1.0, prior=1e6)
            sc.start((1,), ahead, torch.device("cpu"))
            f = []
            for i in range(len(t)):
                f.append(sc.forecast())
                if i >= ahead - 1:
                    sc.update(s[i - ahead + 1:i - ahead + 2], torch.ones(1, dtype=torch.bool))
            err = (torch.cat(f) - s)[200:]
            assert err.abs().max() < 1e-6, (ahead, order, period, float(err.abs().max()))


def _cyclic_stream(T=4000, period=24, seed=0):
    """Scores with a strong predictable cycle and a little noise: truth = score, forecast 0."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T, dtype=torch.float64)
    s = 3 + 2 * torch.sin(2 * math.pi * t / period) + 0.3 * torch.randn(T, generator=g, dtype=torch.float64).abs()
    return Prediction(torch.zeros(T, 1, dtype=torch.float64)), s[:, None], t


def test_scorecasting_follows_a_cycle_of_the_scores_that_quantile_tracking_lags():
    pred, y, t = _cyclic_stream()
    cal = y[:500]
    test_pred, test_y = Prediction(pred.mean[500:]), y[500:]
    phase = (t[500:] % 24).long()
    out = {}
    for name, m in (("qt", QuantileTracker(ALPHA, lr=0.05, score=AbsoluteResidual(), delay=2)),
                    ("pid", ConformalPID(ALPHA, lr=0.05, score=AbsoluteResidual(), delay=2,
                                         scorecaster=ARScorecaster(order=0, period=24)))):
        res = m.calibrate_scores(cal).run(test_pred, test_y)
        cov = torch.stack([1 - res.miscovered[phase == p].double().mean() for p in range(24)])
        out[name] = (res.summary(), cov)
    (qt, qt_cov), (pid, pid_cov) = out["qt"], out["pid"]
    assert abs(qt["coverage"] - 0.9) < 0.02 and abs(pid["coverage"] - 0.9) < 0.02
    # the phase-wise coverage: quantile tracking covers the troughs and misses the peaks
    assert qt_cov.min() < 0.6 and (pid_cov - 0.9).abs().max() < 0.1, (qt_cov, pid_cov)
    oracle = 2 * (3 + 0.3 * 1.6449)  # mean width of the phase-wise 90 % intervals
    assert abs(pid["mean_width"] / oracle - 1) < 0.1 and pid["mean_width"] < 0.75 * qt["mean_width"]


def test_exchangeable_stream_stays_near_the_split_conformal_interval_with_the_integrator():
    g = torch.Generator().manual_seed(1)
    y = torch.randn(4000, 2, generator=g, dtype=torch.float64) * torch.tensor([0.5, 2.0], dtype=torch.float64)
    pred = Prediction(torch.zeros_like(y))
    pid = ConformalPID(ALPHA, lr=0.01, score=AbsoluteResidual()).calibrate_scores(y[:500].abs())
    res = pid.run(Prediction(pred.mean[500:]), y[500:])
    s = res.summary()
    assert abs(s["coverage"] - 0.9) < 0.015 and s["worst_position_coverage"] > 0.88 and s["infinite_fraction"] == 0
    ratio = (res.upper - res.lower).median(0).values / (2 * 1.6449 * torch.tensor([0.5, 2.0], dtype=torch.float64))
    assert ((ratio - 1).abs() < 0.06).all(), ratio


def test_chunks_continue_the_stream_and_unobserved_truths_move_nothing():
    pred, y, _ = _cyclic_stream(T=600)
    y = torch.cat([y, 2 * y], 1)
    pred = Prediction(torch.zeros_like(y))

    def make():
        return ConformalPID(ALPHA, lr=0.1, ki=0.5, csat=0.5, score=AbsoluteResidual(), delay=2,
                            scorecaster=ARScorecaster(order=1, period=24)).calibrate_scores(y[:100])

    stream_pred, stream_y = Prediction(pred.mean[100:]), y[100:]
    whole = make().run(stream_pred, stream_y)
    m = make()
    parts = [m.run(Prediction(stream_pred.mean[a:b]), stream_y[a:b]) for a, b in ((0, 1), (1, 250), (250, 500))]
    for name in ("lower", "upper", "threshold", "miscovered"):
        assert torch.equal(torch.cat([getattr(p, name) for p in parts]), getattr(whole, name)), name
    observed = torch.ones_like(stream_y, dtype=torch.bool)
    observed[:, 1] = False  # position 1 never observed: P, I and the regression stay where calibration left them
    m = make()
    q1, w1 = m.threshold[1].clone(), m.scorecaster.w[1].clone()
    res = m.run(stream_pred, stream_y.masked_fill(~observed, math.nan), observed)
    assert not res.miscovered[:, 1].any() and torch.isfinite(res.threshold).all()
    assert m.threshold[1] == q1 and torch.equal(m.scorecaster.w[1], w1) and m.count[1] == 0 and m.integral[1] == 0
    assert torch.equal(res.threshold[:, 0], whole.threshold[:, 0])  # position 0 does not see position 1


def test_online_conformal_builds_pid_by_name():
    pred, y, _ = _cyclic_stream(T=300)
    m = online_conformal("pid", ALPHA, rate=0.1, score=AbsoluteResidual(), delay=1)
    assert isinstance(m, ConformalPID) and m.ki == 1.0 and m.scorecaster is None
    ref = ConformalPID(ALPHA, lr=0.1, score=AbsoluteResidual(), delay=1).calibrate_scores(y[:50])
    res = m.calibrate_scores(y[:50]).run(Prediction(pred.mean[50:]), y[50:])
    assert torch.equal(res.upper, ref.run(Prediction(pred.mean[50:]), y[50:]).upper)
    with pytest.raises(ValueError, match="window does not apply"):
        online_conformal("pid", window=10)


def test_bad_input_is_refused_with_a_message():
    with pytest.raises(ValueError, match="ki must be"):
        ConformalPID(ALPHA, ki=-1.0)
    with pytest.raises(ValueError, match="csat must be"):
        ConformalPID(ALPHA, csat=0.0)
    with pytest.raises(TypeError, match="scorecaster must be"):
        ConformalPID(ALPHA, scorecaster=lambda s: s)
    with pytest.raises(ValueError, match="order"):
        ARScorecaster(order=-1)
    with pytest.raises(ValueError, match="period"):
        ARScorecaster(period=0)
    with pytest.raises(ValueError, match="forgetting"):
        ARScorecaster(forgetting=1.5)
    with pytest.raises(ValueError, match="prior"):
        ARScorecaster(prior=math.nan)
    sc = ARScorecaster()
    with pytest.raises(ValueError, match="call start"):
        sc.forecast()
    sc.start((2,), 1, torch.device("cpu"))
    with pytest.raises(ValueError, match="without an issued forecast"):
        sc.update(torch.ones(2), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="ahead"):
        sc.start((2,), 0, torch.device("cpu"))
    with pytest.raises(ValueError, match="calibration scores contain NaN"):
        ConformalPID(ALPHA, scorecaster=ARScorecaster()).calibrate_scores(torch.tensor([[1.0], [math.nan]]))


def test_constant_scores_keep_the_scorecaster_finite():
    """Forgetting inflates the inverse Gram matrix along unexcited directions; its trace is capped."""
    sc = ARScorecaster(order=2, period=5, forgetting=0.9)
    sc.start((3,), 2, torch.device("cpu"))
    s = torch.tensor([0.0, 1.0, 2.5], dtype=torch.float64)
    for _ in range(5000):  # 0.9 ** -5000 overflows float64 without the cap
        sc.forecast()
        sc.update(s, torch.ones(3, dtype=torch.bool))
    assert torch.isfinite(sc.P).all() and torch.isfinite(sc.w).all()
    torch.testing.assert_close(sc.forecast(), s, rtol=0, atol=1e-9)
