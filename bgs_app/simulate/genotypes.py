"""Genotypes of a simulated study: simulated under Hardy-Weinberg, or taken from real files.

Both paths return true dosages (counts of the A1 allele, which drive the anatomy)
and the *called* genotypes written to PLINK (with missing calls and QC failures).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

#: SNPs that genotype QC must drop, and why (PLINK-like defaults).
QC_FAILURES = {
    "simrare1": "minor-allele frequency below 0.01",
    "simmono1": "monomorphic",
    "simlowcall1": "call rate below 0.9",
    "simhwe1": "Hardy-Weinberg p below 1e-6",
}


@dataclass
class GenotypeSet:
    """Genotypes of the people of a study (MRI participants and genotype-only people).

    Attributes
    ----------
    bim : pandas.DataFrame
        ``chrom, snp, cm, pos, a1, a2`` for every SNP written.
    iid : list of str
        Genotyped people (FAM IID = FID).
    called : numpy.ndarray
        Called A1 counts (people x SNPs), NaN where missing.
    true_dosage : pandas.DataFrame
        True A1 counts of the MRI participants for the causal and null SNPs
        (index: participant label), no missing values.
    analysis_snps : list of str
        The SNPs an analysis predicts (causal + null, then the QC failures).
    source : str
        ``simulated`` or the PLINK prefix the genotypes came from.
    """

    bim: pd.DataFrame
    iid: list[str]
    called: np.ndarray
    true_dosage: pd.DataFrame
    analysis_snps: list[str]
    a1_freq: dict[str, float] = field(default_factory=dict)
    source: str = "simulated"


def simulate_genotypes(rng: np.random.Generator, labels: list[str], n_snps: int,
                       causal: list[str], *, missing_rate: float = 0.01,
                       mri_only_fraction: float = 0.03,
                       genotype_only_fraction: float = 0.05,
                       snp_rng: np.random.Generator | None = None) -> GenotypeSet:
    """Simulate genotypes under Hardy-Weinberg equilibrium.

    Parameters
    ----------
    rng : numpy.random.Generator
    labels : list of str
        MRI participant labels (IIDs are the labels, without ``sub-``).
    n_snps : int
        SNPs that pass QC (causal included); four QC failures are added.
    causal : list of str
        Names of the causal SNPs (among ``sim01``...).
    missing_rate : float
        Fraction of calls set missing at random.
    mri_only_fraction, genotype_only_fraction : float
        People with MRI and no genotypes, and genotyped people without MRI.
    snp_rng : numpy.random.Generator, optional
        Draws the SNPs' chromosomes, positions and alleles (``rng`` when not given). The
        study passes one seeded by the design alone, so that every cohort of a design has
        the same SNPs on the same strand, as two sites genotyped on one array do.

    Returns
    -------
    GenotypeSet
    """
    names = [f"sim{i + 1:02d}" for i in range(n_snps)]
    freqs = {name: float(rng.uniform(0.25, 0.5) if name in causal else rng.uniform(0.08, 0.5))
             for name in names}
    n_mri = len(labels)
    n_extra = int(round(genotype_only_fraction * n_mri))
    people = list(labels) + [f"G{i + 1:04d}" for i in range(n_extra)]
    n = len(people)
    true = {name: rng.binomial(2, freqs[name], n).astype(np.float32) for name in names}
    called = {name: true[name].copy() for name in names}
    # QC failures.
    freqs["simrare1"] = 0.003
    called["simrare1"] = rng.binomial(2, 0.003, n).astype(np.float32)
    called["simrare1"][int(rng.integers(n))] = 1.0  # at least one carrier
    freqs["simmono1"] = 0.0
    called["simmono1"] = np.zeros(n, np.float32)
    freqs["simlowcall1"] = 0.3
    called["simlowcall1"] = rng.binomial(2, 0.3, n).astype(np.float32)
    called["simlowcall1"][rng.random(n) < 0.2] = np.nan
    freqs["simhwe1"] = 0.4  # no heterozygotes: a genotyping artefact
    called["simhwe1"] = np.where(rng.random(n) < 0.4, 2.0, 0.0).astype(np.float32)
    for name in names:
        called[name][rng.random(n) < missing_rate] = np.nan
    all_names = names + list(QC_FAILURES)
    matrix = np.stack([called[s] for s in all_names], axis=1)
    # People with MRI but no genotypes are left out of the PLINK files.
    n_mri_only = int(round(mri_only_fraction * n_mri))
    mri_only = set(rng.choice(n_mri, size=n_mri_only, replace=False).tolist()) if n_mri_only \
        else set()
    keep = [i for i in range(n) if i not in mri_only]
    snp_rng = rng if snp_rng is None else snp_rng
    chroms = snp_rng.integers(1, 23, len(all_names))
    bim = pd.DataFrame({
        "chrom": chroms.astype(str), "snp": all_names, "cm": 0.0,
        "pos": snp_rng.integers(1_000_000, 200_000_000, len(all_names)),
    })
    # Strand-unambiguous allele pairs only (no A/T or C/G SNPs).
    pairs = [("A", "C"), ("A", "G"), ("C", "A"), ("G", "A"), ("C", "T"), ("T", "C"),
             ("G", "T"), ("T", "G")]
    chosen = snp_rng.integers(0, len(pairs), len(all_names))
    bim["a1"] = [pairs[i][0] for i in chosen]
    bim["a2"] = [pairs[i][1] for i in chosen]
    dosage = pd.DataFrame({s: true[s][:n_mri] for s in names}, index=list(labels))
    return GenotypeSet(bim=bim, iid=[people[i] for i in keep], called=matrix[keep],
                       true_dosage=dosage, analysis_snps=all_names, a1_freq=freqs)


def real_genotypes(prefix: str | Path, rng: np.random.Generator, n_subjects: int,
                   causal: list[str], n_null: int, *, mri_only_fraction: float = 0.03,
                   genotype_only_fraction: float = 0.05, min_maf: float = 0.05,
                   ) -> tuple[list[str], GenotypeSet]:
    """Take genotypes of real people from a PLINK fileset.

    Participants are drawn at random from the FAM file and keep their IIDs as BIDS
    labels (non-alphanumeric characters removed). Every SNP of the source is written,
    so genetic principal components can be computed from the study's own file.

    Returns
    -------
    labels : list of str
        Participant labels (in FAM order of the drawn people).
    GenotypeSet
    """
    from bed_reader import open_bed

    prefix = Path(prefix)
    bed_path = prefix.with_name(prefix.name + ".bed") if prefix.suffix != ".bed" else prefix
    with open_bed(bed_path) as bed:
        sids = list(bed.sid)
        missing = [s for s in causal if s not in sids]
        if missing:
            raise ValueError(f"causal SNP(s) {', '.join(missing)} not in {bed_path}")
        n_people = bed.iid_count
        n_extra = int(round(genotype_only_fraction * n_subjects))
        if n_subjects + n_extra > n_people:
            raise ValueError(f"{bed_path} holds {n_people} people; {n_subjects} participants "
                             f"and {n_extra} genotype-only people were asked for")
        chosen = np.sort(rng.choice(n_people, n_subjects + n_extra, replace=False))
        called = bed.read(index=np.s_[chosen, :], dtype="float32")
        iids = ["".join(ch for ch in str(i) if ch.isalnum()) for i in bed.iid[chosen]]
        bim = pd.DataFrame({"chrom": bed.chromosome, "snp": bed.sid, "cm": bed.cm_position,
                            "pos": bed.bp_position, "a1": bed.allele_1, "a2": bed.allele_2})
    freq = np.nanmean(called, axis=0) / 2.0
    maf = np.minimum(freq, 1 - freq)
    candidates = [s for s, m in zip(sids, maf, strict=True) if m >= min_maf and s not in causal]
    null = list(rng.choice(candidates, size=n_null, replace=False))
    analysis = list(causal) + sorted(null)
    cols = [sids.index(s) for s in analysis]
    # True dosage: the called genotype, missing calls imputed from the allele frequency
    # (the anatomy needs a value; the PLINK file keeps the missing call).
    sub = called[:n_subjects][:, cols]
    true = np.where(np.isnan(sub), rng.binomial(2, np.clip(freq[cols], 0, 1), sub.shape), sub)
    labels = iids[:n_subjects]
    mri_only = set(rng.choice(n_subjects, int(round(mri_only_fraction * n_subjects)),
                              replace=False).tolist())
    keep = [i for i in range(len(iids)) if i not in mri_only]
    dosage = pd.DataFrame(true.astype(np.float32), index=labels, columns=analysis)
    return labels, GenotypeSet(
        bim=bim, iid=[iids[i] for i in keep], called=called[keep], true_dosage=dosage,
        analysis_snps=analysis, a1_freq={s: float(freq[sids.index(s)]) for s in analysis},
        source=str(prefix))


def write_plink(genotypes: GenotypeSet, prefix: Path, sex: dict[str, int] | None = None) -> None:
    """Write a PLINK 1 binary fileset (.bed/.bim/.fam) with bed-reader."""
    from bed_reader import to_bed

    prefix.parent.mkdir(parents=True, exist_ok=True)
    sex = sex or {}
    props = {
        "fid": genotypes.iid, "iid": genotypes.iid,
        "father": ["0"] * len(genotypes.iid), "mother": ["0"] * len(genotypes.iid),
        "sex": [sex.get(i, 0) for i in genotypes.iid],
        "pheno": ["-9"] * len(genotypes.iid),
        "chromosome": genotypes.bim["chrom"].astype(str).tolist(),
        "sid": genotypes.bim["snp"].tolist(), "cm_position": genotypes.bim["cm"].tolist(),
        "bp_position": genotypes.bim["pos"].astype(int).tolist(),
        "allele_1": genotypes.bim["a1"].tolist(), "allele_2": genotypes.bim["a2"].tolist(),
    }
    to_bed(prefix.with_name(prefix.name + ".bed"), genotypes.called.astype(np.float32),
           properties=props, count_A1=True)
