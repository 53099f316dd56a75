"""Processes: workers that die with their parent, usable CPUs, and ``torchrun``'s ranks.

``kill -9`` of a run's main process must not leave its workers behind (they would go
on holding memory and cores, and write into a work folder a rerun is using). On Linux
every worker asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``);
elsewhere the call does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask the kernel to kill this process when its parent dies (Linux; else nothing).

    Parameters
    ----------
    parent_pid : int, optional
        The parent's pid seen before the fork: when the parent is already gone (it
        died between the fork and this call), exit at once.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a cluster allocation)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def torchrun_environment() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` of this process as ``torchrun`` set them
    (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``): ``(0, 1, 0)`` when alone. The one reader
    of that environment."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local
