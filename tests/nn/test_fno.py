"""Fourier neural operator: spectral convolution numerics, resolution invariance, FNO shapes."""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.nn.fno import FNO, FNO1d, FNO2d, FNO3d, SpectralConv


def _band_limited(n: tuple[int, ...], kmax: int, channels: int, seed: int) -> torch.Tensor:
    """A random trigonometric polynomial of degree < kmax per axis, sampled on the periodic grid."""
    g = torch.Generator().manual_seed(seed)
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float64) / s for s in n], indexing="ij")
    out = torch.zeros(channels, *n, dtype=torch.float64)
    for c in range(channels):
        for ks in torch.cartesian_prod(*[torch.arange(-kmax + 1, kmax)] * len(n)).reshape(-1, len(n)):
            phase = sum(int(k) * x for k, x in zip(ks, grids))
            a, b = torch.randn(2, generator=g, dtype=torch.float64)
            out[c] += a * torch.cos(2 * math.pi * phase) + b * torch.sin(2 * math.pi * phase)
    return out[None]


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_spectral_conv_resolution_invariance(dim):
    torch.manual_seed(0)
    layer = SpectralConv(2, 3, (4,) * dim).double()
    coarse_n, fine_n = (8,) * dim, (16,) * dim
    kmax = 3
    y_coarse = layer(_band_limited(coarse_n, kmax, 2, seed=1))
    y_fine = layer(_band_limited(fine_n, kmax, 2, seed=1))
    assert y_coarse.shape == (1, 3, *coarse_n)
    sub = y_fine[(slice(None), slice(None), *(slice(None, None, 2),) * dim)]
    torch.testing.assert_close(sub, y_coarse, atol=1e-12, rtol=1e-12)
    assert y_coarse.abs().max() > 1e-3


def test_spectral_conv_matches_direct_fourier_multiplier_and_truncates():
    torch.manual_seed(0)
    layer = SpectralConv(1, 1, (3,)).double()
    n = 32
    x = torch.linspace(0, 1, n + 1, dtype=torch.float64)[:-1]
    w = torch.view_as_complex(layer.weight[0, 0, 0])  # (modes,)
    # a single mode k < modes is multiplied by the complex weight R_k: cos -> Re(R e^{ikx})
    k = 2
    u = torch.cos(2 * math.pi * k * x)
    expected = (w[k] * torch.exp(2j * math.pi * k * x)).real
    torch.testing.assert_close(layer(u[None, None])[0, 0], expected, atol=1e-12, rtol=0)
    # modes at or above the cut-off are removed
    high = torch.sin(2 * math.pi * 3 * x) + torch.cos(2 * math.pi * 7 * x)
    assert layer(high[None, None]).abs().max() < 1e-12


