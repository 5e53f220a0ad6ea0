r"""U-Net noise-prediction network for diffusion models, in 1, 2 or 3 spatial dimensions.

The architecture of Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models" (NeurIPS 2020,
App. B), itself a PixelCNN++ / Wide-ResNet U-Net (Ronneberger et al. 2015):

* the diffusion time :math:`t` enters through the Transformer sinusoidal embedding (Vaswani et al.
  2017, Sec. 3.5), :math:`e(t) = [\sin(t\,\omega_k), \cos(t\,\omega_k)]_{k < d/2}` with
  :math:`\omega_k = P^{-k/(d/2)}`, :math:`P = 10^4`, followed by a two-layer SiLU MLP;
* each resolution level has ``num_res_blocks`` residual blocks
  :math:`h \mapsto h + \mathrm{Conv}(\mathrm{SiLU}(\mathrm{GN}(\mathrm{Conv}(\mathrm{SiLU}(\mathrm{GN}(h)))
  + W e)))` (GroupNorm, SiLU, the time embedding added per channel between the convolutions);
* multi-head self-attention over all positions at the chosen (by default the lowest) resolutions
  and in the middle block;
* strided-convolution downsampling by 2 per level, nearest-neighbour upsampling + convolution,
  skip connections concatenated on the way up; channel widths ``base_channels * channel_mults[l]``.

The spatial dimension (``dim`` = 1, 2 or 3) is a constructor argument: WDNO (Hu et al., ICLR 2025)
uses the 2-D net on (time, x) wavelet coefficients of 1-D PDEs and the 3-D net on (time, x, y).
Deviations from DDPM: no zero-initialised output convolutions (default PyTorch init, so every
parameter receives gradient from the first step); ``padding_mode`` lets periodic problems use
circular padding.

Shapes: ``x`` ``(batch, in_channels, *spatial)`` with every spatial size divisible by
``2 ** (len(channel_mults) - 1)``, ``t`` ``(batch,)`` or a scalar -> ``(batch, out_channels, *spatial)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["sinusoidal_embedding", "UNet"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Transformer positional encoding of (possibly fractional) times: ``(batch,) -> (batch, dim)``.

    First half sines, second half cosines of ``t * max_period ** (-k / (dim/2))``; ``dim`` even.
    Computed in float32, or float64 for float64 times (never in half precision: ``t`` up to
    ``1e3`` times ``sin`` needs the mantissa).
    """
    if dim % 2:
        raise ValueError(f"sinusoidal embedding dimension must be even, got {dim}")
    if t.ndim != 1:
        raise ValueError(f"times must have shape (batch,), got {tuple(t.shape)}")
    half = dim // 2
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=dtype) / half)
    args = t.to(dtype)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels)


