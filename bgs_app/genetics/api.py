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
from bgs_app.genetics.plink import GenotypeError
from bgs_app.genetics.qc import QCThresholds, run_qc
from bgs_app.genetics.readers import open_genotypes

LOGGER = logging.getLogger("bgs_app")
#: The file that lists a format's variants.
VARIANT_FILE = {"bed": ".bim", "pgen": ".pvar", "bgen": ".bgen"}


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
        (hard calls 0, 1, 2, or expected dosages in [0, 2]; NaN missing).
    snp_qc : pandas.DataFrame
        One row per requested SNP: ``snp``, ``chrom``, ``pos``, ``a1``, ``a2``,
        ``a1_freq``, ``call_rate``, ``hwe_p``, ``kept``, ``reason``.
    person_qc : pandas.DataFrame
        One row per person seen in the .fam or among the participants: ``iid``,
        ``participant_id``, ``call_rate``, ``kept``, ``reason``.
    counted_allele : dict
        SNP -> the counted (A1) allele.
    source : str
        The genotype file.
    probabilities : numpy.ndarray, optional
        ``dosages.shape + (3,)``: P(0, 1, 2 copies of A1), the training targets (one-hot
        for hard calls; NaN where missing).
    dosage_kind : str
        ``hard calls``, ``dosages`` or ``probabilities`` (what the file holds).
    """

    dosages: pd.DataFrame
    snp_qc: pd.DataFrame
    person_qc: pd.DataFrame
    counted_allele: dict[str, str] = field(default_factory=dict)
    source: str = ""
    probabilities: np.ndarray | None = None
    dosage_kind: str = "hard calls"

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
                   excluded: Mapping[str, str] | None = None,
                   min_info: float | None = None, keep: str | Path | None = None,
                   remove: str | Path | None = None,
                   index_dir: str | Path | None = None) -> Genotypes:
    """Read, match and QC the genotypes of chosen SNPs and participants.

    Only the requested SNPs and the matched people are read (bed-reader, pgenlib or
    cbgen), so a biobank-size file costs what is read, not its size.

    Parameters
    ----------
    prefix : path-like
        A PLINK 1 (``.bed``), PLINK 2 (``.pgen``) or BGEN 1.2 (``.bgen``) file, or the
        prefix of exactly one (see :mod:`bgs_app.genetics.readers`).
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
    min_info : float, optional
        Minimum imputation r² (MaCH, as plink2's MACH_R2).
    keep, remove : path-like, optional
        PLINK ``--keep``/``--remove`` files (``FID IID`` or ``IID`` per line, an optional
        ``#FID``/``#IID`` header): only these people, or all but these.
    index_dir : path-like, optional
        Where a BGEN's variant index is kept.

    Returns
    -------
    Genotypes
    """
    gfile = open_genotypes(prefix, index_dir)
    bim, fam = gfile.variants, gfile.samples
    excluded = dict(excluded or {})
    excluded.update(_keep_remove(fam, participants, id_map, keep, remove))
    if participants is not None:
        participants = list(dict.fromkeys([*participants, *excluded]))
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
    multi = [s for s in present if "," in str(bim.loc[position[s], "a1"])]
    present = [s for s in present if s not in multi]
    if absent:
        LOGGER.warning("%d requested SNP(s) not in %s: %s", len(absent), gfile.path,
                       ", ".join(absent[:20]))
    if not present:
        raise GenotypeError(f"none of the requested SNPs ({', '.join(wanted[:10])}"
                            f"{' ...' if len(wanted) > 10 else ''}) is in {gfile.path}"
                            + (" as a biallelic variant" if multi else ""))
    matched = ids[ids["status"] == "matched"].reset_index(drop=True)
    rows = np.sort(matched["fam_index"].to_numpy())
    matched = matched.set_index("fam_index").loc[rows].reset_index()
    cols = np.array([position[s] for s in present])
    values, probs = gfile.read(rows, cols, num_threads)
    qc = run_qc(values, QCThresholds(mind=mind, geno=geno, hwe=hwe, maf=maf,
                                     min_info=min_info))

    meta = bim.set_index("snp")
    snp_rows = []
    for j, snp in enumerate(present):
        info = meta.loc[snp]
        snp_rows.append({"snp": snp, "chrom": info["chrom"], "pos": info["pos"],
                         "a1": info["a1"], "a2": info["a2"],
                         "a1_freq": qc["a1_freq"][j], "call_rate": qc["call_rate"][j],
                         "hwe_p": qc["hwe_p"][j], "info": qc["info"][j],
                         "kept": qc["snp_reason"][j] == "",
                         "reason": qc["snp_reason"][j] or None})
    for snp in multi:
        info = meta.loc[snp]
        snp_rows.append({"snp": snp, "chrom": info["chrom"], "pos": info["pos"],
                         "a1": info["a1"], "a2": info["a2"], "kept": False,
                         "reason": "multi-allelic (split it, e.g. plink2 --make-pgen with "
                                   "--max-alleles 2)"})
    for snp in absent:
        snp_rows.append({"snp": snp, "kept": False,
                         "reason": f"not in the {VARIANT_FILE[gfile.kind]} file"})
    order_of = {s: i for i, s in enumerate(wanted)}
    snp_qc = pd.DataFrame(snp_rows, columns=["snp", "chrom", "pos", "a1", "a2", "a1_freq",
                                             "call_rate", "hwe_p", "info", "kept", "reason"])
    snp_qc = snp_qc.sort_values("snp", key=lambda s: s.map(order_of)).reset_index(drop=True)

    kept = np.asarray(qc["person_kept"], bool)
    rate = 1.0 - np.asarray(qc["person_missing"], float)
    judged = np.asarray(qc["person_dosage_missing"], float)
    reasons = np.where(kept, None, [f"missing-call rate {m:.4f} > {mind:g} (--mind)"
                                    if mind is not None else None for m in judged])
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
                       source=str(gfile.path if gfile.kind != "bed"
                                  else gfile.path.with_suffix("")),
                       probabilities=probs[np.ix_(qc["person_kept"], keep_cols)],
                       dosage_kind=gfile.dosage_kind)
    s = result.summary
    LOGGER.info("Genotypes: %d matched, %d MRI-only, %d genotype-only; %d people and %d of "
                "%d SNPs pass QC", s["matched"], s["mri_only"], s["genotype_only"],
                s["people_kept"], s["snps_kept"], s["snps_requested"])
    return result


def read_id_list(path: str | Path) -> list[str]:
    """IIDs of a PLINK ``--keep``/``--remove`` file (``FID IID`` or ``IID`` per line).

    A header line starting with ``#`` (``#FID IID`` or ``#IID``) is skipped; with two or
    more columns the second is the IID, as PLINK reads it.

    Raises
    ------
    GenotypeError
        The file is missing or empty.
    """
    path = Path(path)
    if not path.is_file():
        raise GenotypeError(f"{path}: no such ID file")
    ids = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if not fields or line.startswith("#"):
            continue
        ids.append(fields[1] if len(fields) > 1 else fields[0])
    if not ids:
        raise GenotypeError(f"{path}: no IDs in the file")
    return ids


def _keep_remove(fam: pd.DataFrame, participants, id_map, keep, remove) -> dict[str, str]:
    """Participants that ``--keep``/``--remove`` leave out, with the reason."""
    if keep is None and remove is None:
        return {}
    ids = match_ids(fam["iid"].tolist(), participants, id_map)
    ids = ids[ids["status"] == "matched"]
    out: dict[str, str] = {}
    if keep is not None:
        kept = set(read_id_list(keep))
        for iid, pid in zip(ids["iid"], ids["participant_id"], strict=True):
            if iid not in kept:
                out[pid] = f"excluded: not in --keep {Path(keep).name}"
    if remove is not None:
        removed = set(read_id_list(remove))
        for iid, pid in zip(ids["iid"], ids["participant_id"], strict=True):
            if iid in removed:
                out.setdefault(pid, f"excluded: in --remove {Path(remove).name}")
    return out
