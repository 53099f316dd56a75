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
    probabilities : numpy.ndarray, optional
        With imputation noise: the written genotype probabilities (people x SNPs x 3,
        copies of A1 0/1/2; NaN where missing); ``called`` is then their dosage.
    family : dict
        Person (IID) -> family number, for the people in a sibling pair.
    ancestry : dict
        Person (IID) -> ancestry (0 the majority), with ``ancestries`` > 1.
    kinship : pandas.DataFrame, optional
        The sibling pairs as a KING ``.kin0`` table (realised kinship).
    panel_snps : list of str
        The genome-wide-like panel (written, never analysed, for genetic PCs and kinship).
    """

    bim: pd.DataFrame
    iid: list[str]
    called: np.ndarray
    true_dosage: pd.DataFrame
    analysis_snps: list[str]
    a1_freq: dict[str, float] = field(default_factory=dict)
    source: str = "simulated"
    probabilities: np.ndarray | None = None
    family: dict[str, int] = field(default_factory=dict)
    ancestry: dict[str, int] = field(default_factory=dict)
    kinship: pd.DataFrame | None = None
    panel_snps: list[str] = field(default_factory=list)


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


@dataclass(frozen=True)
class CohortGenetics:
    """How the people of a simulated study are related and where their ancestors lived.

    Attributes
    ----------
    sibships : float
        Fraction of MRI participants in sibling pairs (two children of the same parents:
        each SNP's parental haplotypes are shared identically by descent with
        probability 1/2 per parent, so the kinship is 1/4 on average).
    ancestries : int
        Populations (1: one); the first holds 75 % of the people, the others share the
        rest.
    fst : float
        Differentiation between the populations (Balding-Nichols: each population's
        allele frequency is Beta(p (1 - F) / F, (1 - p)(1 - F) / F) around the ancestral
        frequency p).
    panel_snps : int
        Genome-wide-like SNPs added to the file (``gw00001`` ...), never causal, to
        compute genetic PCs and kinship from.
    imputation_noise : float
        Mean share of each call's probability that imputation spread over the three
        genotypes (by Hardy-Weinberg): 0 gives hard calls; 0.1 an INFO (MaCH r²) of
        about 0.8, 0.2 of about 0.6.
    """

    sibships: float = 0.0
    ancestries: int = 1
    fst: float = 0.0
    panel_snps: int = 0
    imputation_noise: float = 0.0

    @property
    def structured(self) -> bool:
        """Whether the people differ from unrelated draws of one population."""
        return self.sibships > 0 or self.ancestries > 1


def _population(rng: np.random.Generator, n_mri: int, n: int, spec: CohortGenetics):
    """Family of every person (sibling pairs among the MRI participants) and ancestry of
    every family."""
    family = np.arange(n)
    n_pairs = int(round(spec.sibships * n_mri / 2))
    pairs = rng.permutation(n_mri)[:2 * n_pairs].reshape(-1, 2)
    family[pairs[:, 1]] = family[pairs[:, 0]]
    if spec.ancestries > 1:
        weights = np.r_[0.75, np.full(spec.ancestries - 1, 0.25 / (spec.ancestries - 1))]
        by_family = rng.choice(spec.ancestries, size=n, p=weights)
        ancestry = by_family[family]
    else:
        ancestry = np.zeros(n, int)
    return family, pairs, ancestry


def _population_freqs(rng: np.random.Generator, freqs: np.ndarray, k: int,
                      fst: float) -> np.ndarray:
    """Balding-Nichols allele frequencies of ``k`` populations (k x SNPs)."""
    if k == 1 or fst <= 0:
        return np.tile(freqs, (k, 1))
    a = freqs * (1 - fst) / fst
    b = (1 - freqs) * (1 - fst) / fst
    return rng.beta(np.tile(a, (k, 1)), np.tile(b, (k, 1)))


def _structured_dosages(rng: np.random.Generator, pop_freqs: np.ndarray, pairs,
                        ancestry) -> tuple[np.ndarray, np.ndarray]:
    """A1 counts (people x SNPs) of founders and sibling pairs, and each pair's realised
    kinship (the share of parental haplotypes identical by descent, halved)."""
    m = pop_freqs.shape[1]
    p = pop_freqs[ancestry]
    dosage = rng.binomial(2, p).astype(np.float32)
    kinship = np.zeros(len(pairs))
    if len(pairs):
        parents = rng.random((len(pairs), 2, 2, m)) < p[pairs[:, 0]][:, None, None, :]
        picks = rng.integers(0, 2, (len(pairs), 2, 2, m))  # sib x parent x SNP
        for sib in range(2):
            got = np.take_along_axis(parents, picks[:, sib][:, :, None, :], axis=2)[:, :, 0]
            dosage[pairs[:, sib]] = got.sum(axis=1)
        shared = (picks[:, 0] == picks[:, 1]).mean(axis=(1, 2))  # IBD share per parent
        kinship = shared / 2
    return dosage, kinship


def _king_table(called: np.ndarray, iids: list[str], pairs, kinship) -> pd.DataFrame:
    """The sibling pairs as KING's ``.kin0`` (HETHET and IBS0 from the calls)."""
    rows = []
    for (i, j), phi in zip(pairs, kinship, strict=True):
        a, b = called[i], called[j]
        ok = ~np.isnan(a) & ~np.isnan(b)
        rows.append({"#FID1": iids[i], "IID1": iids[i], "FID2": iids[j], "IID2": iids[j],
                     "NSNP": int(ok.sum()),
                     "HETHET": round(float(((a == 1) & (b == 1))[ok].mean()), 6),
                     "IBS0": round(float((np.abs(a - b) == 2)[ok].mean()), 6),
                     "KINSHIP": round(float(phi), 6)})
    return pd.DataFrame(rows, columns=["#FID1", "IID1", "FID2", "IID2", "NSNP", "HETHET",
                                       "IBS0", "KINSHIP"])


