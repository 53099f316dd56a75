"""Vectorised OLS associations of scores with measures under covariates.

For each score x measure pair, on the complete cases of that pair: the measure and
the score are z-scored, and the measure is regressed on the score plus covariates
(with an intercept). By the Frisch-Waugh-Lovell theorem the score's coefficient is
that of the residualised measure on the residualised score, so one projection per
row set serves every score that shares it; the numbers equal statsmodels' OLS.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

COLUMNS = ["source", "snp", "measure", "n", "beta", "se", "t", "p", "ci_low", "ci_high",
           "p_bonferroni", "q_fdr"]


def design_matrix(covariates: pd.DataFrame | None, index: pd.Index) -> pd.DataFrame:
    """Numeric covariates with categorical columns dummy-coded (first level dropped)."""
    if covariates is None or covariates.shape[1] == 0:
        return pd.DataFrame(index=index)
    cov = covariates.reindex(index)
    parts = []
    for name in cov.columns:
        col = cov[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            parts.append(col.astype(float).rename(name))
        else:
            dummies = pd.get_dummies(col.astype("category"), prefix=name, drop_first=True,
                                     dtype=float)
            dummies[col.isna()] = np.nan
            parts.append(dummies)
    return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=index)


def _basis(covs: np.ndarray) -> np.ndarray:
    """Orthonormal basis of [1, covariates] (rank-revealing, as statsmodels' pinv)."""
    design = np.column_stack([np.ones(covs.shape[0]), covs])
    u, s, _ = np.linalg.svd(design, full_matrices=False)
    tol = s.max() * max(design.shape) * np.finfo(float).eps if s.size else 0.0
    return u[:, s > tol]


def associate(scores: pd.DataFrame, phenotypes: pd.DataFrame,
              covariates: pd.DataFrame | None = None, *, source: str | None = None,
              min_n: int = 10) -> pd.DataFrame:
    """Associations of every score with every measure, adjusted for covariates.

    Parameters
    ----------
    scores : pandas.DataFrame
        Participants x score columns (NaN where a participant has no score).
    phenotypes : pandas.DataFrame
        Participants x measures.
    covariates : pandas.DataFrame, optional
        Participants x covariates; categorical (non-numeric) columns are dummy-coded.
    source : str, optional
        Written in the ``source`` column (``cnn``, ``idp-<model>``, ``genotype``).
    min_n : int
        Pairs with fewer complete cases are reported with NaN statistics.

    Returns
    -------
    pandas.DataFrame
        The rows of ``associations.tsv`` (``snp`` holds the score column's name),
        with Bonferroni and BH-FDR adjustment over this family of tests.
    """
    index = scores.index.union(phenotypes.index)
    s_all = scores.reindex(index).astype(float)
    y_all = phenotypes.reindex(index).astype(float)
    c_all = design_matrix(covariates, index)
    cov_ok = c_all.notna().all(axis=1).to_numpy() if c_all.shape[1] else np.ones(len(index),
                                                                               bool)
    c_values = c_all.to_numpy(dtype=float)
    s_values = s_all.to_numpy()
    s_present = ~np.isnan(s_values)
    # Group score columns by missingness pattern: one projection per (measure, pattern).
    patterns: dict[bytes, list[int]] = {}
    for j in range(s_values.shape[1]):
        patterns.setdefault(np.packbits(s_present[:, j]).tobytes(), []).append(j)
    rows = []
    for measure in y_all.columns:
        y = y_all[measure].to_numpy()
        for cols in patterns.values():
            rows_ok = cov_ok & ~np.isnan(y) & s_present[:, cols[0]]
            n = int(rows_ok.sum())
            block = _fit_block(y[rows_ok], s_values[np.ix_(rows_ok, cols)],
                               c_values[rows_ok], n, min_n)
            for k, j in enumerate(cols):
                rows.append((s_all.columns[j], measure, n, *[v[k] for v in block]))
    table = pd.DataFrame(rows, columns=["snp", "measure", "n", "beta", "se", "t", "p",
                                        "ci_low", "ci_high"])
    table.insert(0, "source", source)
    order = {name: i for i, name in enumerate(s_all.columns)}
    table = table.sort_values(["snp", "measure"], key=lambda c: c.map(order)
                              if c.name == "snp" else c.map(
                                  {m: i for i, m in enumerate(y_all.columns)}))
    return adjust(table.reset_index(drop=True))


def _fit_block(y, s, c, n, min_n):
    """beta, se, t, p, ci of z-scored y on z-scored columns of s given covariates c."""
    m = s.shape[1]
    nan = np.full(m, np.nan)
    if n < min_n:
        return nan, nan, nan, nan, nan, nan
    q = _basis(c)
    df = n - q.shape[1] - 1
    y_sd, s_sd = y.std(ddof=1), s.std(axis=0, ddof=1)
    if df < 1 or y_sd == 0:
        return nan, nan, nan, nan, nan, nan
    y_res = y - q @ (q.T @ y)
    s_res = s - q @ (q.T @ s)
    sxx = np.einsum("ij,ij->j", s_res, s_res)
    sxy = s_res.T @ y_res
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = sxy / sxx
        rss = y_res @ y_res - beta * sxy
        sigma2 = rss / df
        se = np.sqrt(sigma2 / sxx)
        t = beta / se
        # On z-scores: scale by sd(score) / sd(measure); t and p do not change.
        scale = s_sd / y_sd
        beta_z, se_z = beta * scale, se * scale
    bad = (s_sd == 0) | ~np.isfinite(t)
    beta_z[bad] = se_z[bad] = t[bad] = np.nan
    p = 2.0 * stats.t.sf(np.abs(t), df)
    crit = stats.t.ppf(0.975, df)
    return beta_z, se_z, t, p, beta_z - crit * se_z, beta_z + crit * se_z


def adjust(table: pd.DataFrame) -> pd.DataFrame:
    """Bonferroni-adjusted p and Benjamini-Hochberg q over every row with a p-value."""
    from statsmodels.stats.multitest import multipletests

    table = table.copy()
    ok = table["p"].notna().to_numpy()
    table["p_bonferroni"] = np.nan
    table["q_fdr"] = np.nan
    if ok.any():
        p = table.loc[ok, "p"].to_numpy()
        table.loc[ok, "p_bonferroni"] = np.minimum(p * ok.sum(), 1.0)
        table.loc[ok, "q_fdr"] = multipletests(p, method="fdr_bh")[1]
    return table[COLUMNS]


def associate_sources(sources: dict[str, pd.DataFrame], phenotypes: pd.DataFrame,
                      covariates: pd.DataFrame | None = None) -> pd.DataFrame:
    """Associations for several sources (CNN, baselines, genotypes), adjusted together.

    Bonferroni and FDR run over the whole family (every source, score and measure),
    so the table's corrected p-values are comparable across sources.
    """
    parts = [associate(frame, phenotypes, covariates, source=name)
             for name, frame in sources.items() if frame is not None and frame.shape[1]]
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    return adjust(pd.concat(parts, ignore_index=True))
