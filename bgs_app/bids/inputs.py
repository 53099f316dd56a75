"""BIDS inputs: the folders of a run, validation, pybids queries, participant selection.

The dataset is validated with ``bids-validator-deno`` and queried with pybids; what is
written goes through :mod:`bgs_app.bids.derivatives`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bgs_app.errors import BgsError, BidsInvalidError, NoDataError, UsageError

LOGGER = logging.getLogger("bgs_app")

#: Default pybids query for the T1-weighted images.
T1W_QUERY = {"datatype": "anat", "suffix": "T1w", "extension": [".nii", ".nii.gz"]}

#: What a user sees when a path cannot be found inside a container.
MOUNT_HINT = ("If you run bgs_app in a container, check that the folder is mounted "
              "(docker -v / singularity -B) at the path you give.")


@dataclass(frozen=True)
class T1wInput:
    """One T1-weighted image selected for processing."""

    subject: str
    session: str | None
    path: Path
    entities: Mapping[str, str]

    @property
    def key(self) -> str:
        """``sub-<label>[_ses-<label>]``: the name of this branch of the analysis."""
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")


def check_paths(bids_dir: Path, output_dir: Path, work_dir: Path | None = None) -> None:
    """Refuse input/output/work folders that cannot work together.

    Parameters
    ----------
    bids_dir, output_dir : pathlib.Path
        Input dataset and output folder.
    work_dir : pathlib.Path, optional
        Nipype work folder.

    Raises
    ------
    UsageError
        The input does not exist or is not a dataset; the output is the input or
        inside it (other than under ``derivatives/``); the work folder is inside the
        input.
    """
    bids_dir = Path(bids_dir).absolute()
    output_dir = Path(output_dir).absolute()
    if not bids_dir.is_dir():
        raise UsageError(f"BIDS folder {bids_dir} does not exist. {MOUNT_HINT}", exit_code=1)
    if not (bids_dir / "dataset_description.json").is_file():
        raise BidsInvalidError(
            f"{bids_dir} is not a BIDS dataset: dataset_description.json is missing at its "
            "top level (give the dataset's root folder).")
    resolved_in, resolved_out = bids_dir.resolve(), output_dir.resolve()
    if resolved_out == resolved_in:
        raise UsageError("the output folder is the input BIDS folder; choose another folder "
                         "(e.g. BIDS_DIR/derivatives/bgs_app)")
    if resolved_in in resolved_out.parents and (resolved_in / "derivatives") not in [
            resolved_out, *resolved_out.parents]:
        raise UsageError(f"the output folder {output_dir} is inside the input dataset; use a "
                         "folder outside it or under its derivatives/ folder")
    if work_dir is not None:
        resolved_work = Path(work_dir).resolve()
        if resolved_work == resolved_in or resolved_in in resolved_work.parents:
            raise UsageError(f"the work folder {work_dir} is inside the input dataset; "
                             "choose a folder outside it")
        ensure_writable(Path(work_dir), "work folder (-w)")


def ensure_writable(folder: Path, what: str,
                    hint: str = "give a writable folder (in a container: bind a writable "
                                "host folder and pass its path)") -> Path:
    """Create ``folder`` if needed and check that files can be written in it.

    Raises
    ------
    UsageError
        It cannot be created or written (the message names it and the fix).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".bgs_app-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UsageError(f"the {what} {folder} cannot be written ({err.strerror or err}); "
                         f"{hint}") from err
    return folder


def validate_dataset(bids_dir: Path, *, executable: str = "bids-validator-deno") -> list[str]:
    """Validate a BIDS dataset with ``bids-validator-deno``.

    Parameters
    ----------
    bids_dir : pathlib.Path
        Root of the dataset.
    executable : str
        Validator command.

    Returns
    -------
    list of str
        The validator's warnings, one line per warning code.

    Raises
    ------
    BidsInvalidError
        The dataset has errors (exit code 16); the message lists them.
    BgsError
        The validator cannot be run.
    """
    # The validator is installed with bgs_app; look beside the interpreter too, for
    # environments whose bin/ folder is not on PATH.
    exe = shutil.which(executable) or shutil.which(executable,
                                                   path=str(Path(sys.executable).parent))
    if exe is None:
        raise BgsError(f"the BIDS validator ({executable}) is not installed; install it "
                       "(pip install bids-validator-deno) or pass --skip-bids-validation")
    proc = subprocess.run([exe, "--format", "json", str(bids_dir)], capture_output=True,
                          text=True, check=False)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        raise BgsError(f"the BIDS validator failed to run (exit {proc.returncode}): "
                       f"{(proc.stderr or proc.stdout).strip()[:2000]}") from err
    errors, warnings = [], {}
    for issue in report.get("issues", {}).get("issues", []):
        code = issue.get("code")
        if issue.get("severity") == "error":
            line = f"{code}: {issue.get('issueMessage') or issue.get('subCode') or ''}"
            location = issue.get("location")
            errors.append(f"{line.rstrip(': ')} ({location})" if location else line.rstrip(": "))
        else:
            warnings[code] = warnings.get(code, 0) + 1
    if errors:
        shown = "\n  ".join(_unique(errors)[:20])
        more = len(_unique(errors)) - 20
        raise BidsInvalidError(
            f"the BIDS validator found {len(errors)} error(s) in {bids_dir}:\n  {shown}"
            + (f"\n  ... and {more} more" if more > 0 else "")
            + "\nFix them, or pass --skip-bids-validation to run anyway.")
    return [f"{code} ({count} file(s) or field(s))" for code, count in warnings.items()]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def get_layout(bids_dir: Path, database_dir: Path | None = None,
               subjects: Iterable[str] | None = None):
    """Index a BIDS dataset with pybids (reusing a database folder when given).

    Parameters
    ----------
    bids_dir : pathlib.Path
    database_dir : pathlib.Path, optional
        Where pybids stores its index, so that later runs skip indexing.
    subjects : iterable of str, optional
        Labels (``--participant-label``): without a database folder only their folders
        are indexed (as fMRIPrep does), so that each task of a job array over 40,000
        participants does not index them all. A database folder is always a full index
        (it is built once and shared).

    Returns
    -------
    bids.BIDSLayout
    """
    from bids import BIDSLayout, BIDSLayoutIndexer

    kwargs = {}
    if database_dir is not None:
        Path(database_dir).mkdir(parents=True, exist_ok=True)
        kwargs["database_path"] = str(database_dir)
    ignore: list = ["derivatives", "sourcedata", "code", "genetics", "phenotype", "stimuli"]
    labels = sorted(set(subjects or ()))
    if labels and database_dir is None:
        wanted = "|".join(map(re.escape, labels))
        ignore.append(re.compile(rf"sub-(?!({wanted})(\b|_))"))
    indexer = BIDSLayoutIndexer(validate=False, index_metadata=False, ignore=ignore)
    try:
        return BIDSLayout(str(bids_dir), indexer=indexer, **kwargs)
    except Exception as err:  # pybids raises several error types for broken datasets
        raise BidsInvalidError(f"pybids cannot index {bids_dir}: {err}") from err


