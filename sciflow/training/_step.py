"""One optimiser step of ``fit`` behind a non-finite guard.

:class:`GuardedStep` computes ``model.loss(batch)`` (through :class:`LossModule`, the module DDP and
``torch.compile`` wrap; bf16 autocast when asked), back-propagates, clips the gradient
norm, and steps the optimiser only if the loss and the gradient norm are finite on every rank:
a first-order step is then skipped (gradients dropped), an L-BFGS step undone (parameters restored,
curvature pairs forgotten). That finiteness flag is the one scalar per step read on the host,
all-reduced under DDP so every rank takes the same branch; with ``max_time_s`` the same
all-reduce carries each rank's "out of time" flag (:class:`~sciflow.training._time_budget.TimeBudget`).
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from sciflow.models.base import LossOutput, SciflowModel
from sciflow.training._time_budget import TimeBudget
from sciflow.training.config import TrainConfig
from sciflow.training.distributed import DistInfo, all_reduce_


class LossModule(nn.Module):
    """Routes ``forward`` to ``model.loss`` so DDP's gradient hooks and ``torch.compile``
    see the loss computation."""

    def __init__(self, model: SciflowModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> LossOutput:
        return self.model.loss(batch)


class GuardedStep:
    """The first-order and L-BFGS steps of ``fit`` on ``loss_module`` (a :class:`LossModule`,
    possibly wrapped by DDP / ``torch.compile``) with the non-finite guard."""

    def __init__(self, model: SciflowModel, loss_module: nn.Module, optimizer: torch.optim.Optimizer,
                 params: Sequence[nn.Parameter], cfg: TrainConfig, dist: DistInfo, device: torch.device,
                 autocast: bool, budget: TimeBudget) -> None:
        self.model, self.loss_module, self.optimizer = model, loss_module, optimizer
        self.params = params
        self.cfg, self.dist, self.device = cfg, dist, device
        self.autocast = autocast
        self.budget = budget

    def loss(self, batch: Any) -> LossOutput:
        ctx = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        with ctx:
            out = self.loss_module(batch)
        if not isinstance(out, LossOutput):
            raise TypeError(f"{type(self.model).__name__}.loss must return LossOutput, got {type(out).__name__}")
        return out

    def grad_norm(self) -> Tensor:
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        norm = torch.nn.utils.get_total_norm(grads)
        if self.cfg.grad_clip is not None:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.cfg.grad_clip, norm)
        return norm

    def first_order(self, batch: Any) -> tuple[LossOutput, Tensor, bool]:
        self.optimizer.zero_grad(set_to_none=True)
        out = self.loss(batch)
        out.total.backward()  # also when non-finite: DDP ranks must all reach the all-reduce
        gnorm = self.grad_norm()
        ok = self.finite(out.total, gnorm)
        if ok:
            self.optimizer.step()
        else:
            self.optimizer.zero_grad(set_to_none=True)
        return out, gnorm, ok

    def lbfgs(self, batch: Any) -> tuple[LossOutput, Tensor, bool]:
        last: dict[str, Any] = {}

        def closure() -> Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            out = self.loss(batch)
            out.total.backward()
            last["out"], last["gnorm"] = out, self.grad_norm()
            loss = out.total.detach().clone()
            if self.dist.enabled:  # line-search decisions must agree across ranks
                all_reduce_(loss)
                loss /= self.dist.world_size
            return loss

        backup = [p.detach().clone() for p in self.params]
        loss = self.optimizer.step(closure)
        params_norm = torch.stack([p.detach().float().norm() for p in self.params]).sum()
        ok = self.finite(torch.as_tensor(loss), last["gnorm"], params_norm)
        if not ok:  # undo the iterations and forget the poisoned curvature pairs
            with torch.no_grad():
                for p, b in zip(self.params, backup):
                    p.copy_(b)
            self.optimizer.state.clear()
        return last["out"], last["gnorm"], ok

    def finite(self, *scalars: Tensor) -> bool:
        """All ``scalars`` finite on every rank (one all-reduce, which under DDP with ``max_time_s``
        also sets the budget's ``out_of_time`` from every rank's clock)."""
        bad = (~torch.stack([torch.isfinite(s.detach().float()).all() for s in scalars]).all()).to(torch.int32)
        if self.dist.enabled and self.cfg.max_time_s is not None:
            flags = torch.stack([bad, torch.tensor(int(self.budget.late()), device=bad.device, dtype=torch.int32)])
            bad_any, late_any = all_reduce_(flags, "max").tolist()
            self.budget.out_of_time = bool(late_any)
            return not bad_any
        return not bool(all_reduce_(bad, "max").item())