def test_spectral_conv_gradcheck():
    torch.manual_seed(0)
    layer = SpectralConv(2, 2, (2, 3)).double()
    x = torch.randn(1, 2, 6, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


@pytest.mark.parametrize(
    "factory,shape", [(FNO1d, (2, 1, 64)), (FNO2d, (2, 1, 32, 24)), (FNO3d, (1, 1, 16, 16, 20))]
)
def test_published_fno_shapes_and_gradients(factory, shape):
    torch.manual_seed(0)
    net = factory(padding=2) if factory is FNO3d else factory()
    y = net(torch.randn(*shape))
    assert y.shape == shape
    y.pow(2).mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_published_widths_and_modes():
    assert FNO1d().spectral[0].modes == (16,) and FNO1d().lift.out_channels == 64
    assert FNO2d().spectral[0].modes == (12, 12) and FNO2d().lift.out_channels == 32
    assert FNO3d().spectral[0].modes == (8, 8, 8) and FNO3d().lift.out_channels == 20


def test_clear_errors():
    with pytest.raises(ValueError, match="fewer than 2 \\* modes"):
        SpectralConv(1, 1, (16,))(torch.randn(1, 1, 20))
    with pytest.raises(ValueError, match="expects"):
        FNO(2, 1, 1, 4, 8)(torch.randn(1, 2, 16, 16))
    with pytest.raises(ValueError, match="needs 2 modes"):
        FNO(2, 1, 1, (4, 4, 4), 8)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    net = FNO(2, 1, 1, modes=4, width=8).double()
    x = torch.randn(2, 1, 16, 12, dtype=torch.float64)
    ref = net(x)
    torch.testing.assert_close(net.cuda()(x.cuda()).cpu(), ref, atol=1e-10, rtol=1e-10)


@pytest.mark.gpu
def test_fno_trains_under_bf16_autocast() -> None:
    """``train.precision=bf16``: the spectral convolution runs its FFTs in float32 (cuFFT has no bf16)."""
    torch.manual_seed(0)
    net = FNO(1, 2, 1, modes=8, width=16).cuda()
    x = torch.randn(3, 2, 64, device="cuda")
    ref = net(x)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = net(x)
    assert torch.isfinite(y).all()
    assert (y.float() - ref).norm() / ref.norm() < 5e-2  # bf16 matmuls, float32 spectra
    y.float().pow(2).mean().backward()
    assert all(torch.isfinite(q.grad).all() for q in net.parameters() if q.grad is not None)


def test_spectral_conv_takes_weights_from_a_flat_vector() -> None:
    """HMC evaluates the network with ``functional_call`` on views into one flat parameter vector,
    at odd offsets that ``torch.view_as_complex`` refuses: the spectral weights must work as such
    views."""
    from torch.func import functional_call

    torch.manual_seed(0)
    conv = SpectralConv(2, 3, (4,)).double()
    x = torch.randn(5, 2, 16, dtype=torch.float64)
    ref = conv(x)
    flat = torch.cat([torch.zeros(1, dtype=torch.float64), *(p.detach().reshape(-1) for p in conv.parameters())])
    views, k = {}, 1  # offset 1: odd
    for n, p in conv.named_parameters():
        views[n] = flat[k:k + p.numel()].view_as(p)
        k += p.numel()
    assert views["weight"].storage_offset() % 2 == 1
    torch.testing.assert_close(functional_call(conv, views, (x,)), ref, rtol=0, atol=0)
    # the layer is linear in its weights: doubled weights, doubled output (the views are really read)
    torch.testing.assert_close(functional_call(conv, {"weight": 2 * views["weight"]}, (x,)), 2 * ref)


def _spectral_conv_in_place(conv: SpectralConv, x: torch.Tensor) -> torch.Tensor:
    """The textbook form: the corner modes written into a zero spectrum (Li et al. 2021, Fig. 2)."""
    d = len(conv.modes)
    x_ft = torch.fft.rfftn(x, dim=tuple(range(-d, 0)))
    w = torch.view_as_complex(conv.weight.detach().contiguous())
    out = x_ft.new_zeros(x.shape[0], conv.out_channels, *x_ft.shape[2:])
    for c, idx in enumerate(conv._corners()):
        sel = (slice(None), slice(None), *idx)
        out[sel] = torch.einsum("bi...,io...->bo...", x_ft[sel], w[c])
    return torch.fft.irfftn(out, s=x.shape[2:], dim=tuple(range(-d, 0)))


@pytest.mark.parametrize("modes,spatial", [((5,), (16,)), ((3, 4), (6, 12)), ((2, 3, 2), (8, 7, 6))])
def test_spectral_conv_places_every_corner(modes, spatial) -> None:
    """The out-of-place assembly puts each sign corner of the kept modes where the in-place form
    writes it (including an axis with exactly 2 * modes points, no gap, and an odd length)."""
    torch.manual_seed(0)
    conv = SpectralConv(2, 3, modes).double()
    x = torch.randn(4, 2, *spatial, dtype=torch.float64)
    torch.testing.assert_close(conv(x), _spectral_conv_in_place(conv, x), rtol=1e-12, atol=1e-12)


def test_spectral_conv_vmaps_over_weights() -> None:
    """HMC evaluates its chains with ``vmap`` over batched weights (``functional_call``): the layer
    must take it (an in-place write of batched modes into an unbatched spectrum fails)."""
    from torch.func import functional_call, vmap

    torch.manual_seed(0)
    conv = SpectralConv(2, 3, (3, 4)).double()
    x = torch.randn(5, 2, 8, 10, dtype=torch.float64)
    ws = torch.randn(4, *conv.weight.shape, dtype=torch.float64)
    out = vmap(lambda w: functional_call(conv, {"weight": w}, (x,)))(ws)
    ref = torch.stack([functional_call(conv, {"weight": w}, (x,)) for w in ws])
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