def select_subjects(layout, labels: Iterable[str] | None,
                    exclude: Iterable[str] | None = None) -> list[str]:
    """Participants to process: the requested labels, or all of the dataset's, less those
    excluded.

    Parameters
    ----------
    layout : bids.BIDSLayout
    labels : iterable of str, optional
        ``--participant-label`` (without ``sub-``); default every participant.
    exclude : iterable of str, optional
        ``--exclude-label``: left out of the selection. Labels that the dataset does not
        have are ignored with a warning (a QC list may cover a larger cohort).

    Raises
    ------
    NoDataError
        A requested label is absent (the message lists those present), the
        dataset has no participants, or every selected participant is excluded.
    """
    indexed = sorted(layout.get_subjects())
    # The index may hold only the requested participants (get_layout): the folders say
    # which exist.
    available = sorted({p.name[4:] for p in Path(layout.root).glob("sub-*") if p.is_dir()}
                       | set(indexed))
    if not available:
        raise NoDataError(f"no sub-<label> folders found in {layout.root}")
    selected = indexed if not labels else list(labels)
    missing = [label for label in selected if label not in indexed]
    if missing:
        shown = ", ".join(available[:30]) + (" ..." if len(available) > 30 else "")
        raise NoDataError(
            f"participant(s) {', '.join('sub-' + m for m in missing)} not found in "
            f"{layout.root}. Present: {shown}. {MOUNT_HINT}")
    excluded = set(exclude or ())
    if excluded:
        unknown = sorted(excluded - set(available))
        if unknown:
            LOGGER.warning("--exclude-label: %d label(s) not in the dataset, ignored: %s",
                           len(unknown), ", ".join("sub-" + u for u in unknown[:20]))
        left = [label for label in selected if label not in excluded]
        LOGGER.info("--exclude-label leaves out %d of %d selected participant(s)",
                    len(selected) - len(left), len(selected))
        if not left:
            raise NoDataError("every selected participant is excluded by --exclude-label")
        selected = left
    return selected


def collect_t1w(layout, subjects: Iterable[str], sessions: Iterable[str] | None = None,
                filters: Mapping[str, Mapping] | None = None) -> list[T1wInput]:
    """Select the T1-weighted images of ``subjects`` (and ``sessions``).

    Parameters
    ----------
    layout : bids.BIDSLayout
    subjects : iterable of str
        Participant labels without ``sub-``.
    sessions : iterable of str, optional
        Session labels without ``ses-``; default all.
    filters : mapping, optional
        ``--bids-filter-file`` content; its ``t1w`` query refines the default one.

    Returns
    -------
    list of T1wInput
        One entry per image, sorted by subject, session and file name.

    Raises
    ------
    NoDataError
        The query matched no image at all.
    """
    query = dict(T1W_QUERY)
    query.update((filters or {}).get("t1w", {}))
    if sessions:
        query["session"] = list(sessions)
    found: list[T1wInput] = []
    for subject in subjects:
        for bidsfile in layout.get(subject=subject, return_type="object", **query):
            entities = {k: str(v) for k, v in bidsfile.get_entities().items()
                        if isinstance(v, str | int)}
            found.append(T1wInput(subject=subject, session=entities.get("session"),
                                  path=Path(bidsfile.path), entities=entities))
    if not found:
        raise NoDataError(
            f"no T1w image matched the query {query} for participant(s) "
            f"{', '.join(subjects)}; check --participant-label, --session-label and "
            "--bids-filter-file")
    return sorted(found, key=lambda t: (t.subject, t.session or "", t.path.name))
