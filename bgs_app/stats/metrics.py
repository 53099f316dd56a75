"""Per-SNP prediction metrics: multi-class AUC, carrier AUC, score-dosage correlation."""

from __future__ import annotations

import numpy as np
from scipy import stats


def genotype_metrics(dosage: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """How well class probabilities (and their expected dosage) predict genotypes.

    Parameters
    ----------
    dosage : numpy.ndarray
        True counts (0/1/2) or expected dosages in [0, 2] (NaN missing), shape (n,).
        The AUCs use the nearest genotype; the correlation uses the dosage itself.
    probabilities : numpy.ndarray
        Predicted P(0), P(1), P(2), shape (n, 3).

    Returns
    -------
    dict
        ``n_test``; ``auc`` (one-vs-rest macro AUC over the genotype classes present);
        ``auc_carrier`` (AUC of the score for carrying >= 1 counted allele); ``r_dosage``
        and ``p_r_dosage`` (Pearson correlation of the score ``p1 + 2 p2`` with dosage);
        ``first_stage_f`` and ``genetic_share`` (the F statistic and R^2 of the score on
        the dosage, without covariates: the associations table has them with).
    """
    from sklearn.metrics import roc_auc_score

    dosage = np.asarray(dosage, float)
    probabilities = np.asarray(probabilities, float)
    ok = ~np.isnan(dosage) & np.isfinite(probabilities).all(axis=1)
    dose, prob = dosage[ok], probabilities[ok]
    d = np.clip(np.round(dose), 0, 2).astype(int)
    score = prob[:, 1] + 2.0 * prob[:, 2]
    out = {"n_test": int(ok.sum()), "auc": np.nan, "auc_carrier": np.nan,
           "r_dosage": np.nan, "p_r_dosage": np.nan}
    classes = np.unique(d)
    if classes.size >= 2:
        aucs = [roc_auc_score(d == c, prob[:, c]) for c in classes]
        out["auc"] = float(np.mean(aucs))
        carrier = d >= 1
        if 0 < carrier.sum() < carrier.size:
            out["auc_carrier"] = float(roc_auc_score(carrier, score))
        out.update(score_dosage_correlation(dose, score))
    r, n = out["r_dosage"], out["n_test"]
    if np.isfinite(r) and n > 2 and abs(r) < 1:
        out["first_stage_f"] = float(r * r * (n - 2) / (1 - r * r))
        out["genetic_share"] = float(r * r)
    else:
        out["first_stage_f"] = out["genetic_share"] = np.nan
    return out


def score_dosage_correlation(dosage: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Pearson correlation of a score with the dosage (what the score gate judges).

    Parameters
    ----------
    dosage, score : numpy.ndarray
        Shape (n,); NaN entries are skipped.

    Returns
    -------
    dict
        ``r_dosage`` and ``p_r_dosage`` (NaN when either is constant).
    """
    dosage, score = np.asarray(dosage, float), np.asarray(score, float)
    ok = np.isfinite(dosage) & np.isfinite(score)
    if ok.sum() < 3 or np.std(score[ok]) == 0 or np.std(dosage[ok]) == 0:
        return {"r_dosage": np.nan, "p_r_dosage": np.nan}
    r, p = stats.pearsonr(score[ok], dosage[ok])
    return {"r_dosage": float(r), "p_r_dosage": float(p)}


def partial_score_dosage_correlation(dosage: np.ndarray, score: np.ndarray,
                                     covariates: np.ndarray) -> dict[str, float]:
    """Correlation of a score with the dosage after both are residualised on covariates
    (genetic PCs): what a score predicts of its genotype beyond ancestry.

    Parameters
    ----------
    dosage, score : numpy.ndarray
        Shape (n,); rows with a NaN anywhere are skipped.
    covariates : numpy.ndarray
        (n, k); an intercept is added.

    Returns
    -------
    dict
        ``r_dosage_pcs`` and ``p_r_dosage_pcs`` (two-sided t test with n - 2 - k degrees
        of freedom); NaN when too few rows or a constant residual.
    """
    dosage, score = np.asarray(dosage, float), np.asarray(score, float)
    z = np.asarray(covariates, float).reshape(len(dosage), -1)
    ok = np.isfinite(dosage) & np.isfinite(score) & np.isfinite(z).all(axis=1)
    design = np.column_stack([np.ones(ok.sum()), z[ok]])
    df = int(ok.sum()) - 1 - design.shape[1]
    nan = {"r_dosage_pcs": np.nan, "p_r_dosage_pcs": np.nan}
    if df < 1:
        return nan
    coef = np.linalg.lstsq(design, np.column_stack([dosage[ok], score[ok]]), rcond=None)[0]
    res = np.column_stack([dosage[ok], score[ok]]) - design @ coef
    sd = res.std(axis=0)
    if (sd <= 1e-12 * np.maximum(np.abs(res).max(axis=0), 1)).any():
        return nan
    r = float(np.corrcoef(res[:, 0], res[:, 1])[0, 1])
    t = r * np.sqrt(df / max(1 - r * r, 1e-300))
    return {"r_dosage_pcs": r, "p_r_dosage_pcs": float(2 * stats.t.sf(abs(t), df))}


def cauchy_combination(p: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Cauchy combination (ACAT) of p-values, valid under any correlation between them.

    Liu & Xie (2020): the weighted mean of ``tan((0.5 - p) pi)`` has a standard Cauchy
    tail whatever the dependence of the tests (exactly for independent ones, and in the
    tail for correlated normal statistics), so the combination stays a valid test where
    the tests share data.

    Parameters
    ----------
    p : numpy.ndarray
        P-values in (0, 1); NaN entries are skipped.
    weights : numpy.ndarray, optional
        Non-negative weights (normalised to sum 1); equal by default.

    Returns
    -------
    float
        The combined p-value (NaN without a finite p-value).
    """
    p = np.asarray(p, float)
    w = np.ones_like(p) if weights is None else np.asarray(weights, float)
    ok = np.isfinite(p) & np.isfinite(w) & (w > 0)
    if not ok.any():
        return float("nan")
    p, w = np.clip(p[ok], 1e-300, 1 - 1e-16), w[ok] / w[ok].sum()
    # tan((0.5 - p) pi) loses precision for tiny p; 1 / (p pi) is its limit there.
    terms = np.where(p < 1e-15, 1.0 / (p * np.pi), np.tan((0.5 - p) * np.pi))
    statistic = float(np.sum(w * terms))
    if statistic > 1e15:
        return float(1.0 / (statistic * np.pi))
    return float(stats.cauchy.sf(statistic))


def fold_combined_correlation(dosage: np.ndarray, score: np.ndarray, folds: np.ndarray,
                              covariates: np.ndarray | None = None) -> float:
    """The gate's p-value for cross-fitted scores: per-fold tests of r > 0, combined.

    With ``--cv-folds`` every participant's genotype trains the models that score the
    others, so the pooled out-of-fold correlation is not a sum of independent terms and
    its usual p-value is too small under the null (measured: ``benchmarks/
    relatives_ancestry.py``). Within one fold, the model never saw the fold, so the
    fold's correlation test is exact; the folds' one-sided p-values (for a positive
    correlation) are combined by :func:`cauchy_combination`, which tolerates their
    dependence. The result is doubled so that it compares with a two-sided p-value as
    the gate does (``r > 0`` and ``p`` Bonferroni-corrected).

    Parameters
    ----------
    dosage, score : numpy.ndarray
        Shape (n,); NaN entries are skipped.
    folds : numpy.ndarray
        Shape (n,): the fold that scored each participant.
    covariates : numpy.ndarray, optional
        (n, k) genetic PCs: each fold's correlation is then the partial one given them
        (residualised within the fold).

    Returns
    -------
    float
        ``min(1, 2 p)`` with ``p`` the combined one-sided p-value; NaN when no fold has a
        usable test.
    """
    dosage, score, folds = (np.asarray(dosage, float), np.asarray(score, float),
                            np.asarray(folds))
    one_sided = []
    for fold in np.unique(folds):
        at = folds == fold
        if covariates is None:
            test = score_dosage_correlation(dosage[at], score[at])
            r, p = test["r_dosage"], test["p_r_dosage"]
        else:
            z = np.asarray(covariates, float).reshape(len(dosage), -1)[at]
            test = partial_score_dosage_correlation(dosage[at], score[at], z)
            r, p = test["r_dosage_pcs"], test["p_r_dosage_pcs"]
        if not (np.isfinite(r) and np.isfinite(p)):
            continue
        one_sided.append(p / 2 if r > 0 else 1 - p / 2)
    if not one_sided:
        return float("nan")
    return float(min(1.0, 2 * cauchy_combination(np.array(one_sided))))
