"""Per-SNP prediction metrics: multi-class AUC, carrier AUC, score-dosage correlation."""

from __future__ import annotations

import numpy as np
from scipy import stats


def genotype_metrics(dosage: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """How well class probabilities (and their expected dosage) predict genotypes.

    Parameters
    ----------
    dosage : numpy.ndarray
        True counts (0/1/2; NaN missing), shape (n,).
    probabilities : numpy.ndarray
        Predicted P(0), P(1), P(2), shape (n, 3).

    Returns
    -------
    dict
        ``n_test``; ``auc`` (one-vs-rest macro AUC over the genotype classes present);
        ``auc_carrier`` (AUC of the score for carrying >= 1 counted allele); ``r_dosage``
        and ``p_r_dosage`` (Pearson correlation of the score ``p1 + 2 p2`` with dosage).
    """
    from sklearn.metrics import roc_auc_score

    dosage = np.asarray(dosage, float)
    probabilities = np.asarray(probabilities, float)
    ok = ~np.isnan(dosage) & np.isfinite(probabilities).all(axis=1)
    d, prob = dosage[ok].astype(int), probabilities[ok]
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
        if np.std(score) > 0:
            r, p = stats.pearsonr(score, d)
            out["r_dosage"], out["p_r_dosage"] = float(r), float(p)
    return out
