"""Minibatch optimal-transport pairing of source and target points within each population.

Flow matching on straight paths ``x_t = (1 - t) x0 + t x1`` needs a coupling of ``x0 ~ p0`` and
``x1 ~ p1``. When the data are not paired (or pairing is arbitrary), pairing by minibatch OT
(Tong et al., TMLR 2024, "Improving and generalizing flow-based generative models with
minibatch optimal transport"; Pooladian et al., ICML 2023) straightens the paths. The MFM code
resamples pairs from the exact plan per population; for equal-size uniform populations the
exact plan is a permutation, so :func:`exact_ot_pairing` returns it directly (no resampling).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def _squared_cost(x0: Tensor, x1: Tensor) -> Tensor:
    return ((x0[:, :, None, :] - x1[:, None, :, :]) ** 2).sum(-1)


def exact_ot_pairing(x0: Tensor, x1: Tensor) -> Tensor:
    """``x1`` reordered so ``(x0[b, i], x1_out[b, i])`` is the squared-Euclidean optimal
    assignment of population ``b``. ``x0, x1: (batch, n, dim)``.

    Hungarian algorithm (``scipy.optimize.linear_sum_assignment``), ``O(n^3)`` on the host per
    population: a host synchronisation, meant for data preparation / small ``n``.
    """
    from scipy.optimize import linear_sum_assignment

    if x0.shape != x1.shape or x0.ndim != 3:
        raise ValueError(f"exact_ot_pairing: x0 and x1 must both be (batch, n, dim), got "
                         f"{tuple(x0.shape)} and {tuple(x1.shape)}")
    cost = _squared_cost(x0.detach(), x1.detach()).cpu().double().numpy()
    perm = np.stack([linear_sum_assignment(c)[1] for c in cost])
    idx = torch.as_tensor(perm, device=x1.device)
    return torch.gather(x1, 1, idx[..., None].expand_as(x1))


def sinkhorn_plan(x0: Tensor, x1: Tensor, epsilon: float = 0.05, iterations: int = 100) -> Tensor:
    """Entropic OT plan between uniform populations, log-domain Sinkhorn (Cuturi 2013).

    ``x0: (batch, n, dim)``, ``x1: (batch, m, dim)`` -> plan ``(batch, n, m)`` with row sums
    ``1/n`` and column sums ``1/m`` (up to the iteration's convergence). ``epsilon`` is relative
    to the mean squared cost of each population, so it is scale free. Fixed iteration count,
    no convergence check: no host synchronisation.
    """
    cost = _squared_cost(x0, x1)
    eps = epsilon * cost.mean(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    n, m = cost.shape[1], cost.shape[2]
    log_a = torch.full_like(cost[:, :, 0], -math.log(n))
    log_b = torch.full_like(cost[:, 0, :], -math.log(m))
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    k = -cost / eps
    for _ in range(iterations):
        f = log_a - torch.logsumexp(k + g[:, None, :], dim=2)
        g = log_b - torch.logsumexp(k + f[:, :, None], dim=1)
    return torch.exp(k + f[:, :, None] + g[:, None, :])


def sinkhorn_pairing(x0: Tensor, x1: Tensor, *, epsilon: float = 0.05, iterations: int = 100,
                     generator: torch.Generator | None = None) -> Tensor:
    """``x1`` resampled so ``x1_out[b, i] ~ plan[b, i, :] / plan[b, i, :].sum()``.

    Each source point keeps its place and draws its partner from its row of the entropic plan
    (the official code instead draws ``n`` pairs from the whole plan with replacement; drawing
    per row keeps every source point exactly once). Runs on the device of the inputs.
    """
    if x0.ndim != 3 or x1.ndim != 3 or x0.shape[0] != x1.shape[0] or x0.shape[2] != x1.shape[2]:
        raise ValueError(f"sinkhorn_pairing: need (batch, n, dim) and (batch, m, dim), got "
                         f"{tuple(x0.shape)} and {tuple(x1.shape)}")
    with torch.no_grad():
        plan = sinkhorn_plan(x0.detach(), x1.detach(), epsilon, iterations)
        B, n, m = plan.shape
        idx = torch.multinomial(plan.reshape(B * n, m), 1, generator=generator).view(B, n)
    return torch.gather(x1, 1, idx[..., None].expand(-1, -1, x1.shape[2]))
