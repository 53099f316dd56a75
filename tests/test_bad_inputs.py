"""Bad input, as a careless or unlucky user gives it: one clear message, no traceback.

Every case asserts the exit code, that no traceback reaches the console, and that the
message names the problem. Command-line and file cases run ``bgs_app`` in this process
(the console is pytest's captured stderr); image cases are one participant-level run
over a dataset of broken images, each of which must fail alone with its reason; group
cases run on model-grid images made by the simulator's oracle, so that they fail before
any training.
"""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import pytest

from bgs_app.cli.run import main
from tests.conftest import make_bids_tree

BIN = Path(sys.executable).parent


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text, text[-3000:]


# --- command line, configuration and filter files ----------------------------------------

@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    """A valid tiny dataset (sub-01, sub-02) for the cases that never reach the images."""
    return make_bids_tree(tmp_path_factory.mktemp("bad") / "ds",
                          ["sub-01/anat/sub-01_T1w.nii.gz", "sub-02/anat/sub-02_T1w.nii.gz"])


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _bundle(folder: Path, edit=None) -> Path:
    """A real model bundle (tiny network), optionally edited afterwards."""
    import torch

    from bgs_app.grid import grid_metadata
    from bgs_app.model.bundle import save_bundle
    from bgs_app.model.network import SFCN

    torch.manual_seed(0)
    save_bundle(SFCN(2, channels=(4, 4, 4, 4, 4, 4)), folder, snps=["rs1", "rs2"],
                counted_alleles={"rs1": "A", "rs2": "C"},
                grid=grid_metadata(4.0, "MNI152NLin2009aSym"))
    if edit is not None:
        edit(folder)
    return folder


def _edit_meta(change, manifest=True):
    """Change model.json (and, as a careful forger would, its manifest line)."""
    def edit(folder: Path):
        from bgs_app.utils.hashing import file_sha256

        meta = json.loads((folder / "model.json").read_text())
        change(meta)
        (folder / "model.json").write_text(json.dumps(meta))
        if manifest:
            (folder / "SHA256SUMS").write_text("".join(
                f"{file_sha256(folder / n)}  {n}\n" for n in ("model.json",
                                                              "weights.safetensors")))
    return edit


