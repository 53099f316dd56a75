"""Brain masks of the two ``--skull-strip-method`` values on real and simulated heads.

For every image, the anatomical workflow (:func:`bgs_app.workflows.init_anat_preproc_wf`,
SyN, not sloppy) runs once with ``ants`` and once with ``deepbet``; the script prints one
JSON object with, per image, the Dice of the two masks, their volumes, the Dice of each
against the truth where there is one (simulated heads: the simulator's brain mask), the
wall time of the whole workflow and of the mask step alone, and what
``--skull-strip-t1w auto`` decides.

Images: the whole-head real T1w of ``../shared/testdata/t1w`` (otsu, colin27; no truth),
its skull-stripped FreeSurfer brain (fsbrain, to check ``auto``), and ``--simulated N``
simulated heads at ~1 mm (``bgs-simulate``).

Run::

    python benchmarks/skull_strip.py --simulated 4 --out benchmarks/results/skull_strip.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nb
import numpy as np
from _common import REPO, code_version, emit, machine

from bgs_app.templates import get_template

TESTDATA = REPO.parent / "shared" / "testdata" / "t1w"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks."""
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def run_workflow(t1w: Path, method: str, work: Path, threads: int) -> tuple[Path, float, float]:
    """Run the anatomical workflow; return its brain mask, wall time and mask-step time."""
    from bgs_app.workflows.anatomical import init_anat_preproc_wf

    wf = init_anat_preproc_wf(template=get_template(), resolution=2.0, registration="syn",
                              omp_nthreads=threads, skull_strip="force",
                              skull_strip_method=method, check_plausibility=False,
                              name=f"anat_{method}")
    wf.inputs.inputnode.t1w = str(t1w)
    wf.base_dir = str(work)
    start = time.perf_counter()
    graph = wf.run(plugin="Linear")
    wall = time.perf_counter() - start
    mask, step = None, 0.0
    # The mask step: deepbet's node, or ANTs' resampling and refinement of the template mask
    # (its registrations are needed by every method, so they are not counted).
    steps = {"deepbet": ("deepbet_mask",),
             "ants": ("mask_coarse", "refine_coarse", "mask_final", "refine_final")}[method]
    for node in graph.nodes():
        if node.name in steps:
            step += float(node.result.runtime.duration)
        if node.name == ("deepbet_mask" if method == "deepbet" else "refine_final"):
            mask = Path(node.result.outputs.out_file)
    return mask, wall, step


def lowres(src: Path, dst: Path, zooms=(1.2, 1.2, 3.0)) -> Path:
    """``src`` resampled to coarser voxels (linear), as a low-resolution acquisition."""
    from nilearn.image import resample_img

    img = nb.load(src)
    target = img.affine.copy()
    target[:3, :3] = img.affine[:3, :3] @ np.diag(np.asarray(zooms) /
                                                  np.asarray(img.header.get_zooms()[:3]))
    shape = np.ceil(np.asarray(img.shape[:3]) * np.asarray(img.header.get_zooms()[:3])
                    / np.asarray(zooms)).astype(int)
    out = resample_img(img, target_affine=target, target_shape=tuple(shape),
                       interpolation="continuous", force_resample=True, copy_header=True)
    nb.Nifti1Image(out.get_fdata(dtype=np.float32), out.affine).to_filename(dst)
    return dst


def simulate(folder: Path, n: int) -> list[tuple[str, Path, Path]]:
    """``n`` simulated whole heads at ~1 mm with their true brain masks."""
    subprocess.run([sys.executable, "-m", "bgs_app.simulate", str(folder), "--n-subjects",
                    str(n), "--seed", "11", "--quiet"], check=True)
    truth = folder / "derivatives" / "simulation-truth"
    out = []
    for t1w in sorted(folder.glob("sub-*/anat/sub-*_T1w.nii.gz")):
        sub = t1w.name.split("_")[0]
        masks = sorted((truth / sub).rglob("*desc-truth_mask.nii.gz"))
        out.append((sub, t1w, masks[0]))
    return out


def main(argv: list[str] | None = None) -> int:
    from bgs_app.interfaces.masks import is_skull_stripped

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simulated", type=int, default=4, help="simulated heads")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--keep-masks", type=Path, help="copy every mask (and image) here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images: list[tuple[str, Path, Path | None]] = []
        for label, name in (("otsu", "otsu_T1w.nii.gz"), ("colin27", "colin27_T1w.nii.gz")):
            if (TESTDATA / name).is_file():
                images.append((label, TESTDATA / name, None))
        if (TESTDATA / "otsu_T1w.nii.gz").is_file():
            # A low-resolution clinical-like head with neck: otsu at 1.2 x 1.2 x 3 mm.
            low = tmp / "otsu_lowres.nii.gz"
            images.append(("otsu_lowres", lowres(TESTDATA / "otsu_T1w.nii.gz", low), None))
        images += simulate(tmp / "sim", args.simulated) if args.simulated else []
        auto = {label: is_skull_stripped(path) for label, path, _ in images}
        if (TESTDATA / "fsbrain_T1w.mgz").is_file():
            auto["fsbrain"] = is_skull_stripped(TESTDATA / "fsbrain_T1w.mgz")
        for label, path, truth_path in images:
            row = {"image": label, "real": truth_path is None}
            masks = {}
            for method in ("ants", "deepbet"):
                mask_path, wall, step = run_workflow(path, method, tmp / "work" / label,
                                                     args.threads)
                img = nb.load(mask_path)
                masks[method] = np.asarray(img.dataobj) > 0
                if args.keep_masks:
                    args.keep_masks.mkdir(parents=True, exist_ok=True)
                    shutil.copy(mask_path, args.keep_masks / f"{label}_{method}_mask.nii.gz")
                    shutil.copy(path, args.keep_masks / f"{label}_T1w{''.join(path.suffixes)}")
                row[f"{method}_ml"] = round(float(masks[method].sum()
                                                  * np.prod(img.header.get_zooms()[:3])) / 1e3,
                                            1)
                row[f"{method}_workflow_s"] = round(wall, 1)
                row[f"{method}_mask_step_s"] = round(step, 1)
            row["dice_ants_deepbet"] = round(dice(masks["ants"], masks["deepbet"]), 4)
            row["deepbet_over_ants_volume"] = round(row["deepbet_ml"] / row["ants_ml"], 3)
            if truth_path is not None:
                # The truth is on the raw grid; the masks are on the RAS-reoriented one.
                truth_img = nb.as_closest_canonical(nb.load(truth_path))
                truth = np.asarray(truth_img.dataobj) > 0
                for method in ("ants", "deepbet"):
                    row[f"dice_{method}_truth"] = round(dice(masks[method], truth), 4)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)

    def summary(key, subset):
        values = [r[key] for r in subset if key in r]
        if not values:
            return None
        return {"median": round(statistics.median(values), 4), "min": min(values),
                "max": max(values), "n": len(values)}

    real = [r for r in rows if r["real"]]
    sim = [r for r in rows if not r["real"]]
    keys = ("dice_ants_deepbet", "deepbet_over_ants_volume", "dice_ants_truth",
            "dice_deepbet_truth", "ants_workflow_s", "deepbet_workflow_s",
            "ants_mask_step_s", "deepbet_mask_step_s")
    result = {
        "benchmark": "skull_strip", **code_version(), "machine": machine(),
        "threads": args.threads, "auto_decides_stripped": auto, "images": rows,
        "summary": {"real": {k: summary(k, real) for k in keys},
                    "simulated": {k: summary(k, sim) for k in keys}},
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
