"""Group-level orchestration: train (``--genotypes``) or apply (``--model``).

Stages, each with its own outputs under ``OUT_DIR/group/``:

1. collect the participant-level model-grid images (refusing missing or mismatched ones)
2. genotypes: read, match and QC (``genotype_qc.tsv``, ``subjects.tsv``)
3. split (``split.tsv``): held-out test set, or ``--cv-folds`` cross-fitting folds
4. tensor store (work folder), then training (checkpoints in the work folder, resumed
   after an interruption) and the model bundle(s) (``model/``)
5. scores of every subject by the model that did not see it (``scores.tsv``) and test
   performance (``performance.tsv``)
6. group saliency per SNP (``saliency/``)
7. the IDP baseline on the same split (``idp_scores.tsv``, rows of ``performance.tsv``)
8. associations with cognition (``associations.tsv``)
9. the report (``report.html``) and the methods boilerplate (``CITATION.md``)

A rerun skips a stage whose inputs did not change (a stamp in the work folder records
what each stage was made from) and resumes training from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nb
import pandas as pd

from bgs_app.config import Config
from bgs_app.errors import BgsError, NoDataError, UsageError
from bgs_app.utils.atomic import write_json, write_tsv

LOGGER = logging.getLogger("bgs_app")


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


def group_dir(config: Config) -> Path:
    """``OUT_DIR/group``."""
    return config.output_dir / "group"


def group_work_dir(config: Config) -> Path:
    """Where the tensor store, checkpoints and stage stamps live."""
    from bgs_app.workflows.execute import work_dir

    return work_dir(config) / "group"


def collect_inputs(config: Config, template: str) -> GroupInputs:
    """Find every selected participant's model-grid image (and IDPs).

    Raises
    ------
    NoDataError
        Some participants have no model-grid image on this grid (they are listed, with
        the grids that do exist when the resolution differs).
    """
    from bgs_app.bids import get_layout, select_subjects

    labels = select_subjects(get_layout(config.bids_dir, config.bids_database_dir),
                             config.participant_label)
    res = f"{config.resolution:g}"
    rows, missing = [], []
    for label in labels:
        sub = config.output_dir / f"sub-{label}"
        pattern = f"sub-{label}*_space-{template}_res-{res}_desc-model_T1w.nii.gz"
        paths = sorted({p for p in sub.glob(f"**/{pattern}")})
        if not paths:
            missing.append(label)
            continue
        for path in paths:
            session = next((part[4:] for part in path.name.split("_")
                            if part.startswith("ses-")), None)
            idps = Path(str(path).replace(f"_space-{template}_res-{res}_desc-model_T1w.nii.gz",
                                          "_desc-idps_morph.tsv"))
            rows.append({"participant_id": f"sub-{label}", "session_id": session,
                         "path": path, "idps": idps if idps.is_file() else None})
    if missing:
        other = sorted({p.name.split("_res-")[1].split("_")[0] for p in
                        config.output_dir.glob("sub-*/**/*_desc-model_T1w.nii.gz")})
        hint = (f" Model-grid images exist at res {', '.join(other)}: pass --resolution "
                f"{other[0]}." if other and res not in other else
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


def _digest(*parts) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _stamp_ok(stamp: Path, digest: str, outputs: list[Path]) -> bool:
    if not stamp.is_file() or not all(p.exists() for p in outputs):
        return False
    return json.loads(stamp.read_text()).get("digest") == digest


def _write_stamp(stamp: Path, digest: str) -> None:
    write_json(stamp, {"digest": digest})


def _device(config: Config) -> str:
    import torch

    if config.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return config.device


def _snps(config: Config) -> list[str]:
    from bgs_app.genetics import api

    if config.snps:
        return list(config.snps)
    if config.snps_file is not None:
        return api.read_snp_list(config.snps_file)
    return api.default_panel()["snp"].tolist()


def _sites(config: Config, ids: list[str]) -> pd.Series | None:
    table = config.bids_dir / "participants.tsv"
    if not table.is_file():
        return None
    frame = pd.read_csv(table, sep="\t", dtype=str).set_index("participant_id")
    return frame["site"].reindex(ids) if "site" in frame.columns else None


def _measures(config: Config) -> list[str]:
    if config.phenotypes:
        return list(config.phenotypes)
    names = []
    for path in sorted((config.bids_dir / "phenotype").glob("*.tsv")):
        names += [c for c in pd.read_csv(path, sep="\t", nrows=0).columns
                  if c not in ("participant_id", "session_id")]
    return names


def refuse_mixing(config: Config) -> None:
    """Apply mode must not write into a folder that holds training results.

    Raises
    ------
    UsageError
        ``OUT_DIR/group`` holds a model trained there (``model/``, ``split.tsv``).
    """
    out = group_dir(config)
    trained = [p for p in (out / "model", out / "split.tsv") if p.exists()]
    if trained:
        raise UsageError(
            f"{out} holds the results of training ({', '.join(p.name for p in trained)}); "
            "applying a model there would overwrite its scores, associations and report "
            "with another analysis. Write apply-mode results to another output folder "
            "(a second derivatives folder for this site)")


def check_phenotypes(config: Config, participants: list[str]) -> None:
    """Check every measure and covariate the run will test, before any training.

    Raises
    ------
    UsageError
        A column is not found, or a measure or covariate has no value for any of the
        participants.
    """
    from bgs_app.stats import load_phenotypes

    measures = _measures(config)
    if not measures:
        return
    pheno, covs = load_phenotypes(config.bids_dir, measures, config.covariates,
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


#: Fewest complete cases for which an association is estimated (stats.associate's min_n).
MIN_ASSOCIATION_N = 10


def run_group_level(config: Config) -> int:
    """Run the group level for ``config``; return the exit code."""
    from bgs_app.participant import prepare_output
    from bgs_app.templates import get_template

    if config.genotypes is None and config.model is None and not (
            config.boilerplate_only or config.reports_only):
        raise UsageError("the group level needs --genotypes PLINK_PREFIX (train a model) or "
                         "--model MODEL_DIR (apply a released model)")
    template = get_template(config.template, str(config.template_mask)
                            if config.template_mask else None)
    out = group_dir(config)
    prepare_output(config)
    out.mkdir(parents=True, exist_ok=True)
    if config.boilerplate_only:
        from bgs_app.reports.boilerplate import write_group_boilerplate

        LOGGER.info("Methods boilerplate written to %s",
                    write_group_boilerplate(config, template.name, out))
        return 0
    if config.reports_only:
        from bgs_app.reports.group import write_group_report

        LOGGER.info("Report written to %s", write_group_report(config, template.name, out))
        return 0
    if config.model is not None:
        refuse_mixing(config)
    from bgs_app.bids import ensure_writable

    ensure_writable(group_work_dir(config), "group work folder",
                    "pass a writable work folder with -w")
    inputs = collect_inputs(config, template.name)
    LOGGER.info("Group level: %d model-grid image(s) of %d participant(s)",
                len(inputs.images), inputs.images["participant_id"].nunique())
    check_phenotypes(config, sorted(inputs.images["participant_id"].unique()))
    if config.model is not None:
        from bgs_app.group_apply import apply_model

        apply_model(config, inputs, template)
    else:
        from bgs_app.group_train import train_and_score

        if int(os.environ.get("RANK", "0")) != 0:
            train_and_score(config, inputs, template, rank_only=True)
            return 0
        train_and_score(config, inputs, template)
    from bgs_app.reports.boilerplate import write_group_boilerplate
    from bgs_app.reports.group import write_group_report

    write_group_boilerplate(config, template.name, out)
    report = write_group_report(config, template.name, out)
    LOGGER.info("Group level finished; report: %s", report)
    return 0


def write_table(frame: pd.DataFrame, path: Path, columns: dict, extra: dict | None = None
                ) -> Path:
    """A group TSV with a JSON sidecar describing its columns."""
    write_tsv(frame, path)
    write_json(path.with_suffix(".json"),
               {**{c: columns[c] for c in frame.columns if c in columns}, **(extra or {})})
    return path


SPLIT_COLUMNS = {
    "participant_id": {"Description": "BIDS participant label"},
    "split": {"Description": "train, val (early stopping) or test (held out); or "
                             "fold-<k> with cross-fitting (scored by the model trained "
                             "without fold k)"},
}
