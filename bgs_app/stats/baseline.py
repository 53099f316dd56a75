"""The IDP baseline: classical models on regional volumes predict each SNP's genotype.

Trained on exactly the CNN's split (or folds), with hyper-parameters chosen by inner
cross-validation, they give expected-dosage scores that go through the same metrics
and association code as the CNN's, so users see what the CNN adds.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bgs_app.stats.metrics import genotype_metrics
from bgs_app.stats.splits import held_out_sets

LOGGER = logging.getLogger("bgs_app")
MODELS = ("logreg", "gbm")


def idp_features(idps: pd.DataFrame) -> pd.DataFrame:
    """Regional and tissue volumes divided by the estimated TIV (head-size normalised).

    Parameters
    ----------
    idps : pandas.DataFrame
        Rows of the participant-level ``*_desc-idps_morph.tsv`` (index participant_id).
    """
    volumes = [c for c in idps.columns if c.startswith("gm_") or c in
               ("wm_volume", "csf_volume")]
    if "etiv" not in idps.columns:
        raise ValueError("the IDP table has no 'etiv' column")
    feats = idps[volumes].div(idps["etiv"], axis=0)
    return feats.loc[:, feats.std() > 0]


def _estimator(name: str, seed: int, inner_folds: int):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cv = StratifiedKFold(inner_folds, shuffle=True, random_state=seed)
    if name == "logreg":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        grid = {"logisticregression__C": [0.001, 0.01, 0.1, 1.0]}
    elif name == "gbm":
        # Small trees and few rounds: the training sets are tens to hundreds of people
        # (and 4x cheaper than 100 rounds over two learning rates, for the same choice).
        model = HistGradientBoostingClassifier(random_state=seed, max_iter=50,
                                               learning_rate=0.1)
        grid = {"max_depth": [2, 3], "l2_regularization": [0.0, 1.0]}
    else:
        raise ValueError(f"unknown baseline model {name!r}")
    return GridSearchCV(model, grid, cv=cv, scoring="neg_log_loss", n_jobs=1)


def _probabilities(fitted, x: np.ndarray) -> np.ndarray:
    prob = fitted.predict_proba(x)
    out = np.zeros((x.shape[0], 3))
    for k, cls in enumerate(fitted.classes_):
        out[:, int(cls)] = prob[:, k]
    return out


def fit_idp_baseline(features: pd.DataFrame, dosages: pd.DataFrame, split: pd.Series, *,
                     models=MODELS, seed: int = 0, inner_folds: int = 3
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train the baselines and score the held-out (or out-of-fold) participants.

    Parameters
    ----------
    features : pandas.DataFrame
        Participants x IDP features (see :func:`idp_features`).
    dosages : pandas.DataFrame
        Participants x SNPs (0/1/2, NaN missing).
    split : pandas.Series
        Participant -> ``train``/``val``/``test`` or ``fold-<k>`` (the CNN's split).
    models : sequence of str
        ``logreg`` (multinomial, L2, C by inner CV) and/or ``gbm`` (gradient boosting).
    seed, inner_folds : int

    Returns
    -------
    scores : pandas.DataFrame
        Long format: ``participant_id``, ``model``, ``snp``, ``score``, ``p0``, ``p1``,
        ``p2``, ``split``.
    performance : pandas.DataFrame
        ``model`` (``idp-<name>``), ``snp``, ``n_test``, ``auc``, ``auc_carrier``,
        ``r_dosage``, ``p_r_dosage``.
    """
    from threadpoolctl import threadpool_limits

    # One OpenMP/BLAS thread: the fits are small, and with torch's OpenMP runtime loaded
    # in the same process, threaded gradient boosting ran 4x slower than single-threaded.
    with threadpool_limits(limits=1):
        return _fit(features, dosages, split, models, seed, inner_folds)


def _fit(features, dosages, split, models, seed, inner_folds):
    common = features.index.intersection(dosages.index).intersection(split.index)
    x_all = features.loc[common].to_numpy(float)
    split = split.loc[common]
    score_rows, perf_rows = [], []
    for snp in dosages.columns:
        d = dosages.loc[common, snp].to_numpy(float)
        for name in models:
            probs = np.full((len(common), 3), np.nan)
            for _, fit_ids, held_ids in held_out_sets(split):
                train, test = split.index.isin(fit_ids), split.index.isin(held_ids)
                fit_rows = train & ~np.isnan(d) & np.isfinite(x_all).all(axis=1)
                y = d[fit_rows].astype(int)
                if np.unique(y).size < 2 or np.bincount(y).min() < 2:
                    # One class, or a class too rare for the inner folds: frequencies only.
                    freq = np.bincount(y, minlength=3) / max(len(y), 1)
                    probs[test] = freq
                    continue
                counts = np.bincount(y)
                folds = int(min(inner_folds, counts[counts > 0].min()))
                est = _estimator(name, seed, max(folds, 2))
                est.fit(x_all[fit_rows], y)
                ok = test & np.isfinite(x_all).all(axis=1)
                probs[ok] = _probabilities(est.best_estimator_, x_all[ok])
            scored = ~np.isnan(probs).any(axis=1)
            for i in np.flatnonzero(scored):
                p = probs[i]
                score_rows.append((common[i], f"idp-{name}", snp, p[1] + 2 * p[2], *p,
                                   split.iloc[i]))
            metrics = genotype_metrics(d[scored], probs[scored])
            perf_rows.append({"model": f"idp-{name}", "snp": snp, **metrics})
    scores = pd.DataFrame(score_rows, columns=["participant_id", "model", "snp", "score",
                                               "p0", "p1", "p2", "split"])
    performance = pd.DataFrame(perf_rows, columns=["model", "snp", "n_test", "auc",
                                                   "auc_carrier", "r_dosage", "p_r_dosage"])
    return scores, performance
