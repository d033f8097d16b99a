"""torch.distributed helpers: one code path for 1 process, `torchrun --nproc_per_node N`, or a local spawn.

gloo on CPU, nccl when each rank has a GPU. `torchrun` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT; `init_distributed()` reads them and does nothing when they are absent (a plain single process).
`spawn_local(fn, world_size)` starts ranks with torch.multiprocessing on this host (tests, quick experiments).
"""
from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


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


def dist_info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get('LOCAL_RANK', dist.get_rank())))
    return DistInfo()


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment variables (no-op without them)."""
    if dist.is_initialized():
        return dist_info()
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    if world_size <= 1:
        return DistInfo()
    backend = backend or ('nccl' if torch.cuda.is_available() else 'gloo')
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if backend == 'nccl':
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, rank=int(os.environ['RANK']), world_size=world_size)
    return dist_info()


def default_device() -> torch.device:
    info = dist_info()
    if torch.cuda.is_available():
        return torch.device('cuda', info.local_rank)
    return torch.device('cpu')


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: float) -> float:
    """Mean of a python float over ranks (for logging; the gradients are averaged by DDP itself)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _spawned_rank(rank: int, fn: Callable, world_size: int, port: int, args: tuple) -> None:
    os.environ.update({'RANK': str(rank), 'LOCAL_RANK': str(rank), 'WORLD_SIZE': str(world_size),
                       'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port)})
    torch.set_num_threads(1)
    init_distributed('gloo')
    try:
        fn(rank, *args)
    finally:
        cleanup_distributed()


def spawn_local(fn: Callable, world_size: int, args: tuple = ()) -> None:
    """Run `fn(rank, *args)` in `world_size` processes joined by gloo on 127.0.0.1 (fn must be importable)."""
    mp.spawn(_spawned_rank, args=(fn, world_size, free_port(), args), nprocs=world_size, join=True)
