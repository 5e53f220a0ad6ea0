"""A resumable, shardable loader over an in-memory batch dataclass.

Scientific datasets of this library fit in (device) memory, so the loader indexes one big
batch dataclass with ``batch.index(idx)`` instead of collating sample by sample: no Python
per-sample work, and the data may live on the GPU.

Order is a pure function of ``(seed, epoch)``: epoch ``e`` uses the permutation drawn from a
generator seeded with ``SeedSequence([seed, e])``. The position in the epoch is the only state,
so :meth:`state_dict` / :meth:`load_state_dict` resume exactly where a run stopped, and every
rank of a distributed run agrees on the global batch without communicating.

Distributed: each step draws one **global** batch of ``batch_size`` indices; rank ``r`` of
``W`` takes the contiguous slice ``[r*B/W, (r+1)*B/W)``. With mean losses and DDP's gradient
averaging this reproduces the single-process step on the same global batch.
"""

from __future__ import annotations

import abc
from typing import Any, Generic, Iterator, TypeVar

import numpy as np
import torch

B = TypeVar("B")


class Resumable(abc.ABC):
    """Declares that an iterable of batches can save and restore its position.

    The trainer stores ``state_dict()`` in checkpoints and calls ``load_state_dict`` on resume;
    ``set_shard(rank, world_size)`` makes it yield this rank's part of each global batch.
    """

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def set_shard(self, rank: int, world_size: int) -> None: ...


class BatchLoader(Resumable, Generic[B]):
    """Iterate ``data`` (a batch dataclass holding all samples) in mini-batches.

    One ``iter()`` is one epoch from the current position. ``shuffle=False`` keeps the stored
    order (evaluation); ``drop_last`` drops the final short batch (default when shuffling, so
    every step sees ``batch_size`` samples).
    """

    def __init__(self, data: B, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 drop_last: bool | None = None) -> None:
        if isinstance(data, (list, tuple, str)) or not (callable(getattr(data, "index", None))
                                                         and hasattr(data, "__len__")):
            raise TypeError(f"BatchLoader takes a batch dataclass with len() and index(idx) (e.g. "
                            f"TrajectoryBatch), got {type(data).__name__}")
        n = len(data)  # type: ignore[arg-type]
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if n == 0:
            raise ValueError("BatchLoader: the dataset is empty")
        self.data = data
        self.n = n
        self.batch_size = min(batch_size, n)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = shuffle if drop_last is None else drop_last
        self.epoch = 0
        self.position = 0  # batches of the current epoch already handed out
        self.rank, self.world_size = 0, 1

    def set_shard(self, rank: int, world_size: int) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of size {world_size}")
        if self.batch_size % world_size and self.drop_last:
            raise ValueError(f"global batch_size {self.batch_size} is not divisible by world size {world_size}")
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def _order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(seed))

    def _local(self, idx: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return idx
        return idx.tensor_split(self.world_size)[self.rank]

    def __iter__(self) -> Iterator[B]:
        order = self._order(self.epoch)
        device = _device_of(self.data)
        while self.position < len(self):
            i = self.position
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            self.position += 1
            yield self.data.index(self._local(idx).to(device))  # type: ignore[attr-defined]
        self.epoch += 1
        self.position = 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "n": self.n,
                "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["n"]) != self.n or int(state["batch_size"]) != self.batch_size:
            raise ValueError(
                f"loader state is for n={state['n']}, batch_size={state['batch_size']}; this loader has "
                f"n={self.n}, batch_size={self.batch_size}: the data changed since the checkpoint")
        self.epoch, self.position, self.seed = int(state["epoch"]), int(state["position"]), int(state["seed"])


def _device_of(batch: Any) -> torch.device:
    for v in vars(batch).values():
        if isinstance(v, torch.Tensor):
            return v.device
    return torch.device("cpu")
