"""The BIDS-App command line: parsing, configuration, exit codes and messages."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bgs_app import __version__
from bgs_app.cli.parser import get_parser, parse_args
from bgs_app.cli.run import main
from bgs_app.errors import UnknownLevelError, UsageError
from tests.conftest import make_bids_tree

BIN = Path(sys.executable).parent


def test_version_and_help_from_console_script():
    out = subprocess.run([BIN / "bgs_app", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"bgs_app v{__version__}"
    helptext = subprocess.run([BIN / "bgs_app", "--help"], capture_output=True, text=True)
    assert helptext.returncode == 0
    for needle in ("bids_dir", "output_dir", "{participant,group}",
                   "Options for filtering BIDS queries", "Options to handle performance",
                   "--participant-label", "--skip-bids-validation", "--config-file"):
        assert needle in helptext.stdout


@pytest.mark.parametrize("labels,expected", [
    (["01"], ("01",)),
    (["sub-01", "02"], ("01", "02")),
    (["sub-01", "01"], ("01",)),
])
def test_participant_labels_with_or_without_prefix(tmp_path, labels, expected):
    config = parse_args([str(tmp_path), str(tmp_path / "out"), "participant",
                         "--participant-label", *labels])
    assert config.participant_label == expected


def test_participant_labels_from_file_and_underscore_alias(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("sub-01\n02\n\n  03  \n")
    config = parse_args([str(tmp_path), str(tmp_path / "out"), "participant",
                         "--participant_label", str(labels), "--session-label", "ses-1"])
    assert config.participant_label == ("01", "02", "03")
    assert config.session_label == ("1",)


def test_invalid_label_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="alphanumeric"):
        parse_args([str(tmp_path), str(tmp_path / "o"), "participant",
                    "--participant-label", "sub-0_1"])


def test_unknown_level_and_usage_errors(tmp_path, capsys):
    with pytest.raises(UnknownLevelError):
        parse_args([str(tmp_path), str(tmp_path / "o"), "session"])
    assert main([str(tmp_path), str(tmp_path / "o"), "session"]) == 17
    assert "unknown analysis level 'session'" in capsys.readouterr().err
    assert main([str(tmp_path)]) == 64
    err = capsys.readouterr().err
    assert "usage: bgs_app" in err and "Traceback" not in err
    assert main([str(tmp_path), str(tmp_path / "o"), "group", "--nprocs", "zero"]) == 64
    assert main([str(tmp_path), str(tmp_path / "o"), "group", "--resolution", "5"]) == 64
    capsys.readouterr()
    assert main([str(tmp_path), str(tmp_path / "o"), "group", "--poolings", "6"]) == 64
    assert "poolings must be all, auto or a number" in capsys.readouterr().err
    assert main([str(tmp_path), str(tmp_path / "o"), "group", "--max-shift", "-1"]) == 64
    assert main([str(tmp_path), str(tmp_path / "o"), "group", "--readout", "max"]) == 64


def test_config_file_precedence_toml_and_yaml(tmp_path):
    toml = tmp_path / "bgs.toml"
    toml.write_text('nprocs = 3\nomp-nthreads = 2\nparticipant_label = ["01", "sub-02"]\n'
                    'skip_bids_validation = true\nresolution = 4\n')
    config = parse_args([str(tmp_path), str(tmp_path / "o"), "participant",
                         "--config-file", str(toml), "--nprocs", "1"])
    assert config.nprocs == 1  # the command line wins
    assert config.omp_nthreads == 2 and config.resolution == 4.0
    assert config.participant_label == ("01", "02")
    assert config.skip_bids_validation is True
    yaml = tmp_path / "bgs.yaml"
    yaml.write_text("covariates: [age, sex]\nseed: 7\n")
    config = parse_args([str(tmp_path), str(tmp_path / "o"), "group", "--config-file",
                         str(yaml), "--covariates", "age"])
    assert config.covariates == ("age",) and config.seed == 7


def test_config_file_unknown_key_and_bad_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("n_procs = 3\n")
    with pytest.raises(UsageError, match="unknown option.*n_procs.*nprocs"):
        parse_args([str(tmp_path), str(tmp_path / "o"), "group", "--config-file", str(bad)])
    broken = tmp_path / "broken.toml"
    broken.write_text("nprocs = = 3\n")
    with pytest.raises(UsageError, match="cannot read configuration file"):
        parse_args([str(tmp_path), str(tmp_path / "o"), "group", "--config-file", str(broken)])


def test_config_is_recorded_and_reread(tmp_path):
    config = parse_args([str(tmp_path), str(tmp_path / "o"), "group", "--snps", "rs1", "rs2",
                         "--seed", "5"])
    path = config.write(tmp_path / "logs")
    assert path.name.startswith("config-") and path.suffix == ".toml"
    again = parse_args([str(tmp_path), str(tmp_path / "o"), "group", "--config-file",
                        str(path)])
    assert again.snps == ("rs1", "rs2") and again.seed == 5


def test_config_is_frozen(tmp_path):
    config = parse_args([str(tmp_path), str(tmp_path / "o"), "group"])
    with pytest.raises(AttributeError):
        config.seed = 3  # type: ignore[misc]


def test_absent_bids_dir(tmp_path, capsys):
    code = main([str(tmp_path / "nope"), str(tmp_path / "out"), "participant"])
    err = capsys.readouterr().err
    assert code == 1
    assert "does not exist" in err and "mounted" in err and "Traceback" not in err


def test_output_equal_or_inside_bids_dir(example_bids, capsys):
    assert main([str(example_bids), str(example_bids), "participant"]) == 64
    assert "the output folder is the input BIDS folder" in capsys.readouterr().err
    assert main([str(example_bids), str(example_bids / "out"), "participant"]) == 64
    assert "inside the input dataset" in capsys.readouterr().err
    assert main([str(example_bids), str(example_bids.parent / "o"), "participant", "-w",
                 str(example_bids / "work")]) == 64
    assert "work folder" in capsys.readouterr().err


def test_absent_label_lists_present_ones(example_bids, tmp_path, capsys):
    code = main([str(example_bids), str(tmp_path / "out"), "participant",
                 "--participant-label", "01", "sub-99"])
    err = capsys.readouterr().err
    assert code == 18
    assert "sub-99 not found" in err and "Present: 01, 02, 03" in err
    assert (tmp_path / "out" / "logs").is_dir()
    assert list((tmp_path / "out" / "logs").glob("config-*.toml"))


def test_invalid_dataset_exit_16_and_skip(tmp_path, capsys):
    bad = make_bids_tree(tmp_path / "bad", ["sub-01/anat/sub-01_T1w.nii.gz",
                                            "sub-01/anat/sub-01_notasuffix.nii.gz"])
    code = main([str(bad), str(tmp_path / "out"), "participant"])
    err = capsys.readouterr().err
    assert code == 16
    assert "the BIDS validator found" in err and "sub-01_notasuffix.nii.gz" in err
    assert "--skip-bids-validation" in err
    # Skipping validation goes on to the selection (here: an absent label, exit 18).
    code = main([str(bad), str(tmp_path / "out"), "participant", "--skip-bids-validation",
                 "--participant-label", "02"])
    assert code == 18


def test_not_a_dataset(tmp_path, capsys):
    (tmp_path / "plain").mkdir()
    assert main([str(tmp_path / "plain"), str(tmp_path / "out"), "participant"]) == 16
    assert "dataset_description.json is missing" in capsys.readouterr().err


def test_bids_filter_file_errors(tmp_path):
    bad = tmp_path / "filter.json"
    bad.write_text('{"anat": {"suffix": "T1w"}}')
    with pytest.raises(UsageError, match="unknown data type"):
        parse_args([str(tmp_path), str(tmp_path / "o"), "participant", "--bids-filter-file",
                    str(bad)])
    # An fMRIPrep filter file: the queries of other data are ignored, with a warning.
    fmriprep = tmp_path / "fmriprep.json"
    fmriprep.write_text(json.dumps({"t1w": {"acquisition": "mprage"},
                                    "bold": {"task": "rest"}, "fmap": {"run": 1}}))
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.getLogger("bgs_app").addHandler(handler)
    try:
        config = parse_args([str(tmp_path), str(tmp_path / "o"), "participant",
                             "--bids-filter-file", str(fmriprep)])
    finally:
        logging.getLogger("bgs_app").removeHandler(handler)
    assert config.bids_filters == {"t1w": {"acquisition": "mprage"}}
    assert any("ignoring the query of bold, fmap" in r.getMessage() for r in records)
    bad.write_text('{"t1w": ')
    with pytest.raises(UsageError, match="not valid JSON"):
        parse_args([str(tmp_path), str(tmp_path / "o"), "participant", "--bids-filter-file",
                    str(bad)])
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"t1w": {"acquisition": "mprage"}}))
    config = parse_args([str(tmp_path), str(tmp_path / "o"), "participant",
                         "--bids-filter-file", str(good)])
    assert config.bids_filters == {"t1w": {"acquisition": "mprage"}}


@pytest.mark.parametrize("argv,expected", [
    (["--nthreads", "3"], {"nprocs": 3}),
    (["--n_cpus", "2"], {"nprocs": 2}),
    (["--mem", "16G"], {"mem_gb": 16.0}),
    (["--mem-mb", "8000"], {"mem_gb": 8.0}),
    (["--mem_mb", "500MB"], {"mem_gb": 0.5}),
    (["--mem", "0.5T"], {"mem_gb": 500.0}),
    (["--random-seed", "7"], {"seed": 7}),
    (["--nipype-plugin-file", "plugin.toml"], {"use_plugin": Path("plugin.toml")}),
    (["--boilerplate"], {"boilerplate_only": True}),
    (["--notrack", "--nthreads", "1"], {"nprocs": 1}),
])
def test_fmriprep_spellings_are_aliases(tmp_path, argv, expected):
    config = parse_args([str(tmp_path), str(tmp_path / "o"), "participant", *argv])
    for name, value in expected.items():
        got = getattr(config, name)
        assert (got.name == value.name if isinstance(value, Path) else got == value), name


@pytest.mark.parametrize("value", ["lots", "16X", "4 GBs", "0"])
def test_bad_memory_sizes_are_usage_errors(tmp_path, value):
    with pytest.raises(UsageError, match="is not a memory size"):
        parse_args([str(tmp_path), str(tmp_path / "o"), "participant", "--mem", value])


def test_caches_move_to_tmp_when_home_cannot_be_written(example_bids, tmp_path):
    """A read-only HOME (a container's --no-home) does not break matplotlib or the validator."""
    home = tmp_path / "home"
    home.write_text("")  # not a folder: unwritable for root too
    code = ("import os, sys; from bgs_app.cli.run import main; "
            "rc = main(sys.argv[1:]); "
            "print(os.environ.get('MPLCONFIGDIR'), os.environ.get('DENO_DIR')); sys.exit(rc)")
    env = {k: v for k, v in os.environ.items()
           if k not in {"MPLCONFIGDIR", "DENO_DIR", "XDG_CACHE_HOME"}}
    env.update(HOME=str(home), TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    done = subprocess.run([sys.executable, "-c", code, str(example_bids), str(tmp_path / "o"),
                           "participant", "--boilerplate-only", "--skip-bids-validation"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    mpl, deno = done.stdout.split()[-2:]
    assert mpl.startswith(str(tmp_path / "tmp")) and deno.startswith(str(tmp_path / "tmp"))


def test_help_groups_like_fmriprep():
    titles = [g.title for g in get_parser()._action_groups]
    assert titles[:2] == ["positional arguments", "options"]
    assert "Options for filtering BIDS queries" in titles
    assert "Workflow configuration" in titles


def test_boilerplate_only_and_group_refusals(example_bids, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(example_bids), str(out), "participant", "--boilerplate-only",
                 "--skip-bids-validation", "--registration", "affine"]) == 0
    text = (out / "logs" / "CITATION.md").read_text()
    assert "N4" in text and "SyN" not in text and "[@ants]" in text
    # Every cited work is listed, and in BibTeX too.
    from bgs_app.reports.references import cited

    bib = (out / "logs" / "CITATION.bib").read_text()
    for key in cited(text):
        assert f"- [@{key}] " in text and f"{{{key},\n" in bib, key
    assert "@article{ants," in bib and "[@atropos]" in text
    assert not list(out.glob("sub-*"))  # nothing was run
    capsys.readouterr()
    # The group level needs genotypes (train) or a model (apply).
    assert main([str(example_bids), str(out), "group", "--skip-bids-validation"]) == 64
    assert "--genotypes PLINK_PREFIX" in capsys.readouterr().err
    # Its boilerplate follows the options, without running anything.
    assert main([str(example_bids), str(out), "group", "--boilerplate-only", "--cv-folds",
                 "5", "--covariates", "age", "sex", "--skip-bids-validation"]) == 0
    group = (out / "group" / "CITATION.md").read_text()
    assert "5-fold cross-fitting" in group and "age, sex" in group and "[@sfcn]" in group
    group_bib = (out / "group" / "CITATION.bib").read_text()
    assert "@article{sfcn," in group_bib and "doi = {10.1016/j.media.2020.101871}" in group_bib
    assert group_bib.count("\n@") + 1 == len(cited(group)) == group.count("\n- [@")
    assert not (out / "group" / "scores.tsv").exists()
    # No model-grid images yet: a clear refusal naming the participants.
    assert main([str(example_bids), str(out), "group", "--genotypes", str(tmp_path / "g"),
                 "--skip-bids-validation"]) == 18
    assert "have no model-grid image" in capsys.readouterr().err
    # A folder that is not a model bundle is refused before any work.
    assert main([str(example_bids), str(out), "participant", "--model", str(tmp_path),
                 "--skip-bids-validation"]) == 1
    assert "not a bgs_app model bundle" in capsys.readouterr().err
