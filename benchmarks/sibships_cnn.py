"""Sibling pairs through the CNN: the null SNPs' held-out r with and without --kinship.

Usage: python benchmarks/sibships_cnn.py [--seeds 1 2 3 4 5] [--n 200] [--sibships 0.3]
       [--epochs 30] [--cv-folds K] [--out FILE] [--keep DIR]

Per seed, ``bgs-simulate`` writes a null study (4 mm, 12 SNPs, none causal) in which a
fraction of participants are sibling pairs (genotypes identical by descent from the same
parents; half of the individual anatomy shared) with their KING table. The group level
trains the CNN twice on the same oracle model-grid images with its default split (20 %
held out; ``--cv-folds`` to cross-fit instead): with ``--kinship`` (whole families on one
side) and without (a sibling can be held out while the other trains, so the model can
read the held-out one's genotype from the anatomy they share).
No SNP changes the anatomy: the mean held-out r of the null SNPs should be 0. Prints one
JSON object (per seed the mean over the 12 SNPs; over seeds the mean with its t interval).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import code_version, emit, machine, run_logged, seed_folder  # noqa: E402

BGS_APP = [sys.executable, "-m", "bgs_app"]
SIMULATE = [sys.executable, "-m", "bgs_app.simulate"]


def _run(cmd: list[str], log: Path) -> float:
    return run_logged(cmd, log, "sibships_cnn")


def one_seed(base: Path, seed: int, args: argparse.Namespace) -> dict:
    from bgs_app.simulate.oracle import truth_model_grid

    study, log = base / "study", base / "log.txt"
    _run([*SIMULATE, str(study), "--n-subjects", str(args.n), "--seed", str(seed),
          "--resolution", "4", "--n-causal", "0", "--sibships", str(args.sibships),
          "--nprocs", "2", "--quiet"], log)
    truth = json.loads((study / "derivatives/simulation-truth/truth.json").read_text())
    snps = [s["snp"] for s in truth["snps"] if s["qc_failure"] is None]
    (base / "snps.txt").write_text("\n".join(snps) + "\n")
    images = base / "images"
    truth_model_grid(study, images, 4.0, nprocs=2)
    result = {"seed": seed, "pairs": len(truth["sibships"]["pairs"]), "arms": {}}
    for arm in ("family_aware", "naive"):
        out = base / f"out_{arm}"
        shutil.copytree(images, out, dirs_exist_ok=True)
        cmd = [*BGS_APP, str(study), str(out), "group", "--genotypes",
               str(study / "genetics/study"), "--snps-file", str(base / "snps.txt"),
               "--resolution", "4", "--epochs", str(args.epochs),
               "--patience", str(args.epochs), "--batch-size", "8", "--learning-rate",
               "2e-3", "--channels", "8", "16", "32", "32", "32", "16", "--no-saliency",
               "--covariates", "age", "sex", "site", "--nprocs", "2", "--seed", str(seed),
               "-w", str(base / f"work_{arm}"), "--skip-bids-validation"]
        if args.cv_folds:
            cmd += ["--cv-folds", str(args.cv_folds)]
        if arm == "family_aware":
            cmd += ["--kinship", str(study / "genetics/study.kin0")]
        seconds = _run(cmd, log)
        perf = pd.read_csv(out / "group/performance.tsv", sep="\t").query("model == 'cnn'")
        perf = perf[perf["snp"].isin(snps)]
        split = pd.read_csv(out / "group/split.tsv", sep="\t").set_index("participant_id")
        # A pair "straddles" when one is held out and the other is not.
        held = split["split"].reindex(split.index).map(
            lambda v: v if str(v).startswith("fold-") else ("test" if v == "test" else "fit"))
        straddle = sum(held.reindex(pair).dropna().nunique() > 1
                       for pair in truth["sibships"]["pairs"])
        result["arms"][arm] = {"mean_r": round(float(perf["r_dosage"].mean()), 4),
                               "r_dosage": dict(zip(perf["snp"], perf["r_dosage"].round(4),
                                                    strict=True)),
                               "pairs_split_across_folds": int(straddle),
                               "seconds": round(seconds, 1)}
    return result


def _mean_ci(values: list[float]) -> dict:
    from scipy import stats

    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * sd / len(values) ** 0.5
    return {"mean": round(mean, 4), "ci95": [round(mean - half, 4), round(mean + half, 4)],
            "sd_over_seeds": round(sd, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--sibships", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--cv-folds", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    seeds = []
    for seed in args.seeds:
        with seed_folder(seed, args.keep) as base:
            seeds.append(one_seed(base, seed, args))
    emit({"benchmark": "sibships_cnn", "machine": machine(), "code": code_version(),
          "design": {"n": args.n, "sibships": args.sibships, "null_snps": 12,
                     "resolution_mm": 4, "cv_folds": args.cv_folds, "epochs": args.epochs},
          "mean_null_r_family_aware": _mean_ci([s["arms"]["family_aware"]["mean_r"]
                                                for s in seeds]),
          "mean_null_r_naive": _mean_ci([s["arms"]["naive"]["mean_r"] for s in seeds]),
          "seeds": seeds, "seconds": round(time.perf_counter() - began, 1)}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
