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


def _iv_design(seed: int, n: int = 500):
    rng = np.random.default_rng(seed)
    idx = pd.Index([f"sub-{i:04d}" for i in range(n)], name="participant_id")
    d = pd.DataFrame({"rs1": rng.binomial(2, 0.3, n), "rs2": rng.binomial(2, 0.4, n)},
                     index=idx).astype(float)
    shared = rng.normal(size=n)
    s = pd.DataFrame({"rs1": 0.4 * d["rs1"] + shared + rng.normal(size=n),
                      "rs2": 0.03 * d["rs2"] + shared + rng.normal(size=n)}, index=idx)
    covs = pd.DataFrame({"age": rng.normal(60, 8, n), "sex": rng.choice(["F", "M"], n),
                         "site": rng.choice(list("abc"), n)}, index=idx)
    y = pd.DataFrame({"fluid": 0.5 * shared + 0.25 * d["rs1"] + rng.normal(size=n),
                      "rt": 0.4 * shared + rng.normal(size=n)}, index=idx)
    s.iloc[:20, 0] = np.nan
    y.iloc[30:45, 0] = np.nan
    covs.iloc[50:55, 0] = np.nan
    d.iloc[60:64, 1] = np.nan
    return s, d, y, covs


@pytest.mark.parametrize("seed", [0, 1])
def test_genetic_tests_equal_statsmodels_and_linearmodels(seed):
    """First stage, reduced form, 2SLS (with Wu-Hausman), remainder and the
    Anderson-Rubin set, against statsmodels OLS and linearmodels IV2SLS."""
    linearmodels = pytest.importorskip("linearmodels.iv")
    from bgs_app.stats.genetic import genetic_tests, reduced_forms

    s, d, y, covs = _iv_design(seed)
    table = genetic_tests(s, d, y, covs).set_index(["snp", "measure", "test"])
    reduced = reduced_forms(d, y, covs).set_index(["snp", "measure", "test"])
    for snp in s.columns:
        for measure in y.columns:
            data = pd.concat([s[snp].rename("s"), d[snp].rename("d"), y[measure].rename("y"),
                              covs], axis=1).dropna()
            x = sm.add_constant(pd.concat([data[["age"]], pd.get_dummies(
                data[["sex", "site"]], drop_first=True, dtype=float)], axis=1))
            xd = pd.concat([x, data["d"]], axis=1)
            first = sm.OLS(data["s"], xd).fit()
            rf = sm.OLS(data["y"], xd).fit()
            iv = linearmodels.IV2SLS(data["y"], x, data["s"], data["d"]).fit(
                cov_type="unadjusted", debiased=True)
            z = lambda v: (v - v.mean()) / v.std(ddof=1)  # noqa: E731
            rem = sm.OLS(z(data["y"]), pd.concat([x, z(data["s"]), data["d"]], axis=1)).fit()
            row = lambda t, key=(snp, measure): table.loc[(*key, t)]  # noqa: E731
            assert row("first_stage")["n"] == len(data)
            checks = [
                (row("first_stage")["beta"], first.params["d"]),
                (row("first_stage")["se"], first.bse["d"]),
                (row("first_stage")["f_stat"], iv.first_stage.diagnostics["f.stat"].iloc[0]),
                (row("first_stage")["partial_r2"],
                 iv.first_stage.diagnostics["partial.rsquared"].iloc[0]),
                (row("reduced_form")["beta"], rf.params["d"]),
                (row("reduced_form")["p"], rf.pvalues["d"]),
                (row("instrumented")["beta"], iv.params["s"]),
                (row("instrumented")["se"], iv.std_errors["s"]),
                (row("instrumented")["hausman_p"], iv.wu_hausman().pval),
                (row("remainder")["beta"], rem.params["s"]),
                (row("remainder")["p"], rem.pvalues["s"]),
            ]
            for ours, ref in checks:
                assert ours == pytest.approx(ref, rel=1e-7, abs=1e-12)
            # The genotype rows use every participant with a dosage and the measure.
            alone = pd.concat([d[snp].rename("d"), y[measure].rename("y"), covs],
                              axis=1).dropna()
            xa = sm.add_constant(pd.concat([alone[["age"]], pd.get_dummies(
                alone[["sex", "site"]], drop_first=True, dtype=float), alone["d"]], axis=1))
            plain = sm.OLS(alone["y"], xa).fit()
            mine = reduced.loc[(snp, measure, "reduced_form")]
            assert mine["n"] == len(alone)
            assert mine["beta"] == pytest.approx(plain.params["d"], rel=1e-7)
            assert mine["p"] == pytest.approx(plain.pvalues["d"], rel=1e-7)
            # The Anderson-Rubin set: at each finite end, the reduced form of y - b s has
            # p = 0.05 exactly; its Wald ratio is inside.
            ar = row("instrumented")
            for end in (ar["ci_low"], ar["ci_high"]):
                if np.isfinite(end):
                    p = sm.OLS(data["y"] - end * data["s"], xd).fit().pvalues["d"]
                    assert p == pytest.approx(0.05, abs=1e-8)
            if ar["ci_kind"] == "bounded":
                assert ar["ci_low"] < ar["beta"] < ar["ci_high"]


