"""Alleles: which one a dosage counts, and a site's genotypes aligned to a released model.

A score counts copies of its SNP's counted allele (the training data's PLINK A1). A site
whose ``.bim`` lists the alleles the other way round (A1 and A2 swapped) has dosages
that count the other allele: they are flipped (``2 - dosage``), and the flip is said.
Alleles that match neither way, and strand-ambiguous SNPs (A/T, C/G, whose swap cannot
be told from a strand flip) without frequencies that settle it, are refused by name.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bgs_app.errors import BgsError

AMBIGUOUS = ({"A", "T"}, {"C", "G"})
#: Largest difference of the counted allele's frequency (site against training) that
#: settles a strand-ambiguous SNP, and the largest minor-allele frequency at which a
#: frequency can settle it at all.
FREQUENCY_TOLERANCE, MAX_AMBIGUOUS_MAF = 0.1, 0.4


def allele_table(snp_qc: pd.DataFrame) -> pd.DataFrame:
    """Counted allele, other allele and counted-allele frequency per SNP of a QC table.

    Parameters
    ----------
    snp_qc : pandas.DataFrame
        ``genotype_qc.tsv`` rows (``snp``, ``a1``, ``a2``, ``a1_freq``).

    Returns
    -------
    pandas.DataFrame
        Index SNP; ``counted_allele``, ``other_allele``, ``counted_allele_freq``.
    """
    rows = snp_qc.dropna(subset=["a1"]).drop_duplicates("snp").set_index("snp")
    return pd.DataFrame({"counted_allele": rows["a1"].astype(str),
                         "other_allele": rows["a2"].astype(str),
                         "counted_allele_freq": pd.to_numeric(rows["a1_freq"],
                                                              errors="coerce")})


def is_ambiguous(a: str, b: str) -> bool:
    """A/T or C/G: a strand flip looks like a swap."""
    return {str(a).upper(), str(b).upper()} in AMBIGUOUS


def align_to_model(model: pd.DataFrame, site: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """Which of a site's SNPs count the other allele than a model's scores.

    Parameters
    ----------
    model : pandas.DataFrame
        Index SNP; ``counted_allele`` and, when the bundle records them,
        ``other_allele`` and ``counted_allele_freq`` (its training data's).
    site : pandas.DataFrame
        :func:`allele_table` of the site's genotypes.

    Returns
    -------
    flipped : list of str
        SNPs whose site dosages must be flipped (``2 - dosage``).
    aligned : pandas.DataFrame
        The site's alleles expressed as the model's (counted allele, other allele, and
        the site's frequency of the model's counted allele).

    Raises
    ------
    BgsError
        Alleles that match neither way, or strand-ambiguous SNPs without frequencies
        that settle them; the message names every such SNP.
    """
    flipped, problems, rows = [], [], {}
    for snp, want in model.iterrows():
        if snp not in site.index:
            continue
        have = site.loc[snp]
        counted = str(want["counted_allele"]).upper()
        other = str(want.get("other_allele") or "").upper()
        a1, a2 = str(have["counted_allele"]).upper(), str(have["other_allele"]).upper()
        freq = float(have["counted_allele_freq"])
        if counted == a1 and other in ("", "NAN", "NONE", a2):
            swap = False
        elif counted == a2 and other in ("", "NAN", "NONE", a1):
            swap = True
        else:
            problems.append(f"{snp} (model {counted}/{other or '?'}, site {a1}/{a2})")
            continue
        if is_ambiguous(a1, a2):
            trained = pd.to_numeric(pd.Series([want.get("counted_allele_freq")]),
                                    errors="coerce").iloc[0]
            site_freq = 1 - freq if swap else freq
            settles = (np.isfinite(trained) and np.isfinite(site_freq)
                       and min(trained, 1 - trained) <= MAX_AMBIGUOUS_MAF
                       and abs(site_freq - trained) <= FREQUENCY_TOLERANCE)
            if not settles:
                known = f"{trained:.2f}" if np.isfinite(trained) else "unknown"
                problems.append(f"{snp} (strand-ambiguous {a1}/{a2}; counted-allele "
                                f"frequency: model {known}, site {site_freq:.2f})")
                continue
        if swap:
            flipped.append(snp)
        rows[snp] = {"counted_allele": counted, "other_allele": a1 if swap else a2,
                     "counted_allele_freq": 1 - freq if swap else freq}
    if problems:
        raise BgsError(
            f"the site's alleles do not match the model's for {len(problems)} SNP(s): "
            + "; ".join(problems) + ". Check the genome build and strand of the site's "
            "genotypes, or leave these SNPs out of the site's files")
    return flipped, pd.DataFrame.from_dict(rows, orient="index")
