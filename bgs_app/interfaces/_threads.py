"""Thread limits for ITK (antspyx), BLAS and torch inside one node."""

from __future__ import annotations

import os


def limit_threads(n: int | None) -> None:
    """Set ITK/OpenMP thread counts for this process (before antspyx runs)."""
    if not n:
        return
    for var in ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(int(n))


def limit_torch_threads(n: int | None) -> None:
    """Set torch's intra-op thread count for this process."""
    if not n:
        return
    import torch

    torch.set_num_threads(int(n))
