"""Two ancestries through the CNN: null SNPs through the gate with and without genetic PCs.

Usage: python benchmarks/ancestries_cnn.py [--seeds 1 ... 20] [--n 200] [--fst 0.1]
       [--ancestry-shape 10] [--epochs 20] [--out FILE] [--keep DIR]

Per seed, ``bgs-simulate`` writes a null study (4 mm, 12 SNPs, none causal) of two
ancestries (Balding-Nichols, ``--fst``; about a quarter in the second, whose anatomy has
broad blobs of its own, ``--ancestry-shape``, default 10 % volume change) with a 2,000-SNP
genome-wide panel in the same PLINK files. The group level trains the CNN once on the oracle
model-grid images (default split, 20 % held out) with ``--genetic-pcs 10 --pca-genotypes`` the
study's genotypes (the tested SNPs and 500 kb around them left out). Its
``performance.tsv`` has both the plain held-out r and the r given the PCs, so the gate
(``bgs_app.stats.gate.validated_scores``: r > 0, Bonferroni over the 12 SNPs) is applied to
each on the same scores. No SNP changes the anatomy; every gated SNP is a false positive
through ancestry. Prints one JSON object: the number of studies with a gated null SNP,
with and without PCs, with Clopper-Pearson intervals, and the single-test rates.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import code_version, emit, machine, run_logged, seed_folder  # noqa: E402

BGS_APP = [sys.executable, "-m", "bgs_app"]
SIMULATE = [sys.executable, "-m", "bgs_app.simulate"]
PCS = 10


def _run(cmd: list[str], log: Path) -> float:
    return run_logged(cmd, log, "ancestries_cnn")


def one_seed(base: Path, seed: int, args: argparse.Namespace) -> dict:
    from bgs_app.model.scores import scores_wide
    from bgs_app.simulate.oracle import truth_model_grid
    from bgs_app.stats.gate import validated_scores

    study, log = base / "study", base / "log.txt"
    _run([*SIMULATE, str(study), "--n-subjects", str(args.n), "--seed", str(seed),
          "--resolution", "4", "--n-causal", "0", "--ancestries", "2", "--fst",
          str(args.fst), "--ancestry-shape", str(args.ancestry_shape), "--panel-snps",
          "2000", "--nprocs", "2", "--quiet"], log)
    truth = json.loads((study / "derivatives/simulation-truth/truth.json").read_text())
    snps = [s["snp"] for s in truth["snps"] if s["qc_failure"] is None]
    (base / "snps.txt").write_text("\n".join(snps) + "\n")
    out = base / "out"
    truth_model_grid(study, out, 4.0, nprocs=2)
    cmd = [*BGS_APP, str(study), str(out), "group", "--genotypes",
           str(study / "genetics/study"), "--snps-file", str(base / "snps.txt"),
           "--genetic-pcs", str(PCS), "--pca-genotypes", str(study / "genetics/study"),
           "--resolution", "4", "--epochs", str(args.epochs), "--patience", str(args.epochs),
           "--batch-size", "8", "--learning-rate", "2e-3",
           "--channels", "8", "16", "32", "32", "32", "16", "--no-saliency",
           "--no-voxel-baseline", "--covariates", "age", "sex", "site", "--nprocs", "2",
           "--seed", str(seed), "-w", str(base / "work"), "--skip-bids-validation"]
    seconds = _run(cmd, log)
    perf = pd.read_csv(out / "group/performance.tsv", sep="\t").query("model == 'cnn'")
    perf = perf[perf["snp"].isin(snps)].reset_index(drop=True)
    with_pcs = validated_scores(perf)["cnn"]
    plain = validated_scores(perf.drop(columns=["r_dosage_pcs", "p_r_dosage_pcs"]))["cnn"]
    ancestry = pd.Series(truth["ancestries"]["values"])
    wide = scores_wide(pd.read_csv(out / "group/scores.tsv", sep="\t"), splits=["test"])
    anc = ancestry.reindex(wide.index).astype(float)
    # How much of the scores is ancestry: the mean |r| of a null score with ancestry.
    score_ancestry = float(np.nanmean([abs(np.corrcoef(wide[s], anc)[0, 1])
                                       for s in wide.columns if s in snps]))
    return {"seed": seed, "second_ancestry_fraction": round(float(ancestry.mean()), 3),
            "gated_without_pcs": sorted(plain), "gated_with_pcs": sorted(with_pcs),
            "p_below_0.05_without_pcs": int((perf["p_r_dosage"] < 0.05).sum()),
            "p_below_0.05_with_pcs": int((perf["p_r_dosage_pcs"] < 0.05).sum()),
            "mean_r": round(float(perf["r_dosage"].mean()), 4),
            "mean_r_given_pcs": round(float(perf["r_dosage_pcs"].mean()), 4),
            "mean_abs_r_score_ancestry": round(score_ancestry, 4),
            "tests": len(perf), "seconds": round(seconds, 1)}


def _clopper_pearson(k: int, n: int) -> list[float]:
    from scipy import stats

    low = stats.beta.ppf(0.025, k, n - k + 1) if k else 0.0
    high = stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return [round(float(low), 4), round(float(high), 4)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 21)))
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--fst", type=float, default=0.1)
    parser.add_argument("--ancestry-shape", type=float, default=10.0, metavar="PERCENT")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    seeds = []
    for seed in args.seeds:
        with seed_folder(seed, args.keep) as base:
            seeds.append(one_seed(base, seed, args))
        print(json.dumps(seeds[-1]), file=sys.stderr, flush=True)
    n = len(seeds)
    plain = sum(bool(s["gated_without_pcs"]) for s in seeds)
    pcs = sum(bool(s["gated_with_pcs"]) for s in seeds)
    tests = sum(s["tests"] for s in seeds)
    single_plain = sum(s["p_below_0.05_without_pcs"] for s in seeds)
    single_pcs = sum(s["p_below_0.05_with_pcs"] for s in seeds)
    emit({"benchmark": "ancestries_cnn", "machine": machine(), "code": code_version(),
          "design": {"n": args.n, "ancestries": 2, "fst": args.fst,
                     "ancestry_shape_percent": args.ancestry_shape, "null_snps": 12,
                     "panel_snps": 2000, "genetic_pcs": PCS, "resolution_mm": 4,
                     "epochs": args.epochs, "gate": "held-out r > 0, Bonferroni p < 0.05 "
                     "over the tested SNPs"},
          "studies": n,
          "studies_with_a_gated_null_snp_without_pcs": [plain, n],
          "rate_without_pcs_ci95": _clopper_pearson(plain, n),
          "studies_with_a_gated_null_snp_with_pcs": [pcs, n],
          "rate_with_pcs_ci95": _clopper_pearson(pcs, n),
          "single_tests_p_below_0.05_without_pcs": [single_plain, tests],
          "single_tests_p_below_0.05_with_pcs": [single_pcs, tests],
          "single_rate_with_pcs_ci95": _clopper_pearson(single_pcs, tests),
          "nominal_rate": 0.05,
          "median_abs_r_score_ancestry": round(float(np.median(
              [s["mean_abs_r_score_ancestry"] for s in seeds])), 4),
          "seeds": seeds, "seconds": round(time.perf_counter() - began, 1)}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
