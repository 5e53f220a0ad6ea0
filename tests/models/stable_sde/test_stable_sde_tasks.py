"""Stable neural SDEs learn: classification of irregular, partly missing series and forecasting
with a predictive distribution (CRPS vs a persistence forecast)."""

from __future__ import annotations

import pytest
import torch

from sciflow.data.batches import IrregularBatch
from sciflow.models.stable_sde import Config, StableSDE
from sciflow.uq.scores import crps_ensemble, interval_coverage


def two_frequencies(n, seed, T=16, missing=0.5):
    """Class 0: (sin t, cos t), class 1: (sin 2t, cos 2t) on random times in [0, 4], random phase,
    noise 0.1, ``missing`` of the values removed per channel."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    t = torch.sort(torch.rand(n, T, generator=g), 1).values * 4 + torch.arange(T) * 1e-3
    w = (1.0 + y.float())[:, None]
    ph = torch.rand(n, 1, generator=g) * 0.5
    x = torch.stack([torch.sin(w * t + ph), torch.cos(w * t + ph)], -1) + 0.1 * torch.randn(n, T, 2, generator=g)
    m = torch.rand(n, T, 2, generator=g) > missing
    m[:, 0] = True
    return IrregularBatch(torch.where(m, x, torch.zeros(())), t, m, labels=y)


def linear_trends(n, seed, T=12, missing=0.3):
    """x(t) = a + s t + 0.05 ε observed on random times in [0, 2]; targets at t = 2.25 ... 3."""
    g = torch.Generator().manual_seed(seed)
    a = 0.5 * torch.randn(n, 1, 1, generator=g)
    s = torch.randn(n, 1, 1, generator=g)
    t = torch.sort(torch.rand(n, T, generator=g), 1).values * 2 + torch.arange(T) * 1e-3
    tt = torch.tensor([2.25, 2.5, 2.75, 3.0]).expand(n, 4).contiguous()
    x = a + s * t[..., None] + 0.05 * torch.randn(n, T, 1, generator=g)
    y = a + s * tt[..., None] + 0.05 * torch.randn(n, 4, 1, generator=g)
    m = torch.rand(n, T, 1, generator=g) > missing
    m[:, 0] = m[:, -1] = True
    return IrregularBatch(torch.where(m, x, torch.zeros(())), t, m, targets=y, target_times=tt)


def fit(model, batch, steps, lr=1e-2):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    first = None
    for _ in range(steps):
        out = model.loss(batch)
        first = float(out.total.detach()) if first is None else first
        opt.zero_grad()
        out.total.backward()
        opt.step()
    return first, out


def _classify(kind, steps, **kw):
    train, test = two_frequencies(48, 0), two_frequencies(48, 1)
    torch.manual_seed(0)
    m = StableSDE(Config(kind=kind, input_channels=2, hidden_dim=8, n_classes=2, dropout=0.0, **kw))
    first, last = fit(m, train, steps)
    m.calibrate(train)
    m.eval()
    acc = (m.predict(test, generator=torch.Generator().manual_seed(0)).argmax(-1) == test.labels).float().mean()
    return first, last, float(acc)


def test_lnsde_classifies_irregular_series_with_half_the_values_missing():
    first, last, acc = _classify("lnsde", 40)
    assert float(last.total.detach()) < 0.5 * first
    assert acc >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lsde", "gsde", "neural_sde", "neural_ode", "neural_cde", "ode_rnn"])
@pytest.mark.parametrize("variant", ["paper", "official"])
def test_every_kind_classifies_the_two_frequency_task(kind, variant):
    first, last, acc = _classify(kind, 80, variant=variant)
    assert acc >= 0.85


def test_lnsde_forecast_distribution_beats_persistence_in_crps():
    train, test = linear_trends(64, 0), linear_trends(64, 1)
    torch.manual_seed(0)
    m = StableSDE(Config(kind="lnsde", input_channels=1, hidden_dim=8, task="forecasting"))
    first, last = fit(m, train, 60)
    assert float(last.total.detach()) < first
    m.eval()
    with torch.no_grad():
        samples = m.sample(test, 64, generator=torch.Generator().manual_seed(0))   # (64, B, 4, 1)
        mean = m.predict(test, 16, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (64, 64, 4, 1) and torch.isfinite(samples).all()
    crps = float(crps_ensemble(samples, test.targets))
    persistence = float((test.values[:, -1:] - test.targets).abs().mean())   # CRPS of a point forecast = MAE
    climatology = float((train.targets.mean() - test.targets).abs().mean())
    assert crps < 0.85 * persistence
    assert crps < 0.3 * climatology
    assert float((mean - test.targets).abs().mean()) < persistence
    cover = float(interval_coverage(samples.quantile(0.05, 0), samples.quantile(0.95, 0), test.targets))
    assert cover >= 0.6                                   # not a collapsed (overconfident) distribution


def test_interpolation_targets_inside_the_observation_window():
    """Interpolation: targets at held-out times inside [t_0, t_T]; the fitted mean tracks them
    better than the mean of the observed values of each series."""
    g = torch.Generator().manual_seed(3)
    n, T = 48, 14
    t = torch.linspace(0, 3, T).expand(n, T).contiguous()
    ph = torch.rand(n, 1, generator=g) * 6.28
    x = torch.sin(t + ph)[..., None]
    hold = torch.zeros(n, T, 1, dtype=torch.bool)
    hold[:, 3::4] = True
    obs = ~hold
    tt = t[:, 3::4].contiguous()
    batch = IrregularBatch(torch.where(obs, x, torch.zeros(())), t, obs, targets=x[:, 3::4], target_times=tt)
    torch.manual_seed(0)
    m = StableSDE(Config(kind="lnsde", input_channels=1, hidden_dim=8, task="interpolation", likelihood="mse"))
    fit(m, batch, 60)
    m.eval()
    pred = m.predict(batch, 8, generator=torch.Generator().manual_seed(0))
    series_mean = (batch.values.sum(1, keepdim=True) / obs.sum(1, keepdim=True))
    assert float((pred - batch.targets).abs().mean()) < 0.6 * float((series_mean - batch.targets).abs().mean())


def test_bf16_autocast_keeps_the_latent_path_and_the_likelihood_in_float32():
    """``train.precision=bf16``: the initial map's bf16 output used to make the latent state, the
    time grid, the Brownian increments and the Gaussian likelihood bf16 (the loss at the same
    weights 3e-3 off on the packaged Lorenz experiment, 8 significant bits throughout); now only
    the networks run in bf16."""
    batch = linear_trends(16, 0)
    torch.manual_seed(0)
    m = StableSDE(Config(kind="lnsde", input_channels=1, hidden_dim=8, task="forecasting"))
    losses = []
    for autocast in (False, True):
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = m.loss(batch).total
        assert loss.dtype == torch.float32
        losses.append(float(loss.detach()))
    assert abs(losses[1] - losses[0]) < 2e-3 * abs(losses[0]), losses
