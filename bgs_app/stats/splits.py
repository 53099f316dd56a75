"""Splitting participants: held-out test and validation sets, or cross-fitting folds.

One definition of the split and of the models it defines, used by the CNN's training
and by every baseline, so that all of them hold out the same participants.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_split(participants: list[str], sites: pd.Series | None = None, *,
               test_fraction: float = 0.2, val_fraction: float = 0.1, cv_folds: int = 0,
               seed: int = 0, families: pd.Series | None = None) -> pd.Series:
    """Assign every participant to ``train``/``val``/``test``, or to ``fold-<k>``.

    Sets are drawn within each site (so every set has every site in proportion), with a
    seeded generator; with ``cv_folds`` = K > 1 each participant gets one of K folds
    (cross-fitting: K models, each scoring the fold it never saw). With ``families``,
    whole families are drawn (a family goes with the site most of its members are at),
    so relatives never straddle two sets or folds.

    Parameters
    ----------
    participants : list of str
    sites : pandas.Series, optional
        Site by participant; one site when absent.
    test_fraction, val_fraction : float
        Fractions of all participants.
    cv_folds : int
    seed : int
    families : pandas.Series, optional
        Family by participant (:func:`bgs_app.genetics.kinship.family_components`);
        everyone unrelated when absent.

    Returns
    -------
    pandas.Series
        Index participant_id, values the set or fold.
    """
    ids = pd.Index(list(dict.fromkeys(participants)), name="participant_id")
    site = (sites.reindex(ids).fillna("n/a").astype(str) if sites is not None
            else pd.Series("all", index=ids))
    family = (families.reindex(ids).astype(object) if families is not None
              else pd.Series(ids, index=ids, dtype=object))
    family = family.where(family.notna(), pd.Series(ids, index=ids, dtype=object))
    members = pd.Series(ids, index=ids).groupby(family.to_numpy(), sort=False).agg(list)
    unit_site = {f: (site[m[0]] if len(m) == 1 else site[m].mode().sort_values().iloc[0])
                 for f, m in members.items()}
    rng = np.random.default_rng(seed)
    assigned: dict[str, str] = {}
    for name in sorted(set(unit_site.values())):
        units = [f for f in members.index if unit_site[f] == name]
        units = [units[i] for i in rng.permutation(len(units))]
        if cv_folds and cv_folds > 1:
            offset = int(rng.integers(cv_folds))
            if families is None:
                for i, f in enumerate(units):
                    assigned.update(dict.fromkeys(members[f], f"fold-{(i + offset) % cv_folds}"))
                continue
            # Largest families first, each to the smallest fold so far (ties: in turn).
            sizes = np.zeros(cv_folds, int)
            for f in sorted(units, key=lambda u: -len(members[u])):
                k = int(np.argmin(np.roll(sizes, -offset))) + offset
                k %= cv_folds
                assigned.update(dict.fromkeys(members[f], f"fold-{k}"))
                sizes[k] += len(members[f])
            continue
        n = sum(len(members[f]) for f in units)
        n_test = int(round(test_fraction * n))
        n_val = int(round(val_fraction * n))
        # Whole families in turn, each set filled up to its size without exceeding it
        # (a family too large for what is left waits for the next set).
        remaining = units
        for label, target in (("test", n_test), ("val", n_val)):
            taken, rest = 0, []
            for f in remaining:
                if taken + len(members[f]) <= target:
                    assigned.update(dict.fromkeys(members[f], label))
                    taken += len(members[f])
                else:
                    rest.append(f)
            remaining = rest
    return pd.Series([assigned.get(p, "train") for p in ids], index=ids, name="split")


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


def training_sets(split: pd.Series, val_fraction: float, seed: int,
                  families: pd.Series | None = None
                  ) -> list[tuple[str, list[str], list[str], list[str]]]:
    """Per model of the split, ``(name, train, validation, test)`` participants.

    The held-out split keeps its own ``val`` set; with cross-fitting each fold's model
    draws its validation set (``val_fraction`` of all participants, for early stopping)
    from its training folds with a generator seeded by ``(seed, k)``, whole families at
    a time when ``families`` is given.

    Parameters
    ----------
    split : pandas.Series
        See :func:`held_out_sets`.
    val_fraction : float
    seed : int
    families : pandas.Series, optional
        Family by participant.

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
        n_val = max(1, int(round(val_fraction * len(split))))
        if families is None:
            rest = np.asarray(rest, dtype=object)
            rest = rest[np.random.default_rng([seed, k]).permutation(len(rest))]
            out.append((name, sorted(rest[n_val:]), sorted(rest[:n_val]), test))
            continue
        fam = families.reindex(rest)
        fam = fam.where(fam.notna(), pd.Series(rest, index=rest, dtype=object))
        groups = pd.Series(rest, index=rest).groupby(fam.to_numpy(), sort=False).agg(list)
        order = np.random.default_rng([seed, k]).permutation(len(groups))
        val: list[str] = []
        for i in order:
            if len(val) >= n_val:
                break
            val += groups.iloc[i]
        chosen = set(val)
        out.append((name, sorted(p for p in rest if p not in chosen), sorted(val), test))
    return out
