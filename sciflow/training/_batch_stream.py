"""The training data of ``fit`` as an endless stream of batches that knows where it is.

:class:`BatchStream` cycles the training iterable and counts the pass (``epoch``) and the batches
consumed in it (``position``), which a checkpoint stores: a
:class:`~sciflow.training.loader.Resumable` loader restores its own position, any other iterable is
fast-forwarded past the batches it already gave (exact only if its order is deterministic). Also
the per-batch helpers of the loop: moving a batch dataclass to the device, its size.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch
from torch import Tensor

from sciflow.training.loader import Resumable


def to_device(batch: Any, device: torch.device) -> Any:
    for v in vars(batch).values() if hasattr(batch, "__dict__") else ():
        if isinstance(v, Tensor):
            return batch if v.device == device else batch.to(device)
    return batch.to(device)


def batch_size(batch: Any) -> int:
    try:
        return len(batch)
    except TypeError:
        return 1


class BatchStream:
    """Endless stream of training batches, tracking (``epoch``, ``position``) for resume."""

    def __init__(self, train: Iterable[Any]) -> None:
        self.train = train
        self.epoch = 0
        self.position = 0

    def __iter__(self) -> Iterator[Any]:
        skip = 0 if isinstance(self.train, Resumable) else self.position
        empty_passes = 0
        while True:
            it = iter(self.train)
            got = False
            for batch in it:
                if skip:  # plain iterables: fast-forward past the batches consumed before resume
                    skip -= 1
                    continue
                got = True
                self.position += 1
                yield batch
            # a pass may be empty once (resumed exactly at an epoch end), never twice
            empty_passes = 0 if got else empty_passes + 1
            if empty_passes >= 2:
                raise ValueError("the training iterable yielded no batch")
            self.epoch += 1
            self.position = 0
