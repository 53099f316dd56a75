"""Genetic principal components from a genome-wide (LD-thinned) genotype file.

The file is PLINK 1, PLINK 2 or BGEN 1.2 (:func:`bgs_app.genetics.readers.open_genotypes`;
dosages where it holds them). Genotypes are standardised as PLINK 2's ``--pca`` does
(``(g - 2p) / sqrt(2p(1 - p))``, missing calls at 0 after centring) and the top
components are found by a randomised SVD that streams the file in blocks of SNPs, so
memory holds people x (k + oversampling) numbers and one block, never the whole matrix.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bgs_app.genetics.match import match_ids
from bgs_app.genetics.plink import GenotypeError
from bgs_app.genetics.readers import open_genotypes


def _standardised_blocks(genotypes, rows, block, min_maf, selected):
    for start in range(0, len(selected), block):
        cols = selected[start:start + block]
        g = genotypes.read(rows, cols)[0].astype(np.float64)
        n = (~np.isnan(g)).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.nansum(g, 0) / (2.0 * n)
        keep = (n > 0) & (np.minimum(p, 1 - p) >= max(min_maf, 1e-12))
        if not keep.any():
            continue
        g, p = g[:, keep], p[keep]
        x = (g - 2.0 * p) / np.sqrt(2.0 * p * (1.0 - p))
        x[np.isnan(x)] = 0.0
        yield start, keep, x


#: Fewest SNPs genetic PCs are computed from (a genome-wide, LD-thinned panel has
#: tens of thousands; a dozen candidate SNPs say nothing about ancestry).
MIN_PCA_SNPS = 1000
#: Half-width of the window around each tested SNP left out of the PCs (base pairs):
#: PCs must not absorb the tested SNPs' own signal.
EXCLUSION_BP = 500_000


def pca_snps(prefix, exclude: pd.DataFrame | None = None, *, exclusion_bp: int = EXCLUSION_BP,
             min_snps: int = MIN_PCA_SNPS, bim: pd.DataFrame | None = None) -> np.ndarray:
    """The columns of a fileset that genetic PCs may use: all but the tested SNPs and
    those within ``exclusion_bp`` of them (only the ``.bim`` is read).

    Parameters
    ----------
    prefix : path-like
        PLINK 1 prefix or ``.bed``, ``.pgen``, ``.bgen`` file.
    exclude : pandas.DataFrame, optional
        The tested SNPs: ``snp`` and, where known, ``chrom`` and ``pos`` (else their
        place in this file is used).
    exclusion_bp, min_snps : int
    bim : pandas.DataFrame, optional
        The file's variant table (``chrom, snp, pos``), when already read.

    Raises
    ------
    GenotypeError
        Fewer than ``min_snps`` SNPs remain (a candidate-SNP file, or the tested SNPs
        themselves): the message says what to give instead.
    """
    bim = open_genotypes(prefix).variants if bim is None else bim
    keep = np.ones(len(bim), bool)
    if exclude is not None and len(exclude):
        names = set(exclude["snp"].astype(str))
        keep &= ~bim["snp"].isin(names).to_numpy()
        chrom = bim["chrom"].astype(str).to_numpy()
        pos = bim["pos"].astype("float64").to_numpy()
        # Where the tested SNPs are: as given, else as this fileset places them.
        own = bim[bim["snp"].isin(names)]
        given = exclude.reindex(columns=["chrom", "pos"])
        places = pd.concat([given, own[["chrom", "pos"]]]).dropna().drop_duplicates()
        for c, at in zip(places["chrom"].astype(str), places["pos"].astype(float),
                         strict=True):
            c = c.removesuffix(".0")  # a chromosome read as a number
            keep &= ~((chrom == c) & (np.abs(pos - at) <= exclusion_bp))
    selected = np.flatnonzero(keep)
    if len(selected) < min_snps:
        raise GenotypeError(
            f"{prefix}: {len(selected)} SNP(s) remain for genetic PCs after leaving out "
            f"the tested SNPs and {exclusion_bp // 1000} kb around them; at least "
            f"{min_snps} are needed: give a genome-wide, LD-thinned fileset with "
            "--pca-genotypes (or precomputed pc1 ... pcK columns in participants.tsv)")
    return selected


def genetic_pcs(prefix, n_components: int = 10, participants: list[str] | None = None, *,
                id_map=None, block: int = 2000, oversample: int = 10, power_iters: int = 4,
                min_maf: float = 0.01, seed: int = 0,
                exclude: pd.DataFrame | None = None, exclusion_bp: int = EXCLUSION_BP,
                min_snps: int = MIN_PCA_SNPS) -> pd.DataFrame:
    """Top genetic principal components of the matched people.

    Parameters
    ----------
    prefix : path-like
        Genotype file (PLINK 1 prefix or ``.bed``, ``.pgen``, ``.bgen``): genome-wide,
        LD-thinned.
    n_components : int
    participants : list of str, optional
        BIDS labels; default every IID.
    id_map : path-like, optional
    block : int
        SNPs read per block.
    oversample, power_iters : int
        Randomised-SVD settings (Halko et al. 2011).
    min_maf : float
        SNPs rarer than this are skipped.
    seed : int
    exclude : pandas.DataFrame, optional
        The tested SNPs (``snp``, ``chrom``, ``pos``): they, and every SNP within
        ``exclusion_bp`` of them on their chromosome, are left out.
    exclusion_bp : int
    min_snps : int
        Refuse to compute PCs from fewer SNPs (after the exclusions).

    Raises
    ------
    GenotypeError
        Fewer than ``min_snps`` SNPs remain.

    Returns
    -------
    pandas.DataFrame
        Index ``participant_id``; columns ``PC1`` ... ``PCk`` (unit-norm eigenvectors
        of the genetic relationship matrix, signs fixed so each has a positive sum).
    """
    genotypes = open_genotypes(prefix)
    ids = match_ids(genotypes.samples["iid"].tolist(), participants, id_map)
    matched = ids[ids["status"] == "matched"].sort_values("fam_index")
    rows = matched["fam_index"].to_numpy()
    selected = pca_snps(prefix, exclude, exclusion_bp=exclusion_bp, min_snps=min_snps,
                        bim=genotypes.variants)
    k = min(n_components + oversample, len(rows))
    rng = np.random.default_rng(seed)

    def blocks():
        return _standardised_blocks(genotypes, rows, block, min_maf, selected)

    # Range finder: Y = X @ Omega, with Omega drawn block by block.
    y = np.zeros((len(rows), k))
    for _, _, x in blocks():
        y += x @ rng.standard_normal((x.shape[1], k))
    for _ in range(power_iters):
        q, _ = np.linalg.qr(y)
        y = np.zeros_like(y)
        for _, _, x in blocks():
            y += x @ (x.T @ q)
    q, _ = np.linalg.qr(y)
    # B B^T with B = Q^T X, accumulated per block; its eigenvectors rotate Q.
    bbt = np.zeros((k, k))
    for _, _, x in blocks():
        b = q.T @ x
        bbt += b @ b.T
    eigval, eigvec = np.linalg.eigh(bbt)
    order = np.argsort(eigval)[::-1][:n_components]
    pcs = q @ eigvec[:, order]
    pcs *= np.sign(pcs.sum(0, keepdims=True) + 1e-300)
    return pd.DataFrame(pcs, index=pd.Index(matched["participant_id"].tolist(),
                                            name="participant_id"),
                        columns=[f"PC{i + 1}" for i in range(pcs.shape[1])])
