"""Weighted reduction shared by every score: ``weights=`` (e.g. ERA5 area weights) and ``dim=``."""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

Dim = Union[None, int, str, Sequence[Union[int, str]]]


def resolve_dims(dim: Dim, ndim: int, names: Sequence[str] | None) -> tuple[int, ...]:
    """Axis indices of ``dim`` for a tensor of ``ndim`` axes.

    ``None`` means every axis; an ``int`` or ``str`` one axis; a sequence several. Names are
    looked up in ``names`` (the tensor's axis names, e.g. ``("batch", "time", "lat", "lon")``).
    """
    if dim is None:
        return tuple(range(ndim))
    items = [dim] if isinstance(dim, (int, str)) else list(dim)
    out = []
    for d in items:
        if isinstance(d, str):
            if names is None:
                raise ValueError(f"dim {d!r} is a name but no names= were given for the axes")
            if len(names) != ndim:
                raise ValueError(f"names {tuple(names)} has {len(names)} entries, tensor has {ndim} axes")
            if d not in names:
                raise ValueError(f"dim {d!r} not among axis names {tuple(names)}")
            d = list(names).index(d)
        if not -ndim <= d < ndim:
            raise ValueError(f"dim {d} out of range for a tensor with {ndim} axes")
        out.append(d % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated dim in {dim!r}")
    return tuple(sorted(out))


def weighted_mean(x: Tensor, weights: Tensor | None, dim: Dim, names: Sequence[str] | None = None) -> Tensor:
    """``sum(w x) / sum(w)`` over ``dim`` with ``w`` broadcast to ``x`` (plain mean if ``w`` is None).

    ``weights`` broadcasts by the usual trailing-axis rule: for ``x`` of shape
    ``(batch, lat, lon)`` pass latitude weights as ``(lat, 1)``.
    """
    dims = resolve_dims(dim, x.ndim, names)
    if weights is None:
        return x.mean(dim=dims) if dims else x
    try:
        w = torch.broadcast_to(weights.to(x.dtype), x.shape)
    except RuntimeError:
        raise ValueError(f"weights of shape {tuple(weights.shape)} do not broadcast to {tuple(x.shape)}") from None
    if not bool(((weights >= 0) & torch.isfinite(weights)).all()):
        raise ValueError("weights must be finite and non-negative (area weights, not log-weights)")
    if not dims:
        return x
    return (w * x).sum(dim=dims) / w.sum(dim=dims)


def check_same_shape(a: Tensor, b: Tensor, what_a: str, what_b: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{what_a} has shape {tuple(a.shape)} but {what_b} has {tuple(b.shape)}")


def check_not_nan(**tensors: Tensor) -> None:
    """No NaN in any of the named tensors (a NaN input would make the score NaN silently)."""
    for name, x in tensors.items():
        if bool(torch.isnan(x).any()):
            raise ValueError(f"{name} contains NaN")


def check_scale(x: Tensor, name: str) -> None:
    """A Gaussian scale (std or variance): strictly positive and not NaN."""
    if not bool((x > 0).all()):
        raise ValueError(f"{name} must be > 0 everywhere (min {x.min().item():.3g}); a zero or negative "
                         f"{name} has no Gaussian density")


def check_samples(samples: Tensor, y: Tensor) -> None:
    """``samples`` must be ``(n_samples, *y.shape)`` with ``n_samples >= 1`` and no NaN."""
    if samples.ndim != y.ndim + 1 or tuple(samples.shape[1:]) != tuple(y.shape):
        raise ValueError(f"samples must be (n_samples, *{tuple(y.shape)}), got {tuple(samples.shape)}")
    if samples.shape[0] == 0:
        raise ValueError(f"samples is empty (n_samples = 0, shape {tuple(samples.shape)})")
    if torch.isnan(samples).any():
        raise ValueError("samples contain NaN")
    if torch.isnan(y).any():
        raise ValueError("truth y contains NaN")
