"""Loop states handed to ``on_checkpoint`` by the families with their own training loop."""

from __future__ import annotations

from typing import Any, Mapping

import torch


def clone_state(obj: Any) -> Any:
    """Nested dicts/lists/tuples with every tensor detached and cloned: a checkpoint must not alias
    live parameters or optimiser buffers, which the next step changes in place."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, Mapping):
        return {k: clone_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_state(v) for v in obj)
    return obj
