"""Named, frozen batch dataclasses: the data in flight between loaders, models, trainer and UQ.

Never positional tuples or dicts whose keys double as keyword arguments (DESIGN.md). Every batch
validates its shapes on construction, moves with ``.to(device)``, and can be built from a list of
single-sample batches with ``collate`` (what ``torch.utils.data.DataLoader`` needs) and split with
``index``. Optional fields are ``None`` when absent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch
from torch import Tensor

B = TypeVar("B", bound="_Batch")


def _check(cond: bool, cls: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{cls}: {msg}")


def _check_values(x: object, cls: str, name: str, *, nan: bool = True) -> None:
    """A floating tensor with a non-empty batch axis and, with ``nan``, no NaN (one host sync, on
    construction only: ``to``/``index`` of a valid batch skip it)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{cls}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{cls}: {name} must be a floating tensor, got dtype {x.dtype}")
    _check(x.ndim >= 1 and x.shape[0] >= 1, cls, f"{name} has an empty batch axis, shape {tuple(x.shape)}")
    if nan:
        _check(not bool(torch.isnan(x).any()), cls, f"{name} contains NaN")


@dataclass(frozen=True)
class _Batch:
    """Shared mechanics. Tensor fields whose first axis is ``batch`` are listed in
    ``_batched``; other tensor fields (e.g. a shared time grid) are carried as they are."""

    _batched: tuple[str, ...] = dataclasses.field(default=(), init=False, repr=False)

    def _tensors(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def to(self: B, device: torch.device | str, dtype: torch.dtype | None = None) -> B:
        """Move every tensor to ``device``; floating tensors are cast to ``dtype`` if given.
        Copies to an accelerator are asynchronous; copies to the CPU are not (a non-blocking
        device-to-host copy may be read before it has landed)."""
        out = {}
        non_blocking = torch.device(device).type != "cpu"
        for k, v in self._tensors().items():
            if isinstance(v, Tensor):
                v = v.to(device, dtype=dtype if (dtype is not None and v.is_floating_point()) else None,
                         non_blocking=non_blocking)
            out[k] = v
        return self._unchecked(out)

    def _unchecked(self: B, fields: dict[str, Any]) -> B:
        """A batch with ``fields`` built without re-validation: moving or slicing a valid batch
        keeps it valid, and skipping the checks avoids host syncs on accelerators."""
        new = object.__new__(type(self))
        for k, v in fields.items():
            object.__setattr__(new, k, v)
        object.__setattr__(new, "_batched", self._batched)
        return new

    @property
    def batch_size(self) -> int:
        return int(getattr(self, self._batched[0]).shape[0])

    def __len__(self) -> int:
        return self.batch_size

    def index(self: B, idx: Tensor | slice | Sequence[int]) -> B:
        """Select samples along the batch axis (shared fields are kept)."""
        out = {}
        for k, v in self._tensors().items():
            out[k] = v[idx] if (k in self._batched and isinstance(v, Tensor)) else v
        return self._unchecked(out)

    @classmethod
    def collate(cls: type[B], items: Sequence[B]) -> B:
        """Stack single-sample or concatenate multi-sample batches along the batch axis."""
        if not items:
            raise ValueError(f"{cls.__name__}.collate: empty list")
        first = items[0]
        out = {}
        for k, v in first._tensors().items():
            if k in first._batched and isinstance(v, Tensor):
                out[k] = torch.cat([getattr(b, k) for b in items], dim=0)
            else:
                out[k] = v
        return cls(**out)


@dataclass(frozen=True)
class TrajectoryBatch(_Batch):
    """Regularly sampled trajectories.

    values: ``(batch, time, *state)``; times: ``(time,)`` shared or ``(batch, time)`` per sample,
    strictly increasing; condition: optional ``(batch, ...)`` (forcing, parameters, ...).
    """

    values: Tensor
    times: Tensor
    condition: Tensor | None = None
    _batched: tuple[str, ...] = dataclasses.field(
        default=("values", "condition"), init=False, repr=False
    )

    def __post_init__(self) -> None:
        n = type(self).__name__
        _check(isinstance(self.times, Tensor), n,
               f"times must be a torch.Tensor, got {type(self.times).__name__}")
        # NaN values are not rejected here: the models catch them where it costs no per-step sync
        # (odeint's y0 check, WDNO.fit_scaler / sample) and the trainer skips non-finite losses
        _check_values(self.values, n, "values", nan=False)
        _check(self.values.ndim >= 3, n, f"values must be (batch, time, *state), got {tuple(self.values.shape)}")
        T = self.values.shape[1]
        _check(self.times.shape[-1] == T, n, f"times has {self.times.shape[-1]} points but values has {T} time steps")
        _check(self.times.ndim in (1, 2), n, f"times must be (time,) or (batch, time), got {tuple(self.times.shape)}")
        if self.times.ndim == 2:
            _check(self.times.shape[0] == self.values.shape[0], n,
                   "per-sample times must have the batch size of values")
            # per-sample grids travel with their samples
            object.__setattr__(self, "_batched", ("values", "condition", "times"))
        if T > 1:
            _check(bool((self.times.diff(dim=-1) > 0).all()), n, "times must be strictly increasing")
        if self.condition is not None:
            _check(self.condition.shape[0] == self.values.shape[0], n, "condition must share the batch axis of values")


@dataclass(frozen=True)
class CollocationBatch(_Batch):
    """Collocation points for physics-informed training.

    interior: ``(batch, dim)`` residual points with coordinates ordered ``(t, x[, y])``;
    initial: ``(n_ic, dim)`` with ``initial_values`` ``(n_ic, channel)``;
    boundary: optional ``(n_bc, dim)`` with ``boundary_values`` ``(n_bc, channel)``.
    Only ``interior`` is split by ``index``/``collate``.
    """

    interior: Tensor
    initial: Tensor | None = None
    initial_values: Tensor | None = None
    boundary: Tensor | None = None
    boundary_values: Tensor | None = None
    _batched: tuple[str, ...] = dataclasses.field(default=("interior",), init=False, repr=False)

    def __post_init__(self) -> None:
        n = type(self).__name__
        _check(self.interior.ndim == 2, n, f"interior must be (batch, dim), got {tuple(self.interior.shape)}")
        for pts, vals in (("initial", "initial_values"), ("boundary", "boundary_values")):
            p, v = getattr(self, pts), getattr(self, vals)
            if p is not None:
                _check(p.ndim == 2 and p.shape[1] == self.interior.shape[1], n,
                       f"{pts} must be (n, {self.interior.shape[1]}), got {tuple(p.shape)}")
            if v is not None:
                _check(p is not None and v.shape[0] == p.shape[0], n, f"{vals} must have one row per {pts} point")


@dataclass(frozen=True)
class IrregularBatch(_Batch):
    """Irregularly sampled, partly missing multivariate series.

    values: ``(batch, time, channel)`` with missing entries set to 0 (never NaN);
    times: ``(batch, time)`` non-decreasing per sample (padding repeats the last time);
    mask: ``(batch, time, channel)`` bool, True where observed;
    labels: optional ``(batch,)`` class indices; targets: optional ``(batch, ...)`` (forecast
    horizon values); target_times / target_mask accompany targets for interpolation/forecasting.
    """

    values: Tensor
    times: Tensor
    mask: Tensor
    labels: Tensor | None = None
    targets: Tensor | None = None
    target_times: Tensor | None = None
    target_mask: Tensor | None = None
    _batched: tuple[str, ...] = dataclasses.field(
        default=("values", "times", "mask", "labels", "targets", "target_times", "target_mask"),
        init=False, repr=False,
    )

    def __post_init__(self) -> None:
        n = type(self).__name__
        _check(self.values.ndim == 3, n, f"values must be (batch, time, channel), got {tuple(self.values.shape)}")
        _check(tuple(self.mask.shape) == tuple(self.values.shape), n,
               f"mask shape {tuple(self.mask.shape)} != values shape {tuple(self.values.shape)}")
        _check(self.mask.dtype == torch.bool, n, f"mask must be bool, got {self.mask.dtype}")
        _check(tuple(self.times.shape) == tuple(self.values.shape[:2]), n,
               f"times must be (batch, time) = {tuple(self.values.shape[:2])}, got {tuple(self.times.shape)}")
        _check(not bool(torch.isnan(self.values).any()), n, "values contain NaN: encode missing entries in mask")
        if self.times.shape[1] > 1:
            _check(bool((self.times.diff(dim=1) >= 0).all()), n, "times must be non-decreasing per sample")
        if self.labels is not None:
            _check(self.labels.shape[0] == self.values.shape[0], n, "labels must have one entry per sample")


@dataclass(frozen=True)
class PopulationBatch(_Batch):
    """Populations (point clouds) for distribution-to-distribution models.

    source: ``(batch, n_points, dim)`` initial populations; target: ``(batch, n_points, dim)``
    evolved populations, paired point by point where the data provides pairing;
    population_id: optional ``(batch,)`` integer ids; condition: optional ``(batch, ...)``.
    """

    source: Tensor
    target: Tensor | None = None
    population_id: Tensor | None = None
    condition: Tensor | None = None
    _batched: tuple[str, ...] = dataclasses.field(
        default=("source", "target", "population_id", "condition"), init=False, repr=False
    )

    def __post_init__(self) -> None:
        n = type(self).__name__
        _check_values(self.source, n, "source")
        if self.target is not None:
            _check_values(self.target, n, "target")
        _check(self.source.ndim == 3, n, f"source must be (batch, n_points, dim), got {tuple(self.source.shape)}")
        if self.target is not None:
            _check(self.target.ndim == 3 and self.target.shape[0] == self.source.shape[0]
                   and self.target.shape[2] == self.source.shape[2], n,
                   f"target must be (batch, n_points, {self.source.shape[2]}), got {tuple(self.target.shape)}")
