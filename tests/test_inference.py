"""What the group level's tables may claim, end to end on a small study.

A simulated study with two visits per participant (two images each, and a phenotype
table with ``session_id``) goes through the group level on oracle model-grid images:
every count is of participants, the tables carry the alleles and the claims' tests. A
second run applies the trained model to the same people with genotype files whose A1/A2
are swapped: the dosages are flipped back, so the signs (and values) of r and beta equal
those with the original files; alleles that match neither way are refused.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bgs_app.cli.run import main

N = 30
COMMON = ["--resolution", "4", "--skip-bids-validation", "--nprocs", "2"]


@pytest.fixture(scope="module")
def sessions_run(tmp_path_factory):
    from bgs_app.simulate import SimulationParams, simulate_study
    from bgs_app.simulate.oracle import truth_model_grid

    base = tmp_path_factory.mktemp("inference")
    study = base / "study"
    simulate_study(study, SimulationParams(n_subjects=N, seed=13, resolution=4.0, sessions=2,
                                           effect_size=0.6, cognition_effect=0.8),
                   nprocs=2, progress=False)
    out = truth_model_grid(study, base / "out", 4.0, nprocs=2)
    # The measures at two visits: the second visit's values are the first's plus 10.
    table = pd.read_csv(study / "phenotype/cognition.tsv", sep="\t", na_values="n/a")
    later = table.assign(**{c: table[c] + 10 for c in table.columns if c != "participant_id"})
    visits = pd.concat([table.assign(session_id="1"), later.assign(session_id="2")])
    visits = visits[["participant_id", "session_id", *table.columns[1:]]]
    visits.to_csv(study / "phenotype/cognition.tsv", sep="\t", index=False, na_rep="n/a")
    # An ancestry column: 22 participants in one group, 8 in another (too few to test).
    people = pd.read_csv(study / "participants.tsv", sep="\t", dtype=str)
    people["ancestry"] = ["EUR"] * 22 + ["SAS"] * (len(people) - 22)
    people.to_csv(study / "participants.tsv", sep="\t", index=False)
    snps = [s["snp"] for s in json.loads(
        (study / "derivatives/simulation-truth/truth.json").read_text())["snps"]]
    code = main([str(study), str(out), "group", *COMMON, "--ancestry-column", "ancestry",
                 "--genotypes",
                 str(study / "genetics/study"), "--snps", *snps, "--cv-folds", "2",
                 "--epochs", "1", "--batch-size", "6", "--channels", "4", "4", "4", "4", "4",
                 "4", "--no-saliency", "--phenotype-session", "mean", "-w",
                 str(base / "work")])
    return {"base": base, "study": study, "out": out, "code": code, "snps": snps}


def test_multi_session_phenotypes_run_and_count_participants(sessions_run):
    assert sessions_run["code"] == 0
    group = sessions_run["out"] / "group"
    log = next((sessions_run["out"] / "logs").glob("bgs_app-*.log")).read_text()
    assert "Device: cpu" in log or "Device: cuda (" in log  # the device is stated
    scores = pd.read_csv(group / "scores.tsv", sep="\t")
    assert set(scores["session_id"].astype(str)) == {"1", "2"}  # two images a person
    perf = pd.read_csv(group / "performance.tsv", sep="\t")
    cnn = perf[perf["model"] == "cnn"]
    assert cnn["n_test"].max() <= N  # participants, not images
    # Cross-fitted: the gate uses the fold-combined p-values, for the CNN and baselines.
    folds = perf["p_r_dosage_folds"]
    assert folds.dropna().between(0, 1).all()
    # NaN only where no fold has a test (a rare SNP monomorphic within the folds).
    scored = perf["model"].eq("cnn") & perf["p_r_dosage"].notna()
    assert folds[scored].notna().all(), perf[scored & folds.isna()]
    from bgs_app.stats.gate import validated_scores

    gate = json.loads((group / "associations.json").read_text())["ScoreGate"]
    assert gate["ValidatedScores"] == {k: sorted(v) for k, v in validated_scores(perf).items()}
    assoc = pd.read_csv(group / "associations.tsv", sep="\t", keep_default_na=False,
                        na_values="n/a")
    assert assoc["n"].max() <= N
    assert {"score", "first_stage", "reduced_form", "instrumented", "remainder"} <= set(
        assoc["test"])
    assert {"genetic", "score", "genotype", "idp-logreg", "idp-gbm"} & set(assoc["family"])
    assert set(assoc.loc[assoc["source"] == "cnn", "claim"]) <= {"genetic", "anatomical",
                                                                 "none"}
    raw = pd.read_csv(sessions_run["study"] / "phenotype/cognition.tsv", sep="\t",
                      na_values="n/a")
    assert raw["participant_id"].duplicated().any()
    for name in ("scores", "performance", "associations"):
        table = pd.read_csv(group / f"{name}.tsv", sep="\t", nrows=1)
        assert {"counted_allele", "other_allele", "counted_allele_freq"} <= set(table), name
        sidecar = json.loads((group / f"{name}.json").read_text())
        assert set(table.columns) <= set(sidecar), (name, set(table.columns) - set(sidecar))
    described = json.loads((group / "associations.json").read_text())
    assert described["PhenotypeSession"] == "mean"
    assert described["Participants"] <= N
    meta = json.loads((group / "model/fold-0/model.json").read_text())
    assert {"counted_allele", "other_allele", "counted_allele_freq"} <= set(meta["snps"][0])
    # --cnn-input auto: every image has its log-Jacobian map (the oracle writes them).
    assert meta["grid"]["Input"] == "logjacobian"
    assert "CNN input: log-Jacobian maps (--cnn-input auto)" in log
    report = (group / "report.html").read_text()
    assert "<h2>Claims</h2>" in report and report.index("Claims") < report.index(
        "Genotype prediction")


def _swapped_genotypes(study, dest, mismatch: str | None = None):
    """The study's genotypes written with A1 and A2 the other way round (the dosages now
    count the other allele, as another site's files might); ``mismatch``: one SNP whose
    alleles are two other letters."""
    from bed_reader import open_bed, to_bed

    dest.mkdir(parents=True, exist_ok=True)
    with open_bed(study / "genetics/study.bed") as bed:
        values = bed.read(dtype="float32")
        props = {k: getattr(bed, k) for k in ("fid", "iid", "father", "mother", "sex",
                                              "pheno", "chromosome", "sid", "cm_position",
                                              "bp_position", "allele_1", "allele_2")}
    a1, a2 = props["allele_2"].copy(), props["allele_1"].copy()
    if mismatch is not None:
        j = list(props["sid"]).index(mismatch)
        a1[j], a2[j] = sorted(set("ACGT") - {a1[j], a2[j]})
    props.update(allele_1=a1, allele_2=a2)
    to_bed(dest / "study.bed", 2.0 - values, properties=props)
    return dest / "study"


def test_swapped_alleles_at_an_applying_site_are_flipped_back(sessions_run, tmp_path):
    study, trained = sessions_run["study"], sessions_run["out"] / "group/model/fold-0"
    results = {}
    for name, genotypes in (("same", study / "genetics/study"),
                            ("swapped", _swapped_genotypes(study, tmp_path / "swapped"))):
        out = tmp_path / f"out_{name}"
        shutil.copytree(sessions_run["out"], out, ignore=shutil.ignore_patterns("group"))
        code = main([str(study), str(out), "group", *COMMON, "--model", str(trained),
                     "--genotypes", str(genotypes), "--no-saliency", "-w",
                     str(tmp_path / f"work_{name}")])
        assert code == 0, name
        results[name] = out / "group"
    perf = {k: pd.read_csv(v / "performance.tsv", sep="\t").set_index("snp")
            for k, v in results.items()}
    pd.testing.assert_series_equal(perf["same"]["r_dosage"], perf["swapped"]["r_dosage"])
    assoc = {k: pd.read_csv(v / "associations.tsv", sep="\t", keep_default_na=False,
                            na_values="n/a") for k, v in results.items()}
    rows = {k: v[v["source"] == "genotype"].set_index(["snp", "measure"])["beta"]
            for k, v in assoc.items()}
    np.testing.assert_allclose(rows["same"], rows["swapped"].reindex(rows["same"].index))
    sidecar = json.loads((results["swapped"] / "scores.json").read_text())
    assert sorted(sidecar["AllelesFlippedToModel"]) == sorted(perf["same"].index)
    scores = pd.read_csv(results["swapped"] / "scores.tsv", sep="\t")
    model = json.loads((trained / "model.json").read_text())
    counted = {s["snp"]: s["counted_allele"] for s in model["snps"]}
    assert (scores["counted_allele"] == scores["snp"].map(counted)).all()


def test_alleles_that_match_neither_way_are_refused(sessions_run, tmp_path, capsys):
    study, trained = sessions_run["study"], sessions_run["out"] / "group/model/fold-0"
    snp = sessions_run["snps"][0]
    genotypes = _swapped_genotypes(study, tmp_path / "bad", mismatch=snp)
    out = tmp_path / "out"
    shutil.copytree(sessions_run["out"], out, ignore=shutil.ignore_patterns("group"))
    code = main([str(study), str(out), "group", *COMMON, "--model", str(trained),
                 "--genotypes", str(genotypes), "--no-saliency", "-w", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 1 and "do not match the model's" in err and snp in err
    assert "Traceback" not in err


def test_long_stages_log_progress_lines_without_a_terminal(sessions_run, tmp_path):
    """A cluster log (stderr to a file): progress of training, scoring and saliency."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "out"
    shutil.copytree(sessions_run["out"], out, ignore=shutil.ignore_patterns("group", "logs"))
    env = {**os.environ, "BGS_APP_PROGRESS_SECONDS": "0"}
    with open(tmp_path / "log.txt", "w") as log:
        code = subprocess.run(
            [str(Path(sys.executable).parent / "bgs_app"), str(sessions_run["study"]),
             str(out), "group", *COMMON, "--genotypes",
             str(sessions_run["study"] / "genetics/study"), "--snps", *sessions_run["snps"],
             "--epochs", "2", "--batch-size", "6", "--channels", "4", "4", "4", "4", "4", "4",
             "--saliency-method", "gradient", "--phenotype-session", "mean",
             "-w", str(tmp_path / "work")],
            stdout=log, stderr=subprocess.STDOUT, env=env, timeout=600).returncode
    text = (tmp_path / "log.txt").read_text()
    assert code == 0, text[-3000:]
    assert "\r" not in text
    for pattern in (r"tensor store: hashing: \d+/\d+ image\(s\)",
                    r"model \(1/1\), epoch 1/2: \d+/\d+ batch\(s\)",
                    r"model \(1/1\), epoch 2/2: train [\d.]+, val [\d.]+ \(\d+ s",
                    r"model: scoring: \d+/\d+ image\(s\)",
                    r"model: gradient saliency: \d+/\d+ image\(s\)[^\n]*left"):
        assert re.search(pattern, text), (pattern, text[-3000:])


