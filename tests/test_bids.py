"""BIDS selection with pybids, derivative naming and the derivatives description."""

from __future__ import annotations

import json

import pytest

from bgs_app.bids.derivatives import (
    derivative_name,
    derivative_path,
    write_bidsignore,
    write_derivative_description,
)
from bgs_app.bids.inputs import collect_t1w, get_layout, select_subjects
from bgs_app.errors import NoDataError


@pytest.fixture(scope="module")
def layout(example_bids):
    return get_layout(example_bids)


def test_select_all_and_requested(layout):
    assert select_subjects(layout, None) == ["01", "02", "03"]
    assert select_subjects(layout, ["03", "01"]) == ["03", "01"]
    with pytest.raises(NoDataError, match="sub-07 not found"):
        select_subjects(layout, ["07"])


def test_collect_sessions_runs_and_acquisitions(layout):
    found = collect_t1w(layout, ["01", "02", "03"])
    names = [t.path.name for t in found]
    assert names == [
        "sub-01_ses-retest_T1w.nii.gz", "sub-01_ses-test_T1w.nii.gz",
        "sub-02_ses-test_acq-fast_T1w.nii.gz", "sub-02_ses-test_acq-mprage_run-1_T1w.nii.gz",
        "sub-02_ses-test_acq-mprage_run-2_T1w.nii.gz", "sub-03_T1w.nii.gz"]
    assert [t.key for t in found][:2] == ["sub-01_ses-retest", "sub-01_ses-test"]
    assert found[-1].session is None


def test_collect_with_session_and_filters(layout, example_bids, tmp_path):
    test_only = collect_t1w(layout, ["01"], sessions=["test"])
    assert [t.path.name for t in test_only] == ["sub-01_ses-test_T1w.nii.gz"]
    mprage = collect_t1w(layout, ["02"], filters={"t1w": {"acquisition": "mprage", "run": 2}})
    assert [t.path.name for t in mprage] == ["sub-02_ses-test_acq-mprage_run-2_T1w.nii.gz"]
    with pytest.raises(NoDataError, match="no T1w image matched"):
        collect_t1w(layout, ["03"], filters={"t1w": {"acquisition": "mprage"}})


def test_pybids_database_dir_reused(example_bids, tmp_path):
    first = get_layout(example_bids, tmp_path / "db")
    assert any((tmp_path / "db").iterdir())
    second = get_layout(example_bids, tmp_path / "db")
    assert sorted(first.get_subjects()) == sorted(second.get_subjects())


def test_only_the_requested_participants_are_indexed(example_bids, tmp_path):
    from bgs_app.bids.inputs import select_subjects

    everyone = sorted(get_layout(example_bids).get_subjects())
    assert len(everyone) > 2
    layout = get_layout(example_bids, subjects=[everyone[1]])
    assert layout.get_subjects() == [everyone[1]]
    assert select_subjects(layout, [everyone[1]]) == [everyone[1]]
    # An absent label is still refused with the participants that exist.
    with pytest.raises(NoDataError, match=f"Present: {', '.join(everyone)}"):
        select_subjects(get_layout(example_bids, subjects=["zz9"]), ["zz9"])
    # A database folder holds the whole dataset, whatever the selection.
    shared = get_layout(example_bids, tmp_path / "db", subjects=[everyone[1]])
    assert sorted(shared.get_subjects()) == everyone


def test_derivative_names_canonical_order():
    assert derivative_name({"desc": "preproc", "sub": "01"}, "T1w", ".nii.gz") == \
        "sub-01_desc-preproc_T1w.nii.gz"
    assert derivative_name({"subject": "01", "session": "2", "run": 3, "space": "MNI",
                            "res": 2.0, "desc": "model"}, "T1w", "nii.gz") == \
        "sub-01_ses-2_run-3_space-MNI_res-2_desc-model_T1w.nii.gz"
    assert derivative_name({"sub": "01", "space": "MNI", "res": 1.5, "snp": "rs945270",
                            "desc": "saliency"}, "map", ".nii.gz") == \
        "sub-01_space-MNI_res-1p5_snp-rs945270_desc-saliency_map.nii.gz"
    assert derivative_name({"sub": "01", "acq": "mprage", "from": "T1w", "to": "MNI",
                            "mode": "image"}, "xfm", ".mat") == \
        "sub-01_acq-mprage_from-T1w_to-MNI_mode-image_xfm.mat"
    with pytest.raises(ValueError):
        derivative_name({"sub": "01", "bogus": "x"}, "T1w", ".nii.gz")


