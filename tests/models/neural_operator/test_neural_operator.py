"""Neural-operator models: resolution invariance, rollout/time alignment, overfitting, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sciflow.data.batches import TrajectoryBatch
from sciflow.models.base import SciflowModel
from sciflow.models.neural_operator import Config, NeuralOperator, UNetOperator, relative_l2
from sciflow.nn.fno import FNO


def _band_limited(n: int, batch: int = 3, kmax: int = 3, seed: int = 1, dims: int = 1) -> torch.Tensor:
    """Random trigonometric polynomials of degree <= kmax on the periodic grid i / n."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(n, dtype=torch.float64) / n
    grids = torch.meshgrid(*[x] * dims, indexing="ij")
    u = torch.zeros(batch, *(n,) * dims, dtype=torch.float64)
    for ks in torch.cartesian_prod(*[torch.arange(0, kmax + 1)] * dims).reshape(-1, dims):
        phase = 2 * math.pi * sum(int(k) * xx for k, xx in zip(ks, grids))
        a, b = torch.randn(2, batch, *(1,) * dims, generator=g, dtype=torch.float64)
        u += a * torch.cos(phase) + b * torch.sin(phase)
    return u


# ----------------------------------------------------------------------------- resolution invariance

def test_fno_operator_is_resolution_invariant_and_unet_is_not():
    """Same weights on the 2x grid: the FNO output restricted to the coarse points agrees with the
    coarse output up to the O(1/N) offset of the paper's linspace(0, 1, N) grid channel; a U-Net
    (a local CNN) does not."""
    torch.manual_seed(0)
    fno = NeuralOperator(Config(dim=1, history=1, horizon=1, space_time=False, modes=(8,), width=16)).double()
    unet = UNetOperator(1, 1, 1, base_channels=8).double()
    errs, unet_errs = [], []
    with torch.no_grad():
        for n in (32, 64):
            coarse, fine = _band_limited(n)[:, None], _band_limited(2 * n)[:, None]
            yc, yf = fno(coarse, 1), fno(fine, 1)[..., ::2]
            errs.append(float(relative_l2(yf, yc)))
            unet_errs.append(float(relative_l2(unet(fine)[..., ::2], unet(coarse))))
    assert errs[0] < 3e-3 and errs[1] < 0.6 * errs[0], errs  # consistent, converging like 1/N
    assert min(unet_errs) > 0.1, unet_errs


def test_fno_space_time_resolution_invariance_2d():
    torch.manual_seed(0)
    m = NeuralOperator(Config(dim=2, history=1, rollout="autoregressive", modes=(4,), width=8)).double()
    with torch.no_grad():
        yc = m(_band_limited(16, batch=2, kmax=2, dims=2)[:, None], 2)
        yf = m(_band_limited(32, batch=2, kmax=2, dims=2)[:, None], 2)[..., ::2, ::2]
    assert float(relative_l2(yf, yc)) < 2e-2


