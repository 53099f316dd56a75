"""Associations equal statsmodels; multiple testing; phenotypes; the IDP baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.stats.multitest import multipletests

from bgs_app.errors import UsageError
from bgs_app.stats import associate, associate_sources, genotype_metrics, load_phenotypes
from bgs_app.stats.baseline import fit_idp_baseline, idp_features
from bgs_app.stats.gate import validated_scores
from tests.conftest import make_bids_tree


def _random_design(seed: int, n: int = 300, n_scores: int = 6, n_measures: int = 3):
    rng = np.random.default_rng(seed)
    idx = pd.Index([f"sub-{i:03d}" for i in range(n)], name="participant_id")
    scores = pd.DataFrame(rng.normal(size=(n, n_scores)), index=idx,
                          columns=[f"rs{i}" for i in range(n_scores)])
    scores[rng.random((n, n_scores)) < 0.15] = np.nan
    shared = np.repeat(rng.random(n)[:, None] > 0.3, 2, axis=1)
    scores.iloc[:, :2] = scores.iloc[:, :2].where(shared)
    covs = pd.DataFrame({"age": rng.normal(60, 8, n), "sex": rng.choice(["F", "M"], n),
                         "site": rng.choice(["a", "b", "c", "d"], n)}, index=idx)
    covs.loc[rng.random(n) < 0.05, "age"] = np.nan
    covs.loc[rng.random(n) < 0.03, "site"] = np.nan
    phen = pd.DataFrame({m: 0.3 * scores.iloc[:, k % n_scores].fillna(0)
                         + 0.02 * covs["age"].fillna(60) + rng.normal(size=n)
                         for k, m in enumerate(["fluid", "rt", "memory"][:n_measures])},
                        index=idx)
    phen[rng.random((n, n_measures)) < 0.1] = np.nan
    return scores, phen, covs


def _statsmodels(score, measure, covs):
    data = pd.concat([score.rename("s"), measure.rename("y"), covs], axis=1).dropna()
    z = lambda v: (v - v.mean()) / v.std(ddof=1)  # noqa: E731
    x = pd.concat([z(data["s"]), pd.get_dummies(data[["sex", "site"]], drop_first=True,
                                                dtype=float), data[["age"]]], axis=1)
    fit = sm.OLS(z(data["y"]), sm.add_constant(x)).fit()
    ci = fit.conf_int().loc["s"]
    return {"beta": fit.params["s"], "se": fit.bse["s"], "t": fit.tvalues["s"],
            "p": fit.pvalues["s"], "n": int(fit.nobs), "ci_low": ci[0], "ci_high": ci[1]}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_ols_equals_statsmodels(seed):
    scores, phen, covs = _random_design(seed)
    table = associate(scores, phen, covs, source="cnn")
    assert len(table) == scores.shape[1] * phen.shape[1]
    for _, row in table.iterrows():
        ref = _statsmodels(scores[row["snp"]], phen[row["measure"]], covs)
        assert row["n"] == ref["n"]
        for key in ("beta", "se", "t", "p", "ci_low", "ci_high"):
            assert row[key] == pytest.approx(ref[key], rel=1e-8, abs=1e-10), key


def test_family_wise_corrections():
    scores, phen, covs = _random_design(5)
    part_a = associate(scores.iloc[:, :3], phen, covs, source="cnn")
    part_b = associate(scores.iloc[:, 3:], phen, covs, source="idp-logreg")
    both = associate_sources({"cnn": scores.iloc[:, :3], "idp-logreg": scores.iloc[:, 3:]},
                             phen, covs)
    p = both["p"].to_numpy()
    assert np.allclose(both["p_bonferroni"], np.minimum(p * len(p), 1))
    assert np.allclose(both["q_fdr"], multipletests(p, method="fdr_bh")[1])
    assert set(both["source"]) == {"cnn", "idp-logreg"}
    assert np.allclose(both["p"], pd.concat([part_a, part_b])["p"])


def test_validated_scores_gate():
    perf = pd.DataFrame({"model": ["cnn"] * 4 + ["idp-logreg"] * 2,
                         "snp": ["a", "b", "c", "d", "a", "b"],
                         "r_dosage": [0.6, 0.3, -0.7, 0.5, 0.4, np.nan],
                         "p_r_dosage": [1e-5, 0.02, 1e-6, 0.011, 0.02, np.nan]})
    gate = validated_scores(perf)
    # cnn: 4 SNPs, so p < 0.0125; c predicts the genotype backwards and is no score of it.
    assert gate == {"cnn": {"a", "d"}, "idp-logreg": {"a"}}


def test_gate_keeps_shared_anatomy_out_of_the_family():
    """A head that learnt nothing about its SNP but carries the anatomy behind a measure
    (shared trunk) associates with that measure; the gate keeps it out of the family."""
    rng = np.random.default_rng(3)
    n = 400
    idx = pd.Index([f"sub-{i:03d}" for i in range(n)], name="participant_id")
    dosage = pd.DataFrame({s: rng.binomial(2, 0.4, n).astype(float)
                           for s in ("causal", "null")}, index=idx)
    anatomy = dosage["causal"] + rng.normal(0, 0.7, n)
    scores = pd.DataFrame({"causal": anatomy + rng.normal(0, 0.3, n),
                           "null": 0.5 * anatomy + rng.normal(0, 0.5, n)}, index=idx)
    phen = pd.DataFrame({"rt": anatomy + rng.normal(0, 1, n)}, index=idx)
    perf = pd.DataFrame([{"model": "cnn", "snp": s,
                          **genotype_metrics(dosage[s].to_numpy(), _probs(scores[s]))}
                         for s in scores])
    gate = validated_scores(perf)
    assert gate == {"cnn": {"causal"}}
    ungated = associate_sources({"cnn": scores, "genotype": dosage}, phen)
    gated = associate_sources({"cnn": scores, "genotype": dosage}, phen, validated=gate)
    null_row = lambda t: t[(t["source"] == "cnn") & (t["snp"] == "null")].iloc[0]  # noqa: E731
    assert null_row(ungated)["p_bonferroni"] < 0.05  # the leak, without the gate
    assert null_row(gated)["p"] == pytest.approx(null_row(ungated)["p"])
    assert np.isnan(null_row(gated)["p_bonferroni"]) and not null_row(gated)["validated"]
    family = gated[gated["validated"]]
    assert len(family) == 3  # cnn causal, genotype causal, genotype null
    assert np.allclose(family["p_bonferroni"], np.minimum(family["p"] * 3, 1))
    assert np.allclose(family["q_fdr"], multipletests(family["p"], method="fdr_bh")[1])


def _probs(score: pd.Series) -> np.ndarray:
    """Class probabilities whose expected dosage is a monotone map of ``score``."""
    e = 2.0 / (1.0 + np.exp(-(score.to_numpy() - score.mean())))
    p2 = np.clip(e - 1.0, 0, 1)
    p1 = e - 2 * p2
    return np.column_stack([1 - p1 - p2, p1, p2])


def test_vectorised_is_fast_for_many_scores():
    import time

    rng = np.random.default_rng(0)
    n, m = 2000, 300
    scores = pd.DataFrame(rng.normal(size=(n, m)))
    phen = pd.DataFrame(rng.normal(size=(n, 5)), columns=list("abcde"))
    covs = pd.DataFrame({"age": rng.normal(size=n), "site": rng.choice(list("xyz"), n)})
    start = time.perf_counter()
    table = associate(scores, phen, covs)
    assert len(table) == m * 5
    assert time.perf_counter() - start < 30  # thousands of tests in seconds, not minutes
    # Under the null, Bonferroni keeps the family-wise error in check.
    assert (table["p_bonferroni"] < 0.05).sum() <= 2


def test_phenotypes_by_name(tmp_path):
    bids = make_bids_tree(tmp_path / "ds", ["sub-01/anat/sub-01_T1w.nii.gz",
                                            "sub-02/anat/sub-02_T1w.nii.gz",
                                            "sub-03/anat/sub-03_T1w.nii.gz"],
                          participants={"sub-01": {"age": 50, "sex": "F"},
                                        "sub-02": {"age": 61, "sex": "M"},
                                        "sub-03": {"age": 70, "sex": "M"}})
    (bids / "phenotype").mkdir()
    (bids / "phenotype/cognition.tsv").write_text(
        "participant_id\tfluid\trt\nsub-01\t5\t600\nsub-02\tn/a\t550\nsub-03\t7\t510\n")
    pheno, covs = load_phenotypes(bids, ["fluid", "rt"], ["age", "sex"], nonlinear_age=True)
    assert pheno.loc["sub-02", "fluid"] != pheno.loc["sub-02", "fluid"]  # n/a -> NaN
    assert list(covs.columns) == ["age", "sex", "age^2", "agexsex"]
    assert covs.loc["sub-01", "agexsex"] == 0.0
    with pytest.raises(UsageError, match="phenotype column.*memory.*available: age, sex"):
        load_phenotypes(bids, ["memory"])
    with pytest.raises(UsageError, match="covariate column.*site"):
        load_phenotypes(bids, ["fluid"], ["site"])


def test_genotype_metrics():
    rng = np.random.default_rng(0)
    d = rng.binomial(2, 0.4, 500).astype(float)
    good = np.eye(3)[d.astype(int)] * 0.7 + 0.1
    m = genotype_metrics(d, good)
    assert m["auc"] == pytest.approx(1.0) and m["r_dosage"] > 0.99
    flat = np.tile([0.36, 0.48, 0.16], (500, 1)) + rng.normal(0, 0.01, (500, 3))
    m = genotype_metrics(d, flat)
    assert 0.35 < m["auc"] < 0.65 and m["p_r_dosage"] > 0.001


def test_idp_baseline_finds_a_regional_effect():
    """An SNP that changes one region's volume is found by the baseline; a null is not."""
    rng = np.random.default_rng(1)
    n = 400
    idx = pd.Index([f"sub-{i:03d}" for i in range(n)], name="participant_id")
    dos = pd.DataFrame({"causal": rng.binomial(2, 0.4, n), "null": rng.binomial(2, 0.4, n)},
                       index=idx).astype(float)
    etiv = rng.normal(1.5e6, 1.2e5, n)
    idps = pd.DataFrame({f"gm_region{k}": etiv * rng.normal(0.005, 0.0005, n)
                         for k in range(20)}, index=idx)
    idps["gm_region3"] *= 1 + 0.12 * dos["causal"]
    idps["wm_volume"] = etiv * 0.3
    idps["etiv"] = etiv
    split = pd.Series(np.where(np.arange(n) < 300, "train", "test"), index=idx)
    scores, perf = fit_idp_baseline(idp_features(idps), dos, split, seed=0)
    perf = perf.set_index(["model", "snp"])
    for model in ("idp-logreg", "idp-gbm"):
        assert perf.loc[(model, "causal"), "r_dosage"] > 0.4
        assert perf.loc[(model, "causal"), "p_r_dosage"] < 1e-6
        assert perf.loc[(model, "null"), "p_r_dosage"] > 1e-3
    assert set(scores["split"]) == {"test"} and len(scores) == 2 * 2 * 100
    folds = pd.Series([f"fold-{i % 4}" for i in range(n)], index=idx)
    scores_cv, _ = fit_idp_baseline(idp_features(idps), dos[["causal"]], folds,
                                    models=("logreg",))
    assert len(scores_cv) == n  # cross-fitting scores every participant out of fold


