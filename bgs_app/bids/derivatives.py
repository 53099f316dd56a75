"""BIDS derivatives: the one place that turns entities, resolutions and SNPs into names.

Every writer and every reader of bgs_app's outputs builds its file names here: the
participant level's sinks, the group level's collection of those outputs and its own
maps, the simulator's oracle and truth, the reports and the benchmarks. So a resolution
is spelt one way (``res-1p5``), a SNP has one label, and the entities always come in
the canonical order. It also writes the derivatives dataset's description and
``.bidsignore``. Nothing here imports pybids, Nipype or torch.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from bgs_app import __version__
from bgs_app.errors import BgsError
from bgs_app.utils.atomic import write_json, write_text

#: Entity order for derivative file names: BIDS's canonical order, with the
#: transform entities (``from``, ``to``, ``mode``) where NiPreps put them and
#: bgs_app's own ``snp`` and ``genotype`` entities just before ``desc``.
ENTITY_ORDER = (
    "sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "part",
    "from", "to", "mode", "space", "res", "den", "label", "snp", "genotype", "desc",
)
ENTITY_ALIASES = {
    "subject": "sub", "session": "ses", "acquisition": "acq", "reconstruction": "rec",
    "ceagent": "ce", "direction": "dir", "resolution": "res", "density": "den",
    "description": "desc",
}
#: Output files outside the BIDS specification, hidden from the validator (a folder by
#: its bare name).
BIDSIGNORE = ("group", "logs", "*_xfm.*", "*_morph.tsv", "*_morph.json", "*_scores.tsv",
              "*_scores.json", "*snp-*", "*.html", "figures", "*_desc-logjacobian_map.*")


def res_label(resolution: float | str) -> str:
    """The ``res-`` label of a model-grid resolution in mm: ``2``, ``1p5``.

    Examples
    --------
    >>> res_label(1.5), res_label(2.0), res_label("4")
    ('1p5', '2', '4')
    """
    return f"{float(resolution):g}".replace(".", "p")


def parse_res_label(label: str) -> float:
    """The resolution in mm of a ``res-`` label (the inverse of :func:`res_label`).

    Examples
    --------
    >>> parse_res_label("1p5")
    1.5
    """
    return float(label.replace("p", "."))


def snp_label(snp: str) -> str:
    """A SNP name as a BIDS label (letters and digits only).

    rsIDs keep their name (``rs429358``). Other separators are kept as ``x``, so
    ``1:12345:A:G`` becomes ``1x12345xAxG`` and ``11:2345:A:G`` ``11x2345xAxG``: names
    that differ only in where their separators are get different labels.
    """
    return re.sub(r"[^A-Za-z0-9]", "x", snp)


def snp_labels(snps: Iterable[str]) -> dict[str, str]:
    """Labels of a run's SNPs, refusing any two that would name the same file.

    Raises
    ------
    BgsError
        Two SNPs have the same label (or labels equal but for case, which a
        case-insensitive file system would confuse); the message names both.
    """
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for snp in snps:
        label = snp_label(snp)
        key = label.lower()
        if key in seen and seen[key] != snp:
            raise BgsError(f"SNPs {seen[key]!r} and {snp!r} would share the file label "
                           f"{label!r}; rename one of them in the genotype files (or leave "
                           "one out of --snps)")
        seen[key] = snp
        out[snp] = label
    return out


def derivative_name(entities: Mapping[str, str | int | float], suffix: str,
                    extension: str, *, needs_sub: bool = True) -> str:
    """File name for a derivative, with entities in the canonical order.

    Parameters
    ----------
    entities : mapping
        Entity names (``sub`` or ``subject`` ...) to labels; ``None`` values are skipped;
        a float ``res`` becomes its :func:`res_label`, a ``snp`` its :func:`snp_label`.
    suffix : str
        e.g. ``T1w``, ``mask``, ``xfm``.
    extension : str
        e.g. ``.nii.gz``.
    needs_sub : bool
        Refuse a name without ``sub`` (False for the group level's own files).

    Returns
    -------
    str

    Examples
    --------
    >>> derivative_name({"sub": "01", "desc": "preproc", "ses": "1"}, "T1w", ".nii.gz")
    'sub-01_ses-1_desc-preproc_T1w.nii.gz'
    >>> derivative_name({"sub": "01", "space": "MNI152NLin2009aSym", "res": 1.5,
    ...                  "desc": "model"}, "T1w", ".nii.gz")
    'sub-01_space-MNI152NLin2009aSym_res-1p5_desc-model_T1w.nii.gz'
    """
    clean = {}
    for key, value in entities.items():
        if value is None:
            continue
        key = ENTITY_ALIASES.get(key, key)
        if key not in ENTITY_ORDER:
            raise ValueError(f"unknown BIDS entity {key!r}")
        if key == "res" or isinstance(value, float):
            value = res_label(value)
        elif key == "snp":
            value = snp_label(str(value))
        clean[key] = str(value)
    if needs_sub and "sub" not in clean:
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


def parse_name(name: str) -> tuple[dict[str, str], str, str]:
    """Entities, suffix and extension of a BIDS-style file name.

    Examples
    --------
    >>> parse_name("sub-01_ses-2_res-1p5_desc-model_T1w.nii.gz")
    ({'sub': '01', 'ses': '2', 'res': '1p5', 'desc': 'model'}, 'T1w', '.nii.gz')
    """
    stem, dot, rest = Path(name).name.partition(".")
    parts = stem.split("_")
    entities = dict(part.split("-", 1) for part in parts[:-1] if "-" in part)
    suffix = parts[-1] if "-" not in parts[-1] else ""
    return entities, suffix, dot + rest


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar of a data file (``x.nii.gz`` or ``x.tsv`` -> ``x.json``)."""
    path = Path(path)
    return path.with_name(path.name.split(".")[0] + ".json")


# --- the participant level's outputs the group level reads -----------------------------

def model_grid_entities(entities: Mapping[str, str], template: str, resolution: float
                        ) -> dict[str, str | float]:
    """The entities of a branch's model-grid image."""
    return {**entities, "space": template, "res": float(resolution), "desc": "model"}


def model_grid_path(output_dir: Path, entities: Mapping[str, str], template: str,
                    resolution: float) -> Path:
    """``OUT/sub-X/[ses-Y/]anat/sub-X_..._space-T_res-R_desc-model_T1w.nii.gz``."""
    return derivative_path(output_dir, model_grid_entities(entities, template, resolution),
                           "T1w", ".nii.gz")


def model_grid_glob(label: str, template: str, resolution: float | None) -> str:
    """A glob (under ``OUT/sub-<label>``, recursive) of a participant's model-grid images
    on one grid, or on any resolution with ``resolution=None``."""
    res = "*" if resolution is None else res_label(resolution)
    return f"**/sub-{label}*_space-{template}_res-{res}_desc-model_T1w.nii.gz"


def branch_entities_of(path: Path) -> dict[str, str]:
    """The raw-image entities (sub, ses, acq, ...) of one of a branch's outputs."""
    entities, _, _ = parse_name(Path(path).name)
    keep = ENTITY_ORDER[:ENTITY_ORDER.index("from")]
    return {k: v for k, v in entities.items() if k in keep}


def idps_path(model_t1w: Path) -> Path:
    """The IDP table written beside a model-grid image by the same branch."""
    model_t1w = Path(model_t1w)
    return model_t1w.with_name(derivative_name({**branch_entities_of(model_t1w),
                                                "desc": "idps"}, "morph", ".tsv"))


def logjacobian_path(model_t1w: Path) -> Path:
    """The log-Jacobian map written beside a model-grid image by the same branch
    (``..._space-T_res-R_desc-logjacobian_map.nii.gz``): the CNN's alternative input
    (``--cnn-input logjacobian``), on the same grid."""
    model_t1w = Path(model_t1w)
    entities, _, _ = parse_name(model_t1w.name)
    return model_t1w.with_name(derivative_name({**entities, "desc": "logjacobian"}, "map",
                                               ".nii.gz"))


LOGJACOBIAN_SIDECAR = {
    "Description": "Log-Jacobian determinant of the nonlinear (SyN) part of the "
                   "registration to the template, on the model grid: the log of the "
                   "subject's local volume relative to the template after the affine "
                   "alignment (tensor-based morphometry; positive = larger). Zero outside "
                   "the brain mask.",
    "Units": "log(volume ratio)",
}


# --- the group level's own files -------------------------------------------------------

def group_map_name(snp: str, desc: str, genotype: int | str | None = None,
                   grid: Mapping | None = None) -> str:
    """A group map of one SNP on the model grid ``grid`` (see
    :func:`bgs_app.grid.grid_metadata`):
    ``space-<template>_res-<r>_snp-<label>[_genotype-<k>]_desc-<desc>_map.nii.gz``, as the
    participant maps are named (without ``grid``, no ``space-``/``res-``)."""
    space = {} if grid is None else {"space": grid["Template"],
                                     "res": float(grid["Resolution"])}
    return derivative_name({**space, "snp": snp, "genotype": genotype, "desc": desc}, "map",
                           ".nii.gz", needs_sub=False)


def group_map_glob(desc: str, snp: str = "*") -> str:
    """A glob of the group maps of every SNP (and genotype class) of one kind, on any
    grid; ``snp`` narrows it to one SNP (its label, see :func:`snp_labels`)."""
    return f"*snp-{snp}_desc-{desc}_map.nii.gz"


def group_regions_name(snp: str, kind: str) -> str:
    """The atlas-region table of a group map: ``snp-<label>_desc-regions_<kind>.tsv``."""
    return derivative_name({"snp": snp, "desc": "regions"}, kind, ".tsv", needs_sub=False)


# --- the derivatives dataset -----------------------------------------------------------

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


#: Labels of ``_dseg.nii.gz`` (the BIDS derivatives example and ``dseg.tsv``): index,
#: name, abbreviation; 0 is background (outside the brain mask).
DSEG_LABELS = ((1, "Gray Matter", "GM"), (2, "White Matter", "WM"),
               (3, "Cerebrospinal Fluid", "CSF"))


def dseg_table() -> str:
    """The look-up table ``dseg.tsv`` of :data:`DSEG_LABELS`."""
    return "index\tname\tabbreviation\n" + "".join(
        f"{i}\t{name}\t{abbr}\n" for i, name, abbr in DSEG_LABELS)


def prepare_derivatives(output_dir: Path, bids_dir: Path | None = None) -> None:
    """Make ``output_dir`` a derivatives dataset: description, ``.bidsignore`` and the
    look-up table ``dseg.tsv`` of every ``_dseg`` image (BIDS inheritance)."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    write_derivative_description(output_dir, bids_dir)
    write_bidsignore(output_dir, BIDSIGNORE)
    table = Path(output_dir) / "dseg.tsv"
    if not table.is_file() or table.read_text() != dseg_table():
        write_text(table, dseg_table())
