"""BIDS inputs and derivatives: pybids queries, selection, validation, naming, writing.

Inputs are queried with pybids; the dataset is validated with
``bids-validator-deno``; outputs form a BIDS derivatives dataset whose file names
carry their entities in the canonical order.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bgs_app import __version__
from bgs_app.errors import BgsError, BidsInvalidError, NoDataError, UsageError
from bgs_app.utils.atomic import write_json, write_text

LOGGER = logging.getLogger("bgs_app")

#: Entity order for derivative file names: BIDS's canonical order, with the
#: transform entities (``from``, ``to``, ``mode``) where NiPreps put them and
#: bgs_app's own ``snp`` entity just before ``desc``.
ENTITY_ORDER = (
    "sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "part",
    "from", "to", "mode", "space", "res", "den", "label", "snp", "desc",
)
ENTITY_ALIASES = {
    "subject": "sub", "session": "ses", "acquisition": "acq", "reconstruction": "rec",
    "ceagent": "ce", "direction": "dir", "resolution": "res", "density": "den",
    "description": "desc",
}

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


def get_layout(bids_dir: Path, database_dir: Path | None = None):
    """Index a BIDS dataset with pybids (reusing a database folder when given).

    Parameters
    ----------
    bids_dir : pathlib.Path
    database_dir : pathlib.Path, optional
        Where pybids stores its index, so that later runs skip indexing.

    Returns
    -------
    bids.BIDSLayout
    """
    from bids import BIDSLayout, BIDSLayoutIndexer

    kwargs = {}
    if database_dir is not None:
        Path(database_dir).mkdir(parents=True, exist_ok=True)
        kwargs["database_path"] = str(database_dir)
    indexer = BIDSLayoutIndexer(validate=False, index_metadata=False,
                                ignore=["derivatives", "sourcedata", "code", "genetics",
                                        "phenotype", "stimuli"])
    try:
        return BIDSLayout(str(bids_dir), indexer=indexer, **kwargs)
    except Exception as err:  # pybids raises several error types for broken datasets
        raise BidsInvalidError(f"pybids cannot index {bids_dir}: {err}") from err


def select_subjects(layout, labels: Iterable[str] | None) -> list[str]:
    """Participants to process: the requested labels, or all of the dataset's.

    Raises
    ------
    NoDataError
        A requested label is absent (the message lists those present) or the
        dataset has no participants.
    """
    available = sorted(layout.get_subjects())
    if not available:
        raise NoDataError(f"no sub-<label> folders found in {layout.root}")
    if not labels:
        return available
    labels = list(labels)
    missing = [label for label in labels if label not in available]
    if missing:
        shown = ", ".join(available[:30]) + (" ..." if len(available) > 30 else "")
        raise NoDataError(
            f"participant(s) {', '.join('sub-' + m for m in missing)} not found in "
            f"{layout.root}. Present: {shown}. {MOUNT_HINT}")
    return labels


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


def derivative_name(entities: Mapping[str, str | int | float], suffix: str,
                    extension: str) -> str:
    """File name for a derivative, with entities in the canonical order.

    Parameters
    ----------
    entities : mapping
        Entity names (``sub`` or ``subject`` ...) to labels; ``None`` values are skipped.
    suffix : str
        e.g. ``T1w``, ``mask``, ``xfm``.
    extension : str
        e.g. ``.nii.gz``.

    Returns
    -------
    str

    Examples
    --------
    >>> derivative_name({"sub": "01", "desc": "preproc", "ses": "1"}, "T1w", ".nii.gz")
    'sub-01_ses-1_desc-preproc_T1w.nii.gz'
    """
    clean = {}
    for key, value in entities.items():
        if value is None:
            continue
        key = ENTITY_ALIASES.get(key, key)
        if key not in ENTITY_ORDER:
            raise ValueError(f"unknown BIDS entity {key!r}")
        if isinstance(value, float):
            value = f"{value:g}".replace(".", "p")
        clean[key] = str(value)
    if "sub" not in clean:
        raise ValueError("a derivative name needs a 'sub' entity")
    parts = [f"{key}-{clean[key]}" for key in ENTITY_ORDER if key in clean]
    if not extension.startswith("."):
        extension = "." + extension
    return "_".join([*parts, suffix]) + extension


def derivative_path(output_dir: Path, entities: Mapping[str, str | int | float], suffix: str,
                    extension: str, datatype: str = "anat") -> Path:
    """Full path of a derivative: ``OUT/sub-X[/ses-Y]/<datatype>/<name>``.

    Examples
    --------
    >>> derivative_path(Path("/out"), {"sub": "01", "ses": "2", "run": 1,
    ...                 "from": "T1w", "to": "MNI152NLin2009aSym", "mode": "image"},
    ...                 "xfm", ".mat").as_posix()
    '/out/sub-01/ses-2/anat/sub-01_ses-2_run-1_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.mat'
    """
    name = derivative_name(entities, suffix, extension)
    sub = entities.get("sub", entities.get("subject"))
    ses = entities.get("ses", entities.get("session"))
    folder = Path(output_dir) / f"sub-{sub}"
    if ses is not None:
        folder = folder / f"ses-{ses}"
    return folder / datatype / name


def container_info() -> dict[str, str] | None:
    """The container bgs_app runs in, as BIDS's ``GeneratedBy.Container``, or None."""
    if os.getenv("APPTAINER_NAME") or os.getenv("SINGULARITY_NAME"):
        return {"Type": "singularity",
                "Tag": os.getenv("APPTAINER_NAME") or os.getenv("SINGULARITY_NAME")}
    if os.getenv("BGS_APP_CONTAINER") or Path("/.dockerenv").exists() or Path(
            "/run/.containerenv").exists():
        return {"Type": "docker", "Tag": os.getenv("BGS_APP_CONTAINER", f"bgs_app:{__version__}")}
    return None


