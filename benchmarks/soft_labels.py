"""Soft labels against hard calls: the CNN's held-out r on a study with imputed dosages.

Usage: python benchmarks/soft_labels.py [--seeds 1 2 3] [--n 200] [--noise 0.1]
       [--epochs 40] [--out FILE] [--keep DIR]

Per seed, ``bgs-simulate`` writes a study (4 mm, 12 SNPs, 4 causal with 80 % volume
change per allele, as ``recovery.py``) whose genotypes are imputed dosages in PLINK 2
(``--imputation-noise``: each call keeps 1 - e of its probability, e ~ U(0, 2 x noise);
INFO about 1 - 2 x noise). The model-grid images come from the true transforms
(``truth_model_grid``). The group level trains twice on the same images and split:

``soft``  ``--genotypes study.pgen``: cross-entropy against the genotype probabilities
``hard``  the best-guess hard calls of the same dosages (rounded, none missing) as a
          PLINK 1 fileset: what a user who hard-calls before training gives

Both runs use ``--hwe 1e-30``: the hard calls of imputed dosages (those within 0.1 of an
integer, on which plink2 and the group level test Hardy-Weinberg) are a genotype-biased
subset, so the default 1e-6 drops imputed SNPs that are in equilibrium. Both runs'
held-out scores are correlated with the same PLINK 2 dosages. Prints one
JSON object: per seed and SNP the held-out r of each run, and the median over seeds of
the causal SNPs' mean r.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import code_version, emit, machine, run_logged, seed_folder  # noqa: E402

BGS_APP = [sys.executable, "-m", "bgs_app"]
SIMULATE = [sys.executable, "-m", "bgs_app.simulate"]


def _hard_calls(pgen: Path, prefix: Path) -> pd.DataFrame:
    """Write the rounded dosages as a PLINK 1 fileset; return the dosages (people x SNPs,
    index IID)."""
    from bed_reader import to_bed

    from bgs_app.genetics.readers import open_genotypes

    genotypes = open_genotypes(pgen)
    samples, variants = genotypes.samples, genotypes.variants
    dosage, _ = genotypes.read(np.arange(len(samples)), np.arange(len(variants)))
    hard = np.rint(dosage)
    to_bed(prefix.with_suffix(".bed"), hard.astype(np.float32), count_A1=True, properties={
        "fid": samples["fid"].tolist(), "iid": samples["iid"].tolist(),
        "sex": [0] * len(samples), "chromosome": variants["chrom"].astype(str).tolist(),
        "sid": variants["snp"].tolist(), "bp_position": variants["pos"].astype(int).tolist(),
        "allele_1": variants["a1"].tolist(), "allele_2": variants["a2"].tolist()})
    return pd.DataFrame(dosage, index=samples["iid"].tolist(), columns=variants["snp"])


def _run(cmd: list[str], log: Path) -> float:
    return run_logged(cmd, log, "soft_labels")


def one_seed(base: Path, seed: int, args: argparse.Namespace) -> dict:
    from bgs_app.simulate.oracle import truth_model_grid
    from bgs_app.stats.metrics import score_dosage_correlation

    study, log = base / "study", base / "log.txt"
    _run([*SIMULATE, str(study), "--n-subjects", str(args.n), "--seed", str(seed),
          "--resolution", "4", "--effect-size", "80", "--warp-mm", "1.5",
          "--cognition-effect", "1.0", "--imputation-noise", str(args.noise),
          "--genotype-format", "pgen", "--nprocs", "2", "--quiet"], log)
    truth = json.loads((study / "derivatives/simulation-truth/truth.json").read_text())
    snps = [s["snp"] for s in truth["snps"] if s["qc_failure"] is None]
    causal = [s["snp"] for s in truth["snps"] if s["causal"]]
    (base / "snps.txt").write_text("\n".join(snps) + "\n")
    out = base / "derivatives"
    truth_model_grid(study, out, 4.0, nprocs=2)
    dosage = _hard_calls(study / "genetics/study.pgen", base / "hard")
    dosage.index = [f"sub-{i}" for i in dosage.index]
    result = {"seed": seed, "causal": causal, "runs": {}}
    for name, genotypes in (("soft", study / "genetics/study.pgen"), ("hard", base / "hard")):
        group_out = base / f"out_{name}"
        shutil.copytree(out, group_out, dirs_exist_ok=True)
        seconds = _run([*BGS_APP, str(study), str(group_out), "group", "--genotypes",
                        str(genotypes), "--snps-file", str(base / "snps.txt"),
                        "--resolution", "4", "--epochs", str(args.epochs), "--patience",
                        str(args.epochs), "--batch-size", "8", "--learning-rate", "2e-3",
                        "--channels", "8", "16", "32", "32", "32", "16", "--no-saliency",
                        "--covariates", "age", "sex", "site", "--nprocs", "2", "--seed",
                        str(seed), "--hwe", "1e-30", "-w", str(base / f"work_{name}"),
                        "--skip-bids-validation"], log)
        scores = pd.read_csv(group_out / "group/scores.tsv", sep="\t")
        held = scores[scores["split"] == "test"]
        r = {}
        for snp, rows in held.groupby("snp"):
            per = rows.groupby("participant_id")["score"].mean()
            r[snp] = score_dosage_correlation(dosage[snp].reindex(per.index).to_numpy(float),
                                              per.to_numpy(float))["r_dosage"]
        result["runs"][name] = {"seconds": round(seconds, 1), "n_test": int(
            held["participant_id"].nunique()), "r_dosage": {k: round(float(v), 4)
                                                            for k, v in r.items()},
            "causal_mean_r": round(float(np.nanmean([r.get(s, np.nan) for s in causal])),
                                   4),
            "null_mean_r": round(float(np.nanmean([r.get(s, np.nan) for s in snps
                                                   if s not in causal])), 4)}
    ok = ~np.isnan(dosage[snps].to_numpy())
    result["fraction_non_integer"] = round(float(
        (np.abs(dosage[snps].to_numpy()[ok] - np.rint(dosage[snps].to_numpy()[ok])) > 0.1)
        .mean()), 4)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", type=Path, help="keep the studies here")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    seeds = []
    for seed in args.seeds:
        with seed_folder(seed, args.keep) as base:
            seeds.append(one_seed(base, seed, args))
    soft = [s["runs"]["soft"]["causal_mean_r"] for s in seeds]
    hard = [s["runs"]["hard"]["causal_mean_r"] for s in seeds]
    emit({"benchmark": "soft_labels", "machine": machine(), "code": code_version(),
          "design": {"n": args.n, "resolution_mm": 4, "effect_percent": 80,
                     "imputation_noise": args.noise, "epochs": args.epochs,
                     "split": "train/val/test (test 20 %)"},
          "median_causal_mean_r": {"soft": round(statistics.median(soft), 4),
                                   "hard": round(statistics.median(hard), 4)},
          "soft_minus_hard_per_seed": [round(a - b, 4) for a, b in zip(soft, hard,
                                                                       strict=True)],
          "seeds": seeds, "seconds": round(time.perf_counter() - began, 1)}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
