"""Shared fixtures: small BIDS trees shaped like the BIDS example datasets."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "testdata"


def tiny_nifti(path: Path, shape=(12, 12, 12), zooms=(2.0, 2.0, 2.0)) -> Path:
    """Write a tiny valid NIfTI image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).integers(0, 1000, shape).astype("int16")
    img = nb.Nifti1Image(data, np.diag([*zooms, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    img.to_filename(path)
    return path


def make_bids_tree(root: Path, files: list[str], participants=None) -> Path:
    """A minimal BIDS dataset with tiny images at the given relative paths."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "fixture", "BIDSVersion": "1.10.0", "DatasetType": "raw",
         "Authors": ["A. Tester", "B. Tester"]}))
    (root / "README").write_text("A small fixture dataset for bgs_app tests.\n")
    subjects = sorted({f.split("/")[0] for f in files})
    rows = participants or {s: {} for s in subjects}
    header = ["participant_id", *sorted({k for v in rows.values() for k in v})]
    lines = ["\t".join(header)] + [
        "\t".join([s] + [str(rows[s].get(k, "n/a")) for k in header[1:]]) for s in subjects]
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")
    for rel in files:
        tiny_nifti(root / rel)
    return root


#: The shape of ds114/ds001-like example datasets: sessions, runs, acquisitions.
EXAMPLE_FILES = [
    "sub-01/ses-test/anat/sub-01_ses-test_T1w.nii.gz",
    "sub-01/ses-retest/anat/sub-01_ses-retest_T1w.nii.gz",
    "sub-02/ses-test/anat/sub-02_ses-test_acq-mprage_run-1_T1w.nii.gz",
    "sub-02/ses-test/anat/sub-02_ses-test_acq-mprage_run-2_T1w.nii.gz",
    "sub-02/ses-test/anat/sub-02_ses-test_acq-fast_T1w.nii.gz",
    "sub-02/ses-test/anat/sub-02_ses-test_T2w.nii.gz",
    "sub-03/anat/sub-03_T1w.nii.gz",
    "sub-03/anat/sub-03_inplaneT2.nii.gz",
]


@pytest.fixture(scope="session")
def example_bids(tmp_path_factory) -> Path:
    """A BIDS tree shaped like the example datasets (sessions, runs, acquisitions)."""
    files = [f.replace("sub-03/anat/", "sub-03/anat/") for f in EXAMPLE_FILES]
    return make_bids_tree(tmp_path_factory.mktemp("example") / "ds", files,
                          participants={"sub-01": {"age": 30}, "sub-02": {"age": 41},
                                        "sub-03": {"age": 25}})


@pytest.fixture(scope="session")
def sim_study(tmp_path_factory) -> Path:
    """A simulated study with strong planted effects, small enough for CI (4 mm scans)."""
    from bgs_app.simulate import SimulationParams, simulate_study

    root = tmp_path_factory.mktemp("sim") / "study"
    simulate_study(root, SimulationParams(n_subjects=60, seed=1, resolution=4.0,
                                          effect_size=0.5, warp_mm=1.5),
                   nprocs=2, progress=False)
    return root


def crop_partial_fov(src: Path, dst: Path) -> Path:
    """A partial field of view made from a whole-head image (a 60 mm slab)."""
    img = nb.load(src)
    zooms = img.header.get_zooms()[:3]
    n = int(round(60.0 / zooms[2]))
    start = img.shape[2] // 2 - n // 2
    dst.parent.mkdir(parents=True, exist_ok=True)
    img.slicer[:, :, start:start + n].to_filename(dst)
    return dst


@pytest.fixture(scope="session")
def participant_run(tmp_path_factory):
    """A small simulated study (2 mm scans) through the participant level (sloppy).

    One extra participant has a partial field of view and must fail alone.
    """
    from bgs_app.cli.run import main
    from bgs_app.simulate import SimulationParams, simulate_study

    base = tmp_path_factory.mktemp("participant")
    bids = base / "study"
    simulate_study(bids, SimulationParams(n_subjects=3, seed=11, resolution=2.0,
                                          effect_size=0.3, warp_mm=2.0),
                   nprocs=2, progress=False)
    crop_partial_fov(bids / "sub-0003/anat/sub-0003_T1w.nii.gz",
                     bids / "sub-9999/anat/sub-9999_T1w.nii.gz")
    with open(bids / "participants.tsv", "a") as fh:
        fh.write("sub-9999\t60.0\tF\tsiteA\tn/a\n")
    out = base / "out"
    code = main([str(bids), str(out), "participant", "--nprocs", "2", "--omp-nthreads", "1",
                 "--sloppy", "--resolution", "4", "-w", str(base / "work"),
                 "--clean-workdir"])
    return {"bids": bids, "out": out, "code": code, "work": base / "work"}
