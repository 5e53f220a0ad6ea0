"""Mutation guards for the ``sciflow evaluate`` pipeline: the numbers written to ``eval_*.json``.

Each test pins one place where a plausible bug would silently corrupt the reported scores while the
end-to-end CLI tests (which only check ranges) still pass: split conformal calibrated on the
validation windows, per lead time and component, around the ensemble mean (Lei et al. 2018, Alg. 2;
:math:`\\hat q` the :math:`\\lceil (n+1)(1-\\alpha)\\rceil`-th smallest score); the classification
ensemble averaged in probability space (log-mean-exp of member log-softmax, Lakshminarayanan et al.
2017); the given frames kept out of CRPS, latitude-weighted CRPS (Rasp et al. 2020) and the
interval score (Gneiting & Raftery 2007, eq. 43); masked targets kept out of the irregular RMSE;
splits (no validation windows borrowed from the test period, val/test fractions not swapped) and
trained models in eval mode. Trained networks are replaced by constant fakes so every expected
value is exact arithmetic.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from sciflow.cli import evaluation
from sciflow.cli.evaluation import _predictor, evaluate_irregular, forecast_batch, uq_metrics
from sciflow.cli.pipeline import Splits, build_model, load_trained, prepare_splits
from sciflow.config import load_experiment
from sciflow.data.batches import IrregularBatch, TrajectoryBatch
from sciflow.models.base import SciflowModel
from tests._stand_ins import Constant as _Constant
from sciflow.training import CheckpointManager
from sciflow.training.checkpoint import BEST, save_atomic
from sciflow.uq import evaluate, score_prediction
from sciflow.uq.conformal import AbsoluteResidual, SplitConformal
from sciflow.uq.prediction import Prediction
from sciflow.uq.sampling import SamplingPredictor

ALPHA = 0.25  # with n = 11 calibration windows: k = ceil(12 * 0.75) = 9, exact in floating point


class _LogProbs(SciflowModel):
    """Classifier stand-in: member ``i`` returns the log-probabilities stored in ``values[:, i]``."""

    def __init__(self, i: int) -> None:
        super().__init__()
        self.i = i

    def loss(self, batch):
        raise NotImplementedError

    def sample(self, batch, n_samples=1, *, generator=None):
        raise NotImplementedError

    def predict(self, batch, *, generator=None):
        return batch.values[:, self.i]


def _exp(*overrides: str):
    return load_experiment("lorenz_neural_ode", [f"eval.alpha={ALPHA}", *overrides])


def _members(tmp_path: Path, models, monkeypatch) -> None:
    for i in range(len(models)):
        (tmp_path / f"member_{i}").mkdir()
    monkeypatch.setattr(evaluation, "load_trained", lambda exp, d, i: models[i])


def _ranks(n: int, *shape: int) -> torch.Tensor:
    """``(n, *shape)`` with entry ``(i, j, k)`` = ``(i + 1)(j + 1)(k + 1)``: the k-th smallest over
    the first axis is ``k (j + 1)(k + 1)``."""
    out = torch.arange(1.0, n + 1)
    for s in shape:
        out = out[..., None] * torch.arange(1.0, s + 1)
    return out


# ------------------------------------------------------------------ conformal in `sciflow evaluate`


def test_trajectory_conformal_is_calibrated_on_val_per_lead_and_component_around_the_ensemble(
        tmp_path, monkeypatch):
    """Kills: calibration windows cut from the test split / one quantile pooled over components
    (separate_dims=(1,)) / conformal around member 0 instead of the ensemble mean."""
    _members(tmp_path, [_Constant(0.0), _Constant(2.0)], monkeypatch)  # ensemble mean 1
    t = torch.arange(3.0)
    val = TrajectoryBatch(values=_ranks(11, 3, 2), times=t)
    test = TrajectoryBatch(values=torch.full((4, 3, 2), 100.0), times=t)
    conf = _predictor("conformal", _exp("eval.horizon=2"), tmp_path, Splits(val, val, test, {}))
    assert conf.n_calibration == 11
    expected = 9 * _ranks(1, 3, 2)[0] - 1  # 9th smallest |v - 1| per (lead, component)
    torch.testing.assert_close(conf.q, expected, rtol=0, atol=0)
    pred = conf.predict(forecast_batch(test, 2))
    torch.testing.assert_close(pred.upper - pred.lower, 2 * expected.expand(4, 3, 2), rtol=0, atol=0)


def test_irregular_conformal_is_calibrated_on_val_and_scores_observed_targets_only(tmp_path, monkeypatch):
    """Kills: ``predictor.calibrate([splits.test])`` (test leakage) / RMSE over masked-out targets."""
    _members(tmp_path, [_Constant(0.0)], monkeypatch)

    def batch(targets, target_mask=None):
        n = targets.shape[0]
        return IrregularBatch(values=torch.zeros(n, 2, 2), times=torch.arange(2.0).expand(n, 2),
                              mask=torch.ones(n, 2, 2, dtype=torch.bool), targets=targets,
                              target_times=torch.full((n, 2), 3.0), target_mask=target_mask)

    mask = torch.ones(4, 2, 2, dtype=torch.bool)
    mask[:, 1, 1] = False
    y = torch.full((4, 2, 2), 5.0)
    y[:, 1, 1] = 1000.0  # unobserved: never scored
    val = batch(_ranks(11, 2, 2))
    splits = Splits(val, val, batch(y, mask), {"task": "forecasting", "name": "fake"})
    out = evaluate_irregular(_exp(), tmp_path, "conformal", splits)
    q = 9 * _ranks(1, 2, 2)[0]  # [[9, 18], [18, 36]]; the observed ones: 9, 18, 18
    assert out["rmse"] == pytest.approx(5.0)
    assert out["coverage"] == 1.0
    assert out["mean_interval_width"] == pytest.approx(2 * 45 / 3)
    z = statistics.NormalDist().inv_cdf(1 - ALPHA / 2)
    var = (q[mask[0]] / z) ** 2
    nll = 0.5 * (torch.log(2 * math.pi * var) + 25 / var)
    assert out["nll"] == pytest.approx(float(nll.mean()), rel=1e-6)


# ------------------------------------------------------------------ classification ensembles


def test_hmc_noise_is_the_forecast_residual_std(tmp_path, monkeypatch):
    """The HMC likelihood's noise is the trained model's residual std over the forecast steps: the
    given step (copied, residual 0 for a real model) must not pull it down."""
    from sciflow.uq import registry

    _members(tmp_path, [_Constant(0.0)], monkeypatch)
    seen = {}
    monkeypatch.setitem(registry.UQ_METHODS, "hmc", lambda model, **kw: seen.update(kw))
    g = torch.Generator().manual_seed(0)
    values = torch.randn(200, 3, 2, generator=g)
    values[:, 0] = 0.0  # the given step: the constant-0 fake reproduces it exactly
    train = TrajectoryBatch(values=values, times=torch.arange(3.0))
    _predictor("hmc", _exp("eval.horizon=2"), tmp_path, Splits(train, train, train, {"history": 1}))
    expected = values[:, 1:].flatten(2).std(dim=(0, 1)).mean()
    assert seen["noise_std"] == pytest.approx(float(expected), rel=1e-6)


def test_hmc_over_a_large_network_warns(tmp_path, monkeypatch):
    """HMC over more weights than it can mix (docs/uq.md: about 1e4) says so before the long run."""
    from sciflow.uq import registry

    big = _Constant(0.0)
    big.w = torch.nn.Parameter(torch.zeros(evaluation.HMC_MAX_WEIGHTS + 1))
    _members(tmp_path, [big], monkeypatch)
    monkeypatch.setitem(registry.UQ_METHODS, "hmc", lambda model, **kw: None)
    train = TrajectoryBatch(values=torch.randn(8, 3, 2), times=torch.arange(3.0))
    with pytest.warns(RuntimeWarning, match="samples all 10,001 weights"):
        _predictor("hmc", _exp("eval.horizon=2"), tmp_path, Splits(train, train, train, {"history": 1}))


def test_classification_ensemble_averages_probabilities_of_its_members(tmp_path, monkeypatch):
    """Kills: ``- log(M)`` dropped from the log-mean-exp / mean of member log-probabilities
    (geometric mean) / mean of member logits / test metrics computed on the validation split."""
    _members(tmp_path, [_LogProbs(0), _LogProbs(1)], monkeypatch)

    def batch(p, labels):  # p: (batch, member, class) probabilities
        n = p.shape[0]
        return IrregularBatch(values=p.log(), times=torch.arange(2.0).expand(n, 2),
                              mask=torch.ones(p.shape, dtype=torch.bool), labels=torch.tensor(labels))

    test_p = torch.tensor([[[0.9, 0.1], [0.2, 0.8]],    # mixture (0.55, 0.45): class 0, label 1
                           [[0.2, 0.8], [0.6, 0.4]]])   # mixture (0.4, 0.6): class 1, label 1
    val_p = torch.tensor([[[0.7, 0.3], [0.7, 0.3]]])
    splits = Splits(None, batch(val_p, [1]), batch(test_p, [1, 1]), {"task": "classification"})
    out = evaluate_irregular(_exp(), tmp_path, "samples", splits)
    assert out["test_cross_entropy"] == pytest.approx(-(math.log(0.45) + math.log(0.6)) / 2, rel=1e-6)
    assert out["test_accuracy"] == 0.5
    assert out["val_cross_entropy"] == pytest.approx(-math.log(0.3), rel=1e-6)
    assert out["val_accuracy"] == 0.0 and out["test_nonfinite"] == 0 and out["n_test"] == 2


# ------------------------------------------------------------------ scores on the forecast steps


def test_crps_and_interval_score_skip_the_given_frames():
    """Kills: CRPS over the whole window / interval score over the whole window (given frames scored)."""
    truth = torch.ones(2, 3, 1)
    samples = torch.stack([torch.zeros(2, 3, 1), 2 * torch.ones(2, 3, 1)])
    samples[:, :, 0] = 100.0  # the given frame: CRPS 99 there, never scored
    lo, hi = torch.zeros(2, 3, 1), torch.full((2, 3, 1), 2.0)
    lo[:, 0], hi[:, 0] = 50.0, 60.0  # given frame far off: never scored
    lo[:, 2], hi[:, 2] = 2.0, 4.0  # truth 1 below: 2 + 2/0.2 * 1 = 12
    out = uq_metrics(Prediction(mean=samples.mean(0), lower=lo, upper=hi, samples=samples), truth, 0.2)
    assert out["crps"] == pytest.approx(0.5)  # E|X - y| - E|X - X'| / 2 = 1 - 1/2
    assert out["interval_score"] == pytest.approx((2 + 12) / 2)


def test_lat_weighted_crps_skips_the_given_frames_and_weights_latitudes():
    """Kills: lat-weighted CRPS over the given frames too."""
    lat = torch.tensor([0.0, 60.0])  # weights 4/3, 2/3
    truth = torch.ones(1, 4, 1, 2, 3)
    truth[..., 1, :] = 2.0
    samples = torch.zeros(2, 1, 4, 1, 2, 3)
    samples[1, ..., 0, :] = 2.0  # CRPS 1 - 1/2 at latitude 0 (draws 0, 2; truth 1)
    samples[1, ..., 1, :] = 4.0  # CRPS 2 - 1 at latitude 60 (draws 0, 4; truth 2)
    samples[:, :, :2] = 50.0  # the two given frames
    out = uq_metrics(Prediction(mean=samples.mean(0), samples=samples), truth, 0.1, given=2, lat=lat)
    assert out["lat_weighted_crps"] == pytest.approx([(4 / 3 * 0.5 + 2 / 3 * 1.0) / 2], rel=1e-6)


def test_forecast_windows_are_clipped_to_the_trajectory():
    """Kills: horizon clipped to ``T`` instead of ``T - 1`` (a window longer than the trajectory)."""
    b = TrajectoryBatch(values=torch.arange(10.0).reshape(2, 5, 1), times=torch.arange(5.0))
    assert forecast_batch(b, 10).values.shape == (2, 5, 1)
    w = forecast_batch(b, 2)  # windows of 3 at stride (2 + 1) // 2 = 1
    assert w.values.shape == (6, 3, 1) and w.values[:3, 0, 0].tolist() == [0.0, 1.0, 2.0]


# ------------------------------------------------------------------ sciflow.uq.evaluate


def test_uq_evaluate_calibrates_on_the_calibration_batches():
    """Kills: an uncalibrated SplitConformal calibrated on the test batches."""
    t = torch.arange(3.0)
    cal = [TrajectoryBatch(values=_ranks(11, 3, 1), times=t)]
    test = [TrajectoryBatch(values=torch.full((4, 3, 1), 100.0), times=t)]
    cp = SplitConformal(SamplingPredictor(_Constant(0.0)), ALPHA, AbsoluteResidual(), separate_dims=(1,))
    m = evaluate(cp, test, calibration=cal)
    torch.testing.assert_close(cp.q, 9 * _ranks(1, 3, 1)[0], rtol=0, atol=0)
    assert m["coverage"] == 0.0 and m["width"] == pytest.approx(2 * 9 * 2)


def test_score_prediction_fair_crps_and_weighted_rmse():
    """Kills: ``fair=True`` dropped from the ensemble CRPS / weights dropped from the RMSE."""
    y = torch.ones(2, 2)
    samples = torch.stack([torch.zeros(2, 2), 2 * torch.ones(2, 2)])
    out = score_prediction(Prediction(mean=samples.mean(0), samples=samples), y)
    assert out["crps"] == pytest.approx(0.0)  # 1 - (1/2) * 2 (pairs i != j only)
    mean = torch.tensor([[0.0, 3.0], [0.0, 3.0]])
    w = torch.tensor([3.0, 1.0])
    out = score_prediction(Prediction(mean=mean), y, weights=w)
    assert out["rmse"] == pytest.approx(math.sqrt((3 * 1 + 1 * 4) / 4))


# ------------------------------------------------------------------ splits and trained models


def _era5_nc(path: Path) -> Path:
    """Seven days of hourly t2m on a 3 x 4 grid (CDS short names, latitude descending)."""
    hours = np.arange(24 * 7)
    lat, lon = np.array([56.0, 53.0, 50.0]), np.array([-4.0, -2.0, 0.0, 2.0])
    t2m = 280 + hours[:, None, None] / 10 + lat[None, :, None] / 100 + 0 * lon
    xr.Dataset({"t2m": (("time", "latitude", "longitude"), t2m.astype(np.float32))},
               coords={"time": np.datetime64("2019-03-01T00:00", "ns") + hours.astype("timedelta64[h]"),
                       "latitude": lat, "longitude": lon}).to_netcdf(path)
    return path


def test_time_split_without_val_start_has_no_validation_windows(tmp_path):
    """Kills: the test windows used as validation when ``data.val_start`` is unset (conformal would
    then be calibrated on the test period)."""
    src = _era5_nc(tmp_path / "t2m.nc")
    s = prepare_splits(load_experiment("wdno_era5", [
        f"data.path={src}", "data.channels=[2m_temperature]", "data.val_start=null", "data.test_start=2019-03-06",
        "data.window=12", "data.stride=6", "data.coarsen=1", "data.anomalies=false"]))
    assert len(s.val) == 0 and len(s.test) == 4 and len(s.train) == (120 - 12) // 6 + 1
    assert s.attrs["n_windows"] == {"train": 19, "val": 0, "test": 4}


def test_irregular_split_sizes_follow_val_and_test_fractions(tmp_path):
    """Kills: ``data.val_fraction`` and ``data.test_fraction`` swapped on the irregular path."""
    cfg = tmp_path / "lorenz.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"name": "stable_sde", "kind": "lsde", "hidden_dim": 4, "task": "forecasting"},
        "data": {"generator": "lorenz63", "params": {"n": 12, "n_time": 20, "dt": 0.02, "n_obs": 8,
                                                       "rtol": 1e-5, "atol": 1e-5},
                 "n_target": 2, "val_fraction": 0.25, "test_fraction": 0.5}}))
    s = prepare_splits(load_experiment(cfg))
    assert (len(s.train), len(s.val), len(s.test)) == (3, 3, 6)


@pytest.mark.parametrize("which", ["last", "best"])
def test_trained_model_is_loaded_in_eval_mode(tmp_path, which):
    """Kills: ``.eval()`` dropped from load_trained (dropout left on while scoring), either checkpoint."""
    exp = _exp("model.dropout=0.5", "model.width=4", f"eval.checkpoint={which}")
    state = {k: v + 1 for k, v in build_model(exp, 7).state_dict().items()}
    (tmp_path / "checkpoints").mkdir()
    if which == "best":
        save_atomic({"model": state, "step": 1}, tmp_path / "checkpoints" / BEST)
    else:
        CheckpointManager(tmp_path / "checkpoints").save({"model": state, "step": 1})
    model = load_trained(exp, tmp_path)
    assert not model.training and not any(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_uq_metrics_names_both_crps_estimators():
    """Members {0, 2}, truth 1: the empirical ensemble's CRPS is 1 - ½·1 = 0.5, the fair one
    (pairs of distinct members, Ferro 2014) 1 - ½·2 = 0; the given frame is not scored."""
    samples = torch.zeros(2, 3, 4, 2)
    samples[1] = 2.0
    truth = torch.ones(3, 4, 2)
    out = uq_metrics(Prediction.from_samples(samples, ALPHA), truth, ALPHA, given=1)
    assert out["crps"] == pytest.approx(0.5) and out["crps_fair"] == pytest.approx(0.0, abs=1e-12)
