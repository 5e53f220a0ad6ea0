"""A model's trainable parameters as one flat vector, and the model evaluated under many such
vectors at once (``torch.func.vmap`` over ``functional_call``, one by one where the model does not
allow it): the weight space that HMC samples, SWAG fits a Gaussian in and deep ensembles train in
parallel."""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from sciflow.models.base import SciflowModel


class ModelCall(nn.Module):
    """The model as one function of its parameters: its loss (``use_loss``) or one draw of its
    (deterministic) prediction."""

    def __init__(self, model: SciflowModel, use_loss: bool) -> None:
        super().__init__()
        self.m, self.use_loss = model, use_loss

    def forward(self, batch: Any) -> Tensor:
        if self.use_loss:
            return self.m.loss(batch).total
        return self.m.sample(batch, 1)[0]


class WeightSpace:
    """The trainable parameters of ``model`` but those named in ``frozen`` (held at their current
    values, as are the buffers), flattened in ``named_parameters`` order: ``dim`` entries. ``who``,
    ``rows``: how a warning names the method and the rows it evaluates."""

    def __init__(self, model: SciflowModel, frozen: Sequence[str] = (), *, who: str = "",
                 rows: str = "weight vectors") -> None:
        named = dict(model.named_parameters())
        unknown = set(frozen) - set(named)
        if unknown:
            raise ValueError(f"frozen names {sorted(unknown)} are not parameters of {type(model).__name__}")
        self.model, self.who, self.rows = model, who, rows
        self.names = [k for k in named if k not in set(frozen)]
        self.shapes = [named[k].shape for k in self.names]
        self.sizes = [named[k].numel() for k in self.names]
        self.fixed = {f"m.{k}": v.detach() for k, v in named.items() if k in set(frozen)}
        self.fixed |= {f"m.{k}": v for k, v in model.named_buffers()}
        self.vectorise = True

    @property
    def dim(self) -> int:
        return sum(self.sizes)

    def flat(self) -> Tensor:
        """The current weights ``(dim,)``."""
        named = dict(self.model.named_parameters())
        return torch.cat([named[k].detach().reshape(-1) for k in self.names])

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        parts = theta.split(self.sizes, dim=-1)
        return {f"m.{k}": p.reshape(*theta.shape[:-1], *s) for k, p, s in zip(self.names, parts, self.shapes)}

    def evaluate(self, call: ModelCall, theta: Tensor, batch: Any) -> Tensor:
        """``call(batch)`` under every row of ``theta (rows, dim)``: ``(rows, ...)``."""
        return self.map(lambda th: functional_call(call, self.unflatten(th) | self.fixed, (batch,)), theta)

    def map(self, fn: Callable[[Tensor], Tensor], rows: Tensor) -> Tensor:
        """``fn`` of every row of ``rows``, stacked: with ``vmap`` (independent randomness per row)
        until it fails once, then one by one, with a warning naming ``who`` and ``rows``."""
        if self.vectorise:
            try:
                return vmap(fn, randomness="different")(rows)
            except Exception as err:  # data-dependent control flow, in-place ops, .item(), ...
                warnings.warn(f"{self.who}: vmap over {self.rows} failed ({type(err).__name__}: {err}); "
                              f"evaluating {self.rows} one by one", RuntimeWarning, stacklevel=3)
                self.vectorise = False
        return torch.stack([fn(r) for r in rows])
