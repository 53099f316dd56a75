"""The mass-univariate voxelwise genotype test: at every voxel, image ~ dosage +
covariates, with family-wise error control over the brain by permutation (nilearn's
``permuted_ols``: Freedman-Lane permutations, max-t).

It is the classical imaging-genetics analysis (voxel-based morphometry of a SNP), with
no training: it finds where a SNP changes the images, which a reader can set beside the
CNN's saliency and genotype-correlation maps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Permutations of the family-wise test (its p-values are multiples of 1 / (n + 1)).
N_PERMUTATIONS = 1000

#: The family-wise error rate of the written threshold.
ALPHA = 0.05

#: A voxel is tested when it is inside the brain (non-zero) in this share of the
#: participants.
MIN_COVERAGE = 0.9


def voxelwise_test(voxels: np.ndarray, dosage: np.ndarray,
                   covariates: pd.DataFrame | None = None, *, n_perm: int = N_PERMUTATIONS,
                   seed: int = 0, alpha: float = ALPHA, n_jobs: int = 1) -> dict:
    """Test one SNP at every voxel.

    Parameters
    ----------
    voxels : numpy.ndarray
        (participants, voxels) images (see
        :func:`bgs_app.stats.voxel_baseline.voxel_features`).
    dosage : numpy.ndarray
        (participants,) dosages; NaN rows are left out.
    covariates : pandas.DataFrame, optional
        Numeric (dummy-coded) covariates, rows as ``voxels``; rows with a missing value
        are left out.
    n_perm : int
    seed : int
    alpha : float
        Family-wise error rate of ``threshold``.
    n_jobs : int
        Processes sharing the permutations.

    Returns
    -------
    dict
        ``t`` (per voxel; NaN where not tested), ``p_fwe`` (family-wise corrected, per
        voxel), ``threshold`` (the |t| that the maximum exceeds under the null with
        probability ``alpha``), ``n`` (participants), ``tested`` (voxels inside the brain
        of at least :data:`MIN_COVERAGE` of them), ``significant`` (voxels with
        ``p_fwe < alpha``), ``p_fwe_min``.
    """
    from nilearn.mass_univariate import permuted_ols

    dosage = np.asarray(dosage, float)
    keep = ~np.isnan(dosage)
    confounds = None
    if covariates is not None and covariates.shape[1]:
        cov = covariates.to_numpy(float)
        keep &= ~np.isnan(cov).any(axis=1)
        confounds = cov[keep]
        # Constant columns (one site among these people) carry nothing but rank loss.
        confounds = confounds[:, confounds.std(0) > 0] if len(confounds) else confounds
        if confounds.shape[1] == 0:
            confounds = None
    x = np.asarray(voxels, np.float64)[keep]
    d = dosage[keep]
    n_voxels = x.shape[1]
    # Voxels at the brain's edge, inside the brain of only some participants, are
    # mostly zeros: not tested (nor is a constant voxel).
    tested = ((x != 0).mean(axis=0) >= MIN_COVERAGE) & (x.std(axis=0) > 0) if len(x) \
        else np.zeros(n_voxels, bool)
    t, p_fwe = np.full(n_voxels, np.nan), np.full(n_voxels, np.nan)
    empty = {"t": t, "p_fwe": p_fwe, "threshold": float("nan"), "n": int(keep.sum()),
             "tested": int(tested.sum()), "significant": 0, "p_fwe_min": float("nan")}
    if keep.sum() < 10 or np.std(d) == 0 or not tested.any():
        return empty
    out = permuted_ols(d[:, None], np.ascontiguousarray(x[:, tested]),
                       confounding_vars=confounds, model_intercept=True,
                       n_perm=int(n_perm), two_sided_test=True, random_state=int(seed),
                       n_jobs=int(n_jobs), verbose=0, output_type="dict")
    t[tested] = np.asarray(out["t"], float).ravel()
    p_fwe[tested] = 10.0 ** -np.asarray(out["logp_max_t"], float).ravel()
    null_max = np.abs(np.asarray(out["h0_max_t"], float).ravel())
    threshold = float(np.quantile(null_max, 1 - alpha)) if null_max.size else float("nan")
    return {"t": t, "p_fwe": p_fwe, "threshold": threshold, "n": int(keep.sum()),
            "tested": int(tested.sum()), "significant": int((p_fwe[tested] < alpha).sum()),
            "p_fwe_min": float(np.nanmin(p_fwe))}