def test_tables_and_figures(tmp_path):
    import base64
    import json

    from bgs_app.reports.stats_figures import forest_plot, pvalue_heatmap
    from bgs_app.stats.tables import write_associations, write_idp_scores, write_performance

    scores, phen, covs = _random_design(7)
    table = associate(scores, phen, covs, source="cnn")
    path = write_associations(table, tmp_path)
    perf = pd.DataFrame([{"model": "idp-logreg", "snp": "rs1", "n_test": 10, "auc": 0.5,
                          "auc_carrier": np.nan, "r_dosage": 0.1, "p_r_dosage": 0.7}])
    perf_path = write_performance(perf, tmp_path)
    assert "n/a" in perf_path.read_text()  # missing values as BIDS wants them
    assert set(json.loads(perf_path.with_suffix(".json").read_text())) == set(perf.columns)
    idp = pd.DataFrame([{"participant_id": "sub-1", "model": "idp-gbm", "snp": "rs1",
                         "score": 0.4, "p0": 0.6, "p1": 0.4, "p2": 0.0, "split": "test"}])
    assert write_idp_scores(idp, tmp_path).name == "idp_scores.tsv"
    back = pd.read_csv(path, sep="\t", na_values="n/a")
    assert list(back.columns) == list(table.columns)
    from bgs_app.stats.gate import in_family

    # The family survives the round trip through the TSV (validated as true/false).
    table.loc[table.index[:3], "validated"] = False
    back = pd.read_csv(write_associations(table, tmp_path), sep="\t", na_values="n/a")
    assert in_family(back).tolist() == in_family(table).tolist()
    assert in_family(back).sum() == len(table) - 3
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert set(sidecar) >= set(table.columns)
    for uri in (forest_plot(table), pvalue_heatmap(table)):
        png = base64.b64decode(uri.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_figures_of_a_table_without_estimates():
    """Too few scored participants: every p is missing; the report gets no figures
    instead of a crash (found running the container check on a single small split)."""
    from bgs_app.reports.stats_figures import forest_plot, pvalue_heatmap

    scores, phen, covs = _random_design(8, n=8)
    table = associate(scores, phen, covs, source="cnn")
    assert table["p"].isna().all()
    assert forest_plot(table) is None and pvalue_heatmap(table) is None
