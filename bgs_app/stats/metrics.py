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