def test_weak_instrument_gives_an_unbounded_anderson_rubin_set():
    from bgs_app.stats.genetic import genetic_tests

    s, d, y, covs = _iv_design(3)
    table = genetic_tests(s, d, y, covs)
    weak = table[(table["snp"] == "rs2") & (table["test"] == "instrumented")]
    strong = table[(table["snp"] == "rs1") & (table["test"] == "instrumented")]
    assert set(weak["ci_kind"]) <= {"unbounded", "rays"}
    assert set(strong["ci_kind"]) == {"bounded"}


def test_families_and_claims():
    """Each family corrected within itself; a confounded score is anatomical, a planted
    link with a strong first stage genetic."""
    from bgs_app.stats.claims import association_table, in_family

    s, d, y, covs = _iv_design(0, n=2000)
    table = association_table(y, covs, cnn=s, dosages=d, validated={"cnn": ["rs1", "rs2"]},
                              alleles=pd.DataFrame({"counted_allele": ["A", "G"],
                                                    "other_allele": ["C", "T"],
                                                    "counted_allele_freq": [0.3, 0.4]},
                                                   index=["rs1", "rs2"]))
    assert set(table["family"]) == {"", "genetic", "score", "genotype"}
    for _, rows in table[in_family(table)].groupby("family"):
        p = rows["p"].to_numpy()
        assert rows["p_bonferroni"].to_numpy() == pytest.approx(np.minimum(p * len(rows), 1))
        assert rows["q_fdr"].to_numpy() == pytest.approx(multipletests(p, method="fdr_bh")[1])
    assert table.loc[table["family"] == "", "p_bonferroni"].isna().all()
    claims = table[table["source"] == "cnn"].drop_duplicates(["snp", "measure"]).set_index(
        ["snp", "measure"])["claim"]
    assert claims[("rs1", "fluid")] == "genetic"  # planted through rs1, strong first stage
    assert claims[("rs2", "rt")] == "anatomical"  # shared anatomy only
    assert claims[("rs1", "rt")] == "anatomical"
    assert table.loc[table["snp"] == "rs1", "counted_allele"].eq("A").all()
    by = association_table(y, covs, cnn=s, dosages=d, fdr="by")
    assert (by["q_fdr"].dropna() >= table["q_fdr"].dropna().reindex(by["q_fdr"].dropna()
                                                                    .index) - 1e-12).all()
    gated = association_table(y, covs, cnn=s, dosages=d, validated={"cnn": ["rs1"]})
    assert not gated.loc[gated["snp"] == "rs2", "family"].isin(["genetic", "score"]).any()
    rs2 = gated[(gated["snp"] == "rs2") & (gated["source"] == "cnn")]
    assert (rs2["claim"] == "none").all()


def test_sessions_become_one_row_per_participant(tmp_path):
    from bgs_app.stats.phenotypes import read_tables

    root = make_bids_tree(tmp_path / "ds", [], participants={
        "sub-01": {"age": 50}, "sub-02": {"age": 60}, "sub-03": {"age": 70}})
    (root / "phenotype").mkdir()
    (root / "phenotype" / "cognition.tsv").write_text(
        "participant_id\tsession_id\tfluid\n"
        "sub-01\t2\t7\nsub-01\t1\t5\nsub-02\t1\t6\nsub-02\t2\t8\nsub-03\t1\t4\n")
    sessions = {"sub-01": ["2"], "sub-02": ["3"]}
    for policy, expected in (("match", [7, 6, 4]), ("first", [5, 6, 4]),
                             ("last", [7, 8, 4]), ("mean", [6, 7, 4])):
        table = read_tables(root, session=policy, image_sessions=sessions)
        assert table.index.is_unique and len(table) == 3
        assert table.loc[["sub-01", "sub-02", "sub-03"], "fluid"].tolist() == expected
    with pytest.raises(UsageError, match="listed more than once"):
        (root / "phenotype" / "more.tsv").write_text("participant_id\tx\nsub-01\t1\n"
                                                     "sub-01\t2\n")
        read_tables(root)


