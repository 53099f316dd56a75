"""Quality measures of model-grid images and their outliers in a cohort.

The measures are those the participant level checks for plausibility (brain-mask volume,
eTIV, similarity to the template after registration), plus the share of in-brain voxels
with outlying intensities; an image is flagged when any measure lies far from the
cohort's (robust z, Iglewicz and Hoaglin's modified z-score, beyond 3.5).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

#: The absolute robust z beyond which a measure flags an image (Iglewicz & Hoaglin 1993).
OUTLIER_Z = 3.5
#: A voxel's intensity is an outlier beyond this many robust SDs from the brain's median.
INTENSITY_Z = 5.0
#: The smallest spread (robust SD) a measure's z-score divides by: in a homogeneous cohort
#: (a single scanner, simulated heads) the MAD alone would flag differences that mean
#: nothing (0.02 of similarity; 20 mL of brain).
MIN_SPREAD = {"brain_ml": 20.0, "etiv_ml": 20.0, "template_similarity": 0.02,
              "intensity_outliers": 0.001}
#: The measures of ``qc.tsv`` and what they are.
QC_MEASURES = {
    "brain_ml": "Volume of the brain mask (mL; the IDP table's tiv)",
    "etiv_ml": "Estimated total intracranial volume (mL; the IDP table's etiv)",
    "template_similarity": "Pearson correlation of the model-grid image with the template "
                           "where both have brain (after registration)",
    "intensity_outliers": f"Share of in-brain voxels more than {INTENSITY_Z:g} robust SDs "
                          "from the image's median brain intensity",
}


def template_on_grid(template_t1w: str | Path, template_mask: str | Path,
                     grid: nb.spatialimages.SpatialImage) -> tuple[np.ndarray, np.ndarray]:
    """The template image and its brain mask (boolean) resampled onto ``grid``'s voxels."""
    from nilearn.image import resample_to_img

    mask_img = nb.load(template_mask)
    with warnings.catch_warnings():  # a 0/1 mask, linearly interpolated on purpose
        warnings.simplefilter("ignore", UserWarning)
        reference = resample_to_img(nb.load(template_t1w), grid, interpolation="continuous",
                                    force_resample=True, copy_header=True)
        mask = resample_to_img(nb.Nifti1Image(np.asarray(mask_img.dataobj, np.float32),
                                              mask_img.affine), grid,
                               interpolation="continuous", force_resample=True,
                               copy_header=True)
    return np.asarray(reference.dataobj, np.float32), np.asarray(mask.dataobj) > 0.5


def similarity_inside(data: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """Pearson correlation of ``data`` and ``reference`` inside ``mask`` and ``data > 0``.

    Only voxels inside the template's brain mask *and* the subject's brain (non-zero)
    count, so that the shape of the brain mask alone (which any input gets from the
    template) does not make noise look like a brain.

    Returns
    -------
    float
        NaN when fewer than 100 voxels count or either image is constant there.
    """
    inside = np.asarray(mask, bool) & (np.asarray(data) > 0)
    if inside.sum() < 100:
        return float("nan")
    x = np.asarray(data)[inside].astype(float)
    y = np.asarray(reference)[inside].astype(float)
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def intensity_outliers(data: np.ndarray) -> float:
    """Share of in-brain (non-zero) voxels beyond :data:`INTENSITY_Z` robust SDs."""
    values = np.asarray(data, float)[np.asarray(data) > 0]
    if values.size == 0:
        return float("nan")
    median = np.median(values)
    mad = 1.4826 * np.median(np.abs(values - median))
    if mad == 0:
        return 0.0
    return float(np.mean(np.abs(values - median) > INTENSITY_Z * mad))


def robust_z(values: pd.Series, min_spread: float = 0.0) -> pd.Series:
    """Modified z-scores: (x - median) / max(1.4826 MAD, ``min_spread``); 0 where that
    spread is 0."""
    values = pd.to_numeric(values, errors="coerce")
    median = values.median()
    mad = max(1.4826 * (values - median).abs().median(), min_spread)
    if not np.isfinite(mad) or mad == 0:
        return pd.Series(np.where(values.notna(), 0.0, np.nan), index=values.index)
    return (values - median) / mad


def flag_outliers(table: pd.DataFrame, measures: list[str] | None = None,
                  threshold: float = OUTLIER_Z) -> pd.DataFrame:
    """``table`` with ``z_<measure>``, ``outlier`` and ``reason`` columns.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per image with the measures as columns.
    measures : list of str, optional
        Default: :data:`QC_MEASURES` present in ``table``.
    threshold : float
        |z| beyond which a measure flags the image; a measure missing for the image but
        not for the whole cohort flags it too.

    Returns
    -------
    pandas.DataFrame
    """
    measures = measures or [m for m in QC_MEASURES if m in table]
    # A measure nobody has (no IDP tables, e.g. a custom template) flags no one.
    measures = [m for m in measures if table[m].notna().any()]
    out = table.copy()
    reasons: list[list[str]] = [[] for _ in range(len(out))]
    for measure in measures:
        z = robust_z(out[measure], MIN_SPREAD.get(measure, 0.0))
        out[f"z_{measure}"] = z.round(2)
        for i, (value, zi) in enumerate(zip(out[measure], z, strict=True)):
            if pd.isna(value):
                reasons[i].append(f"{measure} missing")
            elif abs(zi) > threshold:
                reasons[i].append(f"{measure} {value:.4g} (robust z {zi:+.1f})")
    out["outlier"] = [bool(r) for r in reasons]
    out["reason"] = ["; ".join(r) if r else None for r in reasons]
    return out