class _ResBlock(nn.Module):
    def __init__(self, dim: int, c_in: int, c_out: int, emb: int, groups: int, dropout: float, padding_mode: str):
        super().__init__()
        conv = _CONV[dim]
        self.norm1 = _norm(c_in, groups)
        self.conv1 = conv(c_in, c_out, 3, padding=1, padding_mode=padding_mode)
        self.emb = nn.Linear(emb, c_out)
        self.norm2 = _norm(c_out, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv(c_out, c_out, 3, padding=1, padding_mode=padding_mode)
        self.skip = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb)).reshape(*emb.shape[:1], -1, *([1] * (x.ndim - 2)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Multi-head self-attention over all spatial positions, pre-GroupNorm, residual."""

    def __init__(self, dim: int, channels: int, heads: int, groups: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention: {channels} channels not divisible by {heads} heads")
        conv = _CONV[dim]
        self.heads = heads
        self.norm = _norm(channels, groups)
        self.qkv = conv(channels, 3 * channels, 1)
        self.proj = conv(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, -1)  # (b, 3, heads, d, positions)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # (b, heads, positions, d)
        h = F.scaled_dot_product_attention(q, k, v)
        h = h.transpose(-1, -2).reshape(x.shape)
        return x + self.proj(h)


class _Level(nn.Module):
    """Residual blocks (each optionally followed by attention) at one resolution."""

    def __init__(self, blocks: list[_ResBlock], attns: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attns = nn.ModuleList(attns)


class UNet(nn.Module):
    """DDPM U-Net denoiser (see module docstring) for ``dim``-dimensional fields.

    Args:
        dim: number of spatial axes (1, 2 or 3).
        in_channels, out_channels: channels of the input field and of the prediction (e.g. ε).
        base_channels: width at full resolution.
        channel_mults: width multiplier per level; ``len - 1`` halvings of every spatial axis.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attention_levels: levels (0 = full resolution) with self-attention after each block;
            default: the lowest resolution only. The middle block always has attention.
        num_heads: attention heads. groups: GroupNorm groups (must divide every width).
        dropout: dropout inside residual blocks. padding_mode: ``'zeros'`` or ``'circular'`` etc.
    """

    def __init__(
        self,
        dim: int,
        in_channels: int,
        out_channels: int,
        base_channels: int = 64,
        channel_mults: Sequence[int] = (1, 2, 4),
        num_res_blocks: int = 2,
        attention_levels: Sequence[int] | None = None,
        num_heads: int = 4,
        groups: int = 8,
        dropout: float = 0.0,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        if dim not in _CONV:
            raise ValueError(f"UNet dim must be 1, 2 or 3 spatial axes, got {dim}")
        if not channel_mults or num_res_blocks < 1:
            raise ValueError(f"need at least one level and one residual block, got {channel_mults=}, {num_res_blocks=}")
        widths = [base_channels * m for m in channel_mults]
        bad = [w for w in widths if w % groups]
        if bad:
            raise ValueError(f"GroupNorm groups={groups} must divide every level width {widths}")
        n_levels = len(widths)
        attention_levels = (n_levels - 1,) if attention_levels is None else tuple(attention_levels)
        if any(not 0 <= a < n_levels for a in attention_levels):
            raise ValueError(f"attention_levels {attention_levels} outside 0..{n_levels - 1}")
        self.dim = dim
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.n_levels = n_levels
        conv = _CONV[dim]
        emb = 4 * base_channels
        self.time_dim = base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, emb), nn.SiLU(), nn.Linear(emb, emb))

        def res(ci: int, co: int) -> _ResBlock:
            return _ResBlock(dim, ci, co, emb, groups, dropout, padding_mode)

        def attn(level: int, ch: int) -> nn.Module:
            return _Attention(dim, ch, num_heads, groups) if level in attention_levels else nn.Identity()

        self.stem = conv(in_channels, base_channels, 3, padding=1, padding_mode=padding_mode)
        ch = base_channels
        skips = [ch]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for level, width in enumerate(widths):
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(res(ch, width))
                attns.append(attn(level, width))
                ch = width
                skips.append(ch)
            self.down.append(_Level(blocks, attns))
            if level < n_levels - 1:
                self.downsample.append(conv(ch, ch, 3, stride=2, padding=1, padding_mode=padding_mode))
                skips.append(ch)
        self.mid1 = res(ch, ch)
        self.mid_attn = _Attention(dim, ch, num_heads, groups)
        self.mid2 = res(ch, ch)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(n_levels)):
            width = widths[level]
            blocks, attns = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(res(ch + skips.pop(), width))
                attns.append(attn(level, width))
                ch = width
            self.up.append(_Level(blocks, attns))
            if level > 0:
                self.upsample.append(conv(ch, ch, 3, padding=1, padding_mode=padding_mode))
        self.head = nn.Sequential(
            _norm(ch, groups), nn.SiLU(), conv(ch, out_channels, 3, padding=1, padding_mode=padding_mode)
        )

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Noise prediction: ``x`` ``(batch, in_channels, *spatial)``, ``t`` ``(batch,)`` or scalar
        -> ``(batch, out_channels, *spatial)``.

        ``t`` may be integer DDPM steps or continuous times (the embedding is evaluated at ``t`` as given).
        """
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"UNet(dim={self.dim}) expects x of shape (batch, {self.in_channels}, {self.dim} spatial axes), "
                f"got {tuple(x.shape)}"
            )
        factor = 2 ** (self.n_levels - 1)
        if any(n % factor for n in x.shape[2:]):
            raise ValueError(
                f"UNet with {self.n_levels} levels needs spatial sizes divisible by {factor}, "
                f"got {tuple(x.shape[2:])}; pad the input"
            )
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"times must be a scalar or shape ({x.shape[0]},), got {tuple(t.shape)}")
        if x.dtype == torch.float64:  # integer / float32 times: the embedding in float64 too
            t = t.to(torch.float64)
        emb = self.time_mlp(sinusoidal_embedding(t, self.time_dim).to(x.dtype))
        h = self.stem(x)
        hs = [h]
        for level, stage in enumerate(self.down):
            for block, att in zip(stage.blocks, stage.attns):
                h = att(block(h, emb))
                hs.append(h)
            if level < self.n_levels - 1:
                h = self.downsample[level](h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for i, stage in enumerate(self.up):
            for block, att in zip(stage.blocks, stage.attns):
                h = att(block(torch.cat([h, hs.pop()], dim=1), emb))
            if i < self.n_levels - 1:
                h = self.upsample[i](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.head(h)
