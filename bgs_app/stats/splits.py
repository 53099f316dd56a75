"""Splitting participants: held-out test and validation sets, or cross-fitting folds.

One definition of the split and of the models it defines, used by the CNN's training
and by every baseline, so that all of them hold out the same participants.
"""

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


def held_out_sets(split: pd.Series) -> list[tuple[str, list[str], list[str]]]:
    """The models a split defines: ``(name, training participants, held-out ones)``.

    With cross-fitting, one model per fold (``fold-<k>``), trained on every other fold;
    otherwise one model (``model``) trained on ``train`` and ``val``, holding out
    ``test``.

    Parameters
    ----------
    split : pandas.Series
        Participant -> ``train``/``val``/``test`` or ``fold-<k>`` (:func:`make_split`).

    Returns
    -------
    list of tuple
    """
    values = split.astype(str)
    names = sorted({v for v in values if v.startswith("fold-")},
                   key=lambda v: int(v.split("-", 1)[1]))
    if names:
        return [(name, split.index[values != name].tolist(), split.index[values == name].tolist())
                for name in names]
    return [("model", split.index[values.isin(["train", "val"])].tolist(),
             split.index[values == "test"].tolist())]


def training_sets(split: pd.Series, val_fraction: float, seed: int
                  ) -> list[tuple[str, list[str], list[str], list[str]]]:
    """Per model of the split, ``(name, train, validation, test)`` participants.

    The held-out split keeps its own ``val`` set; with cross-fitting each fold's model
    draws its validation set (``val_fraction`` of all participants, for early stopping)
    from its training folds with a generator seeded by ``(seed, k)``.

    Parameters
    ----------
    split : pandas.Series
        See :func:`held_out_sets`.
    val_fraction : float
    seed : int

    Returns
    -------
    list of tuple
        Participant lists (training and validation sorted).
    """
    out = []
    for name, rest, test in held_out_sets(split):
        if name == "model":
            out.append((name, split.index[split == "train"].tolist(),
                        split.index[split == "val"].tolist(), test))
            continue
        k = int(name.split("-", 1)[1])
        rest = np.asarray(rest, dtype=object)
        rest = rest[np.random.default_rng([seed, k]).permutation(len(rest))]
        n_val = max(1, int(round(val_fraction * len(split))))
        out.append((name, sorted(rest[n_val:]), sorted(rest[:n_val]), test))
    return out
