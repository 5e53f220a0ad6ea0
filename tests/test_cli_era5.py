"""``sciflow train`` / ``evaluate`` on an ERA5 source split by time: no leakage, the given frames
are not scored, latitude-weighted scores by hand, clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sciflow.cli import main, prepare_splits
from sciflow.cli.evaluation import uq_metrics
from sciflow.config import ConfigError, load_experiment
from sciflow.uq.prediction import Prediction
from tests._era5 import era5_nc as _era5_nc

DATA = ["data.channels=[2m_temperature]", "data.val_start=2019-03-05", "data.test_start=2019-03-06",
        "data.window=12", "data.stride=6", "data.coarsen=1", "data.anomalies=false"]


def _hours(values: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
    h = (values[:, :, 0] - 280 - lat.reshape(1, 1, -1, 1) / 100) * 10  # (batch, window, lat, lon)
    assert float((h - h.round()).abs().max()) < 1e-2  # float32 round-off only
    return h.round()


def test_split_by_time_has_no_leakage_and_dates_stay_strings(tmp_path: Path) -> None:
    src = _era5_nc(tmp_path / "t2m.nc")
    exp = load_experiment("wdno_era5", [f"data.path={src}", *DATA])
    assert exp.data.test_start == "2019-03-06" and exp.data.channels == ("2m_temperature",)
    s = prepare_splits(exp)
    lat = torch.tensor(s.attrs["lat"])
    assert s.attrs["history"] == exp.model.config.n_initial == 6
    assert lat.tolist() == [50.0, 53.0, 56.0]  # ascending in the canonical layout
    h = {k: _hours(getattr(s, k).values, lat) for k in ("train", "val", "test")}
    for k, v in h.items():  # windows are 12 consecutive hours, every grid point the same time
        torch.testing.assert_close(v.diff(dim=1), torch.ones_like(v[:, 1:]), atol=0, rtol=0)
        torch.testing.assert_close(v, v[..., :1, :1].expand_as(v), atol=0, rtol=0)
    assert float(h["train"].max()) < 96 and 96 <= float(h["val"].min()) and float(h["val"].max()) < 120
    assert 120 <= float(h["test"].min())
    # training windows every 6 h over the first 96 h; validation and test windows do not overlap
    assert len(s.train) == (96 - 12) // 6 + 1 and len(s.val) == 2 and len(s.test) == 4
    torch.testing.assert_close(h["test"][:, 0, 0, 0], torch.tensor([120.0, 132.0, 144.0, 156.0]), atol=0, rtol=0)


def test_scores_skip_the_given_frames_and_weight_by_latitude() -> None:
    lat = torch.tensor([0.0, 60.0])  # cos = 1, 1/2: weights (mean one) 4/3, 2/3
    truth = torch.zeros(2, 5, 1, 2, 3)
    mean = truth.clone()
    mean[:, :2] = 100.0  # the given frames: never scored
    mean[:, 2:, :, 0] = 1.0  # error 1 at latitude 0
    mean[:, 2:, :, 1] = 2.0  # error 2 at latitude 60
    out = uq_metrics(Prediction(mean=mean), truth, 0.1, given=2, lat=lat)
    expected = math.sqrt((4 / 3 * 1 + 2 / 3 * 4) / 2)
    assert out["lat_weighted_rmse"] == pytest.approx([expected], rel=1e-6)
    assert np.allclose(out["lat_weighted_rmse_per_lead"], expected)
    assert out["rmse"] == pytest.approx(math.sqrt(2.5), rel=1e-6) and len(out["rmse_per_lead"]) == 3


def test_train_and_evaluate_wdno_on_era5(tmp_path: Path) -> None:
    src = _era5_nc(tmp_path / "t2m.nc")
    run = tmp_path / "run"
    tiny = [f"data.path={src}", *DATA, "data.anomalies=true", "train.max_steps=3", "train.log_every=1",
            "data.batch_size=4", "model.channel_mults=[1,2]", "eval.n_samples=2"]
    assert main(["train", "wdno_era5", *tiny, "--run-dir", str(run)]) == 0
    assert main(["evaluate", str(run), "--uq", "samples", "eval.n_samples=2"]) == 0
    m = json.loads((run / "eval_samples.json").read_text())
    assert m["given"] == 6 and m["horizon"] == 6 and m["n_test_windows"] == 4
    assert m["channels"] == ["2m_temperature"] and len(m["lat_weighted_rmse_per_lead"]) == 6
    assert all(math.isfinite(v) for v in m["lat_weighted_rmse"] + m["lat_weighted_crps"])
    # an untrained surrogate of the departures (8.4-10.8 K over the test days) stays within their span
    assert 0 < m["lat_weighted_rmse"][0] < 12


def test_bad_split_configs_name_the_problem(tmp_path: Path, capsys) -> None:
    with pytest.raises(ConfigError, match="needs data.path"):  # the packaged config loads; reading needs a source
        prepare_splits(load_experiment("wdno_era5", DATA))
    with pytest.raises(ConfigError, match="not data.generator"):
        load_experiment("wdno_era5", [*DATA, "data.generator=lorenz63"])
    src = _era5_nc(tmp_path / "t2m.nc", days=5)
    with pytest.raises(ConfigError, match="history = 4 differs from model.n_initial = 6"):
        prepare_splits(load_experiment("wdno_era5", [f"data.path={src}", *DATA, "data.history=4"]))
    with pytest.raises(ConfigError, match="test period has 0 time steps"):
        prepare_splits(load_experiment("wdno_era5", [f"data.path={src}", *DATA]))
    with pytest.raises(ConfigError, match=r"missing variable\(s\) \['geopotential'\]"):
        prepare_splits(load_experiment("wdno_era5", [f"data.path={src}", *DATA[1:], "data.channels=[geopotential]"]))
    with pytest.raises(ConfigError, match="set data.test_start too"):
        load_experiment("lorenz_neural_ode", ["data.channels=[2m_temperature]"])
    with pytest.raises(ConfigError, match="set data.test_start too"):
        load_experiment("lorenz_neural_ode", ["data.anomalies=true"])


def test_anomalies_are_departures_from_the_training_hourly_climatology(tmp_path: Path) -> None:
    """t2m = 280 + hours/10 + lat/100: the climatology of hour-of-day h over the 4 training days is
    280 + (h + 36)/10 + lat/100, so a window on day k holds the constant departure (24 k - 36)/10."""
    src = _era5_nc(tmp_path / "t2m.nc")
    fields = prepare_splits(load_experiment("wdno_era5", [f"data.path={src}", *DATA]))
    s = prepare_splits(load_experiment("wdno_era5", [f"data.path={src}", *DATA, "data.anomalies=true"]))
    assert s.attrs["anomalies"] and not fields.attrs["anomalies"]
    lat = torch.tensor(s.attrs["lat"])
    for k in ("train", "val", "test"):
        day = torch.div(_hours(getattr(fields, k).values, lat), 24, rounding_mode="floor")
        expected = (24 * day - 36) / 10
        torch.testing.assert_close(getattr(s, k).values[:, :, 0], expected, atol=2e-4, rtol=0)