def _flip_weights(folder: Path):
    data = bytearray((folder / "weights.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (folder / "weights.safetensors").write_bytes(bytes(data))


def _rename_snp(folder: Path):
    path = folder / "model.json"
    path.write_text(path.read_text().replace('"rs2"', '"rs7"'))


def _old_format(folder: Path):
    (folder / "SHA256SUMS").unlink()
    _edit_meta(lambda m: m.update(bundle_format=1), manifest=False)(folder)


# Each case: (id, a function of (ds, tmp) giving argv, exit code, regex of the message).
CASES = [
    ("absent-bids-dir", lambda d, t: [str(t / "nope"), str(t / "o"), "participant"], 1,
     r"BIDS folder .*nope does not exist.*mounted"),
    ("not-a-dataset", lambda d, t: [str((t / "plain").mkdir() or t / "plain"),
                                    str(t / "o"), "participant"], 16,
     r"dataset_description.json is missing"),
    ("output-is-input", lambda d, t: [str(d), str(d), "participant"], 64,
     r"the output folder is the input BIDS folder"),
    ("output-inside-input", lambda d, t: [str(d), str(d / "out"), "participant"], 64,
     r"inside the input dataset"),
    ("work-inside-input", lambda d, t: [str(d), str(t / "o"), "participant", "-w",
                                        str(d / "work")], 64,
     r"work folder .* inside the input dataset"),
    ("unwritable-work-dir", lambda d, t: [str(d), str(t / "o"), "participant", "-w",
                                          str(_write(t / "afile", "") / "work")], 64,
     r"work folder \(-w\) .*afile/work cannot be written"),
    ("unwritable-output", lambda d, t: [str(d), str(_write(t / "afile", "") / "out"),
                                        "participant"], 1,
     r"cannot create the output folder .*afile/out"),
    ("unknown-level", lambda d, t: [str(d), str(t / "o"), "session"], 17,
     r"unknown analysis level 'session'"),
    ("nprocs-not-a-number", lambda d, t: [str(d), str(t / "o"), "participant", "--nprocs",
                                          "zero"], 64, r"--nprocs.*'zero' is not an integer"),
    ("resolution-not-offered", lambda d, t: [str(d), str(t / "o"), "participant",
                                             "--resolution", "5"], 64,
     r"'5' is not one of 1, 1.5, 2, 3, 4"),
    ("absent-participant", lambda d, t: [str(d), str(t / "o"), "participant",
                                         "--participant-label", "07",
                                         "--skip-bids-validation"], 18,
     r"sub-07 not found.*Present: 01, 02"),
    ("label-with-underscore", lambda d, t: [str(d), str(t / "o"), "participant",
                                            "--participant-label", "0_1"], 64,
     r"invalid label '0_1'.*alphanumeric"),
    ("filter-unknown-datatype", lambda d, t: [
        str(d), str(t / "o"), "participant", "--bids-filter-file",
        str(_write(t / "f.json", '{"T1w": {"acquisition": "mprage"}}'))], 64,
     r"unknown data type\(s\) T1w; bgs_app reads 't1w'"),
    ("filter-not-json", lambda d, t: [str(d), str(t / "o"), "participant",
                                      "--bids-filter-file", str(_write(t / "f.json", "{"))],
     64, r"f.json is not valid JSON"),
    ("filter-unknown-entity", lambda d, t: [
        str(d), str(t / "o"), "participant", "--bids-filter-file",
        str(_write(t / "f.json", '{"t1w": {"scanner": "prisma"}}'))], 64,
     r"filters on 'scanner', which is not a BIDS entity"),
    ("filter-subject-key", lambda d, t: [
        str(d), str(t / "o"), "participant", "--bids-filter-file",
        str(_write(t / "f.json", '{"t1w": {"subject": "01"}}'))], 64,
     r"'subject' key; choose subjects with --participant-label"),
    ("filter-file-absent", lambda d, t: [str(d), str(t / "o"), "participant",
                                         "--bids-filter-file", str(t / "none.json")], 64,
     r"BIDS filter file .*none.json does not exist"),
    ("config-unknown-key", lambda d, t: [str(d), str(t / "o"), "participant",
                                         "--config-file",
                                         str(_write(t / "c.toml", "n_procs = 2\n"))], 64,
     r"unknown option\(s\) n_procs"),
    ("config-bad-syntax", lambda d, t: [str(d), str(t / "o"), "participant", "--config-file",
                                        str(_write(t / "c.toml", "nprocs = = 2\n"))], 64,
     r"cannot read configuration file"),
    ("config-verbose-word", lambda d, t: [str(d), str(t / "o"), "participant",
                                          "--config-file",
                                          str(_write(t / "c.toml", 'verbose = "loud"\n'))],
     64, r"c.toml: 'verbose' must be a count"),
    ("config-wrong-type", lambda d, t: [str(d), str(t / "o"), "participant", "--config-file",
                                        str(_write(t / "c.toml", 'nprocs = "many"\n'))], 64,
     r"c.toml: .*--nprocs.*'many' is not an integer"),
    ("config-list-for-scalar", lambda d, t: [str(d), str(t / "o"), "participant",
                                             "--config-file",
                                             str(_write(t / "c.toml", "seed = [1, 2]\n"))],
     64, r"'seed' takes one value, not a list"),
    ("config-file-absent", lambda d, t: [str(d), str(t / "o"), "participant",
                                         "--config-file", str(t / "none.toml")], 64,
     r"configuration file .*none.toml does not exist"),
    ("model-not-a-bundle", lambda d, t: [str(d), str(t / "o"), "participant", "--model",
                                         str(t), "--skip-bids-validation"], 1,
     r"is not a bgs_app model bundle"),
    ("model-without-architecture", lambda d, t: [
        str(d), str(t / "o"), "participant", "--skip-bids-validation", "--resolution", "4",
        "--model", str(_bundle(t / "b", _edit_meta(lambda m: m.pop("architecture"))))], 1,
     r"model.json has no 'architecture'"),
    ("model-non-integer-field", lambda d, t: [
        str(d), str(t / "o"), "participant", "--skip-bids-validation", "--resolution", "4",
        "--model", str(_bundle(t / "b", _edit_meta(
            lambda m: m["architecture"].update(n_snps=2.5))))], 1,
     r"architecture.n_snps must be a positive integer, not 2.5"),
    ("model-renamed-snp", lambda d, t: [
        str(d), str(t / "o"), "participant", "--skip-bids-validation", "--resolution", "4",
        "--model", str(_bundle(t / "b", _rename_snp))], 1,
     r"model.json does not match its SHA-256 in SHA256SUMS"),
    ("model-damaged-weights", lambda d, t: [
        str(d), str(t / "o"), "participant", "--skip-bids-validation", "--resolution", "4",
        "--model", str(_bundle(t / "b", _flip_weights))], 1,
     r"weights.safetensors does not match its SHA-256"),
    ("model-old-format", lambda d, t: [
        str(d), str(t / "o"), "participant", "--skip-bids-validation", "--resolution", "4",
        "--model", str(_bundle(t / "b", _old_format))], 1,
     r"unknown bundle format 1 \(this bgs_app reads format 2\)"),
    ("model-other-grid", lambda d, t: [
        str(d), str(t / "o"), "participant", "--skip-bids-validation", "--resolution", "2",
        "--model", str(_bundle(t / "b"))], 1,
     r"trained on Resolution 4.0.*rerun the participant level with --resolution 4.0"),
    ("group-without-genotypes-or-model", lambda d, t: [str(d), str(t / "o"), "group",
                                                       "--skip-bids-validation"], 64,
     r"needs --genotypes PLINK_PREFIX .* or --model MODEL_DIR"),
    ("template-image-absent", lambda d, t: [str(d), str(t / "o"), "participant",
                                            "--skip-bids-validation", "--template",
                                            str(t / "tpl.nii.gz")], 64,
     r"template image .*tpl.nii.gz does not exist"),
    # The default work folder (OUT/../work) cannot be made: in a container with the output
    # bound at /out it would be /work in the read-only image. (A file in its place, so
    # that the case holds for root too.)
    ("default-work-not-writable", lambda d, t: [
        str(d), str(_write(t / "work", "").parent / "o"), "participant",
        "--skip-bids-validation"], 64,
     r"default work folder .*work/bgs_app_o cannot be written.*pass a writable folder "
     r"with -w"),
    ("graph-plugin", lambda d, t: [
        str(d), str(t / "o"), "participant", "--skip-bids-validation", "-w", str(t / "w"),
        "--use-plugin", str(_write(t / "plugin.toml", 'plugin = "SLURMGraph"\n'))], 64,
     r"the SLURMGraph plugin submits the whole graph and returns .* SLURM instead of "
     r"SLURMGraph"),
    ("template-without-mask", lambda d, t: [
        str(d), str(t / "o"), "participant", "--skip-bids-validation", "--template",
        str(_write(t / "tpl.nii.gz", ""))], 64, r"--template IMAGE needs --template-mask"),
]


@pytest.mark.parametrize("argv,code,message", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_command_line_and_files(ds, tmp_path, capsys, argv, code, message):
    import re

    assert main(argv(ds, tmp_path)) == code
    err = capsys.readouterr().err
    _no_traceback(err)
    assert re.search(message, err, re.S), err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("bgs_app: ")]
    assert len(lines) == 1, err  # one message


def test_a_bug_prints_one_line_and_keeps_the_traceback_in_a_file(ds, tmp_path, capsys,
                                                                 monkeypatch):
    """An unexpected error (a bug) is one line naming the crash file; the traceback goes
    to the file and the run's log, never to the console."""
    import bgs_app.cli.run as run

    def broken(config):
        raise KeyError("a bug")

    monkeypatch.setattr(run, "dispatch", broken)
    out = tmp_path / "o"
    assert main([str(ds), str(out), "participant"]) == 1
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "unexpected error: KeyError" in err and "please report it" in err
    crash = next((out / "logs").glob("crash-*.txt"))
    assert "Traceback" in crash.read_text()
    assert "Traceback" in next((out / "logs").glob("bgs_app-*.log")).read_text()


def test_too_many_processes_are_capped_with_a_warning(ds, tmp_path, capsys):
    from bgs_app.utils.processes import usable_cpus

    out = tmp_path / "o"
    code = main([str(ds), str(out), "participant", "--nprocs", "10000", "--omp-nthreads",
                 "5000", "--boilerplate-only", "--skip-bids-validation"])
    err = capsys.readouterr().err
    assert code == 0
    assert f"--nprocs 10000 is more than the {usable_cpus()} CPU(s)" in err
    assert "--omp-nthreads 5000 is more than" in err
    recorded = next((out / "logs").glob("config-*.toml")).read_text()
    assert f"nprocs = {usable_cpus()}" in recorded


def test_console_of_a_real_process_has_no_traceback(ds, tmp_path):
    """The console script itself (not this process's capture) prints one line."""
    bad = _write(tmp_path / "c.toml", 'verbose = "loud"\n')
    proc = subprocess.run([str(BIN / "bgs_app"), str(ds), str(tmp_path / "o"), "participant",
                           "--config-file", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 64
    _no_traceback(proc.stderr + proc.stdout)
    assert "'verbose' must be a count" in proc.stderr


# --- broken images: each fails alone, with its reason ------------------------------------

def _with_affine(path: Path, data: np.ndarray, affine: np.ndarray, matrix: np.ndarray):
    """Write ``data`` with an sform that nibabel would refuse to create (patched bytes)."""
    nb.Nifti1Image(data, affine).to_filename(path)
    raw = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<hh", raw, 252, 0, 1)  # qform_code 0, sform_code 1 (scanner)
    for row, offset in enumerate((280, 296, 312)):  # srow_x, srow_y, srow_z
        struct.pack_into("<4f", raw, offset, *matrix[row])
    path.write_bytes(gzip.compress(bytes(raw)))


def _broken_images(root: Path, source: Path) -> dict[str, str]:
    """Write one broken T1w per participant; return label -> expected message."""
    img = nb.load(source)
    data = np.asarray(img.dataobj).astype(np.float32)
    affine = img.affine
    rng = np.random.default_rng(0)
    head = data > 0.15 * np.percentile(data[data > 0], 98)
    expected = {}

    def path(label):
        folder = root / f"sub-{label}" / "anat"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"sub-{label}_T1w.nii.gz"

    def save(label, array, message, aff=affine):
        nb.Nifti1Image(array, aff).to_filename(path(label))
        expected[label] = message

    save("noise", rng.uniform(0, data.max(), data.shape).astype(np.float32),
         r"implausible after preprocessing: .*correlates [-0-9.]+ with the template")
    save("inverted", np.where(head, data.max() - data, 0).astype(np.float32),
         r"implausible after preprocessing: .*correlates -[0-9.]+ with the template")
    save("constant", np.full(data.shape, 100, np.float32), r"no intensity contrast")
    save("mask", head.astype(np.uint8), r"no intensity contrast .* a mask or a label map")
    nan = data.copy()
    nan[10:20, 10:20, 10:20] = np.nan
    save("nan", nan, r"1000 voxel\(s\) are NaN or infinite")
    inf = data.copy()
    inf[0, 0, 0] = np.inf
    save("inf", inf, r"1 voxel\(s\) are NaN or infinite")
    save("fourd", np.stack([data, data], -1), r"must be 3-D, this one has shape")
    save("pfov", data[:, :, 20:30], r"partial field of view")
    _with_affine(path("zeroaffine"), data, affine, np.zeros((4, 4)))
    expected["zeroaffine"] = r"affine .* is singular or not finite"
    singular = affine.copy()
    singular[:3, 2] = singular[:3, 1]
    _with_affine(path("singular"), data, affine, singular)
    expected["singular"] = r"affine .* is singular or not finite"
    nb.Nifti1Image(data, affine).to_filename(path("truncated"))
    raw = path("truncated").read_bytes()
    path("truncated").write_bytes(raw[: len(raw) // 2])
    expected["truncated"] = r"cannot read the image data, the file is truncated or corrupt"
    # A participant asked for by name whose anat/ folder holds no T1w.
    other = root / "sub-empty" / "anat" / "sub-empty_T2w.nii.gz"
    other.parent.mkdir(parents=True)
    nb.Nifti1Image(data, affine).to_filename(other)
    expected["empty"] = r"no T1w image matched the query"
    return expected


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory):
    from bgs_app.simulate import SimulationParams, simulate_study

    base = tmp_path_factory.mktemp("broken")
    study = base / "study"
    simulate_study(study, SimulationParams(n_subjects=1, seed=5, resolution=4.0),
                   nprocs=1, progress=False)
    bids = make_bids_tree(base / "ds", [])
    expected = _broken_images(bids, study / "sub-0001/anat/sub-0001_T1w.nii.gz")
    (bids / "participants.tsv").write_text(
        "participant_id\n" + "".join(f"sub-{k}\n" for k in sorted(expected)))
    out = base / "out"
    proc = subprocess.run(
        [str(BIN / "bgs_app"), str(bids), str(out), "participant", "--participant-label",
         *sorted(expected), "--nprocs", "2", "--omp-nthreads", "1", "--sloppy",
         "--resolution", "4", "--skip-bids-validation", "-w", str(base / "work")],
        capture_output=True, text=True, timeout=900)
    return {"proc": proc, "expected": expected, "out": out}


def test_broken_images_fail_the_run_without_a_traceback(broken_run):
    proc = broken_run["proc"]
    assert proc.returncode == 1
    _no_traceback(proc.stderr + proc.stdout)
    assert (f"{len(broken_run['expected']) - 1} image(s) failed and 1 requested "
            "participant(s) had no T1w image") in proc.stderr
    # Nothing of theirs reaches the group level.
    assert not list(broken_run["out"].glob("sub-*/anat/*_desc-model_T1w.nii.gz"))


IMAGE_CASES = ["noise", "inverted", "constant", "mask", "nan", "inf", "fourd", "pfov",
               "zeroaffine", "singular", "truncated", "empty"]


@pytest.mark.parametrize("label", IMAGE_CASES)
def test_broken_image_is_named_with_its_reason(broken_run, label):
    import re

    lines = [line for line in broken_run["proc"].stderr.splitlines()
             if line.strip().startswith(f"sub-{label}:")]
    assert len(lines) == 1, broken_run["proc"].stderr[-3000:]
    assert re.search(broken_run["expected"][label], lines[0]), lines[0]
    report = (broken_run["out"] / f"sub-{label}.html").read_text()
    assert re.search(broken_run["expected"][label], report.replace("\n", " "))


# --- group level: refused before any training ---------------------------------------------

@pytest.fixture(scope="module")
def oracle_study(tmp_path_factory):
    """A simulated study (4 mm, oracle model-grid images) of 26 participants: enough to
    train once one is left out."""
    from bgs_app.simulate import SimulationParams, simulate_study
    from bgs_app.simulate.oracle import truth_model_grid

    base = tmp_path_factory.mktemp("oracle")
    study = base / "study"
    simulate_study(study, SimulationParams(n_subjects=26, seed=8, resolution=4.0), nprocs=2,
                   progress=False)
    out = truth_model_grid(study, base / "out", 4.0, nprocs=2)
    ids = [p.name for p in sorted(study.glob("sub-*"))]
    (study / "phenotype" / "extra.tsv").write_text(  # a measure nobody has
        "participant_id\tempty_measure\n" + "".join(f"{i}\tn/a\n" for i in ids))
    return {"study": study, "out": out, "base": base}


def _group(oracle_study, tmp_path, *extra):
    return [str(oracle_study["study"]), str(oracle_study["out"]), "group",
            "--genotypes", str(oracle_study["study"] / "genetics" / "study"),
            "--resolution", "4", "--skip-bids-validation", "-w", str(tmp_path / "work"),
            "--epochs", "1", "--channels", "4", "4", "4", "4", "4", "4", *extra]


GROUP_CASES = [
    ("phenotype-not-found", ["--phenotypes", "iq"], 64,
     r"phenotype column\(s\) iq not found; available: .*fluid_intelligence"),
    ("covariate-not-found", ["--covariates", "age", "handedness"], 64,
     r"covariate column\(s\) handedness not found"),
    ("phenotype-all-missing", ["--phenotypes", "empty_measure"], 64,
     r"measure\(s\) empty_measure have no value \(all n/a or not numeric\) for any of the "
     r"26 participant"),
    ("genotypes-absent", ["--genotypes", "/nonexistent/study"], 1,
     r"/nonexistent/study"),
    ("snps-absent", ["--snps", "rs000001", "rs000002"], 1,
     r"none of the requested SNPs \(rs000001, rs000002\) is in"),
    ("pcs-without-a-genome-wide-file", ["--genetic-pcs", "2"], 64,
     r"--genetic-pcs 2 needs either columns pc1 ... pc2 .* never computed from the tested"),
    ("pcs-from-the-tested-snps", ["--genetic-pcs", "2", "--pca-genotypes", "{genotypes}"], 1,
     r"\d+ SNP\(s\) remain for genetic PCs after leaving out the tested SNPs and 500 kb "
     r"around them; at least 1000 are needed"),
]


@pytest.mark.parametrize("extra,code,message", [c[1:] for c in GROUP_CASES],
                         ids=[c[0] for c in GROUP_CASES])
def test_bad_group_inputs_are_refused_before_training(oracle_study, tmp_path, capsys, extra,
                                                      code, message):
    import re

    if "--phenotypes" not in extra:
        extra = [*extra, "--phenotypes", "fluid_intelligence"]
    extra = [str(oracle_study["study"] / "genetics" / "study") if e == "{genotypes}" else e
             for e in extra]
    argv = _group(oracle_study, tmp_path, *extra)
    if "--genotypes" in extra:  # the case's own genotypes replace the fixture's
        i = argv.index("--genotypes")
        del argv[i:i + 2]
    assert main(argv) == code
    err = capsys.readouterr().err
    _no_traceback(err)
    assert re.search(message, err, re.S), err[-2000:]
    assert not (oracle_study["out"] / "group" / "model").exists()  # nothing was trained
    assert not (tmp_path / "work" / "group" / "store").exists()


@pytest.mark.skipif("__import__('torch').cuda.is_available()",
                    reason="torch sees a GPU here: --device cuda is valid")
def test_cuda_without_a_gpu_is_a_usage_error(oracle_study, tmp_path, capsys):
    argv = _group(oracle_study, tmp_path, "--device", "cuda", "--phenotypes",
                  "fluid_intelligence")
    assert main(argv) == 64
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "--device cuda: this torch" in err and "--device cpu" in err, err[-2000:]
    assert not (tmp_path / "work" / "group" / "store").exists()


def test_participants_without_outputs_are_named_and_can_be_excluded(oracle_study, tmp_path,
                                                                     capsys):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(oracle_study["out"], out, ignore=shutil.ignore_patterns("group"))
    for path in (out / "sub-0003").rglob("*_desc-model_T1w.nii.gz"):
        path.unlink()
    # sub-0005's image with an inverted contrast inside its brain: image QC flags it.
    inverted = next((out / "sub-0005").rglob("*_desc-model_T1w.nii.gz"))
    img = nb.load(inverted)
    data = np.asarray(img.dataobj, np.float32)
    data[data > 0] = data.max() - data[data > 0] + 1e-3
    nb.Nifti1Image(data, img.affine, img.header).to_filename(inverted)
    argv = [str(oracle_study["study"]), str(out), "group", "--genotypes",
            str(oracle_study["study"] / "genetics" / "study"), "--resolution", "4",
            "--skip-bids-validation", "-w", str(tmp_path / "work"), "--epochs", "1",
            "--channels", "4", "4", "4", "4", "4", "4", "--no-saliency", "--phenotypes",
            "fluid_intelligence", "--snps", *[f"sim{i:02d}" for i in range(1, 13)]]
    assert main(argv) == 18
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "1 participant(s) have no model-grid image" in err and "sub-0003" in err
    listed = next((out / "logs").glob("missing-model-grid-*.txt"))
    assert f"--exclude-label {listed}" in err
    assert listed.read_text().split() == ["sub-0003"]
    # The list, passed back, leaves them out; subjects.tsv says why.
    assert main([*argv, "--exclude-label", str(listed)]) == 0, capsys.readouterr().err[-2000:]
    subjects = pd.read_csv(out / "group/subjects.tsv", sep="\t", na_values="n/a")
    row = subjects[subjects["participant_id"] == "sub-0003"]
    assert row["reason"].tolist() == ["excluded by --exclude-label"]
    assert not row["kept"].any()
    scores = pd.read_csv(out / "group/scores.tsv", sep="\t")
    assert "sub-0003" not in set(scores["participant_id"])
    qc = pd.read_csv(out / "group/qc.tsv", sep="\t", na_values="n/a")
    assert len(qc) == 25 and "sub-0003" not in set(qc["participant_id"])
    worst = qc.loc[qc["z_template_similarity"].idxmin()]
    assert worst["participant_id"] == "sub-0005" and worst["outlier"]
    assert worst["z_template_similarity"] < -20 and "template_similarity" in worst["reason"]
    assert qc["outlier"].sum() <= 3, qc.sort_values("z_template_similarity").head(5)
    listed = (out / "group/qc_outliers.txt").read_text().split()
    assert listed == sorted(qc.loc[qc["outlier"], "participant_id"]) and "sub-0005" in listed
    assert "Image QC" in (out / "group/report.html").read_text()


def test_apply_mode_refuses_a_folder_with_training_results(oracle_study, tmp_path, capsys):
    group = oracle_study["out"] / "group"
    (group / "model").mkdir(parents=True, exist_ok=True)
    try:
        code = main([str(oracle_study["study"]), str(oracle_study["out"]), "group",
                     "--model", str(_bundle(tmp_path / "b")), "--resolution", "4",
                     "--skip-bids-validation", "-w", str(tmp_path / "work")])
    finally:
        (group / "model").rmdir()
    err = capsys.readouterr().err
    assert code == 64
    _no_traceback(err)
    assert "holds the results of training (model)" in err
    assert "another output folder" in err
    assert not (group / "scores.tsv").exists()
