"""Image QC measures and the cohort's outliers (bgs_app.stats.qc)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bgs_app.stats.qc import flag_outliers, intensity_outliers, robust_z, similarity_inside


def test_outliers_are_flagged_with_their_reason():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(40)],
                          "brain_ml": rng.normal(1500, 60, 40),
                          "template_similarity": rng.normal(0.6, 0.03, 40)})
    table.loc[7, "brain_ml"] = 2600.0  # a neck in the mask
    table.loc[12, "template_similarity"] = np.nan
    out = flag_outliers(table)
    assert out.loc[out["outlier"], "participant_id"].tolist() == ["sub-07", "sub-12"]
    assert out.loc[7, "reason"].startswith("brain_ml 2600 (robust z +")
    assert out.loc[12, "reason"] == "template_similarity missing"
    assert abs(out["z_brain_ml"].drop(7).median()) < 0.5


def test_robust_z_ignores_the_outlier_itself_and_a_zero_mad():
    z = robust_z(pd.Series([1.0, 1.1, 0.9, 1.0, 1.05, 50.0]))
    assert z.iloc[-1] > 100 and (z.iloc[:-1].abs() < 3).all()
    assert (robust_z(pd.Series([2.0, 2.0, 2.0])) == 0).all()


def test_similarity_and_intensity_measures():
    rng = np.random.default_rng(1)
    reference = rng.normal(100, 20, (20, 20, 20)).clip(1)
    mask = np.ones_like(reference, bool)
    assert similarity_inside(reference * 2, reference, mask) > 0.999
    assert similarity_inside(reference.max() - reference + 1, reference, mask) < -0.999
    assert np.isnan(similarity_inside(np.zeros_like(reference), reference, mask))
    image = reference.copy()
    assert intensity_outliers(image) < 0.001
    image.flat[:400] = 10_000.0  # 5 % of the voxels are spikes
    assert abs(intensity_outliers(image) - 0.05) < 0.005


def test_a_measure_nobody_has_flags_nobody():
    table = pd.DataFrame({"brain_ml": [np.nan] * 5,
                          "template_similarity": [0.6, 0.61, 0.59, 0.6, 0.62]})
    assert not flag_outliers(table)["outlier"].any()
