"""Group saliency-map variants scored against a simulated study's truth (issue 7).

Usage: python benchmarks/saliency_variants.py --study DIR [--simulate] --model BUNDLE
       --split split.tsv --resolution MM [--device cuda] [--nprocs N] [--ig-steps 16]
       [--limit K] --out DIR

For the held-out (``split == test``) participants of an earlier group-level run on a
``bgs-simulate`` study (``--simulate`` first re-simulates the study: N = 400, seed 1,
effect 80 %, as ``benchmarks/recovery.py`` does), model-grid images are made from the true
transforms, every SNP's attribution map is computed with plain gradients and with
Integrated Gradients, and each map variant is scored by its voxelwise ROC AUC against the
truth effect map (a null SNP's against the union of the causal maps):

``abs``             the group map the group level writes (mean brain-normalised |attribution|)
``rattr_abs_s``     |Pearson r| between attribution and dosage over subjects (the
                    genotype-correlation map the group level writes)
``rcontrib_abs_s``  the same with gradient x (image - mean image), IG's own decomposition
``rgxi_abs_s``      the same with gradient x image

(``_s``: smoothed within the brain, sigma 6 mm). Writes ``salexp.json`` (the AUCs and
timings) and the smoothed correlation maps (``covmaps_<method>.npz``) to ``--out``.
The figures in docs/validation.md come from the 2 mm run recorded in
benchmarks/results/saliency_variants_2mm_n400.json (H100, 2026-11-26).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recovery import run_logged, simulate_command  # noqa: E402  (benchmarks/recovery.py)

from bgs_app.group.saliency import smooth_within_brain  # noqa: E402
from bgs_app.model.bundle import load_bundle  # noqa: E402
from bgs_app.model.saliency import (  # noqa: E402
    GenotypeCorrelation,
    attribute,
    normalised_abs,
)
from bgs_app.simulate.evaluate import map_auc  # noqa: E402
from bgs_app.simulate.oracle import truth_model_grid  # noqa: E402


def _corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r between each voxel of x (subjects, ...) and y (subjects,)."""
    y = (y - y.mean()) / y.std()
    xc = x - x.mean(0)
    return np.tensordot(y, xc, axes=1) / len(y) / np.maximum(xc.std(0), 1e-12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, required=True)
    parser.add_argument("--simulate", action="store_true")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--resolution", type=float, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--ig-steps", type=int, default=16)
    parser.add_argument("--limit", type=int, default=0, help="first K test subjects only")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    began, log = time.time(), {}
    if args.simulate:
        args.out.mkdir(parents=True, exist_ok=True)
        run_logged(simulate_command(args.study, n=400, seed=1, resolution=args.resolution,
                              effect=80.0, nprocs=args.nprocs), args.out / "simulate.log")
    log["simulate_s"] = round(time.time() - began, 1)
    split = pd.read_csv(args.split, sep="\t")
    test = sorted(split.loc[split["split"] == "test", "participant_id"])
    test = test[: args.limit] if args.limit else test
    grid_dir = truth_model_grid(args.study, args.out / "model_grid", args.resolution,
                                nprocs=args.nprocs, participants=test)
    paths = [next((grid_dir / s / "anat").glob("*_desc-model_T1w.nii.gz")) for s in test]
    volumes = np.stack([nb.load(p).get_fdata(dtype=np.float32) for p in paths])
    ref = nb.load(paths[0])
    log.update(n_test=len(test), grid_s=round(time.time() - began, 1))

    from bed_reader import open_bed
    from nilearn.image import resample_to_img

    model, meta = load_bundle(args.model)
    snps = [s["snp"] if isinstance(s, dict) else s for s in meta["snps"]]
    with open_bed(str(args.study / "genetics/study.bed")) as bed:
        geno = bed.read(dtype="float64")
        iid, sid = [str(i) for i in bed.iid], list(bed.sid)
    rows = [iid.index(s) if s in iid else iid.index(s.removeprefix("sub-")) for s in test]
    dosage = geno[np.ix_(rows, [sid.index(s) for s in snps])]
    attrs = {}
    for method, kwargs in (("gradient", {}),
                           ("integrated_gradients", {"n_steps": args.ig_steps,
                                                     "internal_batch_size": 8})):
        a = np.zeros((len(test), len(snps), *volumes.shape[1:]), np.float32)
        for i, volume in enumerate(volumes):
            for j in range(len(snps)):
                a[i, j] = attribute(model, volume, j, method=method, device=args.device,
                                    **kwargs)
        attrs[method] = a
        log[f"{method}_s"] = round(time.time() - began, 1)

    truth_dir = args.study / "derivatives/simulation-truth"
    truth = json.loads((truth_dir / "truth.json").read_text())
    causal = [s["snp"] for s in truth["snps"] if s["causal"]]
    maps = {c: resample_to_img(nb.load(truth_dir / f"effect_snp-{c}_map.nii.gz"), ref,
                               interpolation="continuous", force_resample=True,
                               copy_header=True).get_fdata() for c in causal}
    union = np.max(np.abs(np.stack(list(maps.values()))), 0)
    brain = (volumes > 0).mean(0) > 0.5
    sigma = 6.0 / args.resolution
    mean_image = volumes.mean(0)

    def smoothed_abs(x):
        return smooth_within_brain(np.where(brain, np.abs(x), 0).astype(np.float32), sigma)

    results, keep = {}, {}
    for method, a in attrs.items():
        for j, snp in enumerate(snps):
            target = maps.get(snp, union)
            row = results.setdefault(snp, {"causal": snp in causal})
            group = np.mean([normalised_abs(x, v > 0) for x, v in zip(a[:, j], volumes,
                                                                       strict=True)], 0)
            row[f"{method}:abs"] = map_auc(smoothed_abs(group), target, brain)
            called = ~np.isnan(dosage[:, j])
            y = dosage[called, j]
            contrib = (a[called, j] if method == "integrated_gradients"
                       else a[called, j] * (volumes[called] - mean_image))
            r_contrib = smoothed_abs(_corr(contrib, y))
            row[f"{method}:rcontrib_abs_s"] = map_auc(r_contrib, target, brain)
            # The group level's genotype-correlation map, through its own accumulator.
            product = GenotypeCorrelation([snp], dosage[:, [j]])
            for i in range(len(test)):
                product.add(0, a[i, j], dosage[i, j])
            r_attr = product.maps().get(snp, np.zeros(brain.shape, np.float32))
            row[f"{method}:rattr_abs_s"] = map_auc(smoothed_abs(r_attr), target, brain)
            if method == "gradient":
                row[f"{method}:rgxi_abs_s"] = map_auc(
                    smoothed_abs(_corr(a[called, j] * volumes[called], y)), target, brain)
            keep[f"{method}_{snp}"] = r_contrib.astype(np.float16)
    log["total_s"] = round(time.time() - began, 1)
    table = pd.DataFrame(results).T.sort_values("causal")
    print(table.T.round(3).to_string())
    print(json.dumps(log))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "salexp.json").write_text(json.dumps({"log": log, "aucs": results}, indent=1))
    for method in attrs:
        np.savez_compressed(args.out / f"covmaps_{method}.npz", affine=ref.affine,
                            **{k: v for k, v in keep.items() if k.startswith(method)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
