"""The Hardy-Weinberg exact test (Wigginton, Cutler and Abecasis 2005), as PLINK computes it."""

from __future__ import annotations

import numpy as np


def hwe_exact_p(het: int, hom1: int, hom2: int) -> float:
    """Two-sided exact Hardy-Weinberg p-value for one SNP.

    Parameters
    ----------
    het, hom1, hom2 : int
        Genotype counts (heterozygotes and the two homozygotes).

    Returns
    -------
    float
        The probability, under HWE given the allele counts, of a heterozygote count as
        likely or less likely than the one observed (PLINK's ``--hardy`` P).
    """
    het, hom1, hom2 = int(het), int(hom1), int(hom2)
    homr, homc = min(hom1, hom2), max(hom1, hom2)
    rare = 2 * homr + het
    n = het + homr + homc
    if n == 0 or rare == 0:
        return 1.0
    # The most likely heterozygote count has the parity of rare.
    mid = rare * (2 * n - rare) // (2 * n)
    if (mid % 2) != (rare % 2):
        mid += 1
    # Log-probabilities relative to mid, by the recurrences of Wigginton et al.
    down_h = np.arange(mid, 1, -2, dtype=np.float64)  # h -> h - 2
    down_r = (rare - mid) // 2 + np.arange(down_h.size, dtype=np.float64)
    down_c = n - mid - (rare - mid) // 2 + np.arange(down_h.size, dtype=np.float64)
    down = np.log(down_h) + np.log(down_h - 1) - np.log(4.0) - np.log(down_r + 1) \
        - np.log(down_c + 1)
    up_h = np.arange(mid, rare - 1, 2, dtype=np.float64)  # h -> h + 2
    up_r = (rare - mid) // 2 - np.arange(up_h.size, dtype=np.float64)
    up_c = n - mid - (rare - mid) // 2 - np.arange(up_h.size, dtype=np.float64)
    up = np.log(4.0) + np.log(up_r) + np.log(up_c) - np.log(up_h + 2) - np.log(up_h + 1)
    logp = np.empty(rare // 2 + 1)
    # index k <-> heterozygote count h = rare % 2 + 2k
    k_mid = (mid - rare % 2) // 2
    logp[k_mid] = 0.0
    if down.size:
        logp[k_mid - 1::-1][: down.size] = np.cumsum(down)
    if up.size:
        logp[k_mid + 1: k_mid + 1 + up.size] = np.cumsum(up)
    probs = np.exp(logp - logp.max())
    probs /= probs.sum()
    observed = probs[(het - rare % 2) // 2]
    p = probs[probs <= observed * (1 + 1e-7)].sum()
    return float(min(1.0, p))


def hwe_exact_pvalues(dosages: np.ndarray) -> np.ndarray:
    """HWE exact p-value of every column of a dosage matrix (0/1/2, NaN missing)."""
    out = np.empty(dosages.shape[1])
    for j in range(dosages.shape[1]):
        g = dosages[:, j]
        out[j] = hwe_exact_p(np.sum(g == 1), np.sum(g == 0), np.sum(g == 2))
    return out
