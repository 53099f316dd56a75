"""The group level's inputs: the participant level's outputs, the SNPs and the measures.

Collected and checked before anything expensive: every selected participant's model-grid
image on the run's grid (and the IDP table beside it), and every measure and covariate
the associations will use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nb
import numpy as np
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
    excluded : dict
        Participants left out of the selection (``sub-<label>``) and why.
    """

    images: pd.DataFrame
    template: str
    resolution: float
    excluded: dict[str, str] = field(default_factory=dict)

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
    layout = get_layout(config.bids_dir, config.bids_database_dir, config.participant_label)
    labels = select_subjects(layout, config.participant_label, config.exclude_label)
    present = set(layout.get_subjects())
    excluded = {f"sub-{label}": "excluded by --exclude-label"
                for label in (config.exclude_label or ()) if label in present}
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
        listed = _list_missing(config, missing)
        hint = (f" Model-grid images exist at res-{', res-'.join(other)}: pass --resolution "
                f"{parse_res_label(other[0]):g}." if other and res not in other else
                " Run the participant level for them, or leave them out with "
                + (f"--exclude-label {listed} (their list)." if listed else
                   "--exclude-label."))
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
    return GroupInputs(images=images, template=template, resolution=config.resolution,
                       excluded=excluded)


def _list_missing(config: Config, missing: list[str]) -> Path | None:
    """Write the participants without outputs to ``logs/`` (for ``--exclude-label``)."""
    path = config.output_dir / "logs" / f"missing-model-grid-{config.run_id}.txt"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"sub-{label}\n" for label in missing))
    except OSError:
        return None  # the message still names them
    return path


def requested_snps(config: Config) -> list[str]:
    """``--snps``, else ``--snps-file``, else the packaged panel."""
    from bgs_app.genetics import api

    if config.snps:
        return list(config.snps)
    if config.snps_file is not None:
        return api.read_snp_list(config.snps_file)
    return api.default_panel()["snp"].tolist()


def tested_snps(config: Config) -> list[str]:
    """The SNPs the run tests: a released model's, else the requested ones."""
    if config.model is not None:
        from bgs_app.model.bundle import read_bundle

        return [s["snp"] for s in read_bundle(config.model)["snps"]]
    return requested_snps(config)


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


#: Covariates used when ``--covariates`` is not given, those of them the tables have.
DEFAULT_COVARIATES = ("age", "sex", "site")
#: Covariates taken from the participant level's IDP tables when the tables lack them.
IDP_COVARIATES = ("etiv", "tiv", "brain_volume", "gm_volume", "wm_volume", "csf_volume")


@dataclass
class CovariatePlan:
    """Where each covariate of the associations comes from.

    Attributes
    ----------
    table : list of str
        Columns of participants.tsv or phenotype/*.tsv.
    idp : list of str
        Columns of the IDP tables (e.g. ``etiv``; participant mean over sessions).
    pc_columns : list of str
        Precomputed genetic PCs, columns of the tables (``pc1`` ... ``pcK``).
    compute_pcs : int
        PCs to compute from ``--pca-genotypes`` (0: none).
    """

    table: list[str]
    idp: list[str]
    pc_columns: list[str]
    compute_pcs: int

    @property
    def names(self) -> list[str]:
        """Every covariate, in the order they enter the models."""
        pcs = [f"PC{i + 1}" for i in range(self.compute_pcs)]
        return [*self.table, *self.pc_columns, *self.idp, *pcs]


def plan_covariates(config: Config, inputs: GroupInputs | None = None, *,
                    log: bool = True) -> CovariatePlan:
    """Resolve ``--covariates`` and ``--genetic-pcs`` against the tables (and the IDPs).

    Raises
    ------
    UsageError
        A covariate is in neither the tables nor the IDP tables; genetic PCs are asked
        for without precomputed columns or a genome-wide ``--pca-genotypes`` file.
    """
    from bgs_app.stats.phenotypes import read_tables

    columns = set(read_tables(config.bids_dir, session=config.phenotype_session).columns)
    if config.covariates is None:
        names = [c for c in DEFAULT_COVARIATES if c in columns]
        if names and log:
            LOGGER.info("Covariates: %s (the default where the tables have them; "
                        "--covariates to choose)", ", ".join(names))
    else:
        names = list(config.covariates)
    idp_columns: set[str] = set()
    if inputs is not None:
        for path in inputs.images["idps"].dropna():
            idp_columns |= set(pd.read_csv(path, sep="\t", nrows=0).columns)
            break
    table = [c for c in names if c in columns or c not in idp_columns]
    idp = [c for c in names if c not in columns and c in idp_columns]
    pc_columns, compute = [], 0
    if config.genetic_pcs:
        wanted = [f"pc{i + 1}" for i in range(config.genetic_pcs)]
        lower = {c.lower(): c for c in columns}
        if all(w in lower for w in wanted):
            pc_columns = [lower[w] for w in wanted if lower[w] not in table]
            if log:
                LOGGER.info("Genetic PCs: the precomputed columns %s", ", ".join(pc_columns))
        elif config.pca_genotypes is None:
            raise UsageError(
                f"--genetic-pcs {config.genetic_pcs} needs either columns pc1 ... "
                f"pc{config.genetic_pcs} in participants.tsv (or phenotype/*.tsv) or a "
                "genome-wide, LD-thinned fileset to compute them from (--pca-genotypes); "
                "PCs are never computed from the tested SNPs")
        else:
            compute = config.genetic_pcs
    return CovariatePlan(table=table, idp=idp, pc_columns=pc_columns, compute_pcs=compute)


