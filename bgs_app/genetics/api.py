"""The public genotype API: :func:`load_genotypes` and the default SNP panel."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from bgs_app.genetics.match import match_ids
from bgs_app.genetics.plink import (
    GenotypeError,
    PlinkFiles,
    check_bed,
    read_bim,
    read_dosages,
    read_fam,
)
from bgs_app.genetics.qc import QCThresholds, run_qc

LOGGER = logging.getLogger("bgs_app")


def default_panel() -> pd.DataFrame:
    """The packaged SNP panel: SNPs with published brain-structure associations.

    Returns
    -------
    pandas.DataFrame
        Columns ``snp``, ``gene``, ``trait``, ``source``.
    """
    with resources.files("bgs_app").joinpath("data/snp_panel.tsv").open() as fh:
        return pd.read_csv(fh, sep="\t", dtype=str)


def read_snp_list(path: str | Path) -> list[str]:
    """rsIDs from a file with one per line (blank lines and ``#`` comments ignored)."""
    lines = Path(path).read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


@dataclass
class Genotypes:
    """Genotypes of matched participants after QC.

    Attributes
    ----------
    dosages : pandas.DataFrame
        Participants (``participant_id``) x kept SNPs: counts of the A1 allele as float
        (0, 1, 2; NaN missing).
    snp_qc : pandas.DataFrame
        One row per requested SNP: ``snp``, ``chrom``, ``pos``, ``a1``, ``a2``,
        ``a1_freq``, ``call_rate``, ``hwe_p``, ``kept``, ``reason``.
    person_qc : pandas.DataFrame
        One row per person seen in the .fam or among the participants: ``iid``,
        ``participant_id``, ``call_rate``, ``kept``, ``reason``.
    counted_allele : dict
        SNP -> the counted (A1) allele.
    """

    dosages: pd.DataFrame
    snp_qc: pd.DataFrame
    person_qc: pd.DataFrame
    counted_allele: dict[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def summary(self) -> dict[str, int]:
        """Counts of people and SNPs at each stage."""
        status = self.person_qc["reason"]
        excluded = status.astype(str).str.startswith("excluded")
        return {"matched": int(self.person_qc["participant_id"].notna().sum()
                               - (status == "not genotyped").sum() - excluded.sum()),
                "mri_only": int((status == "not genotyped").sum()),
                "excluded": int(excluded.sum()),
                "genotype_only": int((status == "no MRI").sum()),
                "people_kept": int(self.person_qc["kept"].sum()),
                "snps_requested": len(self.snp_qc),
                "snps_kept": int(self.snp_qc["kept"].sum())}


def load_genotypes(prefix: str | Path, snps: list[str] | None = None,
                   participants: list[str] | None = None, *, maf: float | None = 0.01,
                   geno: float | None = 0.1, hwe: float | None = 1e-6,
                   mind: float | None = 0.1, id_map: str | Path | None = None,
                   num_threads: int | None = None,
                   excluded: Mapping[str, str] | None = None) -> Genotypes:
    """Read, match and QC the genotypes of chosen SNPs and participants.

    Only the requested SNP columns and the matched people are read from the .bed
    (bed-reader), so a biobank-size file costs what is read, not its size.

    Parameters
    ----------
    prefix : path-like
        PLINK 1 binary fileset prefix.
    snps : list of str, optional
        rsIDs to read; default every SNP of the file. Absent SNPs are reported (fatal
        only when none remains).
    participants : list of str, optional
        BIDS participant labels (with or without ``sub-``); default every IID.
    maf, geno, hwe, mind : float or None
        QC thresholds as PLINK's ``--maf``, ``--geno``, ``--hwe``, ``--mind``.
    id_map : path-like, optional
        TSV with ``participant_id`` and ``iid``.
    num_threads : int, optional
        Threads for bed-reader.
    excluded : mapping, optional
        Participants (``sub-<label>``) left out of the study, with the reason: matched like
        the others so that ``person_qc`` says why they are not used, but never read.

    Returns
    -------
    Genotypes
    """
    files = PlinkFiles.from_prefix(prefix)
    bim, fam = read_bim(files), read_fam(files)
    check_bed(files, len(fam), len(bim))
    excluded = dict(excluded or {})
    if participants is not None:
        participants = [*participants, *excluded]
    ids = match_ids(fam["iid"].tolist(), participants, id_map)
    left_out = ids["participant_id"].isin(list(excluded))
    excluded_qc = pd.DataFrame({
        "iid": ids.loc[left_out, "iid"].to_numpy(),
        "participant_id": ids.loc[left_out, "participant_id"].to_numpy(),
        "call_rate": np.nan, "kept": False,
        "reason": ids.loc[left_out, "participant_id"].map(excluded).to_numpy()})
    ids = ids[~left_out]
    wanted = list(dict.fromkeys(snps)) if snps is not None else bim["snp"].tolist()
    position = {s: i for i, s in enumerate(bim["snp"])}
    present = [s for s in wanted if s in position]
    absent = [s for s in wanted if s not in position]
    if absent:
        LOGGER.warning("%d requested SNP(s) not in %s: %s", len(absent), files.bim,
                       ", ".join(absent[:20]))
    if not present:
        raise GenotypeError(f"none of the requested SNPs ({', '.join(wanted[:10])}"
                            f"{' ...' if len(wanted) > 10 else ''}) is in {files.bim}")
    matched = ids[ids["status"] == "matched"].reset_index(drop=True)
    rows = np.sort(matched["fam_index"].to_numpy())
    matched = matched.set_index("fam_index").loc[rows].reset_index()
    cols = np.array([position[s] for s in present])
    order = np.argsort(cols)
    values = read_dosages(files, rows, cols[order], len(fam), len(bim), num_threads)
    values = values[:, np.argsort(order)]
    qc = run_qc(values, QCThresholds(mind=mind, geno=geno, hwe=hwe, maf=maf))

    meta = bim.set_index("snp")
    snp_rows = []
    for j, snp in enumerate(present):
        info = meta.loc[snp]
        snp_rows.append({"snp": snp, "chrom": info["chrom"], "pos": info["pos"],
                         "a1": info["a1"], "a2": info["a2"],
                         "a1_freq": qc["a1_freq"][j], "call_rate": qc["call_rate"][j],
                         "hwe_p": qc["hwe_p"][j], "kept": qc["snp_reason"][j] == "",
                         "reason": qc["snp_reason"][j] or None})
    for snp in absent:
        snp_rows.append({"snp": snp, "kept": False, "reason": "not in the .bim file"})
    order_of = {s: i for i, s in enumerate(wanted)}
    snp_qc = pd.DataFrame(snp_rows, columns=["snp", "chrom", "pos", "a1", "a2", "a1_freq",
                                             "call_rate", "hwe_p", "kept", "reason"])
    snp_qc = snp_qc.sort_values("snp", key=lambda s: s.map(order_of)).reset_index(drop=True)

    kept = np.asarray(qc["person_kept"], bool)
    rate = 1.0 - np.asarray(qc["person_missing"], float)
    reasons = np.where(kept, None, [f"missing-call rate {1 - r:.4f} > {mind:g} (--mind)"
                                    if mind is not None else None for r in rate])
    matched_qc = pd.DataFrame({"iid": matched["iid"].to_numpy(),
                               "participant_id": matched["participant_id"].to_numpy(),
                               "call_rate": rate, "kept": kept, "reason": reasons})
    others = ids[ids["status"] != "matched"]
    others_qc = pd.DataFrame({
        "iid": others["iid"].to_numpy(), "participant_id": others["participant_id"].to_numpy(),
        "call_rate": np.nan, "kept": False,
        "reason": np.where(others["status"] == "genotype-only", "no MRI", "not genotyped")})
    person_qc = pd.concat([matched_qc, others_qc, excluded_qc], ignore_index=True)

    kept_snps = snp_qc.loc[snp_qc["kept"], "snp"].tolist()
    keep_cols = [present.index(s) for s in kept_snps]
    dosages = pd.DataFrame(values[np.ix_(qc["person_kept"], keep_cols)],
                           index=pd.Index(matched.loc[qc["person_kept"], "participant_id"],
                                          name="participant_id"),
                           columns=kept_snps)
    result = Genotypes(dosages=dosages, snp_qc=snp_qc, person_qc=person_qc,
                       counted_allele={s: str(meta.loc[s, "a1"]) for s in present},
                       source=str(files.bed.with_suffix("")))
    s = result.summary
    LOGGER.info("Genotypes: %d matched, %d MRI-only, %d genotype-only; %d people and %d of "
                "%d SNPs pass QC", s["matched"], s["mri_only"], s["genotype_only"],
                s["people_kept"], s["snps_kept"], s["snps_requested"])
    return result
