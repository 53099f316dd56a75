"""The group level: train (``--genotypes``) or apply (``--model``), as a sequence of stages.

Each stage is a module named after what it writes under ``OUT_DIR/group/``:

1. :mod:`~bgs_app.group.inputs`: the participant level's model-grid images (refusing
   missing or mismatched ones), checked measures and covariates
   and :mod:`~bgs_app.group.qc`: each image's quality measures and the cohort's
   outliers (``qc.tsv``, ``qc_outliers.txt``)
2. :mod:`~bgs_app.group.genotypes`: read, match and QC (``genotype_qc.tsv``,
   ``subjects.tsv``)
3. :mod:`~bgs_app.group.split`: ``split.tsv`` (a held-out test set, or ``--cv-folds``
   cross-fitting folds) and the models it defines
4. :mod:`~bgs_app.group.training`: the tensor store (work folder), training (checkpoints
   in the work folder, resumed after an interruption) and the bundles (``model/``)
5. :mod:`~bgs_app.group.scores`: every image scored by the model that did not see it
   (``scores.tsv``) and the CNN's held-out performance
6. :mod:`~bgs_app.group.saliency`: group maps per SNP (``saliency/``)
7. :mod:`~bgs_app.group.baseline`: the IDP baseline on the same split (``idp_scores.tsv``),
   :mod:`~bgs_app.group.voxel_baseline`: the voxel-ridge one (``voxel_scores.tsv``), and
   :mod:`~bgs_app.group.voxelwise`: the voxelwise genotype test (``voxelwise.tsv``)
8. :mod:`~bgs_app.group.associations`: ``performance.tsv`` and ``associations.tsv``,
   and :mod:`~bgs_app.group.sumstats`: ``sumstats/<measure>.tsv`` (plink2 --glm columns)
9. :mod:`~bgs_app.group.report`: ``report.html`` and ``CITATION.md``

:mod:`~bgs_app.group.apply` runs the same stages for a released model. A rerun skips a
stage whose inputs did not change (:mod:`~bgs_app.group.stage`) and resumes training from
its last checkpoint. This module only orchestrates; no stage imports it.
"""

from __future__ import annotations

import logging

from bgs_app.config import Config, RunContext, resolve_context
from bgs_app.errors import UsageError

LOGGER = logging.getLogger("bgs_app")


def run_group_level(config: Config, context: RunContext | None = None) -> int:
    """Run the group level for ``config``; return the exit code.

    Parameters
    ----------
    config : Config
    context : RunContext, optional
        Resolved from ``config`` (template, device, ``torchrun`` rank) when not given.
    """
    from bgs_app.bids.derivatives import prepare_derivatives
    from bgs_app.bids.inputs import ensure_writable
    from bgs_app.group import report

    if config.genotypes is None and config.model is None and not (
            config.boilerplate_only or config.reports_only):
        raise UsageError("the group level needs --genotypes PLINK_PREFIX (train a model) or "
                         "--model MODEL_DIR (apply a released model)")
    context = context or resolve_context(config, device=True)
    prepare_derivatives(config.output_dir, config.bids_dir)
    context.group_dir.mkdir(parents=True, exist_ok=True)
    if config.boilerplate_only:
        LOGGER.info("Methods boilerplate written to %s", report.write_boilerplate(context))
        return 0
    if config.reports_only:
        LOGGER.info("Report written to %s", report.write_report(context))
        return 0
    if config.model is not None:
        from bgs_app.group.apply import refuse_mixing

        refuse_mixing(context)
    ensure_writable(context.group_work, "group work folder",
                    "pass a writable work folder with -w")
    from bgs_app.group.inputs import check_phenotypes, collect_inputs

    inputs = collect_inputs(context)
    LOGGER.info("Group level: %d model-grid image(s) of %d participant(s)",
                len(inputs.images), len(inputs.participants))
    check_phenotypes(config, inputs.participants, inputs)
    if context.is_main:
        from bgs_app.group.qc import image_qc

        image_qc(context, inputs.images)
    if config.model is not None:
        from bgs_app.group.apply import apply_model

        apply_model(context, inputs)
    else:
        train_and_score(context, inputs)
        if not context.is_main:
            return 0
    report.write_boilerplate(context)
    LOGGER.info("Group level finished; report: %s", report.write_report(context))
    return 0


