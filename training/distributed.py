"""DistributedDataParallel under torchrun: gloo on CPU, nccl on CUDA; rank 0 alone writes artifacts.

``torchrun --nproc-per-node 2 -m training.train ...`` sets RANK, WORLD_SIZE and LOCAL_RANK; without
them everything here is a single process and nothing is initialised.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from training.errors import TrainingError


@dataclass(frozen=True)
class Processes:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start_processes(device: torch.device) -> Processes:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Processes(rank=0, world_size=1, local_rank=0)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Processes(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ["LOCAL_RANK"]))


def barrier(processes: Processes) -> None:
    if processes.distributed:
        dist.barrier()


def stop_processes(processes: Processes) -> None:
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()


def pick_device(requested: str) -> torch.device:
    """``auto``: CUDA when available (under torchrun, the GPU of this process's LOCAL_RANK), else CPU."""
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TrainingError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")
