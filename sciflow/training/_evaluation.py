"""Validation loss of ``fit``: the batch-size-weighted mean of ``model.loss(batch)`` and of each
of its terms over a validation iterable, summed on the device and all-reduced once under DDP.
Losses that differentiate with respect to their inputs (PINN residuals)
are detected on their first failure without autograd and evaluated with autograd from then on.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor

from sciflow.models.base import SciflowModel
from sciflow.training._batch_stream import batch_size, to_device
from sciflow.training.distributed import all_reduce_


def evaluate_batches(model: SciflowModel, batches: Iterable[Any], device: torch.device,
                     needs_grad: bool) -> tuple[dict[str, float], bool]:
    """``({"val/loss": ..., "val/terms/<name>": ...}, needs_grad)``: the metrics, and whether the
    loss needs autograd (``needs_grad`` passed in, or found out here; pass it to the next call)."""
    total = torch.zeros((), device=device, dtype=torch.float64)
    count = torch.zeros((), device=device, dtype=torch.float64)
    terms: dict[str, Tensor] = {}
    for batch in batches:
        batch = to_device(batch, device)
        grad_ctx = torch.enable_grad() if needs_grad else torch.no_grad()
        try:
            with grad_ctx:
                out = model.loss(batch)
        except RuntimeError as e:
            # losses with derivatives w.r.t. inputs (PINN residuals) need autograd in eval
            if needs_grad or "grad" not in str(e):
                raise
            needs_grad = True
            with torch.enable_grad():
                out = model.loss(batch)
        n = batch_size(batch)
        total += out.total.detach().double() * n
        count += n
        for k, v in out.terms.items():
            terms[k] = terms.get(k, torch.zeros((), device=device, dtype=torch.float64)) \
                + v.detach().double().mean() * n
    keys = sorted(terms)
    packed = torch.stack([total, count, *[terms[k] for k in keys]])
    all_reduce_(packed)
    n = packed[1].item()
    if n == 0:
        raise ValueError("the validation iterable yielded no batch")
    vals = (packed / n).tolist()
    metrics = {"val/loss": vals[0]}
    metrics.update({f"val/terms/{k}": vals[2 + i] for i, k in enumerate(keys)})
    return metrics, needs_grad
