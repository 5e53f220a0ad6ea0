"""``sciflow evaluate --uq online-conformal``: forecast streams split by time, intervals recalibrated
online per lead time. No interval sees a truth from its future (delay ``ceil(h/s) - 1`` for lead
``h`` and windows every ``s`` steps), the summaries are the errors counted by hand, a drifting
stream breaks the split-conformal baseline exactly, and bad input is a clear error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sciflow.cli import main, prepare_splits
from sciflow.cli import evaluation as cli_evaluation
from sciflow.cli.online_evaluation import (daily_period, evaluate_online, lead_delays, online_intervals,
                                           split_conformal_intervals, stream_summary)
from sciflow.cli.pipeline import write_config
from sciflow.config import ConfigError, load_experiment
from sciflow.uq import ARScorecaster
from tests._stand_ins import Constant as _Constant
from tests._era5 import era5_nc

# 7 days of hours 0..167: validation windows in hours 96..119, test windows from hour 120 on
DATA = ["data.channels=[2m_temperature]", "data.val_start=2019-03-05", "data.test_start=2019-03-06",
        "data.window=12", "data.stride=6", "data.coarsen=1", "data.anomalies=false"]
METHODS = ["aci", "dtaci", "quantile", "pid", "pid+ar"]


def _hours(values: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
    """The valid hour each value of the synthetic source encodes (t2m = 280 + hours/10 + lat/100)."""
    return ((values[:, :, 0] - 280 - lat.reshape(1, 1, -1, 1) / 100) * 10).round()


def _stream(seed: int = 0, n_val: int = 19, n_test: int = 24, time: int = 6):
    """Synthetic forecasts and truths ``(n, time, channel, lat, lon)``; the test errors are larger
    (a shift the online methods must follow)."""
    g = torch.Generator().manual_seed(seed)
    shape = (2, 2, 3)
    val_mean = torch.randn(n_val, time, *shape, generator=g)
    val_truth = val_mean + torch.randn(n_val, time, *shape, generator=g)
    test_mean = torch.randn(n_test, time, *shape, generator=g)
    test_truth = test_mean + 2 * torch.randn(n_test, time, *shape, generator=g)
    return val_mean, val_truth, test_mean, test_truth


def _rate(method: str) -> float | None:
    # large enough that one error moves the level, small enough that no ACI interval goes infinite here
    return {"aci": 0.02, "dtaci": None, "quantile": 0.2, "pid": 0.2, "pid+ar": 0.2}[method]


def _kw(method: str) -> dict:
    """``online_intervals`` keywords: ``pid+ar`` is conformal PID with an AR scorecaster (period 4)."""
    if method == "pid+ar":
        return dict(method="pid", rate=_rate(method), scorecaster=lambda: ARScorecaster(order=1, period=4))
    return dict(method=method, rate=_rate(method))


def test_test_stride_one_gives_hourly_test_windows(tmp_path: Path) -> None:
    src = era5_nc(tmp_path / "t2m.nc")
    s = prepare_splits(load_experiment("wdno_era5", [f"data.path={src}", *DATA, "data.test_stride=1"]))
    lat = torch.tensor(s.attrs["lat"])
    assert s.attrs["test_stride"] == 1
    assert len(s.val) == 24 - 12 + 1 and len(s.test) == 48 - 12 + 1  # one window per hour that fits
    for k in ("val", "test"):  # 12 consecutive hours each, consecutive windows one hour apart
        h = _hours(getattr(s, k).values, lat)
        torch.testing.assert_close(h.diff(dim=1), torch.ones_like(h[:, 1:]), atol=0, rtol=0)
        torch.testing.assert_close(h.diff(dim=0), torch.ones_like(h[1:]), atol=0, rtol=0)
    h_val, h_test = _hours(s.val.values, lat), _hours(s.test.values, lat)
    assert float(h_val.min()) == 96 and float(h_val.max()) == 119  # no validation hour in the test period
    torch.testing.assert_close(h_test[:, 0, 0, 0], torch.arange(120.0, 157.0), atol=0, rtol=0)
    assert len(prepare_splits(load_experiment("wdno_era5", [f"data.path={src}", *DATA, "data.test_stride=5"])).test) \
        == (48 - 12) // 5 + 1
    default = prepare_splits(load_experiment("wdno_era5", [f"data.path={src}", *DATA]))
    assert default.attrs["test_stride"] == 12 and len(default.test) == 4  # non-overlapping, as before


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("stride", [1, 3])
def test_no_interval_sees_a_future_truth(method: str, stride: int) -> None:
    """Flip the error of test window i' at lead h: the intervals of every window i with
    (i - i') s < h are bit-identical, the first window with (i - i') s >= h changes."""
    given = 2
    val_mean, val_truth, test_mean, test_truth = _stream()
    kw = dict(given=given, stride=stride, alpha=0.2, **_kw(method))
    base = online_intervals(val_mean, val_truth, test_mean, test_truth, **kw)
    assert base.lower.shape == base.upper.shape == (24, 4, 2, 2, 3)
    i_p = 7
    for h in (1, 4):
        k = given + h - 1
        truth = test_truth.clone()
        was_missed = base.per_lead[h - 1].miscovered[i_p]
        # covered -> far outside; missed -> exactly the forecast (score 0, covered)
        truth[i_p, k] = test_mean[i_p, k] + torch.where(was_missed, 0.0, 1e3)
        out = online_intervals(val_mean, val_truth, test_mean, truth, **kw)
        assert bool((out.per_lead[h - 1].miscovered[i_p] != was_missed).all())  # every error flipped
        changed = [not (torch.equal(base.lower[i], out.lower[i]) and torch.equal(base.upper[i], out.upper[i]))
                   for i in range(24)]
        first = i_p + math.ceil(h / stride)
        assert not any(changed[:first]), (h, changed)
        assert changed[first], (h, changed)
        # and only the perturbed lead moves
        others = [j for j in range(4) if j != h - 1]
        torch.testing.assert_close(out.lower[:, others], base.lower[:, others], atol=0, rtol=0)


def test_delays_per_lead_and_summaries_by_hand(monkeypatch) -> None:
    assert lead_delays(6, 1) == [0, 1, 2, 3, 4, 5]
    assert lead_delays(6, 3) == [0, 0, 0, 1, 1, 1]
    assert lead_delays(6, 6) == [0] * 6 and lead_delays(6, 24) == [0] * 6
    assert daily_period(1, 1.0) == 24 and daily_period(3, 1) == 8 and daily_period(1, 6) == 4
    assert daily_period(5, 1.0) is None and daily_period(1, 48) is None and daily_period(1, None) is None
    import sciflow.uq as uq

    seen = []
    real = uq.online_conformal

    def spy(method, alpha=0.1, **kw):
        seen.append(kw["delay"])
        return real(method, alpha, **kw)

    monkeypatch.setattr(uq, "online_conformal", spy)
    val_mean, val_truth, test_mean, test_truth = _stream()
    out = online_intervals(val_mean, val_truth, test_mean, test_truth, given=2, stride=3, method="aci", alpha=0.2,
                           rate=0.05)
    assert seen == [0, 0, 0, 1]  # leads 1..4, windows every 3 steps
    miss = torch.stack([r.miscovered for r in out.per_lead], 1).double()  # (window, lead, *state)
    s = stream_summary(out)
    assert s["coverage"] == pytest.approx(1 - float(miss.mean()), abs=1e-12)
    assert s["coverage_per_lead"] == pytest.approx((1 - miss.mean(dim=(0, 2, 3, 4))).tolist(), abs=1e-6)
    assert s["worst_position_coverage"] == pytest.approx(float((1 - miss.mean(0)).min()), abs=1e-12)
    y = test_truth[:, 2:]
    inside = ((y >= out.lower) & (y <= out.upper)).double()  # the same count from the intervals themselves
    assert s["coverage"] == pytest.approx(float(inside.mean()), abs=2 / inside.numel())
    width = out.upper - out.lower
    finite = torch.isfinite(width) & (width >= 0)
    assert s["mean_width"] == pytest.approx(float(width[finite].mean()), rel=1e-6)
    assert s["infinite_fraction"] == pytest.approx(float(torch.isinf(width).double().mean()), abs=1e-12)
    assert 0.5 < s["coverage"] < 0.95  # the shift (errors x2) pulls the stream below its nominal 0.8 at first
    # split-conformal baseline: the ceil((n + 1)(1 - alpha)) = ceil(20 * 0.8) = 16th smallest validation score
    base = split_conformal_intervals(val_mean, val_truth, test_mean, test_truth, given=2, alpha=0.2)
    q = (val_truth - val_mean)[:, 2:].abs().sort(0).values[15]
    torch.testing.assert_close(base.upper - test_mean[:, 2:], q.expand_as(base.upper), atol=1e-6, rtol=0)
    b = stream_summary(base)
    assert b["coverage"] == pytest.approx(float(((y - test_mean[:, 2:]).abs() <= q).double().mean()), abs=1e-12)
    assert b["coverage"] < s["coverage"]  # fixed quantiles of the calmer period under-cover the shifted stream


@pytest.mark.parametrize("stride", [1, 4])
def test_drifting_stream_breaks_split_conformal_exactly(tmp_path: Path, monkeypatch, stride: int) -> None:
    """A constant forecast of a field that warms 0.1 K an hour: every test error exceeds every earlier
    error, so the fixed split-conformal intervals (the largest of 13 validation errors at alpha=0.1)
    cover nothing, and ACI covers exactly where it has gone infinite. The point scores by hand."""
    src = era5_nc(tmp_path / "t2m.nc")
    exp = load_experiment("wdno_era5", [f"data.path={src}", *DATA, f"data.test_stride={stride}"])
    monkeypatch.setattr(cli_evaluation, "load_members", lambda exp, run_dir: [_Constant(280.0)])
    m = evaluate_online(exp, tmp_path)
    n_val, n_test = (24 - 12) // stride + 1, (48 - 12) // stride + 1
    assert (m["n_val_windows"], m["n_test_windows"], m["given"], m["horizon"]) == (n_val, n_test, 6, 6)
    assert "coverage" not in m and "mean_interval_width" not in m  # the mean only: no infinite width leaks in
    init = 120 + 5 + stride * np.arange(n_test)  # the last given hour of each test window
    err = (init[:, None, None] + np.arange(1, 7)[None, :, None]) / 10 + np.array([50, 53, 56])[None, None] / 100
    assert m["rmse"] == pytest.approx(math.sqrt(float((err**2).mean())), rel=1e-4)
    assert m["rmse_per_lead"] == pytest.approx(np.sqrt((err**2).mean(axis=(0, 2))).tolist(), rel=1e-4)
    sc = m["split_conformal"]
    if stride == 1:  # n = 13: k = ceil(14 * 0.9) = 13, the largest validation error
        assert sc["coverage"] == sc["worst_position_coverage"] == sc["infinite_fraction"] == 0.0
        # the last validation window (hours 108..119) errs (113 + h) / 10 + lat / 100 at lead h
        assert sc["mean_width"] == pytest.approx(2 * ((113 + 3.5) / 10 + 0.53), abs=0.01)
    else:  # n = 4 validation windows: k = ceil(5 * 0.9) = 5 > 4, infinite intervals, all "covered"
        assert sc["coverage"] == sc["infinite_fraction"] == 1.0 and math.isinf(sc["mean_width"])
    on = m["online"]
    assert on["method"] == "aci" and on["rate"] is None and on["issue_every_steps"] == stride
    assert on["issue_every_hours"] == stride and on["nominal_coverage"] == pytest.approx(0.9)
    assert on["delay_per_lead"] == [math.ceil(h / stride) - 1 for h in range(1, 7)]
    assert on["coverage"] == pytest.approx(on["infinite_fraction"], abs=1e-12)  # covered only when infinite
    assert on["coverage_per_lead"] == pytest.approx(on["infinite_fraction_per_lead"], abs=1e-12)
    assert on["empty_fraction"] == 0.0
    if stride == 1:  # ACI lowers alpha_t after each miss until the level asks for more scores than it has
        assert 0.2 < on["coverage"] < 0.9 and on["worst_position_coverage"] > 0.0


def test_train_then_evaluate_online_conformal_on_era5(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    src = era5_nc(tmp_path / "t2m.nc")
    run = tmp_path / "run"
    tiny = [f"data.path={src}", *DATA, "data.test_stride=1", "data.anomalies=true", "train.max_steps=3",
            "train.log_every=1", "data.batch_size=4", "model.channel_mults=[1,2]"]
    assert main(["train", "wdno_era5", *tiny, "--run-dir", str(run)]) == 0
    rates = {"aci": "eval.online_rate=0.02", "quantile": "eval.online_rate=0.1", "pid": "eval.online_rate=0.05"}
    for method in METHODS:
        extra = [f"eval.online={method}", *([rates[method]] if method in rates else [])]
        if method == "pid+ar":
            extra = ["eval.online=pid", "eval.online_scorecaster=ar"]
        assert main(["evaluate", str(run), "--uq", "online-conformal", *extra]) == 0
        m = json.loads((run / "eval_online-conformal.json").read_text())
        assert m["uq"] == "online-conformal" and m["n_test_windows"] == 37 and m["n_val_windows"] == 13
        assert m["given"] == 6 and m["horizon"] == 6 and m["channels"] == ["2m_temperature"]
        assert all(math.isfinite(v) for v in [m["rmse"], *m["rmse_per_lead"], *m["lat_weighted_rmse"]])
        on, sc = m["online"], m["split_conformal"]
        assert (on["method"] == method.split("+")[0] and on["alpha"] == 0.1
                and on["delay_per_lead"] == [0, 1, 2, 3, 4, 5])
        assert on["rate"] == (float(rates[method].split("=")[1]) if method in rates else None)
        # hourly windows issued every step: a one-day seasonal lag of 24 windows
        assert on["scorecaster"] == ("ARScorecaster(order=1, period=24, forgetting=0.99, prior=100.0)"
                                     if method == "pid+ar" else None)
        for block in (on, sc):
            assert len(block["coverage_per_lead"]) == len(block["mean_width_per_lead"]) == 6
            assert block["coverage"] == pytest.approx(float(np.mean(block["coverage_per_lead"])), abs=1e-6)
            assert 0 <= block["worst_position_coverage"] <= min(block["coverage_per_lead"]) <= 1
            assert all(0 <= f <= 1 for f in [*block["infinite_fraction_per_lead"], *block["empty_fraction_per_lead"]])
        assert math.isfinite(on["mean_width"]) and on["mean_width"] > 0
        if method in ("quantile", "pid+ar"):  # thresholds move, never become infinite here
            assert on["infinite_fraction"] == 0.0
        # 13 validation windows at alpha = 0.1: the baseline uses the largest score, finite and positive
        assert sc["infinite_fraction"] == 0.0 and sc["mean_width"] > 0
        assert m["score"] == "absolute" and m["spread_from"] is None
    # the residual over the spread of 3 WDNO draws: intervals scale with the draws' spread
    assert main(["evaluate", str(run), "--uq", "online-conformal", "eval.online=quantile",
                 "eval.online_score=normalized", "eval.n_samples=3"]) == 0
    m = json.loads((run / "eval_online-conformal.json").read_text())
    assert m["score"] == "normalized" and m["spread_from"] == "3 samples"
    for block in (m["online"], m["split_conformal"]):
        assert 0 < block["coverage"] <= 1 and math.isfinite(block["mean_width"]) and block["mean_width"] > 0


def test_bad_input_names_the_problem(tmp_path: Path, capsys) -> None:
    run = tmp_path / "ode"
    write_config(load_experiment("lorenz_neural_ode", ["train.max_steps=3"]), run)
    assert main(["evaluate", str(run), "--uq", "online-conformal"]) == 2
    err = capsys.readouterr().err
    assert "split by time" in err and "exchangeable" in err and "--uq conformal" in err
    with pytest.raises(ConfigError, match="dtaci chooses its own step size"):
        load_experiment("lorenz_neural_ode", ["eval.online=dtaci", "eval.online_rate=0.01"])
    assert main(["evaluate", str(run), "--uq", "online-conformal", "eval.online=dtaci", "eval.online_rate=0.01"]) == 2
    assert "leave eval.online_rate unset" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="eval.online_rate must be a finite number > 0"):
        load_experiment("lorenz_neural_ode", ["eval.online_rate=-0.1"])
    with pytest.raises(ConfigError,
                       match="eval.online_scorecaster=ar is the D part of conformal PID: set eval.online=pid"):
        load_experiment("lorenz_neural_ode", ["eval.online_scorecaster=ar"])
    with pytest.raises(ConfigError, match="'eval.online_scorecaster' = 'theta' is not allowed"):
        load_experiment("lorenz_neural_ode", ["eval.online=pid", "eval.online_scorecaster=theta"])
    with pytest.raises(ConfigError, match="'eval.online' = 'pi' is not allowed"):
        load_experiment("lorenz_neural_ode", ["eval.online=pi"])
    with pytest.raises(ConfigError, match=r"data.test_stride must be >= 1 \(null: every data.window steps\), got 0"):
        load_experiment("wdno_era5", [*DATA, "data.test_stride=0"])
    with pytest.raises(ConfigError, match="data.test_stride .* applies to a split by time: set data.test_start"):
        load_experiment("lorenz_neural_ode", ["data.test_stride=1"])
    # a split by time without validation windows has nothing to calibrate on
    src = era5_nc(tmp_path / "t2m.nc")
    era5 = tmp_path / "era5"
    write_config(load_experiment("wdno_era5", [f"data.path={src}", *DATA, "data.val_start=null"]), era5)
    assert main(["evaluate", str(era5), "--uq", "online-conformal"]) == 2
    assert "set data.val_start" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no validation windows"):
        online_intervals(*(torch.zeros(n, 4, 1) for n in (0, 0, 3, 3)), given=1, stride=1, method="aci")


def test_normalized_score_scales_the_intervals_by_the_forecast_spread() -> None:
    """Errors whose size the forecast knows (its spread, per window and position): the normalized
    score issues mean +- q sigma and covers the calm and the stormy windows alike, where the
    absolute residual over-covers the calm ones and under-covers the stormy ones."""
    g = torch.Generator().manual_seed(3)
    shape, time, given = (1, 2, 2), 4, 1
    sig_val = torch.exp(torch.randn(300, time, *shape, generator=g))  # the forecast's spread, known
    sig_test = torch.exp(torch.randn(600, time, *shape, generator=g))
    val_mean, test_mean = torch.zeros_like(sig_val), torch.zeros_like(sig_test)
    val_truth = sig_val * torch.randn(sig_val.shape, generator=g)
    test_truth = sig_test * torch.randn(sig_test.shape, generator=g)
    storm = sig_test[:, given:] > sig_test[:, given:].median()
    cov = {}
    for name, std in (("absolute", None), ("normalized", (sig_val, sig_test))):
        kw = {} if std is None else dict(val_std=std[0], test_std=std[1])
        for kind, out in (("quantile", online_intervals(val_mean, val_truth, test_mean, test_truth, given=given,
                                                        stride=1, method="quantile", rate=0.05, **kw)),
                          ("split", split_conformal_intervals(val_mean, val_truth, test_mean, test_truth,
                                                              given=given, **kw))):
            y = test_truth[:, given:]
            inside = (y >= out.lower) & (y <= out.upper)
            cov[name, kind] = (float(inside[storm].double().mean()), float(inside[~storm].double().mean()))
            if name == "normalized" and kind == "split":
                # mean +- q sigma, q the ceil(301 * 0.9) = 271st of 300 |y| / sigma
                q = (val_truth / sig_val)[:, given:].abs().sort(0).values[271 - 1]
                torch.testing.assert_close(out.upper, q * sig_test[:, given:], rtol=1e-6, atol=1e-6)
    for kind in ("quantile", "split"):
        stormy, calm = cov["normalized", kind]
        assert abs(stormy - 0.9) < 0.04 and abs(calm - 0.9) < 0.04, (kind, cov)
        stormy, calm = cov["absolute", kind]
        assert stormy < 0.82 and calm > 0.97, (kind, cov)
    with pytest.raises(ValueError, match="or neither"):
        online_intervals(val_mean, val_truth, test_mean, test_truth, given=given, stride=1, method="aci",
                         val_std=sig_val)
    with pytest.raises(ValueError, match="finite and >= 0"):
        split_conformal_intervals(val_mean, val_truth, test_mean, test_truth, given=given, val_std=-sig_val,
                                  test_std=sig_test)
    with pytest.raises(ValueError, match="spreads and forecasts differ in shape"):
        split_conformal_intervals(val_mean, val_truth, test_mean, test_truth, given=given, val_std=sig_val[:, :2],
                                  test_std=sig_test)


def test_normalized_score_needs_a_spread(tmp_path: Path, monkeypatch, capsys) -> None:
    src = era5_nc(tmp_path / "t2m.nc")
    exp = load_experiment("wdno_era5", [f"data.path={src}", *DATA, "data.test_stride=1",
                                        "eval.online_score=normalized"])
    monkeypatch.setattr(cli_evaluation, "load_members", lambda exp, run_dir: [_Constant(280.0)])
    with pytest.raises(ConfigError, match="a single deterministic Constant has none: train an ensemble"):
        evaluate_online(exp, tmp_path)
    with pytest.raises(ConfigError, match="'eval.online_score' = 'relative' is not allowed"):
        load_experiment("wdno_era5", ["eval.online_score=relative"])
