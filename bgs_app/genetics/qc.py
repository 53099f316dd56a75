"""Genotype QC with PLINK's definitions and order: --mind, then --geno, --hwe, --maf,
and the imputation r² filter (``--min-info``, as plink2's ``--mach-r2-filter``).

Dosages (PLINK 2, BGEN) are judged as plink2 judges them: a dosage within
:data:`HARDCALL_THRESHOLD` of an integer is also a hard call; the reported missing-call
rates (plink2 ``--missing``) and the Hardy-Weinberg test use the hard calls, allele
frequencies and the imputation r² use the dosages. ``--geno`` and ``--mind`` count a
genotype as missing only when it has no dosage, as plink2's ``--geno dosage`` /
``--mind dosage`` do: an imputed dosage of 0.7 is uncertain, not missing (its
uncertainty is what ``--min-info`` judges), and counting it missing would drop most
people of an imputed file. With hard calls only (PLINK 1) both are the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bgs_app.genetics.hwe import hwe_exact_pvalues


@dataclass(frozen=True)
class QCThresholds:
    """PLINK-like QC thresholds (``None`` switches a filter off).

    Attributes
    ----------
    mind : float
        Maximum missing-call rate of a person (``--mind``).
    geno : float
        Maximum missing-call rate of a SNP (``--geno``).
    hwe : float
        Minimum Hardy-Weinberg exact p-value (``--hwe``).
    maf : float
        Minimum minor-allele frequency (``--maf``).
    """

    mind: float | None = 0.1
    geno: float | None = 0.1
    hwe: float | None = 1e-6
    maf: float | None = 0.01
    min_info: float | None = None


#: A dosage this close to an integer is a hard call (plink2's --hardcall-threshold).
HARDCALL_THRESHOLD = 0.1


def hard_calls(dosages: np.ndarray) -> np.ndarray:
    """The hard calls of dosages (NaN where no integer is within the threshold)."""
    rounded = np.round(dosages)
    return np.where(np.abs(dosages - rounded) <= HARDCALL_THRESHOLD + 1e-6, rounded, np.nan)


def mach_r2(dosages: np.ndarray) -> np.ndarray:
    """Imputation r² per column: dosage variance over its Hardy-Weinberg expectation.

    MaCH's Rsq, computed as ``plink2 --freq cols=+machr2`` does (population variance of
    the non-missing dosages over ``2p(1 - p)``); about 1 for well-called SNPs, near 0
    for a SNP the imputation knew nothing about. NaN for a monomorphic column.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(dosages, axis=0) if dosages.shape[0] else np.full(
            dosages.shape[1], np.nan)
        var = np.nanmean(dosages ** 2, axis=0) - mean ** 2
        p = mean / 2.0
        return np.where((p > 0) & (p < 1), var / (2.0 * p * (1.0 - p)), np.nan)


def person_missingness(dosages: np.ndarray) -> np.ndarray:
    """Missing-call rate per person (rows)."""
    return np.isnan(dosages).mean(axis=1) if dosages.shape[1] else np.zeros(dosages.shape[0])


def snp_stats(dosages: np.ndarray) -> dict[str, np.ndarray]:
    """Per-SNP call rate, A1 frequency, HWE exact p and imputation r² (PLINK's
    --missing/--freq/--hardy and plink2's MACH_R2)."""
    calls = hard_calls(dosages)
    n_called = (~np.isnan(calls)).sum(axis=0)
    n_dosage = (~np.isnan(dosages)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        a1_freq = np.nansum(dosages, axis=0) / (2.0 * n_dosage)
    n = max(dosages.shape[0], 1)
    return {"call_rate": n_called / n, "dosage_call_rate": n_dosage / n,
            "a1_freq": a1_freq, "hwe_p": hwe_exact_pvalues(calls), "info": mach_r2(dosages)}


def run_qc(dosages: np.ndarray, thresholds: QCThresholds) -> dict[str, np.ndarray]:
    """Apply PLINK-style QC.

    People are filtered first (``--mind``, over the SNPs given), then SNPs on the
    remaining people (``--geno``, ``--hwe``, ``--maf``), as PLINK orders them. A value
    exactly at a threshold passes, as in PLINK.

    Returns
    -------
    dict
        ``person_missing`` (hard calls), ``person_dosage_missing`` (what ``--mind``
        judges), ``person_kept`` (bool), ``call_rate`` (hard calls), ``dosage_call_rate``
        (what ``--geno`` judges), ``a1_freq``, ``hwe_p``, ``info`` (on kept people),
        ``snp_reason`` (str, empty when kept).
    """
    person_missing = person_missingness(hard_calls(dosages))
    person_kept = np.ones(dosages.shape[0], bool)
    person_dosage_missing = person_missingness(dosages)  # no dosage, not merely no hard call
    if thresholds.mind is not None:
        person_kept = person_dosage_missing <= thresholds.mind + 1e-12
    stats = snp_stats(dosages[person_kept])
    reasons = np.full(dosages.shape[1], "", dtype=object)
    if thresholds.geno is not None:
        bad = (1.0 - stats["dosage_call_rate"]) > thresholds.geno + 1e-12
        reasons[bad] = [f"missing-call rate {1 - c:.4f} > {thresholds.geno:g} (--geno)"
                        for c in stats["dosage_call_rate"][bad]]
    if thresholds.hwe is not None:
        bad = (reasons == "") & (stats["hwe_p"] < thresholds.hwe)
        reasons[bad] = [f"Hardy-Weinberg p {p:.3g} < {thresholds.hwe:g} (--hwe)"
                        for p in stats["hwe_p"][bad]]
    if thresholds.maf is not None:
        maf = np.minimum(stats["a1_freq"], 1.0 - stats["a1_freq"])
        bad = (reasons == "") & ~(maf >= thresholds.maf - 1e-12)
        reasons[bad] = ["monomorphic" if (m == 0 or np.isnan(m)) else
                        f"minor-allele frequency {m:.4f} < {thresholds.maf:g} (--maf)"
                        for m in maf[bad]]
    if thresholds.min_info is not None:
        bad = (reasons == "") & ~(stats["info"] >= thresholds.min_info - 1e-12)
        reasons[bad] = [f"imputation r² {v:.4f} < {thresholds.min_info:g} (--min-info)"
                        for v in stats["info"][bad]]
    return {"person_missing": person_missing, "person_dosage_missing": person_dosage_missing,
            "person_kept": person_kept, **stats,
            "snp_reason": reasons}
