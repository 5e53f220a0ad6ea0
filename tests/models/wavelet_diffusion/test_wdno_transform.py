"""Wavelet-domain representation of WDNO: exact round trips, pywt band order, scaler buffers."""

import io

import numpy as np
import pytest
import pywt
import torch

from sciflow.data.batches import TrajectoryBatch
from sciflow.models.wavelet_diffusion import WDNO, ChannelScaler, Config
from sciflow.models.wavelet_diffusion.transform import (coefficient_shape, from_coefficients, nearest_upsample,
                                                        to_coefficients)

SMALL = dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, groups=4, num_heads=2)


def _batch(B=3, T=9, space=(17,), C=1, Cf=1, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    shape_u = (B, T, *space) if C == 1 else (B, T, C, *space)
    shape_f = (B, T, *space) if Cf == 1 else (B, T, Cf, *space)
    u = torch.randn(shape_u, generator=g, dtype=dtype)
    f = torch.randn(shape_f, generator=g, dtype=dtype) if Cf else None
    return TrajectoryBatch(u, torch.linspace(0, 1, T, dtype=dtype), f)


@pytest.mark.parametrize("mode", ["zero", "periodization"])
@pytest.mark.parametrize("wavelet", ["bior2.4", "haar", "db3"])
def test_coefficients_match_pywt_band_order_and_invert(mode, wavelet):
    x = torch.randn(2, 3, 9, 14, dtype=torch.float64)  # (B, C, T, X), odd T
    z = to_coefficients(x, 2, wavelet, mode)
    assert z.shape[1] == 3 * 4 and tuple(z.shape[2:]) == coefficient_shape((9, 14), wavelet, mode)
    ref = pywt.dwtn(x[1, 2].numpy(), wavelet, mode=mode)
    for b, key in enumerate(["aa", "ad", "da", "dd"]):  # channel c * 4 + b is band b of field c
        np.testing.assert_allclose(z[1, 2 * 4 + b].numpy(), ref[key], atol=1e-12)
    back = from_coefficients(z, 3, 2, wavelet, mode, (9, 14))
    assert torch.allclose(back, x, atol=1e-12)


@pytest.mark.parametrize("space", ["wavelet", "physical"])
@pytest.mark.parametrize("task", ["simulation", "control"])
@pytest.mark.parametrize("mode", ["zero", "periodization"])
def test_encode_decode_round_trip_is_exact(space, task, mode):
    m = WDNO(Config(space=space, task=task, mode=mode, n_initial=2, **SMALL)).double()
    b = _batch()
    m.fit_scaler(b)
    u = b.values.unsqueeze(1)
    f = b.condition.unsqueeze(1)
    z = m.encode(u, f)
    assert all(n % m.multiple == 0 for n in z.shape[2:]), "coefficient grid padded to the U-Net multiple"
    # standardised channels: zero mean, unit variance on the unpadded grid
    grid = coefficient_shape((9, 17), m.wavelet, mode)
    inner = z[:, :, : grid[0], : grid[1]]
    assert torch.allclose(inner.mean((0, 2, 3))[: m.n_u + m.n_f], torch.zeros(m.n_u + m.n_f, dtype=z.dtype), atol=1e-10)
    u2, f2 = m.decode(z, (9, 17))
    assert torch.allclose(u2, u, atol=1e-12) and torch.allclose(f2, f, atol=1e-12)
    # padding is zero and marked known
    known = m.known_mask((9, 17))
    assert known[0, :, grid[0]:].all() and (z[:, :, grid[0]:] == 0).all()


def test_two_dimensional_pde_with_channels_round_trip():
    cfg = Config(dim=2, channels=2, forcing_channels=0, n_initial=3, **SMALL)
    m = WDNO(cfg).double()
    b = _batch(B=2, T=6, space=(10, 9), C=2, Cf=0)
    m.fit_scaler(b)
    u = b.values.movedim(2, 1)
    z = m.encode(u, None)
    assert z.shape[1] == 2 * 8 + 2 * 8 and z.ndim == 5  # W(u - c) and the aligned condition W c
    u2, f2 = m.decode(z, (6, 10, 9))
    assert f2 is None and torch.allclose(u2, u, atol=1e-12)


def test_scaler_statistics_saved_and_restored():
    cfg = Config(**SMALL)
    m = WDNO(cfg)
    b = _batch(dtype=torch.float32)
    m.fit_scaler(b)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh = WDNO(cfg)
    with pytest.raises(RuntimeError, match="fit_scaler"):
        fresh.loss(b)
    fresh.load_state_dict(torch.load(buf))
    assert torch.equal(fresh.scaler.loc, m.scaler.loc) and torch.equal(fresh.scaler.scale, m.scaler.scale)
    assert not torch.allclose(m.scaler.scale, torch.ones_like(m.scaler.scale))
    u, f = b.values.unsqueeze(1), b.condition.unsqueeze(1)
    assert torch.equal(fresh.encode(u, f), m.encode(u, f))
    fresh.loss(b)  # fitted flag restored: no error


def test_channel_scaler_constant_channel_and_pooling():
    s = ChannelScaler(2)
    x = torch.stack([torch.full((4, 5), 3.0), torch.arange(20.0).reshape(4, 5)], 1)  # (4, 2, 5)
    s.fit([x[:2], x[2:, :, :3]])
    assert s.scale[0] == 1.0 and s.loc[0] == 3.0
    pooled = torch.cat([x[:2, 1].reshape(-1), x[2:, 1, :3].reshape(-1)])
    assert torch.isclose(s.loc[1], pooled.mean()) and torch.isclose(s.scale[1], pooled.std(correction=0))
    assert torch.allclose(s.inverse(s(x)), x)
    with pytest.raises(ValueError, match="NaN"):
        s.fit(torch.full((1, 2, 3), float("nan")))


def test_nearest_upsample_identity_on_even_indices():
    x = torch.randn(2, 3, 5, 7)
    up = nearest_upsample(x, (9, 13))
    assert up.shape == (2, 3, 9, 13)
    assert torch.equal(up[..., ::2, ::2], x)
    assert torch.equal(up[..., 1::2, 1::2], x[..., :4, :6])
    # edge padding when the target is longer than twice the input
    assert torch.equal(nearest_upsample(x, (11, 14))[..., -1, :], nearest_upsample(x, (11, 14))[..., -2, :])


@pytest.mark.parametrize("mode", ["zero", "periodization"])
def test_large_mean_fields_scale_like_their_anomalies(mode):
    """A K-valued field (ERA5 t2m ~ 280 K): the per-field mean is removed before the DWT, so in
    ``mode="zero"`` the jump to 0 at the edges no longer dominates the band statistics: the
    channel scales equal those of the anomaly field, and encode/decode is still exact."""
    g = torch.Generator().manual_seed(0)
    anomaly = torch.randn(3, 8, 1, 10, 12, generator=g, dtype=torch.float64)
    cfg = Config(dim=2, channels=1, forcing_channels=0, n_initial=3, mode=mode, **SMALL)
    scales = []
    for offset in (0.0, 280.0):
        m = WDNO(cfg).double()
        b = TrajectoryBatch(anomaly + offset, torch.arange(8.0, dtype=torch.float64))
        m.fit_scaler(b)
        u = b.values.movedim(2, 1)
        u2, _ = m.decode(m.encode(u, None), (8, 10, 12))
        assert torch.allclose(u2, u, atol=1e-10)
        scales.append(m.scaler.scale.clone())
    assert torch.allclose(scales[0], scales[1], rtol=1e-6)


def test_channel_scaler_groups_share_the_rms_scale():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, 10, generator=g) * torch.tensor([3.0, 0.5, 0.1, 1.0]).reshape(1, 4, 1) + 2.0
    s = ChannelScaler(4)
    s.fit(x, groups=(3, 1))
    std = x.transpose(0, 1).reshape(4, -1).std(1, correction=0)
    assert torch.allclose(s.scale[:3], std[:3].pow(2).mean().sqrt().expand(3))
    assert torch.isclose(s.scale[3], std[3])
    assert torch.allclose(s.loc, x.transpose(0, 1).reshape(4, -1).mean(1))
    assert torch.allclose(s.bound, (x - s.loc.reshape(1, 4, 1)).abs().amax((0, 2)) / s.scale, rtol=1e-5)
    with pytest.raises(ValueError, match="groups"):
        s.fit(x, groups=(2, 1))


