"""Mutation guards for the shared layers: modified MLP, random weight factorisation, Fourier
features, plain MLP init, GCN readout/init and the DDPM U-Net's residual block, attention,
default attention level and divisibility check.

Each test kills one or more plausible bugs that the older tests in ``tests/nn`` let through.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sciflow.nn import GCNConv, MLP, FactorizedLinear, FourierFeatures, ModifiedMLP, mean_pool
from sciflow.nn.factorized import dense
from sciflow.nn.unet import UNet, _Attention, _ResBlock


def test_modified_mlp_has_depth_gated_layers_matching_the_code_form() -> None:
    """Kills ``range(depth - 1)`` gated layers (paper count instead of the code's ``depth`` gates)."""
    g = torch.Generator().manual_seed(0)
    net = ModifiedMLP(3, 2, width=8, depth=2, generator=g).double()
    assert len(net.hidden) == 2
    x = torch.rand(5, 3, generator=g, dtype=torch.float64)
    u, v = torch.tanh(net.encoder_u(x)), torch.tanh(net.encoder_v(x))
    h = x
    for k in range(2):
        z = torch.tanh(net.hidden[k](h))
        h = z * u + (1 - z) * v
    torch.testing.assert_close(net(x), net.output(h), rtol=0, atol=1e-14)


def test_factorized_scale_init_has_the_papers_mean_and_std() -> None:
    """Kills a wrong default ``mean`` (1.0 in Wang et al. 2022) or ``std`` (0.1) of ``s``."""
    g = torch.Generator().manual_seed(1)
    layer = FactorizedLinear(4, 20000, generator=g)
    s = layer.s.detach()
    assert abs(s.mean().item() - 1.0) < 0.005
    assert abs(s.std().item() - 0.1) < 0.005


def test_factorized_dense_draws_from_the_given_generator() -> None:
    """Kills ``dense(factorized=True)`` dropping ``generator`` (init no longer reproducible)."""
    a = dense(6, 5, factorized=True, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(123)  # the global stream must not matter
    b = dense(6, 5, factorized=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.s, b.s) and torch.equal(a.v, b.v)
    direct = FactorizedLinear(6, 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.weight, direct.weight)


def test_factorized_and_fourier_reject_bad_scales() -> None:
    """Kills a removed/loosened ``std >= 0`` check and ``scale > 0`` weakened to ``scale >= 0``."""
    with pytest.raises(ValueError, match="FactorizedLinear std must be >= 0, got -0.5"):
        FactorizedLinear(2, 3, std=-0.5)
    with pytest.raises(ValueError, match="FourierFeatures scale must be > 0, got 0.0"):
        FourierFeatures(2, 3, scale=0.0)


def test_mlp_weights_are_glorot_normal_not_uniform() -> None:
    """Kills ``xavier_uniform_`` for the MLP kernels: a normal has tails past the uniform bound."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = MLP(256, 256, width=256, depth=1)
    w = net.net[0].weight.detach()
    bound = math.sqrt(6.0 / 512)
    assert abs(w.std().item() - math.sqrt(2.0 / 512)) < 0.002
    assert (w.abs() > bound).float().mean().item() > 0.05  # ~8 % for a normal, 0 for a uniform


def test_mean_pool_is_a_mean_over_points() -> None:
    """Kills ``mean_pool`` summing instead of averaging over the point axis."""
    h = torch.arange(24.0).reshape(2, 3, 4)
    torch.testing.assert_close(mean_pool(h), torch.tensor([[4.0, 5, 6, 7], [16, 17, 18, 19]]))


def test_gcnconv_weight_is_glorot_uniform() -> None:
    """Kills a non-Glorot init of the GCN kernel (Kipf & Welling use Glorot-uniform)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        conv = GCNConv(300, 200)
    bound = math.sqrt(6.0 / 500)
    w = conv.weight.detach()
    assert w.abs().max().item() <= bound
    assert abs(w.std().item() - bound / math.sqrt(3.0)) < 0.002


def _resblock(c_in: int, c_out: int) -> _ResBlock:
    return _ResBlock(1, c_in, c_out, emb=6, groups=2, dropout=0.0, padding_mode="zeros").double()


def test_resblock_adds_the_time_embedding_between_the_convolutions() -> None:
    """Kills the time embedding multiplied into (instead of added to) the first conv's output."""
    torch.manual_seed(0)
    block = _resblock(4, 4)
    x, e = torch.randn(2, 4, 8, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64)
    seen = []
    block.norm2.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    block(x, e)
    expect = block.conv1(F.silu(block.norm1(x))) + block.emb(F.silu(e))[:, :, None]
    torch.testing.assert_close(seen[0], expect, rtol=0, atol=1e-13)


def test_resblock_identity_skip_when_widths_match() -> None:
    """Kills ``skip`` always a 1x1 conv: with equal widths the residual is the identity, so a block
    whose second conv is zero returns its input exactly."""
    torch.manual_seed(0)
    block = _resblock(4, 4)
    with torch.no_grad():
        block.conv2.weight.zero_()
        block.conv2.bias.zero_()
    x = torch.randn(2, 4, 8, dtype=torch.float64)
    assert isinstance(block.skip, torch.nn.Identity)
    assert torch.equal(block(x, torch.randn(2, 6, dtype=torch.float64)), x)


def test_attention_matches_softmax_qk_reference_with_residual() -> None:
    """Kills q/k swapped in the attention call and the dropped residual ``x +``."""
    torch.manual_seed(0)
    att = _Attention(1, 8, heads=2, groups=2).double()
    x = torch.randn(3, 8, 5, dtype=torch.float64)
    qkv = att.qkv(att.norm(x)).reshape(3, 3, 2, 4, 5)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # (b, heads, d, positions)
    w = torch.softmax(torch.einsum("bhdi,bhdj->bhij", q, k) / math.sqrt(4), dim=-1)
    h = torch.einsum("bhij,bhdj->bhdi", w, v).reshape(3, 8, 5)
    torch.testing.assert_close(att(x), x + att.proj(h), rtol=0, atol=1e-12)


def test_unet_default_attention_only_at_the_lowest_resolution() -> None:
    """Kills the default ``attention_levels`` pointing at level 0 (full resolution)."""
    net = UNet(1, 1, 1, base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1, groups=2, num_heads=2)
    kinds = [[isinstance(a, _Attention) for a in level.attns] for level in net.down]
    assert kinds == [[False], [False], [True]]


def test_unet_checks_every_spatial_axis_for_divisibility() -> None:
    """Kills the divisibility check looking only at the last spatial axis."""
    net = UNet(2, 1, 1, base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=1, groups=2, num_heads=2)
    with pytest.raises(ValueError, match=r"needs spatial sizes divisible by 4, got \(6, 8\); pad the input"):
        net(torch.zeros(1, 1, 6, 8), 0.5)
