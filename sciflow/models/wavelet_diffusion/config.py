"""``Config`` of :class:`~sciflow.models.wavelet_diffusion.WDNO` and its super-resolution model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sciflow.models.base import check_choices
from sciflow.nn.wavelets import FilterBank


@dataclass(frozen=True)
class _DiffusionOptions:
    """Representation, diffusion and denoiser options shared by :class:`Config` and
    :class:`SuperResolutionConfig` (documented on :class:`Config`)."""

    space: Literal["wavelet", "physical"] = "wavelet"
    wavelet: str = "bior2.4"
    mode: Literal["zero", "periodization"] = "zero"
    scaling: Literal["channel", "field"] = "channel"
    schedule: Literal["cosine", "sigmoid", "linear"] = "cosine"
    prediction: Literal["eps", "v"] = "v"
    replacement: Literal["clean", "noised"] = "clean"
    clip_denoised: float | None = 1.5
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] | None = None
    num_heads: int = 4
    groups: int = 8
    dropout: float = 0.0
    t_min: float = 1e-3

    def _check_diffusion(self, who: str) -> None:
        check_choices(self)  # every Literal field (space, schedule, prediction, replacement, mode, scaling, task)
        if self.space == "wavelet":
            try:  # the transform's own (cached) lookup, which names the families
                FilterBank.from_pywt(self.wavelet)
            except ValueError as err:
                raise ValueError(
                    f"{who}.wavelet={self.wavelet!r} is not a discrete PyWavelets wavelet: {err}") from None
        if self.clip_denoised is not None and not self.clip_denoised > 0:
            raise ValueError(f"{who}.clip_denoised must be > 0 or None, got {self.clip_denoised}")
        if not 0.0 < self.t_min < 0.5:
            raise ValueError(f"{who}.t_min must be in (0, 0.5), got {self.t_min}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{who}.dropout must be in [0, 1), got {self.dropout}")
        if self.base_channels < 1 or not self.channel_mults or self.num_res_blocks < 1:
            raise ValueError(f"{who}: base_channels, channel_mults and num_res_blocks must be positive")
        object.__setattr__(self, "channel_mults", tuple(int(m) for m in self.channel_mults))
        if self.attention_levels is not None:
            object.__setattr__(self, "attention_levels", tuple(int(a) for a in self.attention_levels))


@dataclass(frozen=True)
class Config(_DiffusionOptions):
    """A wavelet diffusion neural operator (Hu et al., ICLR 2025) over whole trajectories.

    Data
        ``dim``: spatial dimension of the PDE (1: trajectories ``(time, x)``, denoised by a 2-D
        U-Net; 2: ``(time, x, y)``, a 3-D U-Net). ``channels``: state channels ``u``;
        ``forcing_channels``: channels of the forcing / control ``f`` carried in
        ``TrajectoryBatch.condition`` (0: an unforced system, e.g. 2D Navier–Stokes, ERA5).
    Task (which parts of the trajectory are known, paper Sec. 3.3)
        ``"simulation"``: the first ``n_initial`` frames of ``u`` and the whole forcing ``f`` are
        given, the rest of ``u`` is generated; ``"control"``: the first ``n_initial`` frames and
        the final frame of ``u`` are given, ``f`` (and the path of ``u``) is generated.
    Representation
        ``space="wavelet"``: one-level DWT over (time, *space) with ``wavelet`` / ``mode``
        (:mod:`sciflow.nn.wavelets`); ``"physical"``: the same model on the raw trajectory
        (the physical-space DDPM baseline). ``residual``: generate the departure ``W(u - c)`` from
        the conditioning trajectory ``c`` (known frames, persistence / linear fill; see
        :meth:`WDNO.filled`) instead of ``W u`` (a deviation from the paper, see the docs).
        ``scaling``: ``"channel"`` standardises every sub-band channel on its own; ``"field"``
        gives the ``2^{d+1}`` sub-bands of one field one shared scale (their RMS), so the
        denoising loss weights the bands as the physical-space loss weights pixels (exactly, by
        Parseval, for an orthogonal wavelet in ``periodization`` mode), closer to the official
        code's single global ``rescaler``. Per-channel scaling blows the small detail bands of a
        smooth field up to unit variance (weights 50-4000x the approximation's on forced Burgers); there
        ``"field"`` lowers the test MSE 1.7x at 600 steps (one seed; within the noise at 150 steps;
        issue 9, ``benchmarks/wdno_burgers_ablation.py``). No effect in physical space (one channel per field).
    Diffusion
        ``schedule``: ``cosine`` (Nichol & Dhariwal 2021), ``sigmoid`` (Chen 2023) or ``linear``
        (Ho et al. 2020) variance-preserving schedule. ``prediction``: the network predicts the
        noise ``ε`` (the paper) or the velocity ``v = α_t ε - σ_t x_0`` (Salimans & Ho 2022; the
        official code's ``pred_v``), which keeps the denoised estimate bounded at high noise and
        samples far better after short training; the samplers always receive ``ε̂``.
        ``replacement``: known channels in the network input are the clean scaled values
        (``"clean"``, the official WDNO code) or forward-process samples of them (``"noised"``,
        inpainting in the style of Song et al. 2021).
        ``clip_denoised``: at sampling, clip the denoised estimate of every channel to
        ``clip_denoised`` times the largest standardised value seen in training (the official
        code clips to the data range ``[-1, 1]``); ``None``: no clipping.
    Denoiser
        ``base_channels`` / ``channel_mults`` / ``num_res_blocks`` / ``attention_levels`` /
        ``num_heads`` / ``groups`` / ``dropout`` of :class:`sciflow.nn.UNet`.
    Boundary data
        ``zero_boundary``: the state vanishes at both ends of every spatial axis of the grid
        (homogeneous Dirichlet data on a grid that contains the boundary points, e.g. forced
        Burgers on ``linspace(0, 1, n)``). Generated states then satisfy it exactly: in physical
        space the edge values of ``u`` are known entries (replaced at every step, left out of the
        loss); in wavelet space, where no coefficient is an edge value, the denoised estimate is
        projected onto the constraint at every sampling step (:meth:`WDNO.project_boundary`). Not
        in the paper or the official code, whose samples carry whatever the network puts at the
        edges (on forced Burgers an RMS of 20 % of the field's; see the docs).
    """

    dim: int = 1
    channels: int = 1
    forcing_channels: int = 1
    task: Literal["simulation", "control"] = "simulation"
    n_initial: int = 1
    residual: bool = True
    zero_boundary: bool = False

    def __post_init__(self) -> None:
        self._check_diffusion("Config")
        if self.dim not in (1, 2):
            raise ValueError(f"Config.dim must be 1 (trajectories (time, x)) or 2 ((time, x, y)), got {self.dim}")
        if self.channels < 1:
            raise ValueError(f"Config.channels (state channels) must be >= 1, got {self.channels}")
        if self.forcing_channels < 0:
            raise ValueError(f"Config.forcing_channels must be >= 0, got {self.forcing_channels}")
        if self.task == "control" and self.forcing_channels < 1:
            raise ValueError("Config.task='control' generates the forcing: set forcing_channels >= 1")
        if self.n_initial < 0:
            raise ValueError(f"Config.n_initial must be >= 0, got {self.n_initial}")
        if self.task == "simulation" and self.n_initial < 1 and self.forcing_channels < 1:
            raise ValueError("Config.task='simulation' with n_initial=0 and no forcing has nothing to condition on")

    @property
    def known_final(self) -> bool:
        """Whether the final frame of ``u`` is given (control)."""
        return self.task == "control"

    @property
    def forcing_known(self) -> bool:
        return self.task == "simulation" and self.forcing_channels > 0


@dataclass(frozen=True)
class SuperResolutionConfig(_DiffusionOptions):
    """The super-resolution model of WDNO (Hu et al. 2025, Sec. 3.4, "multi-resolution training").

    It generates the wavelet coefficients of a trajectory at resolution ``2 n - 1`` per axis (a
    dyadic refinement that keeps the coarse grid points, e.g. ``x = linspace(0, 1, 2 n - 1)``)
    conditioned on the nearest-upsampled coefficients of the coarse trajectory of ``n`` points,
    and is applied repeatedly for ×2, ×4, ×8. ``channels`` counts every field refined
    (state and forcing stacked on one channel axis). ``levels``: the training loss averages the
    pairs (``x[::2**l]``, ``x[::2**(l+1)]``) for ``l < levels`` (the subsampled copies of the
    paper's multi-resolution training). ``residual``: generate the departure from the multilinear
    interpolant of the coarse trajectory, conditioned on its coefficients (default), instead of the
    paper's fine coefficients next to the nearest-upsampled coarse ones. Other fields as :class:`Config`.
    """

    dim: int = 1
    channels: int = 2
    levels: int = 2
    residual: bool = True

    def __post_init__(self) -> None:
        self._check_diffusion("SuperResolutionConfig")
        if self.dim not in (1, 2):
            raise ValueError(f"SuperResolutionConfig.dim must be 1 or 2, got {self.dim}")
        if self.channels < 1:
            raise ValueError(f"SuperResolutionConfig.channels must be >= 1, got {self.channels}")
        if self.levels < 1:
            raise ValueError(f"SuperResolutionConfig.levels must be >= 1, got {self.levels}")