def train_and_score(context: RunContext, inputs) -> None:
    """Train mode, every stage up to the associations (the report is written after).

    Ranks other than 0 under ``torchrun`` take part in training, scoring and saliency
    (each a share of the images), and write nothing.
    """
    import pandas as pd

    from bgs_app.grid import grid_metadata
    from bgs_app.group.associations import associate_scores
    from bgs_app.group.baseline import idp_baseline
    from bgs_app.group.genotypes import load_study_genotypes, study_alleles
    from bgs_app.group.relatives import study_relatives
    from bgs_app.group.saliency import held_out_maps
    from bgs_app.group.scores import score_held_out, write_held_out_scores
    from bgs_app.group.split import make_study_split
    from bgs_app.group.training import (
        build_store,
        has_logjacobian,
        input_metadata,
        resolve_cnn_input,
        train_models,
    )
    from bgs_app.group.voxel_baseline import voxel_baseline
    from bgs_app.group.voxelwise import voxelwise_maps

    genotypes = load_study_genotypes(context, inputs.participants, write=context.is_main,
                                     excluded=inputs.excluded)
    dosages, alleles = genotypes.dosages, study_alleles(genotypes)
    kept = [p for p in inputs.participants if p in dosages.index]
    relatives = study_relatives(context, genotypes, kept, write=context.is_main)
    split = make_study_split(context, kept, relatives.families)
    images = inputs.images[inputs.images["participant_id"].isin(kept)].reset_index(drop=True)
    grid = grid_metadata(inputs.resolution, inputs.template)
    kind = resolve_cnn_input(context.config.cnn_input, images)
    LOGGER.info("CNN input: %s%s", "log-Jacobian maps" if kind == "logjacobian" else
                "model-grid T1w images", " (--cnn-input auto)"
                if context.config.cnn_input == "auto" else "")
    cnn_grid = grid if kind == "t1w" else {**grid, **input_metadata(kind)}
    cnn_store = build_store(context, images, grid, kind)
    soft = genotypes.probabilities if genotypes.dosage_kind != "hard calls" else None
    models = train_models(context, cnn_store, images, dosages, split, alleles, cnn_grid,
                          probabilities=soft, families=relatives.families, kind=kind)
    # Under torchrun every rank scores, and computes saliency for, a share of the
    # held-out images; rank 0 writes the tables and maps, and alone runs what follows.
    probs, scored = score_held_out(context, models, cnn_store, images, split)
    if context.is_main:
        write_held_out_scores(context, probs, scored, images, dosages, models, alleles)
    if not context.config.no_saliency:
        held_out_maps(context, models, cnn_store, images, dosages, cnn_grid)
    if not context.is_main:
        return
    # The voxel baselines read the T1w images, and the log-Jacobian maps when every
    # image has one; the voxelwise test reads the maps when there are any (TBM).
    stores = {"t1w": cnn_store if kind == "t1w" else build_store(context, images, grid)}
    if kind == "logjacobian":
        stores["logjacobian"] = cnn_store
    elif has_logjacobian(images):
        stores["logjacobian"] = build_store(context, images, grid, "logjacobian")
    idp_scores = idp_baseline(context, images, dosages, split)
    voxel_scores = voxel_baseline(context, stores, images, dosages, split)
    voxelwise_maps(context, inputs, stores.get("logjacobian", stores["t1w"]), images,
                   dosages, split, tested=genotypes.snp_qc[["snp", "chrom", "pos"]],
                   kind="logjacobian" if "logjacobian" in stores else "t1w")
    baselines = [s for s in (idp_scores, voxel_scores) if s is not None and len(s)]
    associate_scores(context, inputs, dosages,
                     pd.concat(baselines, ignore_index=True) if baselines else None,
                     performance=("cnn", "idp", "voxel"), alleles=alleles,
                     tested=genotypes.snp_qc[["snp", "chrom", "pos"]],
                     unrelated=relatives.unrelated)
