"""Which scores enter the association family: those that predict their own genotype.

A brain-genotype score is only a representation of its SNP when it predicts that SNP's
genotype in participants the model never saw. The heads of the multi-task CNN share one
trunk, so a head that learnt nothing about its SNP still outputs a projection of the
trunk's features -- anatomy that other SNPs (or cognition itself) drive. Testing such a
score against cognition finds that anatomy, not the SNP. The gate keeps a score in the
Bonferroni/FDR family only when its held-out score-dosage correlation is positive and
Bonferroni-significant over the model's SNPs. With genetic PCs among the covariates the
correlation is the partial one given the PCs (``r_dosage_pcs``): a score that predicts a
SNP only through ancestry-linked anatomy (the SNP's frequency differs by ancestry) does
not pass. The gate uses genotypes, scores and PCs only, never the cognitive measures, so
the family is fixed before any outcome is looked at.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd


def validated_scores(performance: pd.DataFrame, alpha: float = 0.05) -> dict[str, set[str]]:
    """Per model, the SNPs whose held-out score predicts the genotype.

    Parameters
    ----------
    performance : pandas.DataFrame
        Rows of ``performance.tsv`` (``model``, ``snp``, ``r_dosage``, ``p_r_dosage``; the
        PC-adjusted ``r_dosage_pcs``, ``p_r_dosage_pcs`` are used when present; with
        cross-fitting, the fold-combined ``p_r_dosage_folds`` / ``p_r_dosage_pcs_folds``
        replace the pooled p-values).
    alpha : float
        Family-wise level; a model's SNPs are Bonferroni-corrected among themselves.

    Returns
    -------
    dict
        ``{model: {snp, ...}}`` for every model in ``performance`` (possibly empty sets).
    """
    out: dict[str, set[str]] = {}
    suffix = "_pcs" if "p_r_dosage_pcs" in performance else ""
    # Cross-fitted scores: the per-fold tests combined (see fold_combined_correlation).
    p_column = (f"p_r_dosage{suffix}_folds" if f"p_r_dosage{suffix}_folds" in performance
                else f"p_r_dosage{suffix}")
    for model, rows in performance.groupby("model"):
        p = pd.to_numeric(rows[p_column], errors="coerce").to_numpy(float)
        r = pd.to_numeric(rows[f"r_dosage{suffix}"], errors="coerce").to_numpy(float)
        keep = np.isfinite(p) & (r > 0) & (p * len(rows) < alpha)
        out[str(model)] = set(rows["snp"].astype(str)[keep])
    return out


def mark_validated(table: pd.DataFrame,
                   validated: Mapping[str, Iterable[str]] | None) -> pd.Series:
    """Boolean per association row: is its score in the tested family?

    Sources absent from ``validated`` (e.g. ``genotype``) are always in the family; with
    ``validated=None`` every row is.
    """
    if validated is None:
        return pd.Series(True, index=table.index)
    sets = {k: {str(s) for s in v} for k, v in validated.items()}
    return pd.Series([src not in sets or str(snp) in sets[src]
                      for src, snp in zip(table["source"], table["snp"], strict=True)],
                     index=table.index)


def in_family(table: pd.DataFrame) -> pd.Series:
    """Boolean per ``associations.tsv`` row: in a corrected family, with a p-value.

    Tables with a ``family`` column (see :mod:`bgs_app.stats.claims`) count its non-empty
    rows; older tables, the rows whose ``validated`` is ``true`` (or every row with a
    p-value, without that column). Works on tables read back from TSV.
    """
    has_p = table["p"].notna()
    if "family" in table:
        return has_p & (table["family"].fillna("").astype(str) != "")
    if "validated" not in table:
        return has_p
    return has_p & table["validated"].astype(str).str.lower().eq("true")
