"""Loss balancing by gradient norms (Wang, Teng & Perdikaris 2021, Algorithm 1, in the form of
Wang et al. 2023 "An expert's guide to training PINNs", eq. 3.1-3.3 / jaxpi ``grad_norm``).

Every ``every`` steps, with ``g_i = grad_theta L_i``,

    lambda_i_hat = (sum_j ||g_j||) / ||g_i||,      lambda_i <- m lambda_i + (1 - m) lambda_i_hat,

so every weighted term contributes a gradient of the same norm. Costs one extra backward per
term on the steps it runs; the weights stay on the device (no host sync).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class GradNormBalancer:
    """Keeps ``weights`` ``(n_terms,)`` (a tensor the model multiplies its terms with)."""

    def __init__(self, weights: Tensor, every: int = 1000, momentum: float = 0.9) -> None:
        if every < 1:
            raise ValueError(f"balance every must be >= 1, got {every}")
        if not 0 <= momentum < 1:
            raise ValueError(f"balance momentum must be in [0, 1), got {momentum}")
        self.weights, self.every, self.momentum = weights, every, momentum

    def due(self, step: int) -> bool:
        return step % self.every == 0

    @torch.no_grad()
    def _apply(self, norms: Tensor, active: Tensor) -> None:
        total = norms[active].sum()
        new = torch.where(active, total / norms.clamp_min(1e-30), self.weights)
        self.weights.mul_(self.momentum).add_((1 - self.momentum) * new)

    def update(self, terms: Sequence[Tensor | None], params: Sequence[nn.Parameter]) -> Tensor:
        """Recompute the weights from the unweighted ``terms`` (``None``: absent, weight kept)."""
        params = [p for p in params if p.requires_grad]
        norms, active = [], []
        for term in terms:
            if term is None or not term.requires_grad:
                norms.append(torch.ones((), device=self.weights.device))
                active.append(False)
                continue
            grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
            sq = sum((g.pow(2).sum() for g in grads if g is not None), torch.zeros((), device=self.weights.device))
            norms.append(sq.sqrt().to(self.weights.dtype))
            active.append(True)
        self._apply(torch.stack(norms), torch.tensor(active, device=self.weights.device))
        return self.weights