def test_derivative_path_with_sessions(tmp_path):
    path = derivative_path(tmp_path, {"sub": "01", "ses": "retest", "label": "GM"},
                           "probseg", ".nii.gz")
    assert path == tmp_path / "sub-01/ses-retest/anat/sub-01_ses-retest_label-GM_probseg.nii.gz"
    path = derivative_path(tmp_path, {"sub": "03"}, "", ".html", datatype="")
    assert path.parent == tmp_path / "sub-03"


def test_derivatives_description(tmp_path, example_bids, monkeypatch):
    monkeypatch.setenv("APPTAINER_NAME", "bgs_app_0.1.0.sif")
    out = tmp_path / "out"
    write_derivative_description(out, example_bids)
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["BIDSVersion"]
    gen = desc["GeneratedBy"][0]
    assert gen["Name"] == "bgs_app" and gen["Version"]
    assert gen["Container"] == {"Type": "singularity", "Tag": "bgs_app_0.1.0.sif"}
    assert desc["SourceDatasets"][0]["URL"].startswith("file://")
    write_bidsignore(out, ["group", "*.html"])
    write_bidsignore(out, ["group", "logs"])
    assert (out / ".bidsignore").read_text().splitlines() == ["group", "*.html", "logs"]


@pytest.mark.parametrize("resolution,label", [(1.0, "1"), (1.5, "1p5"), (2.0, "2"),
                                              (3.0, "3"), (4.0, "4")])
def test_resolution_names_round_trip(tmp_path, resolution, label):
    """Writers and readers spell every offered resolution the same way."""
    from bgs_app.bids.derivatives import (
        idps_path,
        model_grid_glob,
        model_grid_path,
        parse_name,
        parse_res_label,
        res_label,
    )
    from bgs_app.cli.parser import parse_args

    assert res_label(resolution) == label and parse_res_label(label) == resolution
    tpl = "MNI152NLin2009aSym"
    path = model_grid_path(tmp_path, {"sub": "01", "ses": "2"}, tpl, resolution)
    assert path == (tmp_path / "sub-01/ses-2/anat" /
                    f"sub-01_ses-2_space-{tpl}_res-{label}_desc-model_T1w.nii.gz")
    entities, suffix, extension = parse_name(path.name)
    assert (parse_res_label(entities["res"]), suffix, extension) == (resolution, "T1w",
                                                                     ".nii.gz")
    path.parent.mkdir(parents=True)
    path.touch()
    other = model_grid_path(tmp_path, {"sub": "01", "ses": "2"}, tpl, 4.0 if resolution != 4
                            else 2.0)
    other.touch()
    assert list((tmp_path / "sub-01").glob(model_grid_glob("01", tpl, resolution))) == [path]
    assert idps_path(path).name == "sub-01_ses-2_desc-idps_morph.tsv"
    # The hint the group level gives for another grid is an option the parser takes.
    config = parse_args([str(tmp_path), str(tmp_path / "o"), "group", "--resolution",
                         f"{parse_res_label(label):g}"])
    assert config.resolution == resolution


def test_snp_labels_never_collide():
    from bgs_app.bids.derivatives import group_map_name, group_regions_name, snp_labels
    from bgs_app.errors import BgsError

    labels = snp_labels(["1:12345:A:G", "11:2345:A:G", "rs429358", "sim01"])
    assert labels == {"1:12345:A:G": "1x12345xAxG", "11:2345:A:G": "11x2345xAxG",
                      "rs429358": "rs429358", "sim01": "sim01"}
    with pytest.raises(BgsError, match="'1_2' and '1-2' would share the file label"):
        snp_labels(["1_2", "1-2"])
    with pytest.raises(BgsError, match="'rs12A' and 'rs12a'"):  # case-insensitive disks
        snp_labels(["rs12A", "rs12a"])
    assert group_map_name("1:12345:A:G", "saliency") == \
        "snp-1x12345xAxG_desc-saliency_map.nii.gz"
    assert group_map_name("rs1", "saliency", "2") == "snp-rs1_genotype-2_desc-saliency_map.nii.gz"
    # On a model grid, named as the participant maps are (space- and res- first).
    grid = {"Template": "MNI152NLin2009aSym", "Resolution": 1.5}
    assert group_map_name("rs1", "genotypecorr", grid=grid) == \
        "space-MNI152NLin2009aSym_res-1p5_snp-rs1_desc-genotypecorr_map.nii.gz"
    assert group_regions_name("rs1", "genotypecorr") == "snp-rs1_desc-regions_genotypecorr.tsv"
    assert derivative_name({"sub": "01", "snp": "1:12345:A:G", "desc": "saliency"}, "map",
                           ".nii.gz") == "sub-01_snp-1x12345xAxG_desc-saliency_map.nii.gz"
