"""Benchmark scoring and saliency per subject (the default 12-SNP SFCN).

Usage: python benchmarks/scoring_speed.py [--resolution 2] [--repeats 3] [--threads 2]
       [--ig-steps 32] [--device cpu]
Prints JSON: seconds per subject for scoring (one forward pass, the participant level's
ScoreImage step without file I/O), and seconds per SNP per subject for each saliency
method (input gradients, Integrated Gradients with --ig-steps steps and internal batch 4,
SmoothGrad with 8 samples), medians of --repeats runs after a warm-up. The input is the
packaged MNI152 template brain on the model grid; timings do not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _template_volume(resolution: float) -> np.ndarray:
    import nibabel as nb
    from nilearn.image import resample_img

    from bgs_app.grid import model_grid
    from bgs_app.templates import get_template

    shape, affine = model_grid(resolution)
    tpl = get_template()
    img = resample_img(nb.load(tpl.t1w), target_affine=affine, target_shape=shape,
                       force_resample=True, copy_header=True)
    mask = resample_img(nb.load(tpl.mask), target_affine=affine, target_shape=shape,
                        interpolation="nearest", force_resample=True, copy_header=True)
    data = img.get_fdata(dtype=np.float32) * (mask.get_fdata() > 0)
    return (data / data[data > 0].mean()).astype(np.float32)


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    from bgs_app.model.network import SFCN
    from bgs_app.model.saliency import attribute
    from bgs_app.model.scores import predict_volumes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ig-steps", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    volume = _template_volume(args.resolution)
    model = SFCN(12).eval()
    result = {"resolution_mm": args.resolution, "grid": list(volume.shape),
              "threads": args.threads, "device": args.device, "snps": 12,
              "machine": machine(),
              "torch": torch.__version__}
    result["score_s_per_subject"] = _median_time(
        lambda: predict_volumes(model, [volume], device=args.device), args.repeats)
    methods = {"gradient": {}, "integrated_gradients": {"n_steps": args.ig_steps},
               "smoothgrad": {"nt_samples": 8}}
    for method, kwargs in methods.items():
        result[f"saliency_{method}_s_per_snp"] = _median_time(
            lambda m=method, k=kwargs: attribute(model, volume, 0, method=m,
                                                 device=args.device, **k), args.repeats)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
