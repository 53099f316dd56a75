"""What the genotype can say about a score and a measure: the tests behind a genetic claim.

A brain-genotype score ``s`` of SNP ``j`` is an image-derived quantity: a score test
(``measure ~ s``) can only show a brain-cognition association, because ``s`` is mostly
anatomy that has nothing to do with the SNP. Only the dosage ``d`` can say that a link
is genetic. Per score x measure, on the participants with all of ``s``, ``d``, the
measure ``y`` and the covariates ``X`` (genetic PCs among them):

``first_stage``   ``s ~ d + X``: the coefficient per allele, its F statistic (``t^2``)
                  and the score's genetic share (the partial R^2 of ``d``)
``reduced_form``  ``y ~ d + X``: the per-allele effect on the measure, in its units
``instrumented``  the dosage as the instrument of the score (just identified: the Wald
                  ratio, equal to 2SLS), in measure units per unit of score, with the
                  Anderson-Rubin confidence set, valid however weak the instrument
                  (bounded, the whole line, or two rays), and the Wu-Hausman test of
                  the instrumented against the plain regression
``remainder``     ``y ~ s + d + X``: the score's association given its genotype, i.e.
                  of its non-genetic part (standardised, like the score test)

Every regression is ordinary least squares with an intercept, and each equals
statsmodels / linearmodels (tested). The Anderson-Rubin test of "no effect" is the
reduced form, so its p-value is the instrumented row's ``p``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from bgs_app.stats.associations import design_matrix

#: Tests this module adds per score x measure (the score test is
#: :func:`bgs_app.stats.associations.associate`).
TESTS = ("first_stage", "reduced_form", "instrumented", "remainder")
COLUMNS = ["snp", "measure", "test", "n", "beta", "se", "t", "p", "ci_low", "ci_high",
           "f_stat", "partial_r2", "ci_kind", "hausman_p"]


def genetic_tests(scores: pd.DataFrame, dosages: pd.DataFrame, phenotypes: pd.DataFrame,
                  covariates: pd.DataFrame | None = None, *, alpha: float = 0.05,
                  min_n: int = 10) -> pd.DataFrame:
    """First stage, reduced form, instrumented estimate and remainder per score x measure.

    Parameters
    ----------
    scores : pandas.DataFrame
        Participants x SNPs: each SNP's score (sessions averaged).
    dosages : pandas.DataFrame
        Participants x SNPs: the counted-allele dosage (NaN missing).
    phenotypes : pandas.DataFrame
        Participants x measures.
    covariates : pandas.DataFrame, optional
        Participants x covariates (categorical ones dummy-coded), genetic PCs included.
    alpha : float
        Level of the confidence sets.
    min_n : int
        Pairs with fewer complete cases get NaN statistics.

    Returns
    -------
    pandas.DataFrame
        Four rows per score x measure (:data:`TESTS`), columns :data:`COLUMNS`:
        ``beta``/``se``/``t``/``p``/``ci_*`` of the row's coefficient; ``f_stat`` and
        ``partial_r2`` on first-stage rows; ``ci_kind`` (``bounded``, ``unbounded``,
        ``rays``: ``(-inf, ci_low] U [ci_high, inf)``) and ``hausman_p`` on instrumented
        rows.
    """
    snps = [s for s in scores.columns if s in dosages.columns]
    index = scores.index.union(phenotypes.index)
    x = design_matrix(covariates, index).to_numpy(float)
    x = np.column_stack([np.ones(len(index)), x]) if x.size else np.ones((len(index), 1))
    x_ok = ~np.isnan(x).any(axis=1)
    s_all = scores.reindex(index)[snps].to_numpy(float)
    d_all = dosages.reindex(index)[snps].to_numpy(float)
    y_all = phenotypes.reindex(index).to_numpy(float)
    projections: dict[bytes, tuple] = {}
    rows = []
    for j, snp in enumerate(snps):
        for m, measure in enumerate(phenotypes.columns):
            ok = x_ok & ~np.isnan(s_all[:, j]) & ~np.isnan(d_all[:, j]) & ~np.isnan(
                y_all[:, m])
            results = _pair(s_all[ok, j], d_all[ok, j], y_all[ok, m], x[ok], ok,
                            projections, alpha, min_n)
            rows += [(snp, measure, test, *values) for test, values in results]
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["n"] = table["n"].astype(int)
    return table


def _residualiser(x: np.ndarray, key: bytes, cache: dict) -> tuple[np.ndarray, int]:
    """An orthonormal basis of the covariates' span on one set of complete cases, and its
    rank (collinear columns, such as a dummy that is constant there, count once)."""
    if key not in cache:
        if len(cache) > 64:
            cache.clear()
        u, sv, _ = np.linalg.svd(x, full_matrices=False)
        q = u[:, sv > 1e-10 * max(sv.max(), 1e-300)]
        cache[key] = (q, q.shape[1])
    return cache[key]


def _pair(s, d, y, x, mask, cache, alpha, min_n):
    """The four tests of one score x measure on its complete cases."""
    n = len(s)
    blank = (n, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, "", np.nan)
    empty = [(test, blank) for test in TESTS]
    if n < min_n:
        return empty
    q, k = _residualiser(x, np.packbits(mask).tobytes(), cache)

    def resid(v):
        return v - q @ (q.T @ v)

    s_, d_, y_ = resid(s), resid(d), resid(y)
    dd, ss, yy = d_ @ d_, s_ @ s_, y_ @ y_
    ds, dy, sy = d_ @ s_, d_ @ y_, s_ @ y_
    df1 = n - k - 1  # one regressor beyond the covariates
    df2 = n - k - 2
    if dd <= 1e-12 * max(n, 1) or ss <= 0 or yy <= 0 or df2 < 1:
        return empty
    tcrit1, tcrit2 = special.stdtrit(df1, 1 - alpha / 2), special.stdtrit(df2, 1 - alpha / 2)

    def simple(cov, var_y):
        beta = cov / dd
        rss = max(var_y - beta * cov, 0.0)
        se = np.sqrt(rss / df1 / dd)
        t = beta / se if se > 0 else np.nan
        p = _two_sided(t, df1)
        return beta, se, t, p, rss

    # First stage: s ~ d + X.
    b_fs, se_fs, t_fs, p_fs, rss_fs = simple(ds, ss)
    f_fs = t_fs ** 2
    r2_fs = f_fs / (f_fs + df1)
    first = (n, b_fs, se_fs, t_fs, p_fs, b_fs - tcrit1 * se_fs, b_fs + tcrit1 * se_fs,
             f_fs, r2_fs, "", np.nan)
    # Reduced form: y ~ d + X (per allele, in the measure's units).
    b_rf, se_rf, t_rf, p_rf, rss_rf = simple(dy, yy)
    reduced = (n, b_rf, se_rf, t_rf, p_rf, b_rf - tcrit1 * se_rf, b_rf + tcrit1 * se_rf,
               np.nan, np.nan, "", np.nan)
    # Instrumented: the Wald ratio (= 2SLS), its 2SLS standard error, the Anderson-Rubin
    # set {b: reduced form of y - b s has |t| <= crit}, and Wu-Hausman.
    b_iv = b_rf / b_fs if b_fs != 0 else np.nan
    u = y_ - b_iv * s_
    se_iv = np.sqrt((u @ u) / df1 / (b_fs ** 2 * dd)) if b_fs != 0 else np.nan
    t_iv = b_iv / se_iv if se_iv and np.isfinite(se_iv) else np.nan
    low, high, kind = _anderson_rubin(b_fs, b_rf, dd, rss_fs, rss_rf,
                                      sy - b_fs * dy - b_rf * ds + b_fs * b_rf * dd,
                                      tcrit1 ** 2, df1)
    e_s = s_ - b_fs * d_  # the first stage's residual: the control function
    hausman = _second_coefficient_p(s_, e_s, y_, df2)
    instrumented = (n, b_iv, se_iv, t_iv, p_rf, low, high, np.nan, np.nan, kind, hausman)
    # Remainder: y ~ s + d + X, standardised like the score test.
    sd_s, sd_y = np.std(s, ddof=1), np.std(y, ddof=1)  # z-scores on the complete cases
    a = np.array([[ss, ds], [ds, dd]])
    rhs = np.array([sy, dy])
    try:
        coef = np.linalg.solve(a, rhs)
        rss = yy - coef @ rhs
        cov = np.linalg.inv(a) * rss / df2
        beta, se = coef[0], np.sqrt(cov[0, 0])
        t = beta / se
        p = _two_sided(t, df2)
        scale = sd_s / sd_y
        remainder = (n, beta * scale, se * scale, t, p, (beta - tcrit2 * se) * scale,
                     (beta + tcrit2 * se) * scale, np.nan, np.nan, "", np.nan)
    except np.linalg.LinAlgError:
        remainder = blank
    return [("first_stage", first), ("reduced_form", reduced), ("instrumented", instrumented),
            ("remainder", remainder)]


def _two_sided(t: float, df: float) -> float:
    """Two-sided p of a t statistic (scipy's Student t, as a fast ufunc)."""
    return float(2 * special.stdtr(df, -abs(t))) if np.isfinite(t) else np.nan


def _second_coefficient_p(a, b, y, df):
    """Two-sided p of ``b``'s coefficient in ``y ~ a + b`` (all residualised on X)."""
    m = np.array([[a @ a, a @ b], [a @ b, b @ b]])
    rhs = np.array([a @ y, b @ y])
    try:
        coef = np.linalg.solve(m, rhs)
    except np.linalg.LinAlgError:
        return np.nan
    rss = y @ y - coef @ rhs
    var = np.linalg.inv(m)[1, 1] * rss / df
    if not var > 0:
        return np.nan
    return _two_sided(coef[1] / np.sqrt(var), df)


def _anderson_rubin(b_fs, b_rf, dd, rss_fs, rss_rf, cross, crit, df):
    """The Anderson-Rubin confidence set of the instrumented coefficient.

    For a candidate ``b``, the reduced form of ``y - b s`` on ``d`` has coefficient
    ``b_rf - b b_fs`` and residual sum of squares ``rss_rf - 2 b cross + b^2 rss_fs``
    (``cross``: the product of the two residuals); ``b`` is in the set when that
    coefficient's squared t statistic is at most ``crit``: a quadratic inequality
    ``A b^2 + B b + C <= 0``.
    """
    a = b_fs ** 2 * dd * df - crit * rss_fs
    b = -2 * b_fs * b_rf * dd * df + 2 * crit * cross
    c = b_rf ** 2 * dd * df - crit * rss_rf
    disc = b * b - 4 * a * c
    if abs(a) < 1e-14 * max(abs(b), abs(c), 1e-300):
        if b == 0:
            return -np.inf, np.inf, "unbounded"
        root = -c / b
        return (-np.inf, root, "unbounded") if b > 0 else (root, np.inf, "unbounded")
    if disc < 0:
        # a > 0 cannot happen here (the Wald ratio is always in the set): every b is in.
        return -np.inf, np.inf, "unbounded"
    r1, r2 = sorted(((-b - np.sqrt(disc)) / (2 * a), (-b + np.sqrt(disc)) / (2 * a)))
    if a > 0:
        return r1, r2, "bounded"
    return r1, r2, "rays"  # (-inf, r1] U [r2, inf)


def reduced_forms(dosages: pd.DataFrame, phenotypes: pd.DataFrame,
                  covariates: pd.DataFrame | None = None, *, alpha: float = 0.05,
                  min_n: int = 10) -> pd.DataFrame:
    """The reduced form ``measure ~ dosage + covariates`` of every SNP x measure.

    Parameters
    ----------
    dosages, phenotypes, covariates
        As for :func:`genetic_tests`.
    alpha : float
    min_n : int

    Returns
    -------
    pandas.DataFrame
        One ``reduced_form`` row per SNP x measure (columns :data:`COLUMNS`): the
        per-allele effect in the measure's units, as PLINK's ``--glm`` reports it.
    """
    index = dosages.index.union(phenotypes.index)
    x = design_matrix(covariates, index).to_numpy(float)
    x = np.column_stack([np.ones(len(index)), x]) if x.size else np.ones((len(index), 1))
    x_ok = ~np.isnan(x).any(axis=1)
    d_all = dosages.reindex(index).to_numpy(float)
    y_all = phenotypes.reindex(index).to_numpy(float)
    cache: dict[bytes, tuple] = {}
    rows = []
    for j, snp in enumerate(dosages.columns):
        for m, measure in enumerate(phenotypes.columns):
            ok = x_ok & ~np.isnan(d_all[:, j]) & ~np.isnan(y_all[:, m])
            n = int(ok.sum())
            stats_ = (np.nan,) * 6
            if n >= min_n:
                q, k = _residualiser(x[ok], np.packbits(ok).tobytes(), cache)
                d_ = d_all[ok, j] - q @ (q.T @ d_all[ok, j])
                y_ = y_all[ok, m] - q @ (q.T @ y_all[ok, m])
                dd, df = d_ @ d_, n - k - 1
                if dd > 1e-12 * n and df >= 1 and y_ @ y_ > 0:
                    beta = (d_ @ y_) / dd
                    se = np.sqrt(max(y_ @ y_ - beta * (d_ @ y_), 0.0) / df / dd)
                    t = beta / se if se > 0 else np.nan
                    crit = special.stdtrit(df, 1 - alpha / 2)
                    stats_ = (beta, se, t, _two_sided(t, df), beta - crit * se,
                              beta + crit * se)
            rows.append((snp, measure, "reduced_form", n, *stats_, np.nan, np.nan, "",
                         np.nan))
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["n"] = table["n"].astype(int)
    return table
