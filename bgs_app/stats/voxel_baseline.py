"""The voxel-ridge baseline: a penalised linear model on the model-grid voxels.

The first thing a reviewer asks of a CNN on images is what a linear model on the same
images does. Here a multinomial L2 (ridge) logistic regression on every brain voxel of
the model grid predicts each SNP's genotype, on exactly the CNN's split, with its
penalty chosen by inner cross-validation (scikit-learn), and its scores go through the
same metrics, gate and association code as the CNN's and the IDP baseline's.

The L2 penalty does not change under a rotation of the features, and the fitted weights
of a ridge model lie in the span of its training images, so the model is fitted exactly
on the training images' principal-component scores (at most one per training image)
instead of on tens of thousands of voxels: the same model, at a cost that grows with
the training set, not with the voxels.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bgs_app.stats.metrics import genotype_metrics
from bgs_app.stats.splits import held_out_sets

LOGGER = logging.getLogger("bgs_app")

#: The model name in the score and performance tables (the ``source`` of associations).
MODEL = "voxel-ridge"
#: The same model on the log-Jacobian maps (tensor-based morphometry).
MODEL_LOGJACOBIAN = "voxel-ridge-logjac"

#: Inverse penalties searched by inner cross-validation (features are scaled so that a
#: training image's squared norm is 1 on average).
C_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)

#: Voxel size (mm) the images are block-averaged to at most (a finer grid is averaged
#: in blocks of whole voxels to about this, which keeps the features manageable).
VOXEL_MM = 4.0


def block_average(volume: np.ndarray, factor: int) -> np.ndarray:
    """Means over ``factor``^3 blocks (the edges that do not fill a block are dropped)."""
    if factor <= 1:
        return volume
    shape = [n // factor for n in volume.shape]
    cut = volume[:shape[0] * factor, :shape[1] * factor, :shape[2] * factor]
    return cut.reshape(shape[0], factor, shape[1], factor, shape[2], factor).mean((1, 3, 5))


def brain_voxels(volumes: np.ndarray, resolution: float
                 ) -> tuple[np.ndarray, np.ndarray, int]:
    """Participants x brain voxels: images block-averaged to about :data:`VOXEL_MM`,
    keeping the voxels that are inside the brain in any image.

    Parameters
    ----------
    volumes : numpy.ndarray
        (participants, X, Y, Z) model-grid images (zero outside the brain).
    resolution : float
        The grid's voxel size in mm.

    Returns
    -------
    features : numpy.ndarray
        (participants, voxels) float32.
    mask : numpy.ndarray
        The kept voxels on the block-averaged grid (bool).
    factor : int
        The block size (the averaged grid's affine is the model grid's scaled by it).
    """
    factor = max(1, int(round(VOXEL_MM / float(resolution))))
    reduced = np.stack([block_average(np.asarray(v, np.float32), factor) for v in volumes])
    mask = (reduced != 0).any(axis=0)
    return reduced[:, mask], mask, factor


def voxel_features(volumes: np.ndarray, resolution: float) -> np.ndarray:
    """The features of :func:`brain_voxels` alone."""
    return brain_voxels(volumes, resolution)[0]


def _projection(x_fit: np.ndarray):
    """Standardisation and principal axes of the fitting images: returns a function
    that maps images to their component scores (rows x rank)."""
    mean = x_fit.mean(0)
    sd = x_fit.std(0)
    sd[sd == 0] = 1.0
    scale = np.sqrt(x_fit.shape[1])  # a standardised image's squared norm is 1 on average
    z = (x_fit - mean) / sd / scale
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    keep = s > s.max() * 1e-6 if s.size else s.astype(bool)
    axes = vt[keep].T

    def project(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / sd / scale) @ axes

    return project


def fit_voxel_baseline(features: pd.DataFrame, dosages: pd.DataFrame, split: pd.Series, *,
                       seed: int = 0, inner_folds: int = 3, model: str = MODEL
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train the voxel-ridge baseline and score the held-out (or out-of-fold) people.

    Parameters
    ----------
    features : pandas.DataFrame
        Participants x voxels (see :func:`voxel_features`).
    dosages : pandas.DataFrame
        Participants x SNPs (0/1/2, NaN missing; dosages are rounded to hard calls).
    split : pandas.Series
        Participant -> ``train``/``val``/``test`` or ``fold-<k>`` (the CNN's split).
    seed, inner_folds : int
    model : str
        The ``model``/``source`` name its rows carry (:data:`MODEL`, or
        :data:`MODEL_LOGJACOBIAN` for log-Jacobian features).

    Returns
    -------
    scores : pandas.DataFrame
        Long format as the IDP baseline's: ``participant_id``, ``model``, ``snp``,
        ``score``, ``p0``, ``p1``, ``p2``, ``split``.
    performance : pandas.DataFrame
        ``model``, ``snp``, ``n_test``, ``auc``, ``auc_carrier``,
        ``r_dosage``, ``p_r_dosage``.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        return _fit(features, dosages, split, seed, inner_folds, model)


def _fit(features, dosages, split, seed, inner_folds, model):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    common = features.index.intersection(dosages.index).intersection(split.index)
    x_all = features.loc[common].to_numpy(np.float32)
    split = split.loc[common]
    calls = np.rint(dosages.loc[common].to_numpy(float))
    probs = np.full((len(common), dosages.shape[1], 3), np.nan)
    for _, fit_ids, held_ids in held_out_sets(split):
        fit, held = split.index.isin(fit_ids), split.index.isin(held_ids)
        project = _projection(x_all[fit])
        z_fit, z_held = project(x_all[fit]), project(x_all[held])
        for j in range(calls.shape[1]):
            d = calls[fit, j]
            rows = ~np.isnan(d)
            y = d[rows].astype(int)
            counts = np.bincount(y, minlength=3)
            if np.count_nonzero(counts) < 2 or counts[counts > 0].min() < 2:
                probs[held, j] = counts / max(len(y), 1)  # frequencies only
                continue
            folds = int(min(inner_folds, counts[counts > 0].min()))
            search = GridSearchCV(LogisticRegression(max_iter=5000),
                                  {"C": list(C_GRID)}, scoring="neg_log_loss", n_jobs=1,
                                  cv=StratifiedKFold(max(folds, 2), shuffle=True,
                                                     random_state=seed))
            search.fit(z_fit[rows], y)
            out = np.zeros((int(held.sum()), 3))
            out[:, search.best_estimator_.classes_.astype(int)] = \
                search.best_estimator_.predict_proba(z_held)
            probs[held, j] = out
    score_rows, perf_rows = [], []
    for j, snp in enumerate(dosages.columns):
        p = probs[:, j]
        scored = ~np.isnan(p).any(axis=1)
        for i in np.flatnonzero(scored):
            score_rows.append((common[i], model, snp, p[i, 1] + 2 * p[i, 2], *p[i],
                               split.iloc[i]))
        d = dosages.loc[common, snp].to_numpy(float)
        perf_rows.append({"model": model, "snp": snp,
                          **genotype_metrics(d[scored], p[scored])})
    scores = pd.DataFrame(score_rows, columns=["participant_id", "model", "snp", "score",
                                               "p0", "p1", "p2", "split"])
    performance = pd.DataFrame(perf_rows, columns=["model", "snp", "n_test", "auc",
                                                   "auc_carrier", "r_dosage", "p_r_dosage"])
    return scores, performance
