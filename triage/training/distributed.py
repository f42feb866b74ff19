"""Distributed data parallel helpers: process group set-up and tear-down; a single process needs none of it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

#: Seed offset per rank for augmentation, dropout and loader workers: ranks must not draw the same random
#: crops for their different images. Rank 0 (and a single process) gets offset 0, so its seeds are unchanged.
RANK_SEED_STRIDE = 7919

#: How long a rank waits in a collective. Long, because ranks other than 0 wait while rank 0 alone validates
#: every epoch and calibrates / evaluates after training (minutes on the full data on a CPU).
DIST_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a distributed (DDP) run; the default is a single process.

    Attributes:
        rank: global rank; 0 writes the run folder.
        world_size: number of processes.
        local_rank: rank on this node (picks the GPU).
        device: the GPU of this rank with NCCL; ``None`` keeps everything on the CPU as in a single process.
        owns_group: this module initialised the process group (and so destroys it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, validates and writes."""
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1), or use one already set up.

    NCCL on GPUs (one per local rank), gloo on CPUs. Without ``WORLD_SIZE`` (a plain ``python train.py``)
    this does nothing and returns the single-process default.
    """
    owns = False
    if not (dist.is_available() and dist.is_initialized()):
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return DistInfo()
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=DIST_TIMEOUT)
        owns = True
    rank, world = dist.get_rank(), dist.get_world_size()
    if world <= 1:
        return DistInfo(owns_group=owns)
    local = int(os.environ.get("LOCAL_RANK", rank))
    device = None
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    return DistInfo(rank, world, local, device, owns)


def finish_distributed(dd: DistInfo) -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    if dd.owns_group and dist.is_initialized():
        dist.destroy_process_group()
