"""The voxelwise genotype test (``--voxelwise-test``): its family-wise error on null SNPs
and whether its maps find the planted regions.

Usage: python benchmarks/voxelwise.py [--seeds 1 2 3 4 5] [--n 400]
       [--effect-size 80 80 40 40] [--null-studies K] [--null-snps 60] [--null-n 200]
       [--out FILE]

Per seed, the study of ``benchmarks/architecture.py`` (same seed, same study: 4 mm, 12
SNPs, one causal SNP of each effect kind, oracle images and true IDPs); the group level
runs with ``--voxelwise-test`` (a one-epoch CNN: only the test's maps are used). Reported:
per null SNP whether any voxel is significant at 5 % family-wise error (the family-wise
error rate over null SNPs and seeds, with its Clopper-Pearson interval), and per causal
SNP the ROC AUC of its |t| map against its true effect region (the truth's effect map,
|volume change| above 5 % per allele, on the test's grid) and whether any voxel is
significant.

``--null-studies K`` adds K studies without any causal SNP (``--n-causal 0``, seeds
1001...; ``--null-snps`` SNPs each, ``--null-n`` participants, log-Jacobian maps, five-fold
cross-fitting so that every participant is held out): every SNP is null, so the share of
SNPs with a significant voxel is the test's family-wise error, over many more SNPs than
the studies with planted effects hold (their null SNPs can correlate with a causal SNP by
chance in 77 people, and then rightly find its region). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import code_version, emit, machine, run_logged  # noqa: E402

BGS_APP = [sys.executable, "-m", "bgs_app"]
SIMULATE = [sys.executable, "-m", "bgs_app.simulate"]
KINDS = ("atlas", "blobs", "shape", "pattern")


def _auc(score: np.ndarray, truth: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, score))


def one_seed(base: Path, seed: int, args) -> dict:
    import nibabel as nb
    from nilearn.image import resample_to_img

    from bgs_app.simulate.oracle import truth_model_grid

    study, log = base / "study", base / "log.txt"
    run_logged([*SIMULATE, str(study), "--n-subjects", str(args.n), "--seed", str(seed),
                "--resolution", "4", "--n-causal", "4", "--effect-size",
                *map(str, args.effect_size), "--effect-kinds", *KINDS, "--nprocs", "2",
                "--quiet"], log, "voxelwise")
    truth_dir = study / "derivatives/simulation-truth"
    truth = json.loads((truth_dir / "truth.json").read_text())
    kind_of = {s["snp"]: s.get("effect_kind", "null") if s["causal"] else "null"
               for s in truth["snps"] if s["qc_failure"] is None}
    (base / "snps.txt").write_text("\n".join(kind_of) + "\n")
    out = truth_model_grid(study, base / "out", 4.0, nprocs=2)
    seconds = run_logged([*BGS_APP, str(study), str(out), "group", "--genotypes",
                          str(study / "genetics/study"), "--snps-file",
                          str(base / "snps.txt"), "--resolution", "4", "--epochs", "1",
                          "--channels", "4", "4", "4", "4", "4", "4", "--no-saliency",
                          "--no-voxel-baseline", "--voxelwise-test", "--covariates", "age",
                          "sex", "site", "--nprocs", "2", "--seed", str(seed), "-w",
                          str(base / "work"), "--skip-bids-validation"], log, "voxelwise")
    table = pd.read_csv(out / "group/voxelwise.tsv", sep="\t").set_index("snp")
    rows = {}
    for snp, kind in kind_of.items():
        row = {"kind": kind, "significant_voxels": int(table.loc[snp, "significant_voxels"]),
               "p_fwe_min": float(table.loc[snp, "p_fwe_min"])}
        if kind != "null":
            tmap = nb.load(out / "group/voxelwise" / f"snp-{snp}_stat-t_statmap.nii.gz")
            effect = resample_to_img(nb.load(truth_dir / f"effect_snp-{snp}_map.nii.gz"),
                                     tmap, interpolation="continuous", force_resample=True,
                                     copy_header=True).get_fdata()
            data = tmap.get_fdata()
            brain = np.isfinite(data) & (data != 0)
            row["auc"] = round(_auc(np.abs(data[brain]), np.abs(effect[brain]) > 0.05), 4)
        rows[snp] = row
    return {"seed": seed, "n_test": int(table["n"].max()), "seconds": round(seconds, 1),
            "snps": rows}


def null_study(base: Path, seed: int, args) -> dict:
    """A study without causal SNPs: per SNP, whether any voxel is significant."""
    from bgs_app.simulate.oracle import truth_model_grid

    study, log = base / "study", base / "log.txt"
    run_logged([*SIMULATE, str(study), "--n-subjects", str(args.null_n), "--seed",
                str(seed), "--resolution", "4", "--n-snps", str(args.null_snps),
                "--n-causal", "0", "--nprocs", "2", "--quiet"], log, "voxelwise-null")
    snps = [line.split("\t")[1] for line in
            (study / "genetics/study.bim").read_text().splitlines()]
    (base / "snps.txt").write_text("\n".join(snps) + "\n")
    out = truth_model_grid(study, base / "out", 4.0, nprocs=2)
    seconds = run_logged([*BGS_APP, str(study), str(out), "group", "--genotypes",
                          str(study / "genetics/study"), "--snps-file",
                          str(base / "snps.txt"), "--resolution", "4", "--epochs", "1",
                          "--cv-folds", "5", "--channels", "4", "4", "4", "4", "4", "4",
                          "--no-saliency", "--no-voxel-baseline", "--voxelwise-test",
                          "--covariates", "age", "sex", "site", "--nprocs", "2", "--seed",
                          str(seed), "-w", str(base / "work"), "--skip-bids-validation"],
                         log, "voxelwise-null")
    table = pd.read_csv(out / "group/voxelwise.tsv", sep="\t")
    sidecar = json.loads((out / "group/voxelwise.json").read_text())
    return {"seed": seed, "input": sidecar.get("Input"), "n_test": int(table["n"].max()),
            "snps": len(table), "voxels": int(table["voxels"].max()),
            "with_a_significant_voxel": int((table["significant_voxels"] > 0).sum()),
            "p_fwe_min": [round(float(v), 4) for v in table["p_fwe_min"]],
            "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    from scipy import stats

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3, 4, 5])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--effect-size", type=float, nargs=4,
                        default=[80.0, 80.0, 40.0, 40.0], metavar="PERCENT")
    parser.add_argument("--null-studies", type=int, default=0, metavar="K")
    parser.add_argument("--null-snps", type=int, default=60)
    parser.add_argument("--null-n", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    seeds, null_studies = [], []
    for k in range(args.null_studies):
        with tempfile.TemporaryDirectory(prefix="bgs-voxelwise-null-") as tmp:
            null_studies.append(null_study(Path(tmp), 1001 + k, args))
        if args.out:
            emit({"benchmark": "voxelwise", "complete": False,
                  "null_studies": null_studies}, args.out)
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="bgs-voxelwise-") as tmp:
            seeds.append(one_seed(Path(tmp), seed, args))
        if args.out:
            emit({"benchmark": "voxelwise", "complete": False, "seeds": seeds}, args.out)
    nulls = [r for s in seeds for r in s["snps"].values() if r["kind"] == "null"]
    false = sum(r["significant_voxels"] > 0 for r in nulls)
    ci = stats.binomtest(false, len(nulls)).proportion_ci(method="exact") if nulls else None
    by_kind = {}
    for kind in KINDS:
        rows = [r for s in seeds for r in s["snps"].values() if r["kind"] == kind]
        aucs = [r["auc"] for r in rows if r.get("auc") == r.get("auc")]
        by_kind[kind] = {"found": sum(r["significant_voxels"] > 0 for r in rows),
                         "studies": len(rows),
                         "auc_median": round(float(np.median(aucs)), 3) if aucs else None,
                         "auc_range": [round(min(aucs), 3), round(max(aucs), 3)] if aucs
                         else None}
    emit({"benchmark": "voxelwise", "complete": True, "machine": machine(),
          "code": code_version(),
          "settings": {"n": args.n, "effect_size_percent": args.effect_size,
                       "resolution_mm": 4, "permutations": 1000,
                       "participants": "held-out test set (19 %)"},
          "null_snps": len(nulls), "null_snps_with_a_significant_voxel": false,
          "family_wise_error": round(false / max(len(nulls), 1), 4),
          "family_wise_error_ci95": [round(ci.low, 4), round(ci.high, 4)] if ci else None,
          "causal": by_kind, "seeds": seeds,
          "global_null": _global_null(null_studies, args) if null_studies else None,
          "seconds": round(time.perf_counter() - began, 1)}, args.out)
    return 0


def _global_null(studies: list[dict], args) -> dict:
    """The family-wise error over the null studies' SNPs (Clopper-Pearson interval), and
    its spread over studies."""
    from scipy import stats

    false = sum(s["with_a_significant_voxel"] for s in studies)
    total = sum(s["snps"] for s in studies)
    ci = stats.binomtest(false, total).proportion_ci(method="exact")
    rates = [s["with_a_significant_voxel"] / s["snps"] for s in studies]
    return {"studies": len(studies), "participants": args.null_n, "snps_per_study": args.null_snps,
            "snps": total, "with_a_significant_voxel": false,
            "family_wise_error": round(false / total, 4),
            "family_wise_error_ci95": [round(ci.low, 4), round(ci.high, 4)],
            "per_study_rate_median": round(float(np.median(rates)), 4),
            "per_study_rate_range": [round(min(rates), 4), round(max(rates), 4)]}


if __name__ == "__main__":
    sys.exit(main())
