r"""Backbones of the operator models: the FNO and a U-Net used as a deterministic operator.

Both map ``(batch, in_channels, *axes) -> (batch, out_channels, *axes)`` on a regular grid and see
the grid coordinates ``linspace(0, 1, N_j)`` as extra input channels (Li et al. 2021's input
:math:`(a(x), x)`).

The U-Net operator is :class:`sciflow.nn.UNet` evaluated at diffusion time 0 (its time embedding
is then a constant bias), i.e. the encoder–decoder of Ronneberger et al. (2015) with residual
blocks. It is the "U-Net" baseline of the FNO paper's Navier–Stokes table in the DDPM-style
variant that sciflow's diffusion models share. Axes whose size is not a multiple of
``2 ** (levels - 1)`` are zero-padded at the end and cropped afterwards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sciflow.models.neural_operator.config import Config
from sciflow.nn.fno import FNO
from sciflow.nn.unet import UNet

__all__ = ["UNetOperator", "build_backbone", "channel_counts"]


def _with_grid(x: Tensor) -> Tensor:
    axes = [torch.linspace(0, 1, n, device=x.device, dtype=x.dtype) for n in x.shape[2:]]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    return torch.cat([x, grid.expand(x.shape[0], *grid.shape)], dim=1)


class UNetOperator(nn.Module):
    """:class:`sciflow.nn.UNet` as an operator: grid channels in, diffusion time fixed at 0,
    end-padding of every axis to the U-Net's size multiple (cropped on output)."""

    def __init__(self, dim: int, in_channels: int, out_channels: int, *, base_channels: int = 32,
                 channel_mults: tuple[int, ...] = (1, 2, 2), num_res_blocks: int = 1, groups: int = 8,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.in_channels = in_channels
        self.multiple = 2 ** (len(channel_mults) - 1)
        self.unet = UNet(dim, in_channels + dim, out_channels, base_channels=base_channels,
                         channel_mults=channel_mults, num_res_blocks=num_res_blocks, groups=groups,
                         dropout=dropout)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNetOperator(dim={self.dim}) expects (batch, {self.in_channels}, {self.dim} axes), "
                             f"got {tuple(x.shape)}")
        sizes = x.shape[2:]
        x = _with_grid(x)
        pads = [(-n) % self.multiple for n in sizes]
        if any(pads):
            x = F.pad(x, [v for p in reversed(pads) for v in (0, p)])
        y = self.unet(x, torch.zeros((), device=x.device))
        return y[(slice(None), slice(None), *(slice(0, n) for n in sizes))]


def channel_counts(cfg: Config) -> tuple[int, int]:
    """Input and output channels of the backbone for ``cfg`` (see :class:`Config`)."""
    c, cc, h = cfg.channels, cfg.condition_channels, cfg.history
    if cfg.rollout == "autoregressive":
        return h * c + cc, c
    if cfg.space_time:
        return h * c + cc, c
    assert cfg.horizon is not None
    return h * c + cfg.horizon * cc, cfg.horizon * c


def build_backbone(cfg: Config) -> nn.Module:
    """The FNO or U-Net acting on ``cfg.operator_dim`` axes with :func:`channel_counts` channels."""
    n_in, n_out = channel_counts(cfg)
    d = cfg.operator_dim
    if cfg.architecture == "fno":
        modes = cfg.modes * d if len(cfg.modes) == 1 else cfg.modes
        padding = ((cfg.time_padding,) if cfg.space_time_operator else ()) + (cfg.space_padding,) * cfg.dim
        return FNO(d, n_in, n_out, modes, cfg.width, n_layers=cfg.n_layers, projection=cfg.projection,
                   padding=padding, dropout=cfg.dropout)
    return UNetOperator(d, n_in, n_out, base_channels=cfg.unet_channels, channel_mults=cfg.unet_mults,
                        num_res_blocks=cfg.unet_blocks, groups=cfg.unet_groups, dropout=cfg.dropout)