def covariate_frame(context: RunContext, plan: CovariatePlan, inputs: GroupInputs,
                    participants: list[str], tested: pd.DataFrame | None = None
                    ) -> pd.DataFrame | None:
    """The covariates the tables do not hold: IDPs, and PCs computed here.

    Parameters
    ----------
    context : RunContext
    plan : CovariatePlan
    inputs : GroupInputs
    participants : list of str
        Whom the PCs are computed for.
    tested : pandas.DataFrame, optional
        The tested SNPs (``snp``, ``chrom``, ``pos``): left out of the PCs with their
        surroundings.
    """
    frames = []
    if plan.idp:
        frames.append(idp_covariates(inputs, plan.idp))
    if plan.compute_pcs:
        from bgs_app.genetics.pca import genetic_pcs

        config = context.config
        frames.append(genetic_pcs(config.pca_genotypes, plan.compute_pcs, participants,
                                  id_map=config.genotype_id_map, seed=config.seed,
                                  exclude=tested))
    if not frames:
        return None
    out = pd.concat(frames, axis=1)
    out.index.name = "participant_id"
    return out


def idp_covariates(inputs: GroupInputs, names: list[str]) -> pd.DataFrame:
    """IDP columns (e.g. ``etiv``) per participant, averaged over its sessions."""
    tables = [pd.read_csv(p, sep="\t", na_values="n/a") for p in inputs.images["idps"].dropna()]
    return pd.concat(tables, ignore_index=True).groupby("participant_id")[names].mean()


def check_phenotypes(config: Config, participants: list[str],
                     inputs: GroupInputs | None = None) -> None:
    """Check every measure and covariate the run will test, before any training.

    Raises
    ------
    UsageError
        A column is not found, or a measure or covariate has no value for any of the
        participants.
    """
    from bgs_app.stats import load_phenotypes

    names = measures(config)
    ancestry_groups(config, participants, inputs)  # refuse a wrong column before training
    if not names:
        return
    plan = plan_covariates(config, inputs)
    if plan.compute_pcs:  # refuse a file PCs cannot come from before any training
        from bgs_app.genetics.pca import pca_snps

        pca_snps(config.pca_genotypes, pd.DataFrame({"snp": tested_snps(config)}))
    extra = idp_covariates(inputs, plan.idp) if plan.idp and inputs is not None else None
    sessions = None if inputs is None else image_sessions(inputs)
    pheno, covs = load_phenotypes(config.bids_dir, names, plan.table + plan.pc_columns,
                                  nonlinear_age=config.nonlinear_age, extra_covariates=extra,
                                  session=config.phenotype_session, image_sessions=sessions)
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


def ancestry_groups(config: Config, participants: list[str],
                    inputs: GroupInputs | None = None) -> pd.Series | None:
    """``--ancestry-column``: each participant's ancestry group (None without it).

    Raises
    ------
    UsageError
        The column is not found, or names no group for any of the participants.
    """
    from bgs_app.stats.phenotypes import read_tables

    if not config.ancestry_column:
        return None
    sessions = None if inputs is None else image_sessions(inputs)
    table = read_tables(config.bids_dir, session=config.phenotype_session,
                        image_sessions=sessions)
    if config.ancestry_column not in table.columns:
        raise UsageError(f"--ancestry-column {config.ancestry_column}: no such column in "
                         "participants.tsv or phenotype/*.tsv; available: "
                         f"{', '.join(map(str, table.columns))}")
    groups = table[config.ancestry_column].reindex(participants)
    if groups.notna().sum() == 0:
        raise UsageError(f"--ancestry-column {config.ancestry_column} names no group for "
                         f"any of the {len(participants)} participant(s) with model-grid "
                         "images")
    return groups


def image_sessions(inputs: GroupInputs) -> dict[str, list[str]]:
    """Participant -> the sessions of its model-grid images."""
    out: dict[str, list[str]] = {}
    for pid, ses in zip(inputs.images["participant_id"], inputs.images["session_id"],
                        strict=True):
        if ses is not None and not (isinstance(ses, float) and np.isnan(ses)):
            out.setdefault(pid, []).append(str(ses))
    return out
