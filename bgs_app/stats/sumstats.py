"""Summary statistics in the columns of ``plink2 --glm`` linear output, per measure.

A geneticist feeds ``group/sumstats/<measure>.tsv`` to LD score regression, METAL or a
Mendelian-randomisation package. Its rows are the association table's own estimates, so
they cannot disagree with ``associations.tsv``:

``SOURCE = genotype``   the reduced form ``measure ~ dosage + covariates`` of every SNP:
                        BETA per copy of A1 in the measure's units, which is what
                        ``plink2 --glm omit-ref hide-covar`` reports for ALT = A1 on the
                        same people and covariates (tested against Debian's plink2)
``SOURCE = cnn``        the instrumented estimate of the SNP's brain-genotype score
                        (the dosage as its instrument): BETA in measure units per unit
                        of score, P the Anderson-Rubin test (the reduced form's)

``A1`` is the counted allele (PLINK 1's A1, PLINK 2's ALT, BGEN's second allele), and
``A1_FREQ`` and ``OBS_CT`` are those of the row's own complete cases, as plink2 computes
them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bgs_app.stats.associations import design_matrix

COLUMNS = ["#CHROM", "POS", "ID", "REF", "ALT", "A1", "A1_FREQ", "OBS_CT", "BETA", "SE",
           "T_STAT", "P", "SOURCE"]
#: The association table's rows each source contributes.
ROWS = {"genotype": "reduced_form", "cnn": "instrumented"}
DESCRIPTIONS = {
    "#CHROM": "Chromosome of the variant",
    "POS": "Base-pair position of the variant",
    "ID": "Variant ID",
    "REF": "The allele not counted (PLINK 1's A2, PLINK 2's REF, BGEN's first allele)",
    "ALT": "The counted allele (PLINK 1's A1, PLINK 2's ALT, BGEN's second allele)",
    "A1": "The allele BETA counts (always ALT, as with plink2 --glm omit-ref)",
    "A1_FREQ": "Frequency of A1 among the row's OBS_CT participants (from dosages)",
    "OBS_CT": "Participants in the regression (complete cases of dosage, measure, "
              "covariates and, for cnn rows, the score)",
    "BETA": "genotype rows: effect per copy of A1 in the measure's units; cnn rows: the "
            "instrumented effect of the SNP's brain-genotype score (the dosage as its "
            "instrument), in measure units per unit of score",
    "SE": "Standard error of BETA (2SLS for cnn rows)",
    "T_STAT": "BETA / SE",
    "P": "Two-sided p-value (cnn rows: the Anderson-Rubin test of no effect, equal to the "
         "reduced form's)",
    "SOURCE": "genotype (the dosage's regression, as plink2 --glm) or cnn (the instrumented "
              "brain-genotype score)",
}


def sumstats_tables(table: pd.DataFrame, dosages: pd.DataFrame, phenotypes: pd.DataFrame,
                    covariates: pd.DataFrame | None, variants: pd.DataFrame,
                    scores: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """One ``plink2 --glm``-style table per measure from the association table.

    Parameters
    ----------
    table : pandas.DataFrame
        ``associations.tsv`` rows (:func:`bgs_app.stats.claims.association_table`).
    dosages : pandas.DataFrame
        Participants x SNPs, the counted-allele dosages the table was computed from.
    phenotypes : pandas.DataFrame
        Participants x measures, as given to the table.
    covariates : pandas.DataFrame, optional
        As given to the table.
    variants : pandas.DataFrame
        Index SNP; ``chrom``, ``pos``, ``counted_allele``, ``other_allele``.
    scores : pandas.DataFrame, optional
        Participants x SNPs, the CNN scores (the cnn rows' complete cases).

    Returns
    -------
    dict
        ``{measure: table with COLUMNS}``, rows in variant order, genotype rows first.
    """
    index = phenotypes.index
    x = design_matrix(covariates, index).to_numpy(float)
    x_ok = ~np.isnan(x).any(axis=1) if x.size else np.ones(len(index), bool)
    d_all = dosages.reindex(index)
    s_all = scores.reindex(index) if scores is not None else None
    order = {snp: i for i, snp in enumerate(variants.index)}
    out = {}
    for measure in phenotypes.columns:
        y_ok = phenotypes[measure].notna().to_numpy() & x_ok
        rows = []
        for source, test in ROWS.items():
            part = table[(table["source"] == source) & (table["test"] == test)
                         & (table["measure"] == measure)]
            for row in part.itertuples(index=False):
                snp = row.snp
                if snp not in variants.index or snp not in d_all.columns:
                    continue
                d = d_all[snp].to_numpy(float)
                ok = y_ok & ~np.isnan(d)
                if source == "cnn":
                    if s_all is None or snp not in s_all.columns:
                        continue
                    ok &= ~np.isnan(s_all[snp].to_numpy(float))
                var = variants.loc[snp]
                freq = float(d[ok].mean() / 2) if ok.any() else np.nan
                rows.append({"#CHROM": var["chrom"], "POS": var["pos"], "ID": snp,
                             "REF": var["other_allele"], "ALT": var["counted_allele"],
                             "A1": var["counted_allele"], "A1_FREQ": freq,
                             "OBS_CT": int(row.n), "BETA": row.beta, "SE": row.se,
                             "T_STAT": row.t, "P": row.p, "SOURCE": source,
                             "_order": (0 if source == "genotype" else 1, order[snp])})
        frame = pd.DataFrame(rows, columns=[*COLUMNS, "_order"])
        out[str(measure)] = (frame.sort_values("_order", kind="stable")
                             .drop(columns="_order").reset_index(drop=True))
    return out