def test_gate_judges_the_pc_adjusted_correlation():
    """A score that tracks ancestry, whose SNP differs in frequency by ancestry,
    correlates with the dosage, but not once both are adjusted for the PC."""
    from bgs_app.stats.metrics import (
        partial_score_dosage_correlation,
        score_dosage_correlation,
    )

    rng = np.random.default_rng(0)
    n = 600
    pc = np.repeat([-1.0, 1.0], n // 2) + rng.normal(0, 0.1, n)
    dosage = rng.binomial(2, np.where(pc > 0, 0.6, 0.2)).astype(float)
    ancestry_score = pc + rng.normal(0, 0.5, n)
    genetic_score = dosage + rng.normal(0, 1.0, n)
    raw = score_dosage_correlation(dosage, ancestry_score)
    adjusted = partial_score_dosage_correlation(dosage, ancestry_score, pc[:, None])
    assert raw["p_r_dosage"] < 1e-10 and adjusted["p_r_dosage_pcs"] > 0.001
    real = partial_score_dosage_correlation(dosage, genetic_score, pc[:, None])
    assert real["p_r_dosage_pcs"] < 1e-10
    perf = pd.DataFrame([{"model": "cnn", "snp": s, **score_dosage_correlation(dosage, x),
                          **partial_score_dosage_correlation(dosage, x, pc[:, None])}
                         for s, x in (("ancestry", ancestry_score), ("real", genetic_score))])
    assert validated_scores(perf)["cnn"] == {"real"}
    assert validated_scores(perf.drop(columns=["r_dosage_pcs", "p_r_dosage_pcs"]))[
        "cnn"] == {"ancestry", "real"}


def test_voxel_ridge_finds_a_voxel_pattern_and_equals_ridge_on_the_voxels():
    """A genotype that changes a few voxels is found by the voxel-ridge baseline, a null
    is not; and fitting on the training images' component scores is the same model as
    an L2 logistic regression on every (standardised) voxel."""
    from sklearn.linear_model import LogisticRegression

    from bgs_app.stats import voxel_baseline as vb

    rng = np.random.default_rng(4)
    n, p = 300, 2000
    idx = pd.Index([f"sub-{i:03d}" for i in range(n)], name="participant_id")
    dos = pd.DataFrame({"causal": rng.binomial(2, 0.4, n), "null": rng.binomial(2, 0.4, n)},
                       index=idx).astype(float)
    x = rng.normal(1.0, 0.1, (n, p))
    x[:, :40] += 0.05 * dos[["causal"]].to_numpy()  # a weak effect in 40 voxels
    split = pd.Series(np.where(np.arange(n) < 220, "train", "test"), index=idx)
    scores, perf = vb.fit_voxel_baseline(pd.DataFrame(x, index=idx), dos, split, seed=0)
    perf = perf.set_index("snp")
    assert (perf["model"] == "voxel-ridge").all()
    assert perf.loc["causal", "r_dosage"] > 0.4 and perf.loc["causal", "p_r_dosage"] < 1e-4
    assert perf.loc["null", "p_r_dosage"] > 1e-3
    assert set(scores["split"]) == {"test"} and len(scores) == 2 * 80
    # The component-score fit against the direct fit on the voxels (one penalty).
    fit = split.to_numpy() == "train"
    project = vb._projection(x[fit])
    y = dos["causal"].to_numpy().astype(int)[fit]
    via_pcs = LogisticRegression(C=10.0, max_iter=10000, tol=1e-10).fit(project(x[fit]), y)
    mean, sd = x[fit].mean(0), x[fit].std(0)
    direct = LogisticRegression(C=10.0, max_iter=10000, tol=1e-10).fit(
        (x[fit] - mean) / sd / np.sqrt(p), y)
    np.testing.assert_allclose(via_pcs.predict_proba(project(x[~fit])),
                               direct.predict_proba((x[~fit] - mean) / sd / np.sqrt(p)),
                               atol=1e-4)


def test_voxel_features_average_to_about_4mm_and_keep_brain_voxels():
    from bgs_app.stats.voxel_baseline import voxel_features

    volumes = np.zeros((3, 8, 8, 8), np.float32)
    volumes[:, 2:6, 2:6, 2:6] = 1.0
    volumes[1, 2:4, 2:4, 2:4] = 3.0
    feats = voxel_features(volumes, 2.0)  # 2 mm: 2^3 blocks, a 4^3 grid
    assert feats.shape == (3, 8)  # the eight blocks that touch the brain
    assert feats[1].max() == pytest.approx(3.0) and feats[0].max() == pytest.approx(1.0)


def test_voxelwise_test_finds_planted_voxels_and_controls_family_wise_error():
    """A dosage that shifts 20 of 400 voxels is found there (and barely elsewhere); over
    40 null SNPs, at most a nominal share has any voxel significant at 5 % FWE."""
    from scipy import stats as st

    from bgs_app.stats.voxelwise import voxelwise_test

    rng = np.random.default_rng(6)
    n, p = 80, 400
    covs = pd.DataFrame({"age": rng.uniform(45, 80, n)})
    x = rng.normal(0, 1, (n, p)) + 0.03 * covs[["age"]].to_numpy()
    causal = rng.binomial(2, 0.4, n).astype(float)
    x[:, :20] += 0.9 * causal[:, None]
    res = voxelwise_test(x, causal, covs, n_perm=500, seed=1)
    assert res["n"] == n and res["significant"] >= 15
    found = res["p_fwe"] < 0.05
    assert found[:20].sum() >= 15 and found[20:].sum() <= 2
    # the threshold is where the corrected p crosses 0.05
    assert np.all(np.abs(res["t"][found]) >= res["threshold"] - 1e-9)
    false = sum(voxelwise_test(x, rng.binomial(2, 0.4, n).astype(float), covs, n_perm=200,
                               seed=k)["p_fwe_min"] < 0.05 for k in range(40))
    assert st.binom(40, 0.05).sf(false - 1) > 0.001  # not more than nominal (5 %)


def test_stale_temporaries_of_the_rerun_participants_are_removed(tmp_path):
    """A SIGKILLed write leaves a hidden temporary; the rerun of that participant removes
    it, and leaves final files and other participants' (possibly in-flight) ones alone."""
    from bgs_app.utils.atomic import atomic_path, remove_stale_temporaries

    anat = tmp_path / "sub-01" / "anat"
    final = anat / "sub-01_xfm.mat"
    with atomic_path(final) as tmp:
        tmp.write_text("done")
    left = [anat / ".sub-01_desc-brain_mask.abc123.tmp.nii.gz",
            tmp_path / "logs" / "participant" / ".sub-01.x9.tmp.json"]
    other = [tmp_path / "sub-02" / "anat" / ".sub-02_xfm.zz.tmp.mat",
             tmp_path / "logs" / "participant" / ".sub-02.q1.tmp.json"]
    for path in left + other:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half")
    removed = remove_stale_temporaries(tmp_path, ["01"])
    assert sorted(removed) == sorted(left)
    assert final.read_text() == "done" and all(p.exists() for p in other)
    assert remove_stale_temporaries(tmp_path, ["03"]) == []


def test_cauchy_combination_is_uniform_for_independent_and_equal_for_identical_tests():
    from bgs_app.stats.metrics import cauchy_combination

    rng = np.random.default_rng(0)
    combined = np.array([cauchy_combination(rng.uniform(size=5)) for _ in range(4000)])
    for level in (0.01, 0.05, 0.2):  # independent: exactly uniform (binomial, 4 SE)
        assert abs((combined < level).mean() - level) < 4 * np.sqrt(level * (1 - level)
                                                                     / 4000)
    # Perfectly dependent tests: the combination is the common p-value.
    for p in (1e-20, 1e-6, 0.03, 0.5, 0.9):
        assert cauchy_combination(np.full(5, p)) == pytest.approx(p, rel=1e-6)
    assert np.isnan(cauchy_combination(np.array([np.nan])))


def test_fold_gate_ignores_shifts_between_folds_and_finds_real_signal():
    """Scores whose level differs by fold with the fold's mean dosage (what models
    trained on overlapping data do) make the pooled r significant; the fold-combined
    test is not fooled, and still finds a score that predicts within every fold."""
    from bgs_app.stats.metrics import fold_combined_correlation, score_dosage_correlation

    rng = np.random.default_rng(1)
    folds = np.repeat(np.arange(5), 60)
    dosage = rng.binomial(2, 0.3, size=300).astype(float) + 0.6 * folds
    shifted = 0.5 * folds + rng.normal(size=300)  # between-fold only
    assert score_dosage_correlation(dosage, shifted)["p_r_dosage"] < 1e-6
    assert fold_combined_correlation(dosage, shifted, folds) > 0.05
    real = dosage + rng.normal(scale=1.0, size=300)
    assert fold_combined_correlation(dosage, real, folds) < 1e-4
    anti = -real  # negative within every fold: never passes a gate that wants r > 0
    assert fold_combined_correlation(dosage, anti, folds) == pytest.approx(1.0, abs=1e-3)
    # Given covariates: the partial correlation within each fold.
    pcs = rng.normal(size=(300, 2))
    confounded = pcs[:, 0] + rng.normal(scale=0.3, size=300)
    dose_pc = rng.binomial(2, 0.3, size=300) + 2 * pcs[:, 0]
    assert fold_combined_correlation(dose_pc, confounded, folds) < 1e-6
    assert fold_combined_correlation(dose_pc, confounded, folds, pcs) > 0.01