def write_derivative_description(output_dir: Path, bids_dir: Path | None = None,
                                 name: str = "bgs_app") -> Path:
    """Write ``dataset_description.json`` for the derivatives dataset at ``output_dir``.

    Parameters
    ----------
    output_dir : pathlib.Path
    bids_dir : pathlib.Path, optional
        The source dataset, named in ``SourceDatasets`` (with its DOI when it has one).
    name : str
        Pipeline name.

    Returns
    -------
    pathlib.Path
    """
    generated = {"Name": name, "Version": __version__,
                 "CodeURL": "https://github.com/bgs-app/bgs_app"}
    container = container_info()
    if container:
        generated["Container"] = container
    desc = {
        "Name": f"{name} outputs",
        "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "HowToAcknowledge": "Please cite bgs_app and the references in the reports' "
                            "methods section.",
    }
    if bids_dir is not None:
        source: dict[str, str] = {"URL": Path(bids_dir).absolute().as_uri()}
        src_desc = Path(bids_dir) / "dataset_description.json"
        if src_desc.is_file():
            try:
                doi = json.loads(src_desc.read_text()).get("DatasetDOI")
            except json.JSONDecodeError:
                doi = None
            if doi:
                source = {"DOI": doi}
        desc["SourceDatasets"] = [source]
        # Sidecars name their sources as bids:raw:<path>.
        desc["DatasetLinks"] = {"raw": Path(bids_dir).absolute().as_uri()}
    return write_json(Path(output_dir) / "dataset_description.json", desc)


def write_bidsignore(output_dir: Path, patterns: Iterable[str]) -> Path:
    """Add ``patterns`` to ``output_dir/.bidsignore`` (keeping lines already there)."""
    path = Path(output_dir) / ".bidsignore"
    lines = path.read_text().splitlines() if path.is_file() else []
    for pattern in patterns:
        if pattern not in lines:
            lines.append(pattern)
    return write_text(path, "\n".join(lines) + "\n")
