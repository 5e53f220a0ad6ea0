"""The nonconformity scores an online conformal method has seen, per position, kept both in arrival
order (for a rolling window) and sorted (so each step's quantile is a gather, and a new score an
O(n) insertion instead of an O(n log n) re-sort of the whole memory).

Unobserved entries are stored as ``+inf`` in the sorted rows and not counted, which reproduces
:func:`sciflow.uq.adaptive_conformal.rolling_quantile` exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class ScoreMemory:
    """Scores ``(n, *event)`` with their ``observed`` mask; ``window`` keeps the last ones."""

    def __init__(self, window: int | None = None) -> None:
        self.window = window
        self.scores: Tensor | None = None  # (n, *event), arrival order; unobserved entries 0
        self.valid: Tensor | None = None
        self.sorted: Tensor | None = None  # (E, n) ascending per position, unobserved = +inf
        self.count: Tensor | None = None  # (E,) observed scores per position

    @property
    def event(self) -> tuple[int, ...] | None:
        return None if self.scores is None else tuple(self.scores.shape[1:])

    def add(self, s: Tensor, valid: Tensor) -> None:
        """Append scores ``(m, *event)``: one by insertion, several by a full sort."""
        if self.scores is None:
            self.scores, self.valid = s, valid
        else:
            self.scores, self.valid = torch.cat([self.scores, s]), torch.cat([self.valid, valid])
        over = self.window is not None and self.scores.shape[0] > self.window
        insert = s.shape[0] == 1 and self.sorted is not None and self.sorted.shape[1] > 0
        if insert:
            self.sorted = self._insert(self.sorted, torch.where(valid[0], s[0], math.inf).reshape(-1))
            self.count = self.count + valid[0].reshape(-1).long()
            if over:  # forget the oldest
                old, old_valid = self.scores[0], self.valid[0]
                self.sorted = self._remove(self.sorted, torch.where(old_valid, old, math.inf).reshape(-1))
                self.count = self.count - old_valid.reshape(-1).long()
        if over:
            self.scores, self.valid = self.scores[-self.window:], self.valid[-self.window:]
        if not insert:
            m, e = self.scores.shape[0], math.prod(self.scores.shape[1:])
            flat = self.scores.masked_fill(~self.valid, math.inf).reshape(m, e)
            self.sorted = flat.T.sort(1).values.contiguous()
            self.count = self.valid.reshape(m, e).sum(0)

    @staticmethod
    def _insert(rows: Tensor, v: Tensor) -> Tensor:
        n = rows.shape[1]
        at = torch.searchsorted(rows, v[:, None])  # (E, 1)
        j = torch.arange(n + 1, device=rows.device)[None]
        out = rows.gather(1, (j - (j > at).long()).clamp(max=n - 1))
        return torch.where(j == at, v[:, None], out)

    @staticmethod
    def _remove(rows: Tensor, v: Tensor) -> Tensor:
        n = rows.shape[1]
        at = torch.searchsorted(rows, v[:, None])  # the first entry equal to v
        j = torch.arange(n - 1, device=rows.device)[None]
        return rows.gather(1, j + (j >= at).long())

    def quantile(self, alpha: Tensor) -> Tensor:
        r"""Per position, the :math:`\lceil(n+1)(1-\alpha)\rceil`-th smallest score (``inf`` above
        ``n``, ``-inf`` below 1); ``alpha``: ``event``-shaped or ``(k, *event)``."""
        event = self.event
        one = alpha.dim() == len(event)
        a = alpha.reshape(1 if one else alpha.shape[0], -1)  # (k, E)
        n = self.count
        k = torch.ceil((n + 1) * (1 - a)).long()
        if self.sorted.shape[1] == 0:
            q = torch.zeros(a.shape, dtype=self.sorted.dtype, device=self.sorted.device)
        else:
            q = self.sorted.gather(1, (k - 1).clamp(0, self.sorted.shape[1] - 1).T).T
        q = q.masked_fill(k > n, math.inf).masked_fill(k < 1, -math.inf)
        return q.reshape(event) if one else q.reshape(-1, *event)

    def below(self, s: Tensor) -> Tensor:
        """Per position, how many observed scores are smaller than ``s`` (``event``-shaped)."""
        if self.sorted.shape[1] == 0:
            return torch.zeros(s.shape, dtype=torch.long, device=s.device)
        return torch.searchsorted(self.sorted, s.reshape(-1, 1)).reshape(s.shape)
