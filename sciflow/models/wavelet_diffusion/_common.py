"""Plumbing shared by :class:`WDNO` and :class:`WDNOSuperResolution`: schedules, samplers,
batch layout, the ε-prediction loss with replacement, and the replacement sampling loop."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from sciflow.nn.unet import UNet
from sciflow.solvers.generative import (DDIM, DDPM, CosineVP, DiffusionReplacement, DiffusionSampler, DPMSolverPP2M,
                                        LinearVP, NoiseSchedule, SigmoidVP, sample_diffusion)

SAMPLERS: dict[str, Callable[[], DiffusionSampler]] = {
    "ddim": lambda: DDIM(0.0),
    "ddpm": DDPM,
    "dpm++": DPMSolverPP2M,
    "dpmsolver++": DPMSolverPP2M,
}

# the U-Net's sinusoidal embedding is tuned for integer DDPM steps 0..1000: feed it 1000 t
TIME_SCALE = 1000.0


def make_schedule(name: str) -> NoiseSchedule:
    return {"cosine": CosineVP, "sigmoid": SigmoidVP, "linear": LinearVP}[name]()


def make_sampler(sampler: str | DiffusionSampler) -> DiffusionSampler:
    if isinstance(sampler, DiffusionSampler):
        return sampler
    if isinstance(sampler, str) and sampler in SAMPLERS:
        return SAMPLERS[sampler]()
    raise ValueError(f"unknown sampler {sampler!r}; allowed: {sorted(SAMPLERS)} or a DiffusionSampler instance")


def make_unet(cfg, channels: int) -> UNet:
    return UNet(dim=cfg.dim + 1, in_channels=channels, out_channels=channels, base_channels=cfg.base_channels,
                channel_mults=cfg.channel_mults, num_res_blocks=cfg.num_res_blocks,
                attention_levels=cfg.attention_levels, num_heads=cfg.num_heads, groups=cfg.groups,
                dropout=cfg.dropout)


def scale_groups(cfg, n_total: int, bands: int) -> tuple[int, ...] | None:
    """Channel groups sharing one scale for :meth:`ChannelScaler.fit`: ``scaling="field"`` groups
    the ``bands`` consecutive sub-band channels of every field, ``"channel"`` scales each alone."""
    return (bands,) * (n_total // bands) if cfg.scaling == "field" else None


def to_fields(x: Tensor, channels: int, dim: int, what: str, check_finite: bool = True) -> tuple[Tensor, bool]:
    """``(B, T, *S)`` (one channel) or ``(B, T, C, *S)`` -> ``(B, C, T, *S)`` and whether a channel axis was given.

    ``check_finite`` costs one host synchronisation; the training loss skips it (a NaN there
    reaches the loss, which the trainer's non-finite guard reports)."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor")
    if x.ndim == 2 + dim and channels == 1:
        out, has_axis = x.unsqueeze(1), False
    elif x.ndim == 3 + dim and x.shape[2] == channels:
        out, has_axis = x.movedim(2, 1), True
    else:
        lay = "(batch, time, *space)" if channels == 1 else ""
        raise ValueError(
            f"{what} must be {lay + ' or ' if lay else ''}(batch, time, {channels}, *space) with {dim} space axes, "
            f"got shape {tuple(x.shape)}")
    if check_finite and not torch.isfinite(out).all():
        raise ValueError(f"{what} contains NaN or inf")
    return out, has_axis


def from_fields(x: Tensor, has_axis: bool) -> Tensor:
    """Inverse of :func:`to_fields`: ``(N, C, T, *S)`` -> ``(N, T, C, *S)`` or ``(N, T, *S)``."""
    return x.movedim(1, 2) if has_axis else x.squeeze(1)


class Denoiser(nn.Module):
    """The U-Net as a noise predictor ``ε̂(x, t)`` on the padded, scaled coefficient tensor.

    ``raw(x, t) = UNet(x, 1000 t)`` is the network output: ``ε̂`` itself (``prediction="eps"``,
    Ho et al. 2020) or the velocity ``v̂ ≈ α_t ε - σ_t x_0`` (``prediction="v"``, Salimans & Ho
    2022, Sec. 4 and App. D; supported by the official WDNO code as ``pred_v``), converted by
    ``ε̂ = σ_t x_t + α_t v̂`` (variance-preserving schedules) so every shared sampler applies.
    """

    def __init__(self, net: UNet, schedule: NoiseSchedule, prediction: str = "eps") -> None:
        super().__init__()
        if prediction not in ("eps", "v"):
            raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")
        if prediction == "v" and not schedule.variance_preserving:
            raise ValueError(f"v-prediction needs a variance-preserving schedule, got {schedule!r}")
        self.net = net
        self.schedule = schedule
        self.prediction = prediction

    def raw(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(x, t * TIME_SCALE)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        out = self.raw(x, t)
        if self.prediction == "eps":
            return out
        a, s = self.schedule.coefficients(t, x)
        return s * x + a * out


def on_denoised(denoiser: Callable[[Tensor, Tensor], Tensor], schedule: NoiseSchedule,
                fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """Apply ``fn`` to the denoised estimate ``x̂_0 = (x_t - σ_t ε̂)/α_t`` and re-derive
    ``ε̂ = (x_t - α_t fn(x̂_0))/σ_t`` (the official code's ``rederive_pred_noise``), so every shared
    sampler steps towards ``fn(x̂_0)``."""

    def eps(x: Tensor, t: Tensor) -> Tensor:
        e = denoiser(x, t)
        a, s = schedule.coefficients(t, x)
        return (x - a * fn((x - s * e) / a)) / s

    return eps


def clipped(denoiser: Callable[[Tensor, Tensor], Tensor], schedule: NoiseSchedule,
            bound: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """Clip the denoised estimate ``x̂_0`` to ``[-bound, bound]`` per channel (:func:`on_denoised`; the
    official code's ``clip_x_start``; there the bound is 1 for data rescaled into ``[-1, 1]``)."""

    def clip(x0: Tensor) -> Tensor:
        b = bound.to(x0.dtype).reshape(1, -1, *([1] * (x0.ndim - 2)))
        return torch.maximum(torch.minimum(x0, b), -b)

    return on_denoised(denoiser, schedule, clip)


def replacement_loss(denoiser: Denoiser, schedule: NoiseSchedule, z0: Tensor, known: Tensor, replacement: str,
                     t_min: float, generator: torch.Generator | None) -> Tensor:
    """ε-prediction DDPM loss (Ho et al. 2020, eq. 14, continuous time) on the unknown entries.

    ``x_t = α_t z_0 + σ_t ε`` with ``t ~ U(t_min, t_max)``; the known entries of the network input
    are the clean values (``"clean"``, official WDNO code) or left at their forward sample
    (``"noised"``); the squared error ``|ε̂ - ε|²`` (or ``|v̂ - v|²`` with ``v = α_t ε - σ_t z_0``
    for a v-predicting :class:`Denoiser`) is averaged over the unknown entries only.
    """
    b = z0.shape[0]
    t = t_min + (schedule.t_max - t_min) * torch.rand(b, generator=generator, device=z0.device, dtype=torch.float64)
    a, s = schedule.coefficients(t, z0)
    eps = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
    zt = a * z0 + s * eps
    if replacement == "clean":
        zt = torch.where(known, z0, zt)
    pred = denoiser.raw(zt, t.to(z0.dtype))
    target = eps if denoiser.prediction == "eps" else a * eps - s * z0
    weight = (~known).to(z0.dtype).expand_as(z0)
    return ((pred - target).pow(2) * weight).sum() / weight.sum().clamp_min(1.0)


def replacement_sample(denoiser: Callable[[Tensor, Tensor], Tensor], schedule: NoiseSchedule, known: Tensor,
                       z_known: Tensor, *, replacement: str, sampler: str | DiffusionSampler, nfe: int, t_min: float,
                       generator: torch.Generator | None, log_snr_spacing: bool = False) -> Tensor:
    """Run a shared sampler with the known entries overwritten before the first and after every step
    (WDNO, Hu et al. 2025, Sec. 3.3; official ``ddim_sample``), and set exactly at the end."""
    x = torch.randn(z_known.shape, generator=generator, device=z_known.device, dtype=z_known.dtype)
    x = x * schedule.prior_std()
    if replacement == "clean":
        def hook(x: Tensor, t: Tensor) -> Tensor:
            return torch.where(known, z_known, x)
    else:
        hook = DiffusionReplacement(known, z_known, schedule, generator=generator)
    t0 = torch.full((x.shape[0],), schedule.t_max, dtype=x.dtype, device=x.device)
    x = hook(x, t0)
    z = sample_diffusion(denoiser, schedule, x, sampler=make_sampler(sampler), nfe=nfe, t_min=t_min,
                         log_snr_spacing=log_snr_spacing, condition=hook, generator=generator)
    return torch.where(known, z_known, z)


def guided(denoiser: Callable[[Tensor, Tensor], Tensor], schedule: NoiseSchedule, objective: Callable[[Tensor], Tensor],
           scale: float, known: Tensor, z_known: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    r"""Gradient guidance on the denoised estimate (WDNO, Hu et al. 2025, Sec. 3.3, after DiffPhyCon,
    Wei et al. 2024; official ``model_predictions`` / ``get_nablaJ``).

    With the denoised estimate :math:`\hat x_0 = (x_t - σ_t \hat ε)/α_t`, its known entries set to
    their clean values ``z_known`` (the same replacement the sampler applies to ``x_t``), the guided
    estimate is one gradient step on the unknown entries ``1 - known``,

    .. math::

        \tilde x_0 = \hat x_0 - w\,(1 - m_{known}) \odot \nabla_{\hat x_0} J(\hat x_0)
        \quad\Longleftrightarrow\quad
        \tilde ε = \hat ε + w\,\frac{α_t}{σ_t}\,(1 - m_{known}) \odot \nabla_{\hat x_0} J(\hat x_0),

    and the sampler continues from :math:`\tilde ε`. ``objective`` maps a batch of coefficient
    tensors to per-sample costs ``(batch,)`` (the WDNO decodes them to physical fields first);
    the gradient is taken w.r.t. :math:`\hat x_0`, detached from the network, as in the official code.
    ``known``: bool, broadcastable to ``z_known``.

    Deviations: the official code adds :math:`w \nabla J` to :math:`\hat ε` itself, a step
    :math:`w σ_t/α_t` on :math:`\hat x_0` that grows without bound at high noise unless a schedule
    damps it; the step here is ``w`` at every noise level. The official code evaluates ``J`` on
    :math:`\hat x_0` as it is; here the known entries are replaced first, which matters for the
    residual layout (``W u = W(u - c) + W c``: the raw :math:`\hat x_0` of the condition channels is
    :math:`(W c - σ_t \hat ε)/α_t`, noise amplified by :math:`1/α_t`).
    """
    unknown = (~known).to(z_known.dtype)

    def eps(x: Tensor, t: Tensor) -> Tensor:
        e = denoiser(x, t)
        a, s = schedule.coefficients(t, x)
        with torch.enable_grad():
            x0 = torch.where(known, z_known, (x - s * e) / a).detach().requires_grad_(True)
            (g,) = torch.autograd.grad(objective(x0).sum(), x0)
        # added to ε̂ itself (not re-derived through x̂_0): entries with no gradient keep ε̂ bit for bit
        return e + scale * (a / s) * g * unknown

    return eps
