"""Exponential moving average of model weights (Polyak averaging).

``shadow <- decay * shadow + (1 - decay) * param`` after every optimizer step, with the
warm-up ``decay_t = min(decay, (1 + t) / (10 + t))`` (as in Tarvainen & Valpola 2017 / the
TensorFlow ``ExponentialMovingAverage(num_updates=...)``) so early averages are not dominated
by the random initialisation. Buffers (e.g. normalisation statistics) are copied, not averaged.
Diffusion models sample from the averaged weights (Ho et al. 2020, Sec. 4).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn


class EMA:
    """Shadow copy of ``model``'s floating-point parameters.

    The update is one fused ``torch._foreach_lerp_`` over all parameters (no host sync).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self._names = [n for n, p in model.named_parameters() if p.dtype.is_floating_point]
        params = dict(model.named_parameters())
        self.shadow: dict[str, Tensor] = {n: params[n].detach().clone() for n in self._names}

    def _params(self, model: nn.Module) -> list[Tensor]:
        params = dict(model.named_parameters())
        return [params[n] for n in self._names]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        t = self.num_updates
        decay = min(self.decay, (1 + t) / (10 + t))
        shadow = [self.shadow[n] for n in self._names]
        torch._foreach_lerp_(shadow, [p.detach() for p in self._params(model)], 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s parameters with the averages."""
        for p, s in zip(self._params(model), (self.shadow[n] for n in self._names)):
            p.copy_(s)

    @contextlib.contextmanager
    def average_parameters(self, model: nn.Module) -> Iterator[None]:
        """Temporarily swap the averaged weights into ``model`` (evaluation, sampling)."""
        params = self._params(model)
        backup = [p.detach().clone() for p in params]
        self.copy_to(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates,
                "shadow": {n: t for n, t in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self._names) - set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state lacks parameters {sorted(missing)}")
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        for n in self._names:
            self.shadow[n].copy_(state["shadow"][n])
