"""Genetic principal components from a genome-wide (LD-thinned) PLINK fileset.

Genotypes are standardised as PLINK 2's ``--pca`` does (``(g - 2p) / sqrt(2p(1 - p))``,
missing calls at 0 after centring) and the top components are found by a randomised
SVD that streams the .bed in blocks of SNPs, so memory holds people x (k + oversampling)
numbers and one block, never the whole matrix.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bgs_app.genetics.match import match_ids
from bgs_app.genetics.plink import PlinkFiles, check_bed, read_bim, read_dosages, read_fam


def _standardised_blocks(files, rows, n_people, n_snps, block, min_maf):
    for start in range(0, n_snps, block):
        cols = np.arange(start, min(start + block, n_snps))
        g = read_dosages(files, rows, cols, n_people, n_snps)
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


def genetic_pcs(prefix, n_components: int = 10, participants: list[str] | None = None, *,
                id_map=None, block: int = 2000, oversample: int = 10, power_iters: int = 4,
                min_maf: float = 0.01, seed: int = 0) -> pd.DataFrame:
    """Top genetic principal components of the matched people.

    Parameters
    ----------
    prefix : path-like
        PLINK fileset (genome-wide, LD-thinned).
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

    Returns
    -------
    pandas.DataFrame
        Index ``participant_id``; columns ``PC1`` ... ``PCk`` (unit-norm eigenvectors
        of the genetic relationship matrix, signs fixed so each has a positive sum).
    """
    files = PlinkFiles.from_prefix(prefix)
    bim, fam = read_bim(files), read_fam(files)
    check_bed(files, len(fam), len(bim))
    ids = match_ids(fam["iid"].tolist(), participants, id_map)
    matched = ids[ids["status"] == "matched"].sort_values("fam_index")
    rows = matched["fam_index"].to_numpy()
    n_people, n_snps = len(fam), len(bim)
    k = min(n_components + oversample, len(rows))
    rng = np.random.default_rng(seed)

    def blocks():
        return _standardised_blocks(files, rows, n_people, n_snps, block, min_maf)

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