@pytest.mark.parametrize("scaling", ["field", "channel"])
def test_field_scaling_makes_the_coefficient_error_the_physical_error(scaling):
    """``scaling="field"`` with an orthogonal wavelet in ``periodization`` mode: the field's shared
    scale is its physical std and, by Parseval, the squared distance of two trajectories in the
    scaled coefficients is their physical squared distance over the field variance, so the
    denoising loss weights every sub-band as the physical-space model weights its pixels.
    Per-channel scaling instead weights each band by ``1/std_b^2``: a smooth field's small detail
    bands get ~10-100x the weight of the approximation (the WDNO Burgers gap, issue 9)."""
    T, X = 8, 16
    t = torch.linspace(0, 1, T, dtype=torch.float64)[:, None]
    x = torch.linspace(0, 1, X, dtype=torch.float64)[None]
    g = torch.Generator().manual_seed(0)
    amp = torch.randn(16, 3, 1, 1, generator=g, dtype=torch.float64)
    u = (amp[:, 0] * torch.sin(torch.pi * x) * torch.exp(-t) + amp[:, 1] * torch.sin(2 * torch.pi * x) * t
         + 0.01 * torch.randn(16, T, X, generator=g, dtype=torch.float64))  # smooth: small detail bands
    f = amp[:, 2] * torch.cos(torch.pi * x) * (1 + 0 * t)
    cfg = Config(wavelet="haar", mode="periodization", scaling=scaling, residual=False, **SMALL)
    m = WDNO(cfg).double()
    m.fit_scaler(TrajectoryBatch(u, t[:, 0], f))
    sigma = (u - u.mean()).pow(2).mean().sqrt()
    a, b = u[:8].unsqueeze(1), u[8:].unsqueeze(1)
    za, zb = m.encode(a, f[:8].unsqueeze(1)), m.encode(b, f[8:].unsqueeze(1))
    per_band = (za[:, :4] - zb[:, :4]).pow(2).sum((0, 2, 3))  # the generated group (bands of u); padding is zero
    scale = m.scaler.scale[:4]
    raw = per_band * scale**2  # unscaled coefficient distances per band: sum = physical distance (Parseval)
    assert torch.isclose(raw.sum(), (a - b).pow(2).sum(), rtol=1e-10)
    if scaling == "field":
        # one scale for the 4 bands, the field's RMS about the band means (the physical std up to those means)
        assert torch.all(scale == scale[0]) and torch.isclose(scale[0], sigma, rtol=0.05)
        assert torch.isclose(per_band.sum(), (a - b).pow(2).sum() / scale[0] ** 2, rtol=1e-10)
    else:  # the bands of a smooth field get weights 1/std_b^2 that differ by orders of magnitude
        assert scale.max() / scale.min() > 5
        weight = (per_band / raw) / (per_band / raw)[0]
        assert weight[1:].min() > 25