def test_tables_by_ancestry_group(sessions_run):
    group = sessions_run["out"] / "group"
    perf = pd.read_csv(group / "performance_by_ancestry.tsv", sep="\t")
    assert set(perf["ancestry"]) == {"EUR", "SAS"}
    assert perf.loc[perf["ancestry"] == "SAS", "r_dosage"].isna().all()  # 8 < 20
    eur = perf[perf["ancestry"] == "EUR"]
    assert eur["r_dosage"].notna().any() and 20 <= eur["n_test"].max() <= 22
    assoc = pd.read_csv(group / "associations_by_ancestry.tsv", sep="\t")
    assert set(assoc["ancestry"]) == {"EUR"}
    sidecar = json.loads((group / "associations_by_ancestry.json").read_text())
    sizes = sidecar["GroupSizes"]  # scored, genotyped participants
    assert sidecar["AncestryColumn"] == "ancestry" and 20 <= sizes["EUR"] <= 22
    assert sizes["SAS"] <= 8


def test_log_jacobian_input_trains_scores_and_applies(sessions_run, tmp_path, capsys):
    """--cnn-input logjacobian: the CNN reads the maps written beside the model-grid
    images (here the oracle's), the bundle says so, the baselines gain voxel-ridge-logjac,
    and applying the bundle elsewhere reads the maps again (the same scores)."""
    study = sessions_run["study"]
    maps = sorted(sessions_run["out"].glob("sub-*/**/anat/*_desc-logjacobian_map.nii.gz"))
    assert len(maps) == 2 * N  # one beside every model-grid image (two sessions each)
    train = tmp_path / "train"
    shutil.copytree(sessions_run["out"], train, ignore=shutil.ignore_patterns("group"))
    args = [*COMMON, "--genotypes", str(study / "genetics/study"),
            "--snps", *sessions_run["snps"], "--epochs", "1", "--batch-size", "6",
            "--channels", "4", "4", "4", "4", "4", "4", "--saliency-method", "gradient",
            "--phenotype-session", "mean"]
    code = main([str(study), str(train), "group", *args, "--cnn-input", "logjacobian",
                 "-w", str(tmp_path / "w1")])
    assert code == 0
    group = train / "group"
    meta = json.loads((group / "model/model.json").read_text())
    assert meta["grid"]["Input"] == "logjacobian"
    assert meta["training"]["config"]["intensity_augment"] is False
    perf = pd.read_csv(group / "performance.tsv", sep="\t")
    assert {"cnn", "voxel-ridge", "voxel-ridge-logjac"} <= set(perf["model"])
    assert set(json.loads((group / "voxel_scores.json").read_text())["Voxels"]) == {
        "voxel-ridge", "voxel-ridge-logjac"}
    assert "log-Jacobian maps" in (group / "CITATION.md").read_text()
    assert list((group / "saliency").glob("*desc-saliency_map.nii.gz"))  # from the maps too
    # Applied at a "site" with the same derivatives: the same scores from the maps.
    site = tmp_path / "site"
    shutil.copytree(sessions_run["out"], site, ignore=shutil.ignore_patterns("group"))
    code = main([str(study), str(site), "group", *COMMON, "--model", str(group / "model"),
                 "--no-saliency", "-w", str(tmp_path / "w2")])
    assert code == 0
    held = pd.read_csv(group / "scores.tsv", sep="\t").query("split == 'test'")
    applied = pd.read_csv(site / "group/scores.tsv", sep="\t")
    both = held.merge(applied, on=["participant_id", "session_id", "snp"])
    assert len(both) == len(held)
    np.testing.assert_allclose(both["score_x"], both["score_y"], atol=1e-5)
    # Without the maps: one clear message, before any training.
    bare = tmp_path / "bare"
    shutil.copytree(sessions_run["out"], bare, ignore=shutil.ignore_patterns(
        "group", "*_desc-logjacobian_map.*"))
    capsys.readouterr()
    code = main([str(study), str(bare), "group", *args, "--cnn-input", "logjacobian",
                 "-w", str(tmp_path / "w3")])
    err = capsys.readouterr().err
    assert code != 0 and "have no log-Jacobian map" in err and "Traceback" not in err
    # --cnn-input auto (the default) on the same folder: the T1w images, as before.
    code = main([str(study), str(bare), "group", *args, "-w", str(tmp_path / "w4")])
    assert code == 0
    meta = json.loads((bare / "group/model/model.json").read_text())
    assert "Input" not in meta["grid"] and meta["training"]["config"]["intensity_augment"]
    assert "voxel-ridge-logjac" not in set(pd.read_csv(bare / "group/performance.tsv",
                                                       sep="\t")["model"])


