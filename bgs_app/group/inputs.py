"""The group level's inputs: the participant level's outputs, the SNPs and the measures.

Collected and checked before anything expensive: every selected participant's model-grid
image on the run's grid (and the IDP table beside it), and every measure and covariate
the associations will use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nb
import pandas as pd

from bgs_app.bids.derivatives import (
    idps_path,
    model_grid_glob,
    parse_name,
    parse_res_label,
    res_label,
)
from bgs_app.config import Config, RunContext
from bgs_app.errors import BgsError, NoDataError, UsageError

LOGGER = logging.getLogger("bgs_app")
#: Fewest complete cases for which an association is estimated (stats.associate's min_n).
MIN_ASSOCIATION_N = 10


@dataclass
class GroupInputs:
    """The participant-level outputs the group level uses.

    Attributes
    ----------
    images : pandas.DataFrame
        One row per model-grid image: ``participant_id``, ``session_id``, ``path``,
        ``idps`` (the IDP table beside it, or None).
    template : str
    resolution : float
    """

    images: pd.DataFrame
    template: str
    resolution: float

    @property
    def participants(self) -> list[str]:
        """The participants with an image, sorted."""
        return sorted(self.images["participant_id"].unique())


def collect_inputs(context: RunContext) -> GroupInputs:
    """Find every selected participant's model-grid image (and IDPs).

    Raises
    ------
    NoDataError
        Some participants have no model-grid image on this grid (they are listed, with
        the grids that do exist when the resolution differs).
    """
    from bgs_app.bids.inputs import get_layout, select_subjects

    config, template = context.config, context.template.name
    labels = select_subjects(get_layout(config.bids_dir, config.bids_database_dir),
                             config.participant_label)
    res = res_label(config.resolution)
    rows, missing = [], []
    for label in labels:
        sub = config.output_dir / f"sub-{label}"
        paths = sorted(set(sub.glob(model_grid_glob(label, template, config.resolution))))
        if not paths:
            missing.append(label)
            continue
        for path in paths:
            idps = idps_path(path)
            rows.append({"participant_id": f"sub-{label}",
                         "session_id": parse_name(path.name)[0].get("ses"), "path": path,
                         "idps": idps if idps.is_file() else None})
    if missing:
        other = sorted({parse_name(p.name)[0].get("res") for p in config.output_dir.glob(
            "sub-*/**/*_desc-model_T1w.nii.gz")} - {None})
        hint = (f" Model-grid images exist at res-{', res-'.join(other)}: pass --resolution "
                f"{parse_res_label(other[0]):g}." if other and res not in other else
                " Run the participant level for them, or leave them out with "
                "--participant-label.")
        shown = ", ".join("sub-" + m for m in missing[:20]) + (" ..." if len(missing) > 20
                                                               else "")
        raise NoDataError(f"{len(missing)} participant(s) have no model-grid image "
                          f"(space-{template}, res-{res}) in {config.output_dir}: {shown}."
                          + hint)
    images = pd.DataFrame(rows)
    shapes = {tuple(nb.load(p).shape[:3]) for p in images["path"]}
    if len(shapes) > 1:
        raise BgsError(f"model-grid images of several shapes {sorted(shapes)}; rerun the "
                       "participant level with one --resolution and template")
    return GroupInputs(images=images, template=template, resolution=config.resolution)


def requested_snps(config: Config) -> list[str]:
    """``--snps``, else ``--snps-file``, else the packaged panel."""
    from bgs_app.genetics import api

    if config.snps:
        return list(config.snps)
    if config.snps_file is not None:
        return api.read_snp_list(config.snps_file)
    return api.default_panel()["snp"].tolist()


def sites(config: Config, ids: list[str]) -> pd.Series | None:
    """The ``site`` column of participants.tsv for ``ids`` (None without one)."""
    table = config.bids_dir / "participants.tsv"
    if not table.is_file():
        return None
    frame = pd.read_csv(table, sep="\t", dtype=str).set_index("participant_id")
    return frame["site"].reindex(ids) if "site" in frame.columns else None


def measures(config: Config) -> list[str]:
    """``--phenotypes``, else every column of ``phenotype/*.tsv``."""
    if config.phenotypes:
        return list(config.phenotypes)
    names = []
    for path in sorted((Path(config.bids_dir) / "phenotype").glob("*.tsv")):
        names += [c for c in pd.read_csv(path, sep="\t", nrows=0).columns
                  if c not in ("participant_id", "session_id")]
    return names


def check_phenotypes(config: Config, participants: list[str]) -> None:
    """Check every measure and covariate the run will test, before any training.

    Raises
    ------
    UsageError
        A column is not found, or a measure or covariate has no value for any of the
        participants.
    """
    from bgs_app.stats import load_phenotypes

    names = measures(config)
    if not names:
        return
    pheno, covs = load_phenotypes(config.bids_dir, names, config.covariates,
                                  nonlinear_age=config.nonlinear_age)
    frames = [("measure", pheno)] + ([("covariate", covs)] if covs is not None else [])
    for what, frame in frames:
        present = frame.reindex(participants).notna().sum()
        empty = [str(c) for c, n in present.items() if n == 0]
        if empty:
            raise UsageError(
                f"{what}(s) {', '.join(empty)} have no value (all n/a or not numeric) for "
                f"any of the {len(participants)} participant(s) with model-grid images; "
                f"fill them in or leave them out (--phenotypes / --covariates)")
        few = {str(c): int(n) for c, n in present.items() if 0 < n < MIN_ASSOCIATION_N}
        if few:
            LOGGER.warning("%s(s) with values for fewer than %d participants (their "
                           "associations cannot be estimated): %s", what.capitalize(),
                           MIN_ASSOCIATION_N, ", ".join(f"{k} ({v})" for k, v in few.items()))
