"""The association table, its families and what each row may claim.

One row per source x SNP x measure x test (``associations.tsv``):

* ``cnn`` (brain-genotype scores): the ``score`` test (``measure ~ score``) and, where
  genotypes are known, the genotype's tests of :mod:`bgs_app.stats.genetic`
  (``first_stage``, ``reduced_form``, ``instrumented``, ``remainder``);
* ``idp-<model>`` (the regional-volume baseline's scores): the ``score`` test;
* ``genotype``: the ``reduced_form`` (``measure ~ dosage``) of every SNP.

Families, each corrected by Bonferroni and Benjamini-Hochberg (or -Yekutieli) within
itself (``family``; empty for the rows that support a claim without being one):

``genetic``      the reduced forms of the gated CNN SNPs: the primary family
``score``        the score tests of the gated CNN scores (brain-cognition associations)
``idp-<model>``  the score tests of each baseline's gated scores
``genotype``     the reduced forms of every SNP (the plain genotype rows)

Claims (``claim``, on every CNN row of a score x measure; fixed rules):

``genetic``      the reduced form is significant in its family (Bonferroni p < alpha)
                 and the first stage is strong (F >= 10): the SNP is linked to the
                 measure, and the score carries the SNP; the instrumented row gives the
                 size in score units
``anatomical``   the score test is significant in its family but the link is not
                 genetic: the score's anatomy relates to the measure, which the SNP
                 need not
``none``         neither

The gate (:mod:`bgs_app.stats.gate`) uses genotypes and scores only, so the families are
fixed before any measure is looked at.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from bgs_app.stats.associations import associate
from bgs_app.stats.genetic import genetic_tests, reduced_forms

#: First-stage F from which an instrument counts as strong (Staiger and Stock 1997).
MIN_FIRST_STAGE_F = 10.0
FDR_METHODS = {"bh": "fdr_bh", "by": "fdr_by"}
COLUMNS = ["source", "snp", "counted_allele", "other_allele", "counted_allele_freq",
           "measure", "test", "family", "n", "beta", "se", "t", "p", "ci_low", "ci_high",
           "p_bonferroni", "q_fdr", "validated", "claim", "f_stat", "partial_r2", "ci_kind",
           "hausman_p"]


def association_table(phenotypes: pd.DataFrame, covariates: pd.DataFrame | None = None, *,
                      cnn: pd.DataFrame | None = None, dosages: pd.DataFrame | None = None,
                      baselines: Mapping[str, pd.DataFrame] | None = None,
                      validated: Mapping[str, Iterable[str]] | None = None,
                      alleles: pd.DataFrame | None = None, fdr: str = "bh",
                      alpha: float = 0.05, min_f: float = MIN_FIRST_STAGE_F) -> pd.DataFrame:
    """Every test of every score, baseline score and genotype against every measure.

    Parameters
    ----------
    phenotypes : pandas.DataFrame
        Participants x measures.
    covariates : pandas.DataFrame, optional
        Participants x covariates (genetic PCs among them).
    cnn : pandas.DataFrame, optional
        Participants x SNPs: the CNN's scores (held-out or applied; sessions averaged).
    dosages : pandas.DataFrame, optional
        Participants x SNPs: the genotypes (the genotype rows and the genetic tests).
    baselines : mapping, optional
        ``{source: participants x SNPs}``, e.g. ``{"idp-logreg": ...}``.
    validated : mapping, optional
        ``{source: SNPs}`` whose scores passed the gate; a source not named has every
        score in its family; None: every score of every source.
    alleles : pandas.DataFrame, optional
        Index SNP; ``counted_allele``, ``other_allele``, ``counted_allele_freq``.
    fdr : {"bh", "by"}
        Benjamini-Hochberg, or Benjamini-Yekutieli (valid under any dependence).
    alpha : float
        Level of the claims and the confidence intervals.
    min_f : float
        Weakest first stage of a genetic claim.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`.
    """
    parts = []

    def is_validated(source: str, snps) -> np.ndarray:
        if validated is None or source not in validated:
            return np.ones(len(snps), bool)
        keep = {str(s) for s in validated[source]}
        return np.array([str(s) in keep for s in snps], bool)

    if cnn is not None and cnn.shape[1]:
        rows = associate(cnn, phenotypes, covariates, source="cnn", min_n=10).drop(
            columns=["p_bonferroni", "q_fdr", "validated"])
        rows["test"] = "score"
        parts.append(rows)
        if dosages is not None:
            genetic = genetic_tests(cnn, dosages, phenotypes, covariates, alpha=alpha)
            genetic.insert(0, "source", "cnn")
            parts.append(genetic)
    for source, frame in (baselines or {}).items():
        if frame is not None and frame.shape[1]:
            rows = associate(frame, phenotypes, covariates, source=source).drop(
                columns=["p_bonferroni", "q_fdr", "validated"])
            rows["test"] = "score"
            parts.append(rows)
    if dosages is not None and dosages.shape[1]:
        rows = reduced_forms(dosages, phenotypes, covariates, alpha=alpha)
        rows.insert(0, "source", "genotype")
        parts.append(rows)
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.concat([p for p in parts if len(p)], ignore_index=True)
    for column in COLUMNS:  # a table without genotypes has no genetic tests' columns
        if column not in table:
            table[column] = "" if column == "ci_kind" else np.nan
    table["validated"] = False
    for source, rows in table.groupby("source"):
        table.loc[rows.index, "validated"] = (
            True if source == "genotype" else is_validated(source, rows["snp"]))
    table["family"] = _families(table)
    table = adjust_families(table, fdr=fdr)
    table["claim"] = _claims(table, alpha=alpha, min_f=min_f)
    table = _with_alleles(table, alleles)
    return table.reindex(columns=COLUMNS)


def _families(table: pd.DataFrame) -> pd.Series:
    family = pd.Series("", index=table.index, dtype=object)
    validated = table["validated"].astype(bool)
    cnn = table["source"] == "cnn"
    family[cnn & validated & (table["test"] == "reduced_form")] = "genetic"
    family[cnn & validated & (table["test"] == "score")] = "score"
    baseline = ~table["source"].isin(["cnn", "genotype"])
    family[baseline & validated & (table["test"] == "score")] = table["source"]
    family[(table["source"] == "genotype") & (table["test"] == "reduced_form")] = "genotype"
    return family


def adjust_families(table: pd.DataFrame, fdr: str = "bh") -> pd.DataFrame:
    """Bonferroni-adjusted p and FDR q within each family (rows of the empty family, and
    rows without a p-value, get none).

    Parameters
    ----------
    table : pandas.DataFrame
        With ``family`` and ``p``.
    fdr : {"bh", "by"}

    Returns
    -------
    pandas.DataFrame
        A copy with ``p_bonferroni`` and ``q_fdr``.
    """
    from statsmodels.stats.multitest import multipletests

    if fdr not in FDR_METHODS:
        raise ValueError(f"fdr must be one of {', '.join(FDR_METHODS)}")
    table = table.copy()
    table["p_bonferroni"] = np.nan
    table["q_fdr"] = np.nan
    for family, rows in table.groupby("family"):
        ok = rows.index[rows["p"].notna()]
        if not family or not len(ok):
            continue
        p = table.loc[ok, "p"].to_numpy(float)
        table.loc[ok, "p_bonferroni"] = np.minimum(p * len(ok), 1.0)
        table.loc[ok, "q_fdr"] = multipletests(p, method=FDR_METHODS[fdr])[1]
    return table


def _claims(table: pd.DataFrame, *, alpha: float, min_f: float) -> pd.Series:
    claim = pd.Series("", index=table.index, dtype=object)
    cnn = table["source"] == "cnn"
    if not cnn.any():
        return claim
    rows = table[cnn]
    pair = rows["snp"].astype(str) + "\x00" + rows["measure"].astype(str)
    significant = rows["p_bonferroni"] < alpha

    def pairs(mask) -> pd.Index:
        return pd.Index(pair[mask].unique())

    reduced = pairs((rows["test"] == "reduced_form") & significant)
    strong = pairs((rows["test"] == "first_stage") & (rows["f_stat"] >= min_f))
    score = pairs((rows["test"] == "score") & significant)
    genetic = pair.isin(reduced.intersection(strong))
    claim[rows.index] = np.where(genetic, "genetic",
                                 np.where(pair.isin(score), "anatomical", "none"))
    return claim


def _with_alleles(table: pd.DataFrame, alleles: pd.DataFrame | None) -> pd.DataFrame:
    for column in ("counted_allele", "other_allele", "counted_allele_freq"):
        if alleles is not None and column in alleles:
            table[column] = table["snp"].map(alleles[column])
        else:
            table[column] = np.nan
    return table


def in_family(table: pd.DataFrame, family: str | None = None) -> pd.Series:
    """Rows of ``associations.tsv`` in a corrected family (any, or the one named) that
    have a p-value."""
    fam = table["family"].fillna("").astype(str)
    member = fam != "" if family is None else fam == family
    return member & table["p"].notna()
