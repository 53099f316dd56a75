"""Benchmark the CNN: FLOPs per volume, training throughput, and tensor-store reads.

Usage: python benchmarks/train_throughput.py [--device cpu|cuda] [--resolutions 3 2]
       [--batch 4] [--steps 5] [--store-volumes 64] [--workers 4]
Prints JSON:
* FLOPs of one training step (forward + backward) per volume at 1, 2, 3 and 4 mm
  (torch's FlopCounterMode), and the implied H100 time at 40 % of 990 TFLOP/s (bf16);
* training throughput (volumes/s) of the default 12-SNP SFCN at each resolution asked
  (CPU: float32, channels_last_3d; CUDA: bf16 autocast, channels_last_3d), median of
  the timed steps after warm-up;
* tensor-store read throughput (volumes/s) through a DataLoader, cold (first pass after
  writing with the page cache dropped where allowed) and warm, at the largest grid asked,
  and its ratio to what a training step consumes.
Needs only torch and numpy (runs where bgs_app's other dependencies are absent).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bgs_app.model.network import SFCN, masked_cross_entropy  # noqa: E402

BOX = (160.0, 192.0, 160.0)


def grid(resolution: float) -> tuple[int, int, int]:
    return tuple(int(np.ceil(s / resolution - 1e-6)) for s in BOX)


def step_flops(resolution: float, n_snps: int = 12) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    # Counted on the meta device: the same counts without the arithmetic (a real 1 mm
    # step took over a minute on 2 CPU cores). The loss adds no counted FLOPs, so a sum
    # stands in for it (masked_cross_entropy reads values; meta tensors have none).
    with torch.device("meta"):
        model = SFCN(n_snps)
        x = torch.zeros(2, 1, *grid(resolution))  # batch norm needs two volumes
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return float(counter.get_total_flops()) / 2.0


def throughput(resolution: float, device: str, batch: int, steps: int) -> dict:
    model = SFCN(12).to(device).to(memory_format=torch.channels_last_3d)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 1, *grid(resolution), device=device).to(
        memory_format=torch.channels_last_3d)
    y = torch.randint(0, 3, (batch, 12), device=device).float()
    times = []
    for i in range(steps + 3):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.bfloat16,
                            enabled=device == "cuda"):
            loss = masked_cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 3:  # warm-up steps include cuDNN's algorithm search
            times.append(time.perf_counter() - start)
    per_step = statistics.median(times)
    return {"resolution_mm": resolution, "grid": list(grid(resolution)), "batch": batch,
            "seconds_per_step_median": round(per_step, 4),
            "volumes_per_s": round(batch / per_step, 2)}


class _MemmapVolumes(torch.utils.data.Dataset):
    def __init__(self, path, shape):
        self.path, self.shape, self.data = path, shape, None

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, i):
        if self.data is None:
            self.data = np.memmap(self.path, dtype=np.float16, mode="r", shape=self.shape)
        # float16 travels (half the bytes); the GPU converts.
        return torch.from_numpy(np.array(self.data[i]))[None]


def store_reads(resolution: float, n: int, workers: int, batch: int) -> dict:
    shape = (n, *grid(resolution))
    folder = Path(tempfile.mkdtemp(prefix="bgs-store-bench-"))
    path = folder / "volumes.f16"
    data = np.memmap(path, dtype=np.float16, mode="w+", shape=shape)
    rng = np.random.default_rng(0)
    for i in range(n):
        data[i] = rng.random(shape[1:], dtype=np.float32).astype(np.float16)
    data.flush()
    del data
    dropped = False
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        dropped = True
    except OSError:
        pass
    out = {"store_volumes": n, "grid": list(shape[1:]), "workers": workers,
           "page_cache_dropped_before_cold_pass": dropped}
    for label in ("cold", "warm"):
        loader = torch.utils.data.DataLoader(
            _MemmapVolumes(path, shape), batch_size=batch, num_workers=workers,
            pin_memory=torch.cuda.is_available(), shuffle=True)
        start = time.perf_counter()
        seen = sum(b.shape[0] for b in loader)
        out[f"{label}_volumes_per_s"] = round(seen / (time.perf_counter() - start), 1)
    path.unlink()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolutions", type=float, nargs="+", default=[3.0, 2.0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--store-volumes", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-cudnn-benchmark", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    flops = {f"{r:g}mm": step_flops(r) for r in (1.0, 2.0, 3.0, 4.0)}
    card = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor()
    result = {
        "benchmark": "SFCN training throughput and tensor-store reads",
        "device": args.device, "card": card or platform.machine(),
        "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
        "train_step_gflop_per_volume": {k: round(v / 1e9, 1) for k, v in flops.items()},
        "h100_seconds_per_volume_at_1mm_40pct_of_990_tflops": round(
            flops["1mm"] / (0.4 * 990e12), 5),
        "throughput": [throughput(r, args.device, args.batch, args.steps)
                       for r in args.resolutions],
    }
    finest = min(args.resolutions)
    reads = store_reads(finest, args.store_volumes, args.workers, args.batch)
    demand = [t for t in result["throughput"] if t["resolution_mm"] == finest][0]
    reads["ratio_warm_reads_to_training_demand"] = round(
        reads["warm_volumes_per_s"] / demand["volumes_per_s"], 1)
    reads["ratio_cold_reads_to_training_demand"] = round(
        reads["cold_volumes_per_s"] / demand["volumes_per_s"], 1)
    result["store"] = reads
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
