"""The group level end to end: participant -> group train -> group apply at a second site.

A small simulated study (4 mm scans) goes through the participant level, then the group
level trains with 3-fold cross-fitting; a second cohort of the same design (a new site)
goes through the participant level *with the trained model* and the group level in
apply mode. Tiny networks and few epochs keep it inside CI's time: the CNN's power is
tested in test_model.py and measured by benchmarks/recovery.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from bgs_app.cli.run import main

COMMON = ["--nprocs", "2", "--omp-nthreads", "1", "--resolution", "4",
          "--skip-bids-validation"]
PARTICIPANT = ["--sloppy", "--registration", "affine"]
pytestmark = pytest.mark.slow  # about 7 min; `make test-slow` (CI runs it)
def KINSHIP(site):  # noqa: N802 - reads as the option list it returns
    return ["--kinship", str(site / "genetics/study.kin0")]


TRAIN = ["--cv-folds", "3", "--epochs", "3", "--batch-size", "6", "--channels", "4", "8",
         "8", "8", "8", "4", "--saliency-method", "gradient", "--saliency-by-genotype",
         "--covariates", "age", "sex", "site", "--voxelwise-test"]


@pytest.fixture(scope="session")
def group_run(tmp_path_factory):
    from bgs_app.simulate import SimulationParams, simulate_study

    base = tmp_path_factory.mktemp("group")
    params = dict(seed=21, resolution=4.0, effect_size=0.6, warp_mm=1.5,
                  cognition_effect=0.8)
    site1, site2 = base / "site1", base / "site2"
    # The training site: PLINK 2 dosages and sibling pairs (--kinship); the second site
    # PLINK 1 hard calls of unrelated people.
    truth = simulate_study(site1, SimulationParams(n_subjects=30, sibships=0.2,
                                                   genotype_format="pgen", **params),
                           nprocs=2, progress=False)
    simulate_study(site2, SimulationParams(n_subjects=12, cohort=1, **params), nprocs=2,
                   progress=False)
    snps = base / "snps.txt"
    snps.write_text("".join(s["snp"] + "\n" for s in truth["snps"]))
    out1, out2 = base / "out1", base / "out2"
    codes = {}
    codes["participant1"] = main([str(site1), str(out1), "participant", *COMMON,
                                  *PARTICIPANT, "-w", str(base / "work1")])
    codes["train"] = main([str(site1), str(out1), "group", *COMMON, *TRAIN, *KINSHIP(site1),
                           "--genotypes", str(site1 / "genetics/study"),
                           "--snps-file", str(snps), "-w", str(base / "work1")])
    # The second site uses a fold's model whose held-out scores vary: a 3-epoch network of
    # 4-8 channels can end up dead (every output constant, every gradient 0), and then
    # its saliency maps are 0 and say nothing about the maps' transport to T1w space.
    alive = []
    if (out1 / "group/scores.tsv").is_file():
        scores = pd.read_csv(out1 / "group/scores.tsv", sep="\t")
        # Within each SNP (their baselines differ even for a dead network).
        spread = scores.groupby(["split", "snp"])["score"].std().groupby(level=0).max()
        alive = [f for f in sorted(spread.index) if spread[f] > 0]
    model = out1 / "group/model" / (alive[0] if alive else "fold-0")
    codes["participant2"] = main([str(site2), str(out2), "participant", *COMMON,
                                  *PARTICIPANT, "--model", str(model),
                                  "--saliency-native", "-w", str(base / "work2")])
    codes["apply"] = main([str(site2), str(out2), "group", *COMMON, "--model", str(model),
                           "--genotypes", str(site2 / "genetics/study"),
                           "--saliency-method", "gradient",
                           "--covariates", "age", "sex", "site", "-w", str(base / "work2")])
    return {"base": base, "out1": out1, "out2": out2, "codes": codes, "truth": truth,
            "model": model, "site1": site1, "site2": site2}


def test_every_stage_succeeds(group_run):
    assert group_run["codes"] == {"participant1": 0, "train": 0, "participant2": 0,
                                  "apply": 0}


def test_train_outputs_exist_and_describe_themselves(group_run):
    group = group_run["out1"] / "group"
    for name in ("split", "scores", "performance", "associations", "idp_scores",
                 "voxel_scores", "voxelwise", "genotype_qc", "subjects"):
        assert (group / f"{name}.tsv").is_file(), name
        sidecar = json.loads((group / f"{name}.json").read_text())
        columns = pd.read_csv(group / f"{name}.tsv", sep="\t", nrows=0).columns
        assert set(columns) <= set(sidecar), (name, set(columns) - set(sidecar))
    for k in range(3):
        meta = json.loads((group / f"model/fold-{k}/model.json").read_text())
        assert meta["test_metrics"] and meta["grid"]["Resolution"] == 4.0
        assert (group / f"model/fold-{k}/weights.safetensors").is_file()
    assert (group / "report.html").is_file() and (group / "CITATION.md").is_file()
    scores = pd.read_csv(group / "scores.tsv", sep="\t")
    split = pd.read_csv(group / "split.tsv", sep="\t")
    # Cross-fitting: every participant scored once, by the model that never saw it.
    assert scores.groupby("participant_id")["snp"].count().nunique() == 1
    merged = scores.drop_duplicates("participant_id").merge(split, on="participant_id",
                                                            suffixes=("", "_split"))
    assert (merged["split"] == merged["split_split"]).all()
    truth = group_run["truth"]
    saliency = sorted((group / "saliency").glob("space-*_res-*_snp-*_desc-saliency_map.nii.gz"))
    by_genotype = [p for p in saliency if "_genotype-" in p.name]
    assert len(saliency) - len(by_genotype) == len(scores["snp"].unique())
    assert {p.name.split("_genotype-")[1][0] for p in by_genotype} == {"0", "1", "2"}
    regions = pd.read_csv(group / "saliency" / "snp-sim01_desc-regions_saliency.tsv", sep="\t")
    assert regions["rank"].tolist()[:3] == [1, 2, 3] and "Hippocampus" in " ".join(
        regions["region"])
    # Genotype-correlation maps: one per SNP, |r| in [0, 1], with their sidecar and regions.
    corr = sorted((group / "saliency").glob("space-*_res-*_snp-*_desc-genotypecorr_map.nii.gz"))
    assert len(corr) == len(scores["snp"].unique())
    data = nb.load(corr[0]).get_fdata()
    assert data.min() >= 0 and 0 < data.max() <= 1
    meta = json.loads(corr[0].with_name(corr[0].name.replace(".nii.gz", ".json")).read_text())
    assert meta["Subjects"] >= 20 and 0 < meta["NullLevel"] < 0.3
    assert meta["Resolution"].startswith("4 mm")  # every res- file says what res- means
    assert (group / "saliency" / "snp-sim01_desc-regions_genotypecorr.tsv").is_file()
    assert "genotype correlation" in (group / "report.html").read_text().lower()
    perf = pd.read_csv(group / "performance.tsv", sep="\t")
    assert {"cnn", "idp-logreg", "idp-gbm", "voxel-ridge"} <= set(perf["model"])
    assoc = pd.read_csv(group / "associations.tsv", sep="\t")
    assert set(assoc["source"]) == {"cnn", "idp-logreg", "idp-gbm", "voxel-ridge",
                                    "genotype"}
    # The voxelwise test: one row and two maps per SNP, on every held-out participant.
    voxelwise = pd.read_csv(group / "voxelwise.tsv", sep="\t")
    assert len(voxelwise) == len(scores["snp"].unique())
    assert voxelwise["n"].between(20, len(split)).all()
    assert (voxelwise["threshold_t"] > 2).all()
    tmap = nb.load(group / "voxelwise" / "snp-sim01_stat-t_statmap.nii.gz")
    assert tmap.header.get_zooms()[:3] == (4.0, 4.0, 4.0)
    first = voxelwise.set_index("snp").loc["sim01", "max_abs_t"]
    assert np.abs(tmap.get_fdata()).max() == pytest.approx(first, rel=1e-4)
    # Every planted SNP -> measure link has its row for every source.
    planted = {(d["snp"], m) for m, spec in truth["measures"].items()
               for d in spec["drivers"]}
    for source in ("cnn", "genotype", "idp-logreg"):
        rows = assoc[assoc["source"] == source]
        assert planted <= set(zip(rows["snp"], rows["measure"], strict=True)), source
    # Out-of-fold scores of everyone in the unrelated set (one of each sibling pair).
    subjects = pd.read_csv(group / "subjects.tsv", sep="\t")
    unrelated = subjects["association_set"].eq("yes").sum()
    assert subjects["association_set"].str.startswith("no: related to").sum() >= 2
    assert assoc["n"].max() <= unrelated and assoc["n"].max() >= unrelated - 3
    # No family straddles the folds.
    fold = split.set_index("participant_id")["split"]
    for pair in truth["sibships"]["pairs"]:
        assert fold.reindex(pair).dropna().nunique() <= 1, pair
    assert split["family"].notna().any()
    # Summary statistics: the genotype rows and the instrumented estimates, per measure.
    for measure in assoc["measure"].unique():
        sumstats = pd.read_csv(group / "sumstats" / f"{measure}.tsv", sep="\t")
        assert list(sumstats.columns[:12]) == ["#CHROM", "POS", "ID", "REF", "ALT", "A1",
                                               "A1_FREQ", "OBS_CT", "BETA", "SE",
                                               "T_STAT", "P"]
        rows = assoc[(assoc["measure"] == measure) & (assoc["source"] == "genotype")]
        mine = sumstats[sumstats["SOURCE"] == "genotype"].set_index("ID")
        np.testing.assert_allclose(mine.loc[rows["snp"], "BETA"], rows["beta"], rtol=1e-9)
        assert set(sumstats["SOURCE"]) == {"genotype", "cnn"}


def test_outputs_pass_the_bids_validator(group_run):
    validator = Path(sys.executable).parent / "bids-validator-deno"
    for out in (group_run["out1"], group_run["out2"]):
        result = subprocess.run([str(validator), "--datasetTypes", "derivative",
                                 "--format", "json", str(out)], capture_output=True,
                                text=True, timeout=300)
        report = json.loads(result.stdout)
        errors = [i for i in report["issues"]["issues"] if i.get("severity") == "error"]
        assert not errors, errors[:5]


def test_a_second_site_applies_the_model(group_run):
    out2, model = group_run["out2"], group_run["model"]
    group = out2 / "group"
    scores = pd.read_csv(group / "scores.tsv", sep="\t")
    assert set(scores["split"]) == {"apply"}
    assert scores["participant_id"].nunique() == 12
    assoc = pd.read_csv(group / "associations.tsv", sep="\t")
    assert {"cnn", "genotype"} <= set(assoc["source"])
    perf = pd.read_csv(group / "performance.tsv", sep="\t")
    assert set(perf["model"]) == {"cnn"}  # performance at the new site (genotypes given)
    # With genotypes, the new site gets genotype-correlation maps over its 12 subjects
    # (for the SNPs that vary among them).
    corr = sorted((group / "saliency").glob("space-*_res-*_snp-*_desc-genotypecorr_map.nii.gz"))
    assert 0 < len(corr) <= scores["snp"].nunique()
    sidecar = json.loads(corr[0].with_name(corr[0].name.replace(".nii.gz", ".json"))
                         .read_text())
    assert 3 <= sidecar["Subjects"] <= 12
    # Participant-level scores equal the group level's for the same subject and model.
    meta = json.loads((model / "model.json").read_text())
    for sub in ("sub-0001", "sub-0007"):
        tsv = out2 / sub / "anat" / f"{sub}_desc-bgs_scores.tsv"
        sidecar = json.loads(tsv.with_suffix(".json").read_text())
        assert sidecar["Model"]["WeightsSHA256"] == meta["weights_sha256"]
        mine = pd.read_csv(tsv, sep="\t").set_index("snp")
        theirs = scores[scores["participant_id"] == sub].set_index("snp")
        np.testing.assert_allclose(mine.loc[theirs.index, ["score", "p0", "p1", "p2"]],
                                   theirs[["score", "p0", "p1", "p2"]], atol=1e-6)
        maps = sorted((out2 / sub / "anat").glob(f"{sub}_space-*_snp-*_desc-saliency_map"
                                                 ".nii.gz"))
        assert len(maps) == len(meta["snps"])
        assert np.isfinite(nb.load(maps[0]).get_fdata()).all()
        native = sorted((out2 / sub / "anat").glob(f"{sub}_snp-*_desc-saliency_map.nii.gz"))
        assert len(native) == len(meta["snps"])
        t1w = nb.load(out2 / sub / "anat" / f"{sub}_desc-preproc_T1w.nii.gz")
        for img in map(nb.load, native):
            assert img.shape == t1w.shape and np.allclose(img.affine, t1w.affine)
        # A head whose score is the same for every subject has a gradient of 0 (a tiny,
        # 3-epoch network has some); a head whose score varies must have a map that is not
        # 0 in T1w space, or the transport lost it.
        varying = [snp for snp, sd in scores.groupby("snp")["score"].std().items() if sd > 0]
        assert varying, "the chosen model's scores are constant at the second site"
        for snp in varying:
            path = out2 / sub / "anat" / f"{sub}_snp-{snp}_desc-saliency_map.nii.gz"
            assert nb.load(path).get_fdata().max() > 0, snp


def test_rerun_skips_finished_stages(group_run, capfd):
    site1, out1, base = group_run["site1"], group_run["out1"], group_run["base"]
    before = (out1 / "group/model/fold-0/weights.safetensors").stat().st_mtime
    code = main([str(site1), str(out1), "group", *COMMON, *TRAIN, *KINSHIP(site1),
                 "--genotypes",
                 str(site1 / "genetics/study"), "--snps-file", str(base / "snps.txt"),
                 "-w", str(base / "work1")])
    assert code == 0
    log = capfd.readouterr().err
    assert "trained model is current" in log and "Group saliency is current" in log
    assert (out1 / "group/model/fold-0/weights.safetensors").stat().st_mtime == before


def test_group_report_renders_every_figure(group_run, tmp_path):
    """Headless Chromium loads the report; every image decodes (naturalWidth > 0)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    report = group_run["out1"] / "group/report.html"
    probe = tmp_path / "probe.html"
    script = ("<script>window.addEventListener('load', function () {"
              "var imgs = document.images, bad = 0;"
              "for (var i = 0; i < imgs.length; i++) { if (!imgs[i].complete || "
              "imgs[i].naturalWidth === 0) bad++; }"
              "document.title = 'images=' + imgs.length + ' broken=' + bad; });</script>")
    probe.write_text(report.read_text().replace("</body>", script + "</body>"))
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chr'}", "--virtual-time-budget=10000",
         "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120)
    title = result.stdout.split("<title>")[1].split("</title>")[0]
    images, broken = (int(x.split("=")[1]) for x in title.split())
    n_snps = len([p for p in (group_run["out1"] / "group/saliency").glob(
        "*_desc-saliency_map.nii.gz") if "_genotype-" not in p.name])
    # 3 training curves, saliency and genotype-correlation maps, forest plot, heatmap
    assert images >= 3 + 2 * n_snps + 2, title
    assert broken == 0, title


