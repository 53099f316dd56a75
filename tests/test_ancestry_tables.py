"""Held-out performance and associations within ancestry groups (--ancestry-column)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bgs_app.config import Config
from bgs_app.errors import UsageError
from bgs_app.group.inputs import ancestry_groups
from bgs_app.stats.ancestry import associations_by_group, performance_by_group


@pytest.fixture(scope="module")
def study():
    rng = np.random.default_rng(2)
    n = 300
    ids = [f"sub-{i:03d}" for i in range(n)]
    group = pd.Series(np.where(rng.random(n) < 0.6, "EUR", "AFR"), index=ids)
    dosage = pd.DataFrame({"rs1": rng.binomial(2, 0.4, n).astype(float),
                           "rs2": rng.binomial(2, 0.3, n).astype(float)}, index=ids)
    # rs1's score carries its genotype in EUR only; rs2's in nobody.
    signal = np.where(group == "EUR", dosage["rs1"], 0.0)
    scores = pd.DataFrame({"rs1": signal + rng.normal(0, 0.5, n),
                           "rs2": rng.normal(0, 1, n)}, index=ids)
    pheno = pd.DataFrame({"fluid": 0.5 * signal + rng.normal(0, 1, n)}, index=ids)
    covs = pd.DataFrame({"age": rng.normal(60, 5, n), "ancestry": group}, index=ids)
    return group, dosage, scores, pheno, covs


def test_performance_within_each_group(study):
    group, dosage, scores, _, _ = study
    table = performance_by_group(group, {"cnn": scores}, dosage).set_index(
        ["ancestry", "snp"])
    assert table.loc[("EUR", "rs1"), "r_dosage"] > 0.6
    assert abs(table.loc[("AFR", "rs1"), "r_dosage"]) < 0.2
    assert table.loc[("AFR", "rs1"), "n_test"] == (group == "AFR").sum()
    small = performance_by_group(group, {"cnn": scores}, dosage, min_n=10_000)
    assert small["r_dosage"].isna().all()


def test_associations_within_each_group(study):
    group, dosage, scores, pheno, covs = study
    table = associations_by_group(group, pheno, covs, cnn=scores, dosages=dosage,
                                  validated={"cnn": {"rs1"}})
    assert set(table["ancestry"]) == {"AFR", "EUR"}
    reduced = table[(table["source"] == "genotype") & (table["snp"] == "rs1")].set_index(
        "ancestry")
    assert reduced.loc["EUR", "p"] < 1e-3 and reduced.loc["AFR", "p"] > 0.01
    # The ancestry covariate is constant within a group: left out, not a singular fit.
    assert table["p"].notna().any()


def test_a_wrong_column_is_refused_before_training(tmp_path):
    (tmp_path / "participants.tsv").write_text("participant_id\tage\tpop\nsub-1\t60\tEUR\n"
                                                "sub-2\t61\tn/a\n")
    config = Config(bids_dir=tmp_path, output_dir=tmp_path / "out", analysis_level="group",
                    ancestry_column="ancestry")
    with pytest.raises(UsageError, match="no such column"):
        ancestry_groups(config, ["sub-1", "sub-2"])
    config = Config(bids_dir=tmp_path, output_dir=tmp_path / "out", analysis_level="group",
                    ancestry_column="pop")
    assert ancestry_groups(config, ["sub-1", "sub-2"]).tolist()[0] == "EUR"
    with pytest.raises(UsageError, match="names no group"):
        ancestry_groups(config, ["sub-2"])