def _impute(rng: np.random.Generator, dosage: np.ndarray, freqs: np.ndarray,
            noise: float) -> np.ndarray:
    """Genotype probabilities of an imputation: each call keeps 1 - e of its mass and
    spreads e ~ U(0, 2 noise) over the Hardy-Weinberg prior (people x SNPs x 3)."""
    e = np.clip(rng.uniform(0, 2 * noise, dosage.shape), 0, 1)[..., None]
    prior = np.stack([(1 - freqs) ** 2, 2 * freqs * (1 - freqs), freqs ** 2], axis=-1)
    onehot = np.eye(3, dtype=np.float64)[np.nan_to_num(dosage).astype(int)]
    probs = (1 - e) * onehot + e * prior[None, :, :]
    probs[np.isnan(dosage)] = np.nan
    return probs


def structure_genotypes(rng: np.random.Generator, geno: GenotypeSet, spec: CohortGenetics,
                        n_mri: int, snp_rng: np.random.Generator) -> GenotypeSet:
    """Redraw a simulated study's genotypes with sibships, ancestries, a genome-wide
    panel and imputation noise (the QC-failure SNPs keep their calls).

    Parameters
    ----------
    rng : numpy.random.Generator
        The cohort's genetic stream (its own, so that a study without these options is
        the same study as before).
    geno : GenotypeSet
        :func:`simulate_genotypes`'s draw: its SNPs, frequencies, people and missing calls.
    spec : CohortGenetics
    n_mri : int
        MRI participants (the first people of the draw, before the MRI-only are dropped).
    snp_rng : numpy.random.Generator
        The design's SNP stream (panel positions and alleles).

    Returns
    -------
    GenotypeSet
    """
    labels = list(geno.true_dosage.index)
    names = list(geno.true_dosage.columns)
    n_extra = int(round(0.05 * n_mri))
    people = labels + [f"G{i + 1:04d}" for i in range(n_extra)]
    n = len(people)
    panel = [f"gw{i + 1:05d}" for i in range(spec.panel_snps)]
    freqs = np.array([geno.a1_freq[s] for s in names]
                     + list(rng.uniform(0.05, 0.5, len(panel))))
    family, pairs, ancestry = _population(rng, n_mri, n, spec)
    pop_freqs = _population_freqs(rng, freqs, spec.ancestries, spec.fst)
    dosage, kinship = _structured_dosages(rng, pop_freqs, pairs, ancestry)
    # The written file: the same people as before (the MRI-only left out), the analysis
    # SNPs, then the QC failures as drawn, then the panel.
    keep_iid = set(geno.iid)
    keep = [i for i, person in enumerate(people) if person in keep_iid]
    row_of = {person: r for r, person in enumerate(geno.iid)}
    n_analysis = len(names)
    failures = geno.called[:, n_analysis:]
    called = dosage[keep].copy()
    called[rng.random(called.shape) < 0.01] = np.nan
    matrix = np.concatenate([called[:, :n_analysis],
                             failures[[row_of[people[i]] for i in keep]],
                             called[:, n_analysis:]], axis=1)
    bim = geno.bim
    if panel:
        pairs_ = [("A", "C"), ("A", "G"), ("C", "A"), ("G", "A"), ("C", "T"), ("T", "C"),
                  ("G", "T"), ("T", "G")]
        chosen = snp_rng.integers(0, len(pairs_), len(panel))
        extra = pd.DataFrame({"chrom": snp_rng.integers(1, 23, len(panel)).astype(str),
                              "snp": panel, "cm": 0.0,
                              "pos": snp_rng.integers(1_000_000, 200_000_000, len(panel)),
                              "a1": [pairs_[i][0] for i in chosen],
                              "a2": [pairs_[i][1] for i in chosen]})
        bim = pd.concat([bim, extra], ignore_index=True)
    probabilities = None
    if spec.imputation_noise > 0:
        all_freqs = np.r_[freqs[:n_analysis], [geno.a1_freq[s] for s in QC_FAILURES],
                          freqs[n_analysis:]]
        probabilities = _impute(rng, matrix, np.clip(all_freqs, 0, 1),
                                spec.imputation_noise)
        matrix = (probabilities @ np.arange(3.0)).astype(np.float32)
    iids = [people[i] for i in keep]
    kept_pairs = [(k, (i, j)) for k, (i, j) in enumerate(pairs)
                  if people[i] in keep_iid and people[j] in keep_iid]
    local = {i: r for r, i in enumerate(keep)}
    kin0 = _king_table(np.rint(matrix).astype(np.float32) if probabilities is not None
                       else matrix, iids, [(local[i], local[j]) for _, (i, j) in kept_pairs],
                       [kinship[k] for k, _ in kept_pairs])
    true_dosage = pd.DataFrame(dosage[:n_mri, :n_analysis], index=labels, columns=names)
    a1_freq = dict(geno.a1_freq)
    a1_freq.update({s: float(f) for s, f in zip(panel, freqs[n_analysis:], strict=True)})
    return GenotypeSet(
        bim=bim, iid=iids, called=matrix, true_dosage=true_dosage,
        analysis_snps=geno.analysis_snps, a1_freq=a1_freq, source=geno.source,
        probabilities=probabilities,
        family={people[i]: int(f) for f, pair in enumerate(pairs) for i in pair},
        ancestry=({person: int(a) for person, a in zip(people, ancestry, strict=True)}
                  if spec.ancestries > 1 else {}),
        kinship=kin0, panel_snps=panel)


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


