"""Shared plumbing of the generative samplers: time grids, NFE accounting, model-time tensors."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from sciflow.solvers._checks import all_finite
from sciflow.solvers.generative.schedules import NoiseSchedule

Model = Callable[[Tensor, Tensor], Tensor]
Condition = Callable[[Tensor, Tensor], Tensor]


class NFEBudgetExceeded(RuntimeError):
    """An adaptive sampler needed more network evaluations than its ``nfe`` budget."""


class CountedModel:
    """Wraps ``model(x, t)``: passes ``t`` as a ``(batch,)`` tensor, counts calls, enforces a budget."""

    def __init__(self, model: Model, budget: int | None = None, what: str = "model") -> None:
        if not callable(model):
            raise TypeError(f"{what} must be callable as {what}(x, t)")
        self.model = model
        self.budget = budget
        self.calls = 0
        self.what = what

    def __call__(self, x: Tensor, t: float | Tensor) -> Tensor:
        if self.budget is not None and self.calls >= self.budget:
            raise NFEBudgetExceeded(f"{self.what} would exceed the NFE budget of {self.budget} evaluations")
        self.calls += 1
        if isinstance(t, Tensor):
            tt = t.reshape(()).to(x.dtype).expand(x.shape[0]) if t.ndim == 0 else t
        else:
            tt = torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)
        out = self.model(x, tt)
        if out.shape != x.shape:
            raise ValueError(f"{self.what} returned shape {tuple(out.shape)} for input of shape {tuple(x.shape)}")
        return out


def check_nfe(nfe: int, per_step: int, sampler: object) -> int:
    """Number of steps a fixed-step sampler can take within ``nfe`` evaluations (at least one)."""
    if not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe must be a positive int, got {nfe!r}")
    if nfe < per_step:
        raise ValueError(f"{sampler!r} needs {per_step} evaluations per step; nfe={nfe} allows none")
    return nfe // per_step


def check_x(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor")
    if x.ndim < 1:
        raise ValueError(f"{name} needs a leading batch axis, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")


def check_finite_output(x: Tensor, what: str) -> Tensor:
    """Once, after sampling (one host sync): a NaN/inf sample means the model returned NaN/inf."""
    if not all_finite(x):
        raise FloatingPointError(f"{what} produced non-finite samples (nan/inf): the model returned nan/inf "
                                 f"or the steps are too large for it")
    return x


def uniform_time_grid(n_steps: int, t_max: float, t_min: float) -> list[float]:
    """``n_steps + 1`` times from ``t_max`` down to ``t_min``, equally spaced in ``t``."""
    return [t_max + (t_min - t_max) * i / n_steps for i in range(n_steps + 1)]


def log_snr_time_grid(schedule: NoiseSchedule, n_steps: int, t_max: float, t_min: float) -> list[float]:
    """Times equally spaced in log-SNR ``λ`` (Lu et al. 2022, §3.3 "logSNR" spacing), by bisection."""
    lam = lambda t: float(schedule.log_snr(torch.tensor(t, dtype=torch.float64)))  # noqa: E731
    l0, l1 = lam(t_max), lam(t_min)
    out = [t_max]
    for i in range(1, n_steps):
        target = l0 + (l1 - l0) * i / n_steps
        lo, hi = t_min, t_max  # λ decreasing in t
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if lam(mid) > target:
                lo = mid
            else:
                hi = mid
        out.append(0.5 * (lo + hi))
    out.append(t_min)
    return out


def check_grid(grid: list[float], schedule: NoiseSchedule) -> None:
    if len(grid) < 2:
        raise ValueError("a time grid needs at least two times")
    if any(not math.isfinite(t) for t in grid) or any(not b < a for a, b in zip(grid[:-1], grid[1:])):
        raise ValueError(f"sampling time grids run strictly downwards from t_max to t_min; "
                         f"got {grid[:3]}...{grid[-2:]}")
    if grid[-1] <= 0 or grid[0] > schedule.t_max + 1e-12:
        raise ValueError(f"times must lie in (0, t_max={schedule.t_max}] of {schedule!r}; got [{grid[-1]}, {grid[0]}]")
