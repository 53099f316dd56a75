"""Genotypes of the study's participants after QC, with the QC tables
(``genotype_qc.tsv``, ``subjects.tsv``): every dropped SNP and person with its reason."""

from __future__ import annotations

import logging

import pandas as pd

from bgs_app.bids.derivatives import snp_labels
from bgs_app.config import RunContext
from bgs_app.group.inputs import requested_snps

LOGGER = logging.getLogger("bgs_app")


def qc_thresholds(config) -> dict[str, float | None]:
    """The genotype QC thresholds of a run, as the QC tables' sidecar records them."""
    return {"maf": config.maf, "geno": config.geno, "hwe": config.hwe, "mind": config.mind,
            "min_info": config.min_info}


def load_study_genotypes(context: RunContext, participants: list[str],
                         snps: list[str] | None = None, *, write: bool = True,
                         excluded: dict[str, str] | None = None):
    """Genotypes of the participants after QC, with the QC tables written.

    Parameters
    ----------
    context : RunContext
    participants : list of str
        BIDS participant IDs with a model-grid image.
    snps : list of str, optional
        A model's SNPs (apply mode): override ``--snps``/``--snps-file`` and the panel.
    write : bool
        Write the QC tables (rank 0 only under ``torchrun``).
    excluded : dict, optional
        Participants left out (``--exclude-label``) and why: listed in ``subjects.tsv``.

    Returns
    -------
    bgs_app.genetics.Genotypes
    """
    from bgs_app.genetics import load_genotypes
    from bgs_app.genetics.tables import write_genotype_tables

    config = context.config
    thresholds = qc_thresholds(config)
    genotypes = load_genotypes(config.genotypes, snps or requested_snps(config),
                               participants, id_map=config.genotype_id_map,
                               excluded=excluded, keep=config.keep, remove=config.remove,
                               index_dir=context.group_work / "bgen_index", **thresholds)
    snp_labels(genotypes.dosages.columns)  # their maps' file names must not collide
    if write:
        write_genotype_tables(genotypes, context.group_dir, thresholds)
    LOGGER.info("Genotypes: %s", genotypes.summary)
    return genotypes


def study_alleles(genotypes) -> pd.DataFrame:
    """Counted allele, other allele and counted-allele frequency of the kept SNPs."""
    from bgs_app.genetics.alleles import allele_table

    return allele_table(genotypes.snp_qc).reindex(list(genotypes.dosages.columns))
