"""The few-step Adam loop the WDNO tests train their tiny models with."""

from __future__ import annotations

import torch


def fit(model, batch, steps: int, lr: float = 3e-3, seed: int = 0):
    """``steps`` Adam steps on ``model.loss(batch)`` with a seeded noise generator; returns ``model``."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss = model.loss(batch, generator=g).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model
