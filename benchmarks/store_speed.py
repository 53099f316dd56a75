"""Tensor-store reads against nibabel ``.nii.gz`` loading of the same model-grid images.

Usage: python benchmarks/store_speed.py [--volumes N] [--resolution MM] [--repeats N]
       [--threads N]; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import build_store, median_seconds, write_model_grid_images


def measure(argv: list[str] | None = None) -> dict[str, Any]:
    """Tensor-store reads vs nibabel .nii.gz loading of the same model-grid images."""
    import nibabel as nb

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=128)
    parser.add_argument("--resolution", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="threads building the store")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bgs-speed-store-"))
    try:
        start = time.perf_counter()
        paths = write_model_grid_images(folder / "nifti", args.volumes, args.resolution)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        store = build_store(paths, folder / "store", args.threads)
        build_s = time.perf_counter() - start
        grid = list(store.grid["shape"])
        order = np.random.default_rng(1).permutation(args.volumes)

        def read_nifti() -> None:
            for i in order:
                nb.load(paths[i]).get_fdata(dtype=np.float32)

        def read_store() -> None:
            for i in order:
                store[int(i)]

        nifti_s = median_seconds(read_nifti, args.repeats) / args.volumes
        store_s = median_seconds(read_store, args.repeats) / args.volumes
        nifti_mb = statistics.median(p.stat().st_size for p in paths) / 1e6
        store_mb = (folder / "store/volumes.f16").stat().st_size / args.volumes / 1e6
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "benchmark": "tensor-store reads vs nibabel .nii.gz loading",
        "volumes": args.volumes, "resolution_mm": args.resolution,
        "grid": grid, "repeats": args.repeats,
        "page_cache": "warm for both (files just written, one warm-up pass)",
        "nifti_mb_per_volume": round(nifti_mb, 3), "store_mb_per_volume": round(store_mb, 3),
        "write_nifti_seconds": round(write_s, 2), "build_store_seconds": round(build_s, 2),
        "nibabel_seconds_per_volume": round(nifti_s, 6),
        "store_seconds_per_volume": round(store_s, 6),
        "nibabel_volumes_per_s": round(1 / nifti_s, 1),
        "store_volumes_per_s": round(1 / store_s, 1),
        "store_speedup": round(nifti_s / store_s, 1),
    }


if __name__ == "__main__":
    sys.dont_write_bytecode = True  # nothing written inside the repository
    print(json.dumps(measure(), indent=2))
