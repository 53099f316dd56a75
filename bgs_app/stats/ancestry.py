"""Held-out performance and associations within each ancestry group (``--ancestry-column``).

A score that predicts its genotype in the majority ancestry may not in another (allele
frequencies, linkage and anatomy differ), and a pooled association can hide a group in
which it does not hold. These tables repeat, within each group of the named column, the
held-out score-dosage correlation of every source and the association table's tests.
They describe; the claims stay those of the pooled table (its gate and families), and
each group's rows are corrected within that group only.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bgs_app.stats.claims import association_table
from bgs_app.stats.metrics import score_dosage_correlation

#: Fewest participants of a group for its rows (fewer: the group is listed, not tested).
MIN_GROUP_N = 20


def _usable(covariates: pd.DataFrame | None, rows: pd.Index) -> pd.DataFrame | None:
    """The covariates that still vary within a group (a constant one, such as the
    ancestry itself, would be collinear with the intercept)."""
    if covariates is None:
        return None
    sub = covariates.reindex(rows)
    keep = [c for c in sub.columns if sub[c].dropna().nunique() > 1]
    return sub[keep] if keep else None


def performance_by_group(groups: pd.Series, sources: Mapping[str, pd.DataFrame],
                         dosages: pd.DataFrame, min_n: int = MIN_GROUP_N) -> pd.DataFrame:
    """Held-out score-dosage correlation per ancestry group, source and SNP.

    Parameters
    ----------
    groups : pandas.Series
        Participant -> ancestry group (NaN: in no group).
    sources : mapping
        ``{source: participants x SNPs}`` held-out scores (``cnn``, ``idp-<model>``).
    dosages : pandas.DataFrame
        Participants x SNPs.
    min_n : int
        Groups with fewer scored and genotyped participants get NaN statistics.

    Returns
    -------
    pandas.DataFrame
        ``ancestry, model, snp, n_test, r_dosage, p_r_dosage``.
    """
    rows = []
    for group in sorted(groups.dropna().astype(str).unique()):
        members = groups.index[groups.astype(str) == group]
        for model, scores in sources.items():
            for snp in scores.columns:
                if snp not in dosages.columns:
                    continue
                s = scores[snp].reindex(members).to_numpy(float)
                d = dosages[snp].reindex(members).to_numpy(float)
                n = int((np.isfinite(s) & np.isfinite(d)).sum())
                stats = score_dosage_correlation(d, s) if n >= min_n else {
                    "r_dosage": np.nan, "p_r_dosage": np.nan}
                rows.append({"ancestry": group, "model": model, "snp": snp, "n_test": n,
                             **stats})
    return pd.DataFrame(rows, columns=["ancestry", "model", "snp", "n_test", "r_dosage",
                                       "p_r_dosage"])


def associations_by_group(groups: pd.Series, phenotypes: pd.DataFrame,
                          covariates: pd.DataFrame | None, *, cnn: pd.DataFrame,
                          dosages: pd.DataFrame | None,
                          baselines: Mapping[str, pd.DataFrame] | None = None,
                          validated: Mapping | None = None, alleles: pd.DataFrame | None = None,
                          fdr: str = "bh", min_n: int = MIN_GROUP_N) -> pd.DataFrame:
    """The association table within each ancestry group (an ``ancestry`` column first).

    Parameters
    ----------
    groups : pandas.Series
        Participant -> ancestry group.
    phenotypes, covariates, cnn, dosages, baselines, validated, alleles, fdr
        As for :func:`bgs_app.stats.claims.association_table`, over every participant;
        ``validated`` is the pooled gate's (a group does not re-gate).
    min_n : int
        Groups with fewer participants are left out.
    """
    parts = []
    for group in sorted(groups.dropna().astype(str).unique()):
        members = cnn.index.intersection(groups.index[groups.astype(str) == group])
        if len(members) < min_n:
            continue
        table = association_table(
            phenotypes.reindex(members), _usable(covariates, members),
            cnn=cnn.reindex(members),
            dosages=None if dosages is None else dosages.reindex(members),
            baselines={k: v.reindex(members) for k, v in (baselines or {}).items()},
            validated=validated, alleles=alleles, fdr=fdr)
        table.insert(0, "ancestry", group)
        parts.append(table)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
