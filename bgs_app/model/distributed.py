"""Runs launched by ``torchrun``: the process group, barriers, a GPU per rank, and the
sums that let every rank take a share of scoring and saliency.

``torchrun`` tells each process its place (read by
:func:`bgs_app.utils.processes.torchrun_environment`); :func:`join` initialises the
process group once (NCCL on GPUs, gloo on CPUs) and :func:`barrier` waits for every rank.
:func:`shard` gives each rank its slice of a list of rows, and :func:`all_reduce_sum`
adds up what the ranks computed.

A collective waits at most :func:`timeout_minutes` (``BGS_APP_DIST_TIMEOUT_MINUTES``,
default 360): the other ranks wait in one while rank 0 builds the tensor store, which
for 40,000 images at 1 mm can take longer than torch's default of 10 (NCCL) or 30
(gloo) minutes.
"""

from __future__ import annotations

import os

import numpy as np

from bgs_app.utils.processes import torchrun_environment as environment

#: Environment variable: minutes a rank may wait in a collective (store building, the
#: slowest rank's share of scoring).
TIMEOUT_ENV = "BGS_APP_DIST_TIMEOUT_MINUTES"
DEFAULT_TIMEOUT_MINUTES = 360.0
#: Elements per all-reduce call (bounds the GPU memory a reduction of maps takes).
REDUCE_CHUNK = 1 << 25


def timeout_minutes() -> float:
    """The collective timeout in minutes (:data:`TIMEOUT_ENV`, else the default)."""
    value = os.getenv(TIMEOUT_ENV)
    try:
        minutes = float(value) if value else DEFAULT_TIMEOUT_MINUTES
    except ValueError:
        minutes = DEFAULT_TIMEOUT_MINUTES
    return minutes if minutes > 0 else DEFAULT_TIMEOUT_MINUTES


def join() -> tuple[int, int]:
    """``(rank, world_size)``, initialising the process group when there are several."""
    rank, world, _ = environment()
    if world < 2:
        return 0, 1
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo",
                                timeout=timedelta(minutes=timeout_minutes()))
    return dist.get_rank(), dist.get_world_size()


def barrier() -> None:
    """Wait for every rank (nothing when the process runs alone)."""
    if environment()[1] > 1:
        import torch.distributed as dist

        join()
        dist.barrier()


def device_for_rank(device: str) -> str:
    """This rank's own GPU when several processes share a machine's GPUs."""
    _, world, local = environment()
    if world > 1 and str(device).startswith("cuda"):
        import torch

        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def shard(rows: list) -> list:
    """This rank's share of ``rows`` (every ``world``-th item from its rank; all of them
    when the process runs alone)."""
    rank, world = join() if environment()[1] > 1 else (0, 1)
    return list(rows)[rank::world]


def all_reduce_sum(array: np.ndarray) -> np.ndarray:
    """The element-wise sum of ``array`` over every rank (the array itself when alone).

    Every rank must call it with an array of the same shape and dtype. The sum is taken
    on this rank's GPU with NCCL, else on the CPU (gloo), in chunks of
    :data:`REDUCE_CHUNK` elements.
    """
    array = np.ascontiguousarray(array)
    if environment()[1] < 2:
        return array
    import torch
    import torch.distributed as dist

    join()
    on_gpu = dist.get_backend() == "nccl"
    flat = array.reshape(-1)
    out = np.empty_like(flat)
    for start in range(0, max(flat.size, 1), REDUCE_CHUNK):
        part = torch.from_numpy(flat[start:start + REDUCE_CHUNK].copy())
        if on_gpu:
            part = part.cuda()
        dist.all_reduce(part, op=dist.ReduceOp.SUM)
        out[start:start + REDUCE_CHUNK] = part.cpu().numpy()
    return out.reshape(array.shape)