def test_fno_padding_per_axis_keeps_periodic_axes_shift_equivariant():
    """FNO-3D pads only the time axis (authors' code): a circular shift in x then commutes with the
    operator (no grid channel), while padding every axis breaks the periodic structure."""
    torch.manual_seed(0)
    x = torch.randn(2, 1, 12, 16, dtype=torch.float64)
    shift = lambda v: torch.roll(v, 5, dims=-1)  # noqa: E731
    time_only = FNO(2, 1, 1, (3, 4), 8, padding=(4, 0), append_grid=False).double()
    every = FNO(2, 1, 1, (3, 4), 8, padding=4, append_grid=False).double()
    every.load_state_dict(time_only.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(time_only(shift(x)), shift(time_only(x)), atol=1e-12, rtol=1e-10)
        assert float(relative_l2(every(shift(x)), shift(every(x)))) > 1e-3
    with pytest.raises(ValueError, match="padding"):
        FNO(2, 1, 1, 3, 8, padding=(1, 2, 3))


# ----------------------------------------------------------------------------- rollout / alignment

class _Shift(nn.Module):
    """An exact one-step operator for advection by one cell per step: u(t+1) = roll(u(t), 1)
    (+ the forcing of the target step when given). Input channels: history frames (oldest first)
    then the forcing."""

    def __init__(self, history: int, forcing: bool) -> None:
        super().__init__()
        self.history, self.forcing = history, forcing
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nxt = torch.roll(x[:, self.history - 1:self.history], 1, dims=-1)
        return nxt + (x[:, self.history:self.history + 1] if self.forcing else 0) + 0 * self.dummy


def _advected(B: int, T: int, n: int, forcing: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(B, T, n, generator=g) if forcing else None
    u = [torch.randn(B, n, generator=g)]
    for t in range(1, T):
        u.append(torch.roll(u[-1], 1, dims=-1) + (f[:, t] if forcing else 0))
    return TrajectoryBatch(values=torch.stack(u, 1), times=torch.arange(T, dtype=torch.float32), condition=f)


@pytest.mark.parametrize("forcing", [False, True])
@pytest.mark.parametrize("unroll", [None, 1, 3])
def test_autoregressive_rollout_is_time_aligned(forcing, unroll):
    H, T = 3, 11
    model = NeuralOperator(Config(dim=1, history=H, rollout="autoregressive", modes=(4,), width=8,
                                  condition_channels=int(forcing), unroll=unroll))
    model.net = _Shift(H, forcing)  # scaling is the identity until fit_scaler is called
    batch = _advected(4, T, 16, forcing)
    out = model.sample(batch, 2)
    assert out.shape == (2, *batch.values.shape)
    torch.testing.assert_close(out[1], batch.values, atol=1e-5, rtol=0)
    assert float(model.loss(batch).total.detach()) < 1e-6
    # an operator one step out of phase is caught
    model.net = _Shift(H - 1, forcing)
    assert float(relative_l2(model.predict(batch), batch.values)) > 0.3


def test_unroll_segments_cover_every_target_step():
    model = NeuralOperator(Config(dim=1, history=2, rollout="autoregressive", modes=(2,), width=4, unroll=4))
    z = torch.arange(11.0)[None, :, None, None].expand(1, 11, 1, 4)
    hist, target, _ = model._segments(z, None)
    covered = sorted({int(v) for v in target[..., 0, 0].flatten()})
    assert covered == list(range(2, 11))
    # each segment's history precedes its targets directly
    torch.testing.assert_close(hist[:, -1, 0, 0] + 1, target[:, 0, 0, 0])


def test_one_shot_space_time_shapes_history_and_padding():
    torch.manual_seed(0)
    cfg = Config(dim=2, channels=2, history=2, modes=(3, 4, 4), width=6, time_padding=3)
    model = NeuralOperator(cfg)
    v = torch.randn(3, 8, 2, 8, 8)
    batch = TrajectoryBatch(values=v, times=torch.linspace(0, 1, 8))
    out = model.sample(batch, 1)[0]
    assert out.shape == v.shape
    torch.testing.assert_close(out[:, :2], v[:, :2])
    assert model.net.padding == (3, 0, 0)
    with pytest.raises(ValueError, match="history=2"):
        model(v[:, :1], 4)


def test_fit_scaler_makes_predictions_equivariant_to_units():
    """Standardisation: a model fitted on data in other units predicts the same trajectory in
    those units."""
    torch.manual_seed(0)
    m = NeuralOperator(Config(dim=1, history=2, rollout="autoregressive", modes=(3,), width=8))
    batch = _advected(3, 6, 16, False)
    m.fit_scaler(batch.values)
    ref = m.predict(batch)
    scaled = TrajectoryBatch(values=batch.values * 300 + 250, times=batch.times)
    m.fit_scaler(scaled.values)
    torch.testing.assert_close(m.predict(scaled), ref * 300 + 250, atol=1e-3, rtol=1e-4)


# ----------------------------------------------------------------------------- training

def _burgers_like(B: int, n: int, T: int, seed: int) -> TrajectoryBatch:
    """Smooth travelling/decaying waves: u(t, x) = sum_k a_k e^{-0.5 k^2 t} sin(2 pi k (x - t/4) + p_k)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(n) / n
    t = torch.linspace(0, 1, T)
    u = torch.zeros(B, T, n)
    for k in (1, 2, 3):
        a = torch.randn(B, 1, 1, generator=g) / k
        p = 2 * math.pi * torch.rand(B, 1, 1, generator=g)
        u += a * torch.exp(-0.5 * k**2 * t)[None, :, None] * torch.sin(2 * math.pi * k * (x - t[:, None] / 4) + p)
    return TrajectoryBatch(values=u, times=t)


@pytest.mark.parametrize("cfg", [
    Config(dim=1, history=1, horizon=1, space_time=False, modes=(8,), width=24),
    Config(dim=1, history=2, rollout="autoregressive", modes=(6,), width=16),
    Config(dim=1, history=1, modes=(4, 6), width=12, time_padding=2),
    Config(dim=1, history=2, rollout="autoregressive", architecture="unet", unet_channels=8, unet_mults=(1, 2),
           unroll=1),
], ids=["fno1d-one-shot", "fno1d-autoregressive", "fno2d-space-time", "unet-autoregressive"])
def test_operator_models_overfit_a_tiny_set(cfg):
    torch.manual_seed(0)
    T = 2 if cfg.horizon == 1 and cfg.history == 1 else 10
    batch = _burgers_like(4, 32, T, seed=3)
    model = NeuralOperator(cfg)
    model.fit_scaler(batch.values)
    first = float(model.loss(batch).total)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(100):
        opt.zero_grad()
        loss = model.loss(batch)
        loss.total.backward()
        opt.step()
    final = float(relative_l2(model.predict(batch)[:, cfg.history:], batch.values[:, cfg.history:]))
    assert final < 0.12 and final < 0.25 * first, (first, final)
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


def test_mc_dropout_samples_differ_only_in_training_mode():
    torch.manual_seed(0)
    m = NeuralOperator(Config(dim=1, history=1, horizon=1, space_time=False, modes=(4,), width=8, dropout=0.2))
    batch = _burgers_like(2, 16, 2, seed=0)
    m.eval()
    s = m.sample(batch, 3)
    assert torch.equal(s[0], s[2])
    m.train()
    s = m.sample(batch, 3)
    assert s.shape == (3, 2, 2, 16) and float((s[0] - s[1]).abs().max()) > 1e-4
    assert isinstance(m, SciflowModel) and not m.stochastic
    # the UQ wrapper sees the same draws: a predictive whose spread is zero only on the given history
    from sciflow.uq import MCDropout

    pred = MCDropout(m, n_passes=6).predict(batch)
    assert pred.samples.shape == (6, 2, 2, 16)
    assert float(pred.samples[:, :, 0].std(0).max()) == 0.0 and float(pred.samples[:, :, 1].std(0).mean()) > 1e-4


# ----------------------------------------------------------------------------- losses and errors

def test_relative_l2_and_mse_losses():
    model = NeuralOperator(Config(dim=1, history=1, horizon=1, space_time=False, modes=(2,), width=4, loss="mse"))
    model.net = nn.Identity()  # predicts u(t1) = u(t0)
    v = torch.stack([torch.ones(2, 8), 2 * torch.ones(2, 8)], 1)  # u1 = 2 u0
    batch = TrajectoryBatch(values=v, times=torch.tensor([0.0, 1.0]))
    out = model.loss(batch)
    assert out.total == out.terms["mse"]
    torch.testing.assert_close(out.terms["mse"], torch.tensor(1.0))  # (1 - 2)^2
    torch.testing.assert_close(out.terms["relative_l2"], torch.tensor(0.5))  # |1 - 2| / 2
    torch.testing.assert_close(relative_l2(torch.zeros(2, 3), torch.tensor([[3.0, 4, 0], [0, 0, 1]]), reduce=False),
                               torch.ones(2))


def test_clear_errors():
    with pytest.raises(ValueError, match="set horizon"):
        Config(space_time=False)
    with pytest.raises(ValueError, match="modes"):
        Config(dim=2, modes=(4, 4))
    with pytest.raises(ValueError, match="dim"):
        Config(dim=3)
    m = NeuralOperator(Config(dim=1, history=2, rollout="autoregressive", modes=(2,), width=4, horizon=3))
    with pytest.raises(ValueError, match="horizon=3"):
        m.loss(TrajectoryBatch(values=torch.randn(2, 4, 8), times=torch.arange(4.0)))
    with pytest.raises(ValueError, match=r"\(batch, time, 1, 1 space axes\)"):
        m.loss(TrajectoryBatch(values=torch.randn(2, 5, 3, 8, 8), times=torch.arange(5.0)))
    forced = NeuralOperator(Config(dim=1, history=1, rollout="autoregressive", modes=(2,), width=4,
                                   condition_channels=1))
    with pytest.raises(ValueError, match="condition"):
        forced.loss(TrajectoryBatch(values=torch.randn(2, 4, 8), times=torch.arange(4.0)))
    with pytest.raises(TypeError, match="TrajectoryBatch"):
        m.loss(torch.randn(2, 5, 8))


@pytest.mark.parametrize("name", ["fno_burgers", "fno_navier_stokes", "wdno_navier_stokes", "wdno_era5"])
def test_packaged_configs_build_their_models(name):
    from pathlib import Path

    import sciflow
    from sciflow.config import load_experiment
    from sciflow.models.registry import MODELS

    exp = load_experiment(Path(sciflow.__file__).parent / "configs" / f"{name}.yaml")
    model = MODELS[exp.model.name](exp.model.config)
    assert isinstance(model, SciflowModel)
    if isinstance(model, NeuralOperator):  # one training step on data of the configured layout
        cfg = model.cfg
        T = cfg.history + (cfg.horizon or 2)
        space = (32,) * cfg.dim
        batch = TrajectoryBatch(values=torch.randn(2, T, *space), times=torch.arange(float(T)))
        model.fit_scaler(batch)
        model.loss(batch).total.backward()
