"""Runs launched by ``torchrun``: the process group, barriers, a GPU per rank.

``torchrun`` tells each process its place (read by
:func:`bgs_app.utils.processes.torchrun_environment`); :func:`join` initialises the
process group once (NCCL on GPUs, gloo on CPUs) and :func:`barrier` waits for every rank.
"""

from __future__ import annotations

from bgs_app.utils.processes import torchrun_environment as environment


def join() -> tuple[int, int]:
    """``(rank, world_size)``, initialising the process group when there are several."""
    rank, world, _ = environment()
    if world < 2:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
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
