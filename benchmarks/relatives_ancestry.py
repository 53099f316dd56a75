"""Relatives and ancestry: what the family-aware split and the PC-adjusted gate prevent.

Usage: python benchmarks/relatives_ancestry.py [--studies-sib N] [--studies-anc N]
       [--n 400] [--out FILE]

Each study draws the genotypes of ``n`` MRI participants with the simulator's own cohort
genetics (``bgs_app.simulate.genotypes``: 12 *null* SNPs, a 2,000-SNP genome-wide panel,
sibling pairs sharing parental haplotypes, Balding-Nichols ancestries) and an anatomy of
100 image features per participant: an individual part (siblings share half of it, as
the simulator's siblings share half of their warp) plus, in a non-reference ancestry, a
shift of every feature (ancestry-linked head shape). A learner that memorises anatomy
stands in for the CNN: one multi-output ridge regression of the 12 dosages on the
features (alpha 10), trained on the group level's default split made by its own
``bgs_app.stats.splits.make_split`` (20 % held out) and scoring the held-out
participants. No SNP changes the anatomy, so every held-out score-dosage correlation
should be 0 and no SNP should pass the gate.

``sibships``   30 % of participants in sibling pairs, one ancestry: the held-out r of the
               null SNPs with the family-aware split (families from the KING table the
               simulator writes, ``bgs_app.genetics.kinship``) and with the naive one
``ancestries`` two ancestries (Fst 0.1; 25 % in the second), no relatives: the gate
               (``bgs_app.stats.gate.validated_scores``, Bonferroni over the 12 SNPs) on
               the plain held-out r and on the r given 10 genetic PCs computed from the
               panel written as PLINK 2 (``bgs_app.genetics.genetic_pcs``), adjusted
``cross_fitting_null`` 5-fold cross-fitting, one ancestry, SNP 1 causal: how the pooled
               held-out r of the null SNPs spreads beyond an exact test's, and the gate's
               false-positive rate and power with the pooled p-value, with the fold-
               combined one the group level uses, and on the default held-out split

What it does not show: a CNN's own memorisation (about a 3D CNN's strength on a few
hundred scans this says nothing; the split and the gate are learner-agnostic). Prints
one JSON object.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import code_version, emit, machine  # noqa: E402

FEATURES = 100
SNPS = 12
FOLDS = 5
CV_EFFECT = 0.12


def _people(seed: int, n: int, sibships: float, ancestries: int):
    from bgs_app.simulate import genotypes as simgeno

    labels = [f"{i + 1:04d}" for i in range(n)]
    rng = np.random.default_rng([seed, 1])
    snp_rng = np.random.default_rng([seed, 2])
    base = simgeno.simulate_genotypes(rng, labels, SNPS, [], snp_rng=snp_rng,
                                      mri_only_fraction=0.0)
    spec = simgeno.CohortGenetics(sibships=sibships, ancestries=ancestries,
                                  fst=0.1 if ancestries > 1 else 0.0, panel_snps=2000)
    geno = simgeno.structure_genotypes(np.random.default_rng([seed, 3]), base, spec, n,
                                       snp_rng)
    return labels, geno


def _anatomy(seed: int, labels: list[str], geno, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng([seed, 4])
    own = rng.standard_normal((len(labels), FEATURES))
    families = {}
    for person, family in geno.family.items():
        families.setdefault(family, []).append(labels.index(person))
    for members in families.values():
        shared = rng.standard_normal(FEATURES)
        own[members] = (own[members] + shared) * 0.5 ** 0.5  # half of it shared
    ancestry = np.array([geno.ancestry.get(p, 0) for p in labels])
    own += shift * (ancestry > 0)[:, None] * rng.choice([-1.0, 1.0], FEATURES)
    return pd.DataFrame(own, index=[f"sub-{p}" for p in labels])


def _held_out_scores(features: pd.DataFrame, dosages: pd.DataFrame, seed: int,
                     families: pd.Series | None, folds: int = 0
                     ) -> tuple[pd.DataFrame, pd.Series]:
    """Scores of the held-out participants: the group level's default split (20 % test,
    the rest trains), or with ``folds`` cross-fitting (everyone scored once)."""
    from sklearn.linear_model import Ridge

    from bgs_app.stats.splits import make_split

    split = make_split(list(features.index), cv_folds=folds, seed=seed, families=families)
    filled = dosages.fillna(dosages.mean())
    parts = []
    for name in sorted(split.unique()):
        if name in ("train", "val"):
            continue
        test = split.index[split == name]
        train = split.index[split != name]
        model = Ridge(alpha=10.0).fit(features.loc[train], filled.loc[train])
        parts.append(pd.DataFrame(model.predict(features.loc[test]), index=test,
                                  columns=dosages.columns))
    scores = pd.concat(parts)
    return scores, split.reindex(scores.index)


def _performance(scores: pd.DataFrame, dosages: pd.DataFrame,
                 pcs: pd.DataFrame | None = None) -> pd.DataFrame:
    from bgs_app.stats.metrics import partial_score_dosage_correlation, score_dosage_correlation

    rows = []
    for snp in scores.columns:
        d, s = dosages[snp].to_numpy(float), scores[snp].to_numpy(float)
        row = {"model": "cnn", "snp": snp, **score_dosage_correlation(d, s)}
        if pcs is not None:
            row.update(partial_score_dosage_correlation(
                d, s, pcs.reindex(scores.index).to_numpy(float)))
        rows.append(row)
    return pd.DataFrame(rows)


def sibship_study(seed: int, n: int) -> dict:
    """Held-out r of null SNPs with the naive and the family-aware split."""
    from bgs_app.genetics.kinship import family_components, related_pairs

    labels, geno = _people(seed, n, 0.3, 1)
    features = _anatomy(seed, labels, geno, 0.0)
    ids = list(features.index)
    dosages = pd.DataFrame(geno.called[:, :SNPS], index=[f"sub-{i}" for i in geno.iid],
                           columns=geno.bim["snp"][:SNPS]).reindex(ids)
    kin = geno.kinship.rename(columns={"IID1": "iid1", "IID2": "iid2", "KINSHIP": "kinship"})
    pairs = related_pairs(kin[["iid1", "iid2", "kinship"]], labels, 0.0442)
    families = family_components(labels, pairs)
    families.index = [f"sub-{p}" for p in families.index]
    out = {"seed": seed, "pairs": int(len(pairs))}
    for name, fam in (("naive", None), ("family_aware", families)):
        scores, _ = _held_out_scores(features, dosages, seed, fam)
        perf = _performance(scores, dosages.loc[scores.index])
        out[f"mean_r_{name}"] = float(perf["r_dosage"].mean())
        p = perf["p_r_dosage"].to_numpy(float)
        out[f"gated_{name}"] = int(((perf["r_dosage"] > 0) & (p * len(p) < 0.05)).sum())
    return out


def ancestry_study(seed: int, n: int, shift: float = 0.5) -> dict:
    """Null SNPs passing the gate without and with 10 genetic PCs."""
    from bgs_app.genetics import genetic_pcs
    from bgs_app.simulate import genotypes as simgeno
    from bgs_app.stats.gate import validated_scores

    labels, geno = _people(seed, n, 0.0, 2)
    features = _anatomy(seed, labels, geno, shift)
    ids = list(features.index)
    dosages = pd.DataFrame(geno.called[:, :SNPS], index=[f"sub-{i}" for i in geno.iid],
                           columns=geno.bim["snp"][:SNPS]).reindex(ids)
    scores, _ = _held_out_scores(features, dosages, seed, None)
    dosages = dosages.loc[scores.index]
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "study"
        simgeno.write_genotypes(geno, prefix, fmt="pgen")
        pcs = genetic_pcs(prefix.with_suffix(".pgen"), 10, exclude=pd.DataFrame(
            {"snp": list(dosages.columns)}))
    perf = _performance(scores, dosages, pcs)
    plain = validated_scores(perf.drop(columns=["r_dosage_pcs", "p_r_dosage_pcs"]))["cnn"]
    adjusted = validated_scores(perf)["cnn"]
    ancestry = pd.Series({f"sub-{p}": a for p, a in geno.ancestry.items()}).reindex(ids)
    p_values = perf["p_r_dosage_pcs"].to_numpy(float)
    return {"seed": seed, "gated_without_pcs": len(plain), "gated_with_pcs": len(adjusted),
            "null_p_below_0.05_given_pcs": int((p_values < 0.05).sum()),
            "mean_r": float(perf["r_dosage"].mean()),
            "mean_r_given_pcs": float(perf["r_dosage_pcs"].mean()),
            "pc1_ancestry_r": float(abs(np.corrcoef(pcs["PC1"].reindex(ids), ancestry)[0, 1]))}


def cross_fitting_study(seed: int, n: int, effect: float = CV_EFFECT) -> dict:
    """Unrelated people of one ancestry, 5-fold cross-fitting: the null SNPs' pooled
    held-out r and its usual p-value, against the fold-combined p-value the gate uses
    (``bgs_app.stats.metrics.fold_combined_correlation``); SNP 1 changes the anatomy
    (``effect`` SD per standardised dosage on 10 of the features), so the power of the
    pooled test, the fold-combined one and the default 20 % held-out split is compared."""
    from bgs_app.stats.metrics import fold_combined_correlation

    labels, geno = _people(seed, n, 0.0, 1)
    features = _anatomy(seed, labels, geno, 0.0)
    dosages = pd.DataFrame(geno.called[:, :SNPS], index=[f"sub-{i}" for i in geno.iid],
                           columns=geno.bim["snp"][:SNPS]).reindex(list(features.index))
    causal = dosages.iloc[:, 0]
    z = ((causal - causal.mean()) / causal.std()).fillna(0.0).to_numpy()
    features.iloc[:, :10] += effect * z[:, None]
    scores, split = _held_out_scores(features, dosages, seed, None, folds=FOLDS)
    perf = _performance(scores, dosages.loc[scores.index])
    folded = [fold_combined_correlation(dosages.loc[scores.index, snp].to_numpy(float),
                                        scores[snp].to_numpy(float), split.to_numpy())
              for snp in scores.columns]
    held, _ = _held_out_scores(features, dosages, seed, None)
    held_perf = _performance(held, dosages.loc[held.index])
    return {"r": perf["r_dosage"].tolist(), "p": perf["p_r_dosage"].tolist(),
            "p_folds": folded, "p_held_out": held_perf["p_r_dosage"].tolist(),
            "r_held_out": held_perf["r_dosage"].tolist()}


def _gate_rates(cross: list[dict], p_key: str, r_key: str) -> dict:
    """Over studies: how often a null SNP passes the gate (r > 0, Bonferroni over the 12
    SNPs), and how often the causal SNP 1 does (power)."""
    null_any, power = 0, 0
    single = []
    for study in cross:
        r, p = np.array(study[r_key]), np.array(study[p_key])
        passed = (r > 0) & (p * SNPS < 0.05)
        null_any += bool(passed[1:].any())
        power += bool(passed[0])
        single += list((r[1:] > 0) & (p[1:] < 0.05))
    n = len(cross)
    return {"studies_with_a_gated_null_snp": [null_any, n],
            "rate_ci95": _clopper_pearson(null_any, n),
            "null_tests_r_positive_p_below_0.05": [int(sum(single)), len(single)],
            "single_rate_ci95": _clopper_pearson(int(sum(single)), len(single)),
            "causal_snp_gated": [power, n], "power_ci95": _clopper_pearson(power, n)}


def _clopper_pearson(k: int, n: int) -> list[float]:
    from scipy import stats

    low = stats.beta.ppf(0.025, k, n - k + 1) if k else 0.0
    high = stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    return [round(float(low), 4), round(float(high), 4)]


def _mean_ci(values: list[float]) -> dict:
    from scipy import stats

    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    half = stats.t.ppf(0.975, len(values) - 1) * sd / len(values) ** 0.5 if len(values) > 1 \
        else float("nan")
    return {"mean": round(mean, 4), "ci95": [round(mean - half, 4), round(mean + half, 4)],
            "sd_over_studies": round(sd, 4), "min": round(min(values), 4),
            "max": round(max(values), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies-sib", type=int, default=10)
    parser.add_argument("--studies-anc", type=int, default=40)
    parser.add_argument("--studies-cv", type=int, default=20)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    sib = [sibship_study(seed, args.n) for seed in range(args.studies_sib)]
    if not (sib and args.studies_anc and args.studies_cv):
        parser.error("every part needs at least one study (--studies-sib, --studies-anc, "
                     "--studies-cv)")
    anc = [ancestry_study(1000 + seed, args.n) for seed in range(args.studies_anc)]
    n_anc = len(anc)
    cross = [cross_fitting_study(2000 + seed, args.n) for seed in range(args.studies_cv)]
    cv_r = [r for study in cross for r in study["r"][1:]]
    cv_p = [p for study in cross for p in study["p"][1:]]
    any_plain = sum(r["gated_without_pcs"] > 0 for r in anc)
    any_pcs = sum(r["gated_with_pcs"] > 0 for r in anc)
    result = {
        "benchmark": "relatives_ancestry", "machine": machine(), "code": code_version(),
        "design": {"participants": args.n, "null_snps": SNPS, "panel_snps": 2000,
                   "features": FEATURES, "learner": "multi-output ridge (alpha 10), "
                   "held-out 20 % (make_split)", "gate": "held-out r > 0, Bonferroni p < 0.05 "
                   "over the 12 SNPs"},
        "sibships": {
            "studies": len(sib), "sibship_fraction": 0.3,
            "mean_null_r_naive_split": _mean_ci([r["mean_r_naive"] for r in sib]),
            "mean_null_r_family_aware_split": _mean_ci([r["mean_r_family_aware"]
                                                        for r in sib]),
            "null_snps_gated_naive": sum(r["gated_naive"] for r in sib),
            "null_snps_gated_family_aware": sum(r["gated_family_aware"] for r in sib),
            "per_study": sib},
        "ancestries": {
            "studies": n_anc, "fst": 0.1, "ancestry_shift_sd": 0.5,
            "studies_with_a_gated_null_snp_without_pcs": [any_plain, n_anc],
            "rate_without_pcs": round(any_plain / n_anc, 4),
            "rate_without_pcs_ci95": _clopper_pearson(any_plain, n_anc),
            "studies_with_a_gated_null_snp_with_pcs": [any_pcs, n_anc],
            "rate_with_pcs": round(any_pcs / n_anc, 4),
            "rate_with_pcs_ci95": _clopper_pearson(any_pcs, n_anc),
            "null_snp_tests_p_below_0.05_given_pcs": [
                sum(r["null_p_below_0.05_given_pcs"] for r in anc), SNPS * n_anc],
            "nominal_rate": 0.05,
            "mean_null_r": _mean_ci([r["mean_r"] for r in anc]),
            "mean_null_r_given_pcs": _mean_ci([r["mean_r_given_pcs"] for r in anc]),
            "pc1_ancestry_abs_r_median": round(statistics.median(
                r["pc1_ancestry_r"] for r in anc), 4),
            "per_study": anc},
        "cross_fitting_null": {
            "studies": len(cross), "folds": FOLDS, "null_snp_tests": len(cv_r),
            "causal_snp_effect_sd": CV_EFFECT,
            "sd_of_pooled_null_r": round(statistics.pstdev(cv_r), 4),
            "sd_exact_test": round(1 / args.n ** 0.5, 4),
            "two_sided_null_p_below_0.05_pooled": round(float(np.mean(np.array(cv_p)
                                                                       < 0.05)), 4),
            "nominal_single_rate_r_positive": 0.025, "nominal_gate_rate": 0.05,
            "gate_pooled_p": _gate_rates(cross, "p", "r"),
            "gate_fold_combined_p": _gate_rates(cross, "p_folds", "r"),
            "gate_held_out_split": _gate_rates(cross, "p_held_out", "r_held_out"),
            "note": "every participant's genotype trains the models that score the others, "
                    "so pooled cross-fitted correlations are not independent terms; the "
                    "gate on --cv-folds scores combines the exact per-fold tests"},
        "seconds": round(time.perf_counter() - began, 1),
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
