"""evaluate(): metrics against direct score calls; plots written as PNG; registry builds each method."""

from __future__ import annotations

import json

import pytest
import torch

from sciflow.data.batches import TrajectoryBatch
from sciflow.nn.mlp import MLP
from sciflow.uq import UQ_METHODS, DeepEnsemble, evaluate, scores as S
from sciflow.uq.conformal import SplitConformal
from sciflow.uq.heads import GaussianForecaster, PointForecaster
from sciflow.uq.prediction import Prediction
from sciflow.uq.sampling import SamplingPredictor

T = torch.tensor([0.0, 1.0, 2.0])


def _batches(n_batches, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        x0 = torch.randn(32, 4, generator=g)
        v = torch.stack([x0, 0.9 * x0, 0.8 * x0], 1) + 0.1 * torch.randn(32, 3, 4, generator=g)
        out.append(TrajectoryBatch(v, T))
    return out


def test_evaluate_matches_direct_scores_and_writes_plots(tmp_path):
    torch.manual_seed(0)
    model = GaussianForecaster(MLP(4, 2 * 2 * 4, width=16, depth=1), horizon=2)
    test = _batches(2, 1)
    m = evaluate(SamplingPredictor(model, n_samples=20), test, out_dir=tmp_path,
                 generator=torch.Generator().manual_seed(0))
    # recompute directly
    with torch.no_grad():
        mv = [model.predict_mean_var(b) for b in test]
    mean = torch.cat([a for a, _ in mv])
    var = torch.cat([b for _, b in mv])
    y = torch.cat([b.values[:, 1:] for b in test])
    assert m["rmse"] == pytest.approx(S.rmse(mean, y).item(), rel=1e-6)
    assert m["nll"] == pytest.approx(S.gaussian_nll(mean, var, y).item(), rel=1e-6)
    p = Prediction.from_gaussian(mean, var, 0.1)
    assert m["coverage"] == pytest.approx(S.interval_coverage(p.lower, p.upper, y).item(), rel=1e-6)
    assert m["n_samples"] == 20 and m["n"] == 64
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["rmse"] == pytest.approx(m["rmse"])
    for name in ("reliability.png", "pit_histogram.png", "spread_skill.png", "rank_histogram.png", "band.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_evaluate_calibrates_conformal_and_rejects_bad_input():
    model = PointForecaster(MLP(4, 8, width=8, depth=1), horizon=2)
    cp = SplitConformal(SamplingPredictor(model), 0.1, separate_dims=(1,))
    with pytest.raises(ValueError, match="calibration"):
        evaluate(cp, _batches(1, 0))
    from sciflow.uq.conformal import AbsoluteResidual
    cp = SplitConformal(SamplingPredictor(model), 0.1, AbsoluteResidual(), separate_dims=(1,))
    m = evaluate(cp, _batches(10, 3), calibration=_batches(10, 2))
    assert abs(m["coverage"] - 0.9) < 0.03
    with pytest.raises(TypeError, match="Predictor"):
        evaluate(model, _batches(1, 0))


def test_registry_builds_every_method():
    torch.manual_seed(0)
    train = _batches(1, 5)
    drop = PointForecaster(MLP(4, 8, width=8, depth=1, dropout=0.2), horizon=2)
    gm = GaussianForecaster(MLP(4, 16, width=8, depth=1), horizon=2)
    assert set(UQ_METHODS) == {"samples", "mc-dropout", "ensemble", "hmc", "laplace", "conformal"}
    built = {
        "samples": UQ_METHODS["samples"](gm, n_samples=8),
        "mc-dropout": UQ_METHODS["mc-dropout"](drop, n_samples=8),
        "ensemble": UQ_METHODS["ensemble"](factory=lambda: GaussianForecaster(MLP(4, 16, width=8, depth=1), horizon=2),
                                            train=train, n_members=2, steps=3),
        "hmc": UQ_METHODS["hmc"](PointForecaster(MLP(4, 8, width=4, depth=1), horizon=2), train=train,
                                 n_samples=4, n_warmup=0, n_chains=2, n_leapfrog=2),
        "laplace": UQ_METHODS["laplace"](PointForecaster(MLP(4, 8, width=4, depth=1), horizon=2), train=train,
                                         calibration=_batches(1, 6), n_samples=8),
        "conformal": UQ_METHODS["conformal"](gm, n_samples=8),
    }
    assert built["laplace"].n_params == 4 * 8 + 8
    with pytest.raises(ValueError, match="needs the training batches"):
        UQ_METHODS["laplace"](PointForecaster(MLP(4, 8, width=4, depth=1), horizon=2))
    assert isinstance(built["ensemble"], DeepEnsemble)
    for name, pred in built.items():
        kw = {"calibration": train} if name == "conformal" else {}
        m = evaluate(pred, _batches(1, 9), **kw)
        assert m["coverage"] >= 0 and m["rmse"] > 0, name
