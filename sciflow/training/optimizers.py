"""Optimiser construction for ``fit``: the ``torch.optim`` optimiser named by
:attr:`~sciflow.training.config.TrainConfig.optimizer` (Adam, AdamW, SGD with momentum, or L-BFGS with
a strong-Wolfe line search), built from the config's learning rate, betas, momentum, weight decay
and L-BFGS history. The learning-rate schedule is :mod:`sciflow.training.schedules`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from sciflow.training.config import TrainConfig

__all__ = ["make_optimizer"]


def make_optimizer(params: Sequence[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.optimizer``."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "lbfgs":
        return torch.optim.LBFGS(params, lr=cfg.lr, max_iter=cfg.lbfgs_max_iter,
                                 history_size=cfg.lbfgs_history, line_search_fn="strong_wolfe")
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; allowed: adam, adamw, sgd, lbfgs")
