"""Causal weighting of the PDE residual loss (Wang, Sankaran & Perdikaris 2022, section 3).

The residual loss is split over a **sorted** time grid into ``N_t`` chunks,
``L_r(t_i) = mean_{points in chunk i} |r|^2``, and weighted by

    w_i = exp(-eps * sum_{k=1}^{i-1} L_r(t_k)),      w_1 = 1         

an *exclusive* cumulative sum, held constant under differentiation (``stop_gradient`` in the
official code). The weighted residual loss is ``(1/N_t) sum_i w_i L_r(t_i)``.

The initial-condition loss: the official code of the paper (KS/NS scripts, Algorithm 1's
``L(t_0) = lambda_ic L_ic``) puts the weighted IC loss in front of the sum,
``w_i = exp(-eps (lambda_ic L_ic + sum_{k<i} L_r(t_k)))``, so that no residual chunk is trusted
before the initial condition is fitted; jaxpi instead keeps the IC out of the weights (then
``w_1 = 1``). Both are offered: ``initial_loss=None`` gives the latter.

Annealing (Algorithm 1): for ``eps`` in ``[1e-2, 1e-1, 1, 10, 100]`` train until
``min_i w_i > delta = 0.99``, then move to the next ``eps``; the fixed-``eps`` mode is what the
official Allen–Cahn notebooks and jaxpi actually run.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def chunk_losses(residual_sq: Tensor, n_chunks: int) -> Tensor:
    """``(N,)`` squared residuals of time-sorted points -> ``(n_chunks,)`` chunk means."""
    if residual_sq.ndim != 1:
        raise ValueError(f"residual_sq must be (N,), got {tuple(residual_sq.shape)}")
    n = residual_sq.shape[0]
    if n_chunks < 1 or n % n_chunks:
        raise ValueError(f"{n} collocation points cannot be split into {n_chunks} equal time chunks; "
                         f"use a multiple of n_chunks")
    return residual_sq.reshape(n_chunks, n // n_chunks).mean(dim=1)


def causal_weights(losses: Tensor, epsilon: float, initial_loss: Tensor | None = None) -> Tensor:
    """``w_i = exp(-eps (L_0 + sum_{k<i} L_k))`` for chunk losses ``(N_t,)``; detached.

    ``initial_loss`` is ``L_0`` (already multiplied by ``lambda_ic``), or ``None`` for ``L_0 = 0``
    (then ``w_1 = 1`` exactly).
    """
    if losses.ndim != 1:
        raise ValueError(f"chunk losses must be (N_t,), got {tuple(losses.shape)}")
    if epsilon < 0:
        raise ValueError(f"causality parameter epsilon must be >= 0, got {epsilon}")
    with torch.no_grad():
        csum = torch.cumsum(losses.detach(), dim=0)
        exclusive = torch.cat([torch.zeros_like(csum[:1]), csum[:-1]])
        if initial_loss is not None:
            exclusive = exclusive + initial_loss.detach()
        return torch.exp(-epsilon * exclusive)


def sort_by_time(points: Tensor) -> Tensor:
    """Rows of ``points (N, dim)`` ordered by the time coordinate (column 0), stable."""
    return points[torch.argsort(points[:, 0], stable=True)]


class FixedEpsilon:
    """One causality parameter for the whole run (the official notebooks' mode)."""

    def __init__(self, epsilon: float) -> None:
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        self.epsilon = float(epsilon)
        self.stage = 0
        self.finished = False

    def observe(self, min_weight: float) -> bool:
        """Fixed mode never advances; returns False."""
        return False


class AnnealedEpsilon:
    """Algorithm 1's schedule: advance to the next ``eps`` once ``min_i w_i > delta``.

    ``observe(min_w)`` returns True when the stage ended; ``finished`` becomes True after the
    last stage has converged (the caller then stops training).
    """

    def __init__(self, epsilons: Sequence[float] = (1e-2, 1e-1, 1.0, 10.0, 100.0),
                 delta: float = 0.99) -> None:
        eps = [float(e) for e in epsilons]
        if not eps or any(e < 0 for e in eps):
            raise ValueError(f"epsilons must be a non-empty list of non-negative numbers, got {epsilons}")
        if not 0.0 < delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        self.epsilons, self.delta = eps, float(delta)
        self.stage = 0
        self.finished = False

    @property
    def epsilon(self) -> float:
        return self.epsilons[min(self.stage, len(self.epsilons) - 1)]

    def observe(self, min_weight: float) -> bool:
        if self.finished or not min_weight > self.delta:
            return False
        if self.stage == len(self.epsilons) - 1:
            self.finished = True
        else:
            self.stage += 1
        return True