def test_torchrun_ranks_share_scoring_and_saliency(group_run, tmp_path):
    """``torchrun`` with two ranks (gloo on CPU): training, scoring and saliency are
    shared, rank 0 writes; the written scores are those of the written bundles, and the
    maps count every held-out image once."""
    from bgs_app.model.bundle import load_bundle
    from bgs_app.model.scores import predict_volumes

    out = tmp_path / "out"
    shutil.copytree(group_run["out1"], out, ignore=shutil.ignore_patterns("group"))
    site = group_run["site1"]
    snps = group_run["base"] / "snps.txt"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", "2", "-m", "bgs_app", str(site), str(out), "group",
            *COMMON, *TRAIN, *KINSHIP(site), "--nprocs", "1", "--genotypes",
            str(site / "genetics/study"),
            "--snps-file", str(snps), "-w", str(tmp_path / "work")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    group = out / "group"
    scores = pd.read_csv(group / "scores.tsv", sep="\t")
    images = {p.name.split("_")[0]: p for p in out.glob(
        "sub-*/anat/*_desc-model_T1w.nii.gz")}
    for fold, rows in scores.groupby("split"):
        model, meta = load_bundle(group / "model" / fold)
        pids = list(dict.fromkeys(rows["participant_id"]))
        probs = predict_volumes(model, [np.asarray(nb.load(images[p]).dataobj, np.float32)
                                        for p in pids])
        wide = rows.pivot(index="participant_id", columns="snp", values="p2").loc[pids]
        order = [s["snp"] for s in meta["snps"]]
        expected = probs[:, order.index(wide.columns[0]), 2]
        # The store holds float16 images: scores from it differ from float32 in the 3rd
        # decimal at most.
        np.testing.assert_allclose(wide.iloc[:, 0].to_numpy(), expected, atol=5e-3)
    maps = sorted((group / "saliency").glob("space-*_snp-*_desc-saliency_map.nii.gz"))
    maps = [m for m in maps if "_genotype-" not in m.name]
    assert maps
    held_out = scores["participant_id"].nunique()
    for path in maps:
        meta = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
        assert meta["Subjects"] == held_out  # every image once, summed over the ranks
        assert np.isfinite(nb.load(path).get_fdata()).all()
