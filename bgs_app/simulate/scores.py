"""Score-level studies: what the group level's statistics see, without any image.

Thousands of studies per minute for the validity of the claims
(``benchmarks/validity.py``). Each study has held-out participants with

* genotypes of ``n_snps`` SNPs (minor-allele frequencies from 0.05 to 0.5, Hardy-Weinberg);
* covariates (age, sex, site) and genetic principal components;
* a *shared non-genetic anatomy* ``A`` (a pattern that varies between people and is
  tied to no SNP, which the CNN's shared trunk learns);
* one brain-genotype score per SNP: a genetic part (the SNP's effect on the anatomy the
  score reads; its share of the score's variance is ``genetic_share`` for the SNPs that
  change anatomy, 0 for the others), the shared anatomy and noise;
* cognitive measures driven by the shared anatomy (``confound``: its standardised
  effect), by planted genetic links (``links``: SNP -> measure, a per-allele effect in
  SD through the SNP's own anatomy), by age and sex, and noise.

The truth says, per SNP x measure, whether a genetic link exists. Nothing here computes
a statistic: the benchmark runs the group level's own functions on these tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ScoreStudy:
    """Parameters of one score-level study.

    Attributes
    ----------
    n : int
        Held-out participants.
    n_snps : int
    n_measures : int
    brain_snps : int
        SNPs (the first ones) that change the anatomy their score reads.
    genetic_share : float
        Share of a brain SNP's score variance that is genetic (r^2 of score and dosage;
        0.0025-0.01 for single SNPs in a large cohort).
    trunk : float
        Correlation of the non-genetic part of every score with the shared anatomy.
    confound : float
        Standardised effect of the shared anatomy on every measure (0: none).
    links : dict
        ``{(snp index, measure index): per-allele effect in SD}``: planted genetic links.
    n_pcs : int
        Genetic principal components among the covariates.
    seed : int
    """

    n: int = 400
    n_snps: int = 12
    n_measures: int = 3
    brain_snps: int = 4
    genetic_share: float = 0.0225
    trunk: float = 0.9
    confound: float = 0.0
    links: dict = field(default_factory=dict)
    n_pcs: int = 4
    seed: int = 0


def simulate_score_study(study: ScoreStudy) -> dict:
    """One study's tables.

    Returns
    -------
    dict
        ``scores``, ``dosages`` (participants x SNPs), ``phenotypes`` (participants x
        measures), ``covariates`` (age, sex, site, pc1 ... pcK) and ``truth`` (a
        DataFrame of SNP x measure with ``genetic_link``, bool).
    """
    rng = np.random.default_rng(study.seed)
    n, k = study.n, study.n_snps
    index = pd.Index([f"sub-{i + 1:05d}" for i in range(n)], name="participant_id")
    snps = [f"rs{i + 1:04d}" for i in range(k)]
    measures = [f"measure{m + 1}" for m in range(study.n_measures)]
    maf = rng.uniform(0.05, 0.5, k)
    dosage = rng.binomial(2, maf, size=(n, k)).astype(float)
    z = (dosage - 2 * maf) / np.sqrt(2 * maf * (1 - maf))
    age = rng.uniform(45, 80, n)
    sex = rng.choice(["F", "M"], n)
    site = rng.choice(["site1", "site2", "site3"], n)
    pcs = rng.standard_normal((n, study.n_pcs))
    anatomy = rng.standard_normal(n) + 0.02 * (age - 62.5)
    anatomy = (anatomy - anatomy.mean()) / anatomy.std()
    share = np.where(np.arange(k) < study.brain_snps, study.genetic_share, 0.0)
    noise = rng.standard_normal((n, k))
    other = study.trunk * anatomy[:, None] + np.sqrt(1 - study.trunk ** 2) * noise
    scores = np.sqrt(share) * z + np.sqrt(1 - share) * other + 1.0  # around one allele
    age_effect = -0.02 * (age - 62.5)
    male = (sex == "M").astype(float) - 0.5
    pheno = np.empty((n, len(measures)))
    truth = []
    for m in range(len(measures)):
        latent = study.confound * anatomy + age_effect + 0.1 * male
        for j in range(k):
            effect = float(study.links.get((j, m), 0.0))
            truth.append((snps[j], measures[m], effect != 0.0, effect))
            if effect:
                latent = latent + effect * (dosage[:, j] - 2 * maf[j])
        explained = float(np.var(latent))
        pheno[:, m] = latent + rng.normal(0, np.sqrt(max(1.0 - explained, 0.25)), n)
    covariates = pd.DataFrame({"age": age, "sex": sex, "site": site}, index=index)
    for c in range(study.n_pcs):
        covariates[f"pc{c + 1}"] = pcs[:, c]
    return {
        "scores": pd.DataFrame(scores, index=index, columns=snps),
        "dosages": pd.DataFrame(dosage, index=index, columns=snps),
        "phenotypes": pd.DataFrame(pheno, index=index, columns=measures),
        "covariates": covariates,
        "truth": pd.DataFrame(truth, columns=["snp", "measure", "genetic_link",
                                              "effect_sd_per_allele"]),
    }
