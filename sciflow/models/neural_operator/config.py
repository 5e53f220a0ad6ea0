"""``Config`` of :class:`~sciflow.models.neural_operator.NeuralOperator`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sciflow.models.base import check_choices


@dataclass(frozen=True)
class Config:
    """A neural-operator surrogate of PDE trajectories (FNO or U-Net backbone).

    State layout: ``TrajectoryBatch.values`` is ``(batch, time, *space)`` when ``channels == 1``
    or ``(batch, time, channels, *space)``; ``dim`` is the number of spatial axes (1 or 2).
    ``condition_channels`` > 0: ``TrajectoryBatch.condition`` holds a time-dependent forcing
    ``(batch, time, [condition_channels,] *space)`` on the same time grid.

    The first ``history`` time steps are given (``T_in``; 1 for ``u0 -> u(t)``, 10 for the FNO
    Navier–Stokes setting); the model predicts the remaining ones.

    ``rollout``
        ``"one_shot"``: one network call maps the history to every later step. With
        ``space_time=True`` the operator acts on the space–time field ``(time, *space)`` (Li et
        al. 2021's FNO-3D for 2-D PDEs; FNO-2D over ``(t, x)`` for 1-D PDEs) and takes the
        history broadcast along time as input channels, so any number of target steps works;
        with ``space_time=False`` it acts on space only and emits ``horizon`` target steps as
        output channels (FNO-1d ``u0 -> u(t=1)`` for Burgers).
        ``"autoregressive"``: a spatial operator maps the last ``history`` states (as channels) to
        the next state, applied recurrently (Li et al.'s FNO-2D with ``T_in = 10``; U-Net-2D).
    ``architecture``: ``"fno"`` (:class:`sciflow.nn.FNO` with ``modes``, ``width``,
        ``n_layers``, ``projection``) or ``"unet"`` (:class:`sciflow.nn.UNet` with
        ``unet_channels``, ``unet_mults``, ``unet_blocks``; grid coordinates are appended as input
        channels for both).
    ``modes``: retained Fourier modes per operator axis (``(time, *space)`` for space–time models),
        one value for all axes or one per axis. ``time_padding``: zero padding of the
        non-periodic time axis of space–time models (6 in the authors' FNO-3D code);
        ``space_padding``: the same for non-periodic spatial axes (0 for periodic problems).
    ``loss``: ``"relative_l2"`` (per-sample ``||pred - y|| / ||y||`` over the predicted steps,
        averaged over the batch: the FNO papers' loss) or ``"mse"`` (in normalised units). Use
        ``"mse"`` for fields with a large mean (temperature in K): there ``||y||`` is dominated by
        the mean and the relative error hardly sees the anomalies.
    ``unroll``: autoregressive training unrolls the whole horizon (``None``, as Li et al.) or
        segments of ``unroll`` steps restarted from the true states (teacher forcing every
        ``unroll`` steps; 1 is one-step training).
    ``dropout`` > 0 keeps dropout layers in the backbone for MC-dropout UQ (not in the papers).
    """

    dim: int = 1
    channels: int = 1
    condition_channels: int = 0
    history: int = 1
    horizon: int | None = None
    rollout: Literal["one_shot", "autoregressive"] = "one_shot"
    space_time: bool = True
    architecture: Literal["fno", "unet"] = "fno"
    modes: tuple[int, ...] = (12,)
    width: int = 32
    n_layers: int = 4
    projection: int = 128
    time_padding: int = 0
    space_padding: int = 0
    unet_channels: int = 32
    unet_mults: tuple[int, ...] = (1, 2, 2)
    unet_blocks: int = 1
    unet_groups: int = 8
    dropout: float = 0.0
    loss: Literal["relative_l2", "mse"] = "relative_l2"
    unroll: int | None = None

    def __post_init__(self) -> None:
        check_choices(self)
        if self.dim not in (1, 2):
            raise ValueError(f"dim (spatial axes of the PDE state) must be 1 or 2, got {self.dim}")
        if self.channels < 1 or self.condition_channels < 0:
            raise ValueError(f"need channels >= 1 and condition_channels >= 0, got {self.channels}, "
                             f"{self.condition_channels}")
        if self.history < 1:
            raise ValueError(f"history (known initial steps) must be >= 1, got {self.history}")
        if self.horizon is not None and self.horizon < 1:
            raise ValueError(f"horizon must be >= 1 or None, got {self.horizon}")
        if self.rollout == "one_shot" and not self.space_time and self.horizon is None:
            raise ValueError("a one-shot model over space only (space_time=False) emits the target steps as "
                             "channels: set horizon")
        n_axes = self.operator_dim
        if len(self.modes) not in (1, n_axes) or any(m < 1 for m in self.modes):
            raise ValueError(f"modes must be one positive int or {n_axes} (one per operator axis), got {self.modes}")
        if self.width < 1 or self.n_layers < 1 or self.projection < 1:
            raise ValueError("width, n_layers and projection must be >= 1")
        if self.time_padding < 0 or self.space_padding < 0:
            raise ValueError("time_padding and space_padding must be >= 0")
        if self.unet_channels < 1 or not self.unet_mults or self.unet_blocks < 1:
            raise ValueError("unet_channels, unet_mults and unet_blocks must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.unroll is not None and self.unroll < 1:
            raise ValueError(f"unroll must be >= 1 or None, got {self.unroll}")

    @property
    def space_time_operator(self) -> bool:
        """Whether the backbone acts on ``(time, *space)`` (one-shot space–time models)."""
        return self.rollout == "one_shot" and self.space_time

    @property
    def operator_dim(self) -> int:
        """Axes the backbone convolves over: ``1 + dim`` for space–time models, else ``dim``."""
        return self.dim + int(self.space_time_operator)
