"""Relatives: pairwise kinship tables, family components and an unrelated set.

A kinship table lists related pairs (KING's ``.kin0``/``.kin``, ``plink2
--make-king-table``, or UK Biobank's ``ID1 ID2 HetHet IBS0 Kinship``). Two people whose
kinship is at least the threshold (0.0442 by default: third degree, as KING and
``plink2 --king-cutoff``) are related; related people are joined into families
(connected components), which a split never divides. Associations use an unrelated set:
greedily, the person with the most relatives left is dropped until no related pair
remains (as ``plink2 --king-cutoff`` does), ties broken by ID.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bgs_app.genetics.plink import GenotypeError

#: Kinship at which two people count as related (third degree; KING's cut-off).
DEFAULT_KINSHIP_THRESHOLD = 0.0442

_ID1 = ("ID1", "IID1")
_ID2 = ("ID2", "IID2")


def read_kinship(path: str | Path) -> pd.DataFrame:
    """Read a kinship table.

    Parameters
    ----------
    path : path-like
        Whitespace-separated with a header; columns ``ID1``/``IID1``, ``ID2``/``IID2``
        and ``Kinship`` (any case; a leading ``#`` is ignored).

    Returns
    -------
    pandas.DataFrame
        ``iid1``, ``iid2``, ``kinship`` (float).

    Raises
    ------
    GenotypeError
        Missing file or columns, or kinship values that are not numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise GenotypeError(f"--kinship {path}: no such file")
    table = pd.read_csv(path, sep=r"\s+", dtype=str)
    columns = {c.lstrip("#").upper(): c for c in table.columns}

    def find(options):
        return next((columns[o] for o in options if o in columns), None)

    id1, id2, kin = find(_ID1), find(_ID2), find(("KINSHIP",))
    if id1 is None or id2 is None or kin is None:
        raise GenotypeError(
            f"--kinship {path}: needs columns ID1 (or IID1), ID2 (or IID2) and Kinship, as "
            f"KING's .kin0 or UK Biobank's relatedness file; found {', '.join(table.columns)}")
    values = pd.to_numeric(table[kin], errors="coerce")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0]) + 2
        raise GenotypeError(f"--kinship {path}: line {row}: kinship is not a number")
    return pd.DataFrame({"iid1": table[id1].astype(str), "iid2": table[id2].astype(str),
                         "kinship": values.astype(float)})


def related_pairs(kinship: pd.DataFrame, people: list[str],
                  threshold: float = DEFAULT_KINSHIP_THRESHOLD) -> pd.DataFrame:
    """Pairs of ``people`` related at ``threshold`` or more (each pair once)."""
    present = set(people)
    rows = kinship[(kinship["kinship"] >= threshold) & kinship["iid1"].isin(present)
                   & kinship["iid2"].isin(present) & (kinship["iid1"] != kinship["iid2"])]
    a = np.minimum(rows["iid1"].to_numpy(dtype=object), rows["iid2"].to_numpy(dtype=object))
    b = np.where(a == rows["iid1"].to_numpy(dtype=object), rows["iid2"], rows["iid1"])
    out = pd.DataFrame({"iid1": a, "iid2": b, "kinship": rows["kinship"].to_numpy()})
    return (out.sort_values("kinship", ascending=False).drop_duplicates(["iid1", "iid2"])
            .reset_index(drop=True))


def family_components(people: list[str], pairs: pd.DataFrame) -> pd.Series:
    """Family of every person: the connected components of the related pairs.

    Returns
    -------
    pandas.Series
        Index the people, values ``fam-<k>`` (a person without relatives is a family of
        one), numbered in the order of ``people``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    at = {p: i for i, p in enumerate(people)}
    i = np.array([at[p] for p in pairs["iid1"]], int)
    j = np.array([at[p] for p in pairs["iid2"]], int)
    n = len(people)
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # Renumber in order of first appearance, so the names do not depend on scipy.
    first: dict[int, int] = {}
    for label in labels:
        first.setdefault(int(label), len(first))
    return pd.Series([f"fam-{first[int(v)]}" for v in labels], index=pd.Index(people),
                     name="family")


def unrelated_set(people: list[str], pairs: pd.DataFrame
                  ) -> tuple[list[str], dict[str, tuple[str, float]]]:
    """A maximal set of people with no related pair among them.

    Greedy, as ``plink2 --king-cutoff``: while related pairs remain, drop the person with
    the most remaining relatives (ties: the later ID); then every dropped person whose
    relatives were all dropped too is put back.

    Returns
    -------
    kept : list of str
        In the order of ``people``.
    dropped : dict
        Person -> (the kept relative closest to them, their kinship).
    """
    import heapq

    neighbours: dict[str, dict[str, float]] = {p: {} for p in people}
    for a, b, k in zip(pairs["iid1"], pairs["iid2"], pairs["kinship"], strict=True):
        neighbours[a][b] = float(k)
        neighbours[b][a] = float(k)
    rank = {p: r for r, p in enumerate(sorted(people))}
    degree = {p: len(neighbours[p]) for p in people}
    alive = {p for p in people if degree[p]}
    heap = [(-degree[p], -rank[p], p) for p in alive]
    heapq.heapify(heap)
    dropped_order = []
    while heap:  # lazy deletion: stale entries are skipped
        neg_degree, _, worst = heapq.heappop(heap)
        if worst not in alive or -neg_degree != degree[worst] or degree[worst] == 0:
            continue
        alive.discard(worst)
        dropped_order.append(worst)
        for q in neighbours[worst]:
            if q in alive:
                degree[q] -= 1
                if degree[q]:
                    heapq.heappush(heap, (-degree[q], -rank[q], q))
    kept_set = {p for p in people if not neighbours[p]} | alive
    for p in reversed(dropped_order):  # maximality
        if not any(q in kept_set for q in neighbours[p]):
            kept_set.add(p)
    dropped = {}
    for p in people:
        if p in kept_set:
            continue
        kin = {q: k for q, k in neighbours[p].items() if q in kept_set}
        q = max(kin, key=kin.get)
        dropped[p] = (q, kin[q])
    return [p for p in people if p in kept_set], dropped
