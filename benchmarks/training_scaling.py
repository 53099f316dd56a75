"""Group training seconds per epoch against the number of subjects (the app's loop, CPU).

Usage: python benchmarks/training_scaling.py [--sizes N ...] [--resolution MM]
       [--epochs N] [--threads N]; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import build_store, linear_fit, write_model_grid_images


def measure(argv: list[str] | None = None) -> dict[str, Any]:
    """Group training time per epoch for stores of several sizes (the app's training loop)."""
    import pandas as pd
    import torch

    from bgs_app.model.train import TrainConfig, train_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128],
                        help="subjects in the store (train + validation + test)")
    parser.add_argument("--resolution", type=float, default=3.0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_max = max(args.sizes)
    snps = [f"rs{i}" for i in range(12)]
    dosages = np.random.default_rng(0).binomial(2, 0.3, (n_max, len(snps))).astype(np.float32)
    folder = Path(tempfile.mkdtemp(prefix="bgs-speed-train-"))
    runs = []
    try:
        paths = write_model_grid_images(folder / "nifti", n_max, args.resolution)
        store = build_store(paths, folder / "store", args.threads)
        grid = list(store.grid["shape"])
        for n in sorted(args.sizes):
            n_test = max(1, round(n * args.test_fraction))
            n_val = max(2, round(n * args.val_fraction))
            train = np.arange(n - n_test - n_val)
            val = np.arange(len(train), len(train) + n_val)
            cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                              device=args.device, patience=args.epochs + 1)
            start = time.perf_counter()
            _, log = train_model(store, train, dosages[train], val, dosages[val], snps,
                                 folder / f"train-{n}", cfg)
            total = time.perf_counter() - start
            seconds = pd.to_numeric(log["seconds"]).tolist()
            runs.append({"subjects": n, "train": len(train), "val": n_val,
                         "epoch_seconds": [round(s, 2) for s in seconds],
                         "epoch_seconds_last": round(seconds[-1], 2),
                         "seconds_per_training_volume": round(seconds[-1] / len(train), 3),
                         "total_seconds_incl_setup": round(total, 2)})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "benchmark": "group training seconds per epoch vs subjects",
        "resolution_mm": args.resolution, "grid": grid, "device": args.device,
        "threads": args.threads, "batch_size": args.batch_size, "epochs": args.epochs,
        "snps": len(snps), "num_workers": 0,
        "epoch": "one pass over the training volumes (augmented) + validation predictions",
        "runs": runs,
        "fit_epoch_seconds_vs_subjects": linear_fit(
            [r["subjects"] for r in runs], [r["epoch_seconds_last"] for r in runs]),
    }


if __name__ == "__main__":
    sys.dont_write_bytecode = True  # nothing written inside the repository
    print(json.dumps(measure(), indent=2))