#: The genotype file formats the simulator writes.
FORMATS = ("bed", "pgen", "bgen")


def write_genotypes(genotypes: GenotypeSet, prefix: Path, sex: dict[str, int] | None = None,
                    fmt: str = "bed") -> list[Path]:
    """Write the study's genotypes as PLINK 1, PLINK 2 or BGEN 1.2, and the sibling pairs'
    KING ``.kin0`` beside them.

    Parameters
    ----------
    genotypes : GenotypeSet
    prefix : pathlib.Path
        ``genetics/study``.
    sex : dict, optional
        IID -> 1 (male) / 2 (female).
    fmt : {"bed", "pgen", "bgen"}
        PLINK 1 holds hard calls: dosages are called as plink2 calls them (within 0.1 of
        an integer, else missing). PLINK 2 holds the dosages, BGEN the probabilities
        (ref-first: the counted allele A1 second, as UK Biobank writes it).

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"genotype format {fmt!r}: choose one of {', '.join(FORMATS)}")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    sex = sex or {}
    # Variants sorted by position, as real files are (plink2 refuses a split chromosome).
    order = np.lexsort((genotypes.bim["pos"].to_numpy(),
                        genotypes.bim["chrom"].astype(int).to_numpy()))
    probs = genotypes.probabilities
    genotypes = GenotypeSet(**{**genotypes.__dict__,
                               "bim": genotypes.bim.iloc[order].reset_index(drop=True),
                               "called": genotypes.called[:, order],
                               "probabilities": None if probs is None else probs[:, order]})
    if fmt == "bed":
        called = genotypes.called
        if genotypes.probabilities is not None:
            hard = np.rint(called)
            called = np.where(np.abs(called - hard) <= 0.1, hard, np.nan).astype(np.float32)
        write_plink(GenotypeSet(**{**genotypes.__dict__, "called": called}), prefix, sex)
        paths = [prefix.with_name(prefix.name + ext) for ext in (".bed", ".bim", ".fam")]
    else:
        writer = _write_pgen if fmt == "pgen" else _write_bgen
        paths = writer(genotypes, prefix, sex)
    if genotypes.kinship is not None and len(genotypes.kinship):
        kin0 = prefix.with_name(prefix.name + ".kin0")
        genotypes.kinship.to_csv(kin0, sep="\t", index=False)
        paths.append(kin0)
    return paths


def _write_pgen(genotypes: GenotypeSet, prefix: Path, sex: dict[str, int]) -> list[Path]:
    """``.pgen`` (dosages, pgenlib), ``.pvar`` (REF = A2, ALT = A1) and ``.psam``."""
    import pgenlib

    bim = genotypes.bim
    pvar = prefix.with_name(prefix.name + ".pvar")
    psam = prefix.with_name(prefix.name + ".psam")
    pd.DataFrame({"#CHROM": bim["chrom"].astype(str), "POS": bim["pos"].astype(int),
                  "ID": bim["snp"], "REF": bim["a2"], "ALT": bim["a1"]}).to_csv(
        pvar, sep="\t", index=False)
    pd.DataFrame({"#FID": genotypes.iid, "IID": genotypes.iid,
                  "SEX": [sex.get(i, "NA") for i in genotypes.iid]}).to_csv(
        psam, sep="\t", index=False)
    pgen = prefix.with_name(prefix.name + ".pgen")
    values = np.where(np.isnan(genotypes.called), -9.0, genotypes.called).astype(np.float64)
    writer = pgenlib.PgenWriter(str(pgen).encode(), len(genotypes.iid),
                                variant_ct=values.shape[1], nonref_flags=False,
                                dosage_present=True)
    for j in range(values.shape[1]):
        writer.append_dosages(np.ascontiguousarray(values[:, j]))
    writer.close()
    return [pgen, pvar, psam]


def _write_bgen(genotypes: GenotypeSet, prefix: Path, sex: dict[str, int],
                bits: int = 16) -> list[Path]:
    """BGEN 1.2 (layout 2, zlib, unphased diploid, ``bits`` per probability; sample IDs
    in the file) and the Oxford ``.sample`` beside it. The first allele is A2 (REF),
    the second the counted A1; probabilities are ordered by copies of A1: 0, 1, 2."""
    import struct
    import zlib

    bim = genotypes.bim
    n, m = genotypes.called.shape
    probs = genotypes.probabilities
    if probs is None:  # hard calls
        called = genotypes.called
        probs = np.eye(3)[np.nan_to_num(called).astype(int)]
        probs[np.isnan(called)] = np.nan
    scale = (1 << bits) - 1
    ids = [i.encode() for i in genotypes.iid]
    samples = b"".join(struct.pack("<H", len(i)) + i for i in ids)
    sample_block = struct.pack("<II", 8 + len(samples), n) + samples
    header = struct.pack("<III", 20, m, n) + b"bgen" + struct.pack(
        "<I", 1 | (2 << 2) | (1 << 31))
    path = prefix.with_name(prefix.name + ".bgen")
    dtype = np.dtype("<u2") if bits == 16 else np.dtype("u1")
    with open(path, "wb") as handle:
        handle.write(struct.pack("<I", len(header) + len(sample_block)))
        handle.write(header)
        handle.write(sample_block)
        for j in range(m):
            row = bim.iloc[j]
            snp, chrom = str(row["snp"]).encode(), str(row["chrom"]).encode()
            block = (struct.pack("<H", len(snp)) + snp + struct.pack("<H", len(snp)) + snp
                     + struct.pack("<H", len(chrom)) + chrom
                     + struct.pack("<IH", int(row["pos"]), 2))
            for allele in (str(row["a2"]).encode(), str(row["a1"]).encode()):
                block += struct.pack("<I", len(allele)) + allele
            p = probs[:, j, :]
            missing = np.isnan(p).any(axis=1)
            stored = _quantise(np.nan_to_num(p), scale)
            stored[missing] = 0
            data = (struct.pack("<IHBB", n, 2, 2, 2)
                    + np.where(missing, 0x82, 0x02).astype(np.uint8).tobytes()
                    + struct.pack("<BB", 0, bits) + stored.astype(dtype).tobytes())
            packed = zlib.compress(data)
            handle.write(block + struct.pack("<II", len(packed) + 4, len(data)) + packed)
    sample = prefix.with_name(prefix.name + ".sample")
    lines = ["ID_1 ID_2 missing sex", "0 0 0 D"]
    lines += [f"{i} {i} 0 {sex.get(i, 0)}" for i in genotypes.iid]
    sample.write_text("\n".join(lines) + "\n")
    return [path, sample]


def _quantise(full: np.ndarray, scale: int) -> np.ndarray:
    """BGEN's rounding of probabilities to integers summing to ``scale``: round down,
    then give the remaining units to the largest remainders (the spec's method)."""
    scaled = full * scale
    floor = np.floor(scaled)
    left = (scale - floor.sum(axis=1)).astype(int)
    order = np.argsort(-(scaled - floor), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(3)[None, :].repeat(len(order), 0), axis=1)
    floor += rank < left[:, None]
    return floor[:, :2]
