"""Splitting participants: held-out test and validation sets, or cross-fitting folds."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_split(participants: list[str], sites: pd.Series | None = None, *,
               test_fraction: float = 0.2, val_fraction: float = 0.1, cv_folds: int = 0,
               seed: int = 0) -> pd.Series:
    """Assign every participant to ``train``/``val``/``test``, or to ``fold-<k>``.

    Sets are drawn within each site (so every set has every site in proportion), with a
    seeded generator; with ``cv_folds`` = K > 1 each participant gets one of K folds
    (cross-fitting: K models, each scoring the fold it never saw).

    Parameters
    ----------
    participants : list of str
    sites : pandas.Series, optional
        Site by participant; one site when absent.
    test_fraction, val_fraction : float
        Fractions of all participants.
    cv_folds : int
    seed : int

    Returns
    -------
    pandas.Series
        Index participant_id, values the set or fold.
    """
    ids = pd.Index(list(dict.fromkeys(participants)), name="participant_id")
    site = (sites.reindex(ids).fillna("n/a").astype(str) if sites is not None
            else pd.Series("all", index=ids))
    rng = np.random.default_rng(seed)
    out = pd.Series("train", index=ids, name="split")
    for name in sorted(site.unique()):
        members = ids[site.to_numpy() == name].to_numpy()
        members = members[rng.permutation(len(members))]
        if cv_folds and cv_folds > 1:
            offset = int(rng.integers(cv_folds))
            for i, pid in enumerate(members):
                out[pid] = f"fold-{(i + offset) % cv_folds}"
            continue
        n = len(members)
        n_test = int(round(test_fraction * n))
        n_val = int(round(val_fraction * n))
        out[members[:n_test]] = "test"
        out[members[n_test:n_test + n_val]] = "val"
    return out
