"""Apply mode: a site scores its participants with a released model and tests the scores
against its own measures (``bgs_app BIDS OUT group --model MODEL_DIR``).

The train-mode stages in another order, without training: (genotypes, when given) ->
scores -> group maps -> associations. Nothing here imports Nipype.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bgs_app.config import RunContext
from bgs_app.errors import BgsError, UsageError
from bgs_app.group.associations import associate_scores
from bgs_app.group.genotypes import load_study_genotypes
from bgs_app.group.inputs import GroupInputs
from bgs_app.group.saliency import applied_maps
from bgs_app.group.scores import score_applied

LOGGER = logging.getLogger("bgs_app")


def refuse_mixing(context: RunContext) -> None:
    """Apply mode must not write into a folder that holds training results.

    Raises
    ------
    UsageError
        ``OUT_DIR/group`` holds a model trained there (``model/``, ``split.tsv``).
    """
    out = context.group_dir
    trained = [p for p in (out / "model", out / "split.tsv") if p.exists()]
    if trained:
        raise UsageError(
            f"{out} holds the results of training ({', '.join(p.name for p in trained)}); "
            "applying a model there would overwrite its scores, associations and report "
            "with another analysis. Write apply-mode results to another output folder "
            "(a second derivatives folder for this site)")


def apply_model(context: RunContext, inputs: GroupInputs) -> None:
    """Score every image with ``--model``; group maps and associations (and, with
    ``--genotypes``, the model's performance on this site and the genotype rows)."""
    from bgs_app.genetics.alleles import align_to_model
    from bgs_app.grid import grid_metadata
    from bgs_app.group.genotypes import study_alleles
    from bgs_app.group.training import bundle_input, input_paths
    from bgs_app.model.bundle import load_bundle

    config = context.config
    grid = grid_metadata(inputs.resolution, inputs.template)
    model, meta = load_bundle(config.model, expect_grid=grid)
    snps = [s["snp"] for s in meta["snps"]]
    images = inputs.images
    if bundle_input(meta) == "logjacobian":  # the model reads the log-Jacobian maps
        paths = input_paths(images, "logjacobian")
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise BgsError(f"the model in {config.model} reads log-Jacobian maps; "
                           f"{len(missing)} of {len(paths)} image(s) have none "
                           f"({', '.join(p.name for p in missing[:5])}); run the "
                           "participant level with --registration syn (the default)")
        images = images.assign(path=[str(p) for p in paths])
    alleles = model_alleles(meta)
    dosages, flipped, tested = None, [], pd.DataFrame({"snp": snps, "chrom": np.nan,
                                                        "pos": np.nan})
    if config.genotypes is not None:
        genotypes = load_study_genotypes(context, inputs.participants, snps,
                                         excluded=inputs.excluded)
        flipped, aligned = align_to_model(alleles, study_alleles(genotypes))
        dosages = genotypes.dosages.reindex(columns=snps)
        if flipped:
            dosages[flipped] = 2.0 - dosages[flipped]
            LOGGER.warning("%d SNP(s) count the other allele in this site's genotypes than "
                           "in the model (A1/A2 swapped); their dosages are flipped to "
                           "count the model's allele: %s", len(flipped), ", ".join(flipped))
        alleles = aligned.reindex(snps).combine_first(alleles)
        tested = genotypes.snp_qc[["snp", "chrom", "pos"]]
    score_applied(context, model, meta, images, dosages, alleles, flipped)
    if not config.no_saliency:
        applied_maps(context, model, meta, images, dosages, grid)
    recorded = pd.DataFrame([{"model": "cnn", **m} for m in meta.get("test_metrics") or []])
    associate_scores(context, inputs, dosages, None, performance=("cnn",),
                     gate_performance=recorded if len(recorded) else None, alleles=alleles,
                     flipped=flipped, tested=tested)


def model_alleles(meta: dict) -> pd.DataFrame:
    """The alleles a bundle's scores count (index SNP)."""
    rows = {s["snp"]: {"counted_allele": s.get("counted_allele"),
                       "other_allele": s.get("other_allele"),
                       "counted_allele_freq": s.get("counted_allele_freq")}
            for s in meta["snps"]}
    return pd.DataFrame.from_dict(rows, orient="index").reindex(
        columns=["counted_allele", "other_allele", "counted_allele_freq"])
