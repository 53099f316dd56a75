"""Summary statistics (``group/sumstats/<measure>.tsv``): the genotype rows and the
instrumented CNN estimates of ``associations.tsv`` in ``plink2 --glm`` linear columns."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pandas as pd

LOGGER = logging.getLogger("bgs_app")


def write_sumstats(group_dir: Path, table: pd.DataFrame, dosages: pd.DataFrame,
                   phenotypes: pd.DataFrame, covariates: pd.DataFrame | None,
                   tested: pd.DataFrame | None, alleles: pd.DataFrame | None,
                   scores: pd.DataFrame | None = None,
                   extra: dict | None = None) -> list[Path]:
    """Write one summary-statistics table per measure, with its sidecar.

    Parameters
    ----------
    group_dir : pathlib.Path
        ``OUT_DIR/group``; the tables go to its ``sumstats/`` (replaced as a whole).
    table : pandas.DataFrame
        The association table just written.
    dosages, phenotypes, covariates, scores
        What the table was computed from (the same participants).
    tested : pandas.DataFrame, optional
        ``snp``, ``chrom``, ``pos`` of the tested SNPs.
    alleles : pandas.DataFrame, optional
        Index SNP: ``counted_allele``, ``other_allele``.
    extra : dict, optional
        More sidecar keys (covariates, participants).

    Returns
    -------
    list of pathlib.Path
        The tables written.
    """
    from bgs_app.stats.sumstats import DESCRIPTIONS, sumstats_tables
    from bgs_app.utils.tables import write_table

    folder = Path(group_dir) / "sumstats"
    if folder.exists():
        shutil.rmtree(folder)  # a measure dropped since the last run leaves no stale table
    if alleles is None or tested is None:
        return []
    variants = (tested.drop_duplicates("snp").set_index("snp")[["chrom", "pos"]]
                .join(alleles[["counted_allele", "other_allele"]], how="inner"))
    variants = variants.reindex([s for s in dosages.columns if s in variants.index])
    tables = sumstats_tables(table, dosages, phenotypes, covariates, variants, scores)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for measure, frame in tables.items():
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", measure)
        frame = frame.assign(POS=pd.to_numeric(frame["POS"], errors="coerce").astype("Int64"))
        paths.append(write_table(frame, folder / f"{name}.tsv", DESCRIPTIONS, {
            "Measure": measure, "Model": "plink2 --glm linear (omit-ref hide-covar): OLS "
            "with an intercept and the covariates, per variant on its complete cases",
            **(extra or {})}))
    LOGGER.info("Summary statistics: %d table(s) in %s", len(paths), folder)
    return paths