def test_an_ensemble_trains_scores_and_applies(sessions_run, tmp_path):
    """--ensemble 2: two networks per model (seeds 0 and 1) in one bundle; a score is the
    mean of theirs; the training log, the summary and the methods text say so; saliency
    runs through both; applying the bundle elsewhere gives the same scores."""
    from bgs_app.model.bundle import load_bundle
    from bgs_app.model.network import Ensemble
    from bgs_app.model.scores import load_volume, predict_volumes

    study = sessions_run["study"]
    train = tmp_path / "train"
    shutil.copytree(sessions_run["out"], train, ignore=shutil.ignore_patterns("group"))
    code = main([str(study), str(train), "group", *COMMON, "--genotypes",
                 str(study / "genetics/study"), "--snps", *sessions_run["snps"],
                 "--epochs", "2", "--batch-size", "6", "--channels", "4", "4", "4", "4",
                 "4", "4", "--saliency-method", "gradient", "--no-voxel-baseline",
                 "--phenotype-session", "mean", "--ensemble", "2", "-w",
                 str(tmp_path / "w1")])
    assert code == 0
    group = train / "group"
    model, meta = load_bundle(group / "model")
    assert isinstance(model, Ensemble) and len(model.members) == 2
    assert meta["architecture"]["ensemble"] == 2 and meta["training"]["seeds"] == [0, 1]
    assert len(meta["training"]["epochs_run"]) == 2
    log = pd.read_csv(group / "model/training_log.tsv", sep="\t")
    assert sorted(log["member"].unique()) == [1, 2]
    assert "ensemble of 2 such networks" in (group / "CITATION.md").read_text()
    assert list((group / "saliency").glob("*desc-saliency_map.nii.gz"))
    # Every genotype-correlation map has its permutation threshold, and the sidecar's
    # count of voxels above it is the map's.
    import nibabel as nb

    corr_maps = sorted((group / "saliency").glob("*desc-genotypecorr_map.nii.gz"))
    assert corr_maps
    for path in corr_maps:
        side = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
        assert side["Permutations"] == 199
        assert side["NullLevel"] < side["ThresholdFWE"] < 1 and 0 < side["PeakPFWE"] <= 1
        data = nb.load(path).get_fdata()
        assert side["VoxelsAboveThreshold"] == int((data > side["ThresholdFWE"]).sum())
    # A held-out score is the mean of the two networks' scores for that image.
    scores = pd.read_csv(group / "scores.tsv", sep="\t", dtype={"session_id": str})
    row = scores.query("split == 'test'").iloc[0]
    path = next(train.glob(f"{row['participant_id']}/ses-{row['session_id']}/anat/"
                           "*_desc-logjacobian_map.nii.gz"))
    volume = load_volume(path, meta["grid"])
    j = [s["snp"] for s in meta["snps"]].index(row["snp"])
    dosage = np.array([0.0, 1.0, 2.0])
    each = [float(predict_volumes(m, [volume])[0, j] @ dosage) for m in model.members]
    assert row["score"] == pytest.approx(np.mean(each), abs=1e-4)
    assert abs(each[0] - each[1]) > 1e-6  # two different networks
    # Applied at a "site" with the same derivatives: the same scores.
    site = tmp_path / "site"
    shutil.copytree(sessions_run["out"], site, ignore=shutil.ignore_patterns("group"))
    code = main([str(study), str(site), "group", *COMMON, "--model", str(group / "model"),
                 "--no-saliency", "-w", str(tmp_path / "w2")])
    assert code == 0
    held = scores.query("split == 'test'")
    applied = pd.read_csv(site / "group/scores.tsv", sep="\t", dtype={"session_id": str})
    both = held.merge(applied, on=["participant_id", "session_id", "snp"])
    assert len(both) == len(held)
    np.testing.assert_allclose(both["score_x"], both["score_y"], atol=1e-5)
