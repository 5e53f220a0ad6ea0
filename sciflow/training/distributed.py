"""``torch.distributed`` plumbing: process-group setup from ``torchrun``'s environment.

``torchrun --nproc_per_node=N script.py`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` turns them into a process group
(NCCL when every rank has a GPU, gloo otherwise) and the device of this rank. Without those
variables everything degrades to one process and no collective is ever called.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join (or create) the default process group when running under ``torchrun``.

    Returns the rank information and this rank's device. ``device="auto"`` picks
    ``cuda:<local_rank>`` when CUDA is available, else CPU.
    """
    if dist.is_available() and dist.is_initialized():
        info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                        int(os.environ.get("LOCAL_RANK", 0)))
        use_cuda = torch.cuda.is_available() and device != "cpu"
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        # the group this call created is torn down before interpreter shutdown: left to exit, gloo's
        # worker threads can be destroyed while joinable ("terminate called without an active
        # exception", SIGABRT, seen once in CI on a 2-process run that had finished its work)
        atexit.register(_destroy_process_group)
    else:
        info = DistInfo()
    if device == "auto":
        dev = torch.device(f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None and info.enabled:
            dev = torch.device(f"cuda:{info.local_rank}")
    if dev.type == "cuda" and dev.index is not None:  # torch >= 2.11 rejects an index-less device here
        torch.cuda.set_device(dev)
    return info, dev


def _destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce when a process group is active; identity otherwise."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN,
                               "max": dist.ReduceOp.MAX}[op])
    return t


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
