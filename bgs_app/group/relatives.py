"""Relatives among the study's participants (``--kinship``): the families no split may
divide and the unrelated set the associations use, written to ``subjects.tsv``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from bgs_app.config import RunContext

LOGGER = logging.getLogger("bgs_app")


@dataclass
class Relatives:
    """Families and the association set of the analysed participants.

    Attributes
    ----------
    families : pandas.Series or None
        Participant -> family (None without ``--kinship``: everyone unrelated).
    unrelated : list of str or None
        Participants the associations use (None: all).
    dropped : dict
        Participant -> why it is not in the associations.
    n_pairs : int
        Related pairs among the participants.
    """

    families: pd.Series | None = None
    unrelated: list[str] | None = None
    dropped: dict[str, str] = field(default_factory=dict)
    n_pairs: int = 0


def study_relatives(context: RunContext, genotypes, participants: list[str], *,
                    write: bool = True) -> Relatives:
    """Families and unrelated set of ``participants`` from ``--kinship``.

    Parameters
    ----------
    context : RunContext
    genotypes : bgs_app.genetics.Genotypes
        Its ``person_qc`` pairs IIDs with participants; ``family`` and
        ``association_set`` columns are added to it (and ``subjects.tsv`` rewritten).
    participants : list of str
        The analysed participants.
    write : bool
        Rewrite ``subjects.tsv`` (rank 0).

    Returns
    -------
    Relatives
    """
    from bgs_app.genetics.kinship import (
        family_components,
        read_kinship,
        related_pairs,
        unrelated_set,
    )

    config = context.config
    if config.kinship is None:
        return Relatives()
    table = read_kinship(config.kinship)
    qc = genotypes.person_qc
    ids = qc[qc["participant_id"].isin(participants) & qc["iid"].notna()]
    iid_of = dict(zip(ids["participant_id"], ids["iid"], strict=True))
    pid_of = {v: k for k, v in iid_of.items()}
    people = [iid_of[p] for p in participants if p in iid_of]
    pairs = related_pairs(table, people, config.kinship_threshold)
    families = family_components(people, pairs)
    families.index = [pid_of[i] for i in families.index]
    if config.keep_relatives:
        kept, dropped = [pid_of[i] for i in people], {}
    else:
        kept_iids, dropped_iids = unrelated_set(people, pairs)
        kept = [pid_of[i] for i in kept_iids]
        dropped = {pid_of[i]: f"related to {pid_of[q]} (kinship {k:.3f})"
                   for i, (q, k) in dropped_iids.items()}
    sizes = families.value_counts()
    LOGGER.info("Relatives (kinship >= %g): %d related pair(s) in %d families of 2 or more "
                "(largest %d); the associations use %d of %d participants%s",
                config.kinship_threshold, len(pairs), int((sizes > 1).sum()),
                int(sizes.max()) if len(sizes) else 0, len(kept), len(people),
                " (--keep-relatives)" if config.keep_relatives else "")
    qc["family"] = qc["participant_id"].map(families.to_dict())
    qc["association_set"] = [
        None if pid not in iid_of else ("yes" if pid not in dropped else
                                        f"no: {dropped[pid]}")
        for pid in qc["participant_id"]]
    if write:
        from bgs_app.genetics.tables import write_genotype_tables
        from bgs_app.group.genotypes import qc_thresholds

        write_genotype_tables(genotypes, context.group_dir, qc_thresholds(config),
                              relatives={"Kinship": str(config.kinship),
                                         "Threshold": config.kinship_threshold,
                                         "RelatedPairs": int(len(pairs)),
                                         "KeepRelatives": config.keep_relatives})
    return Relatives(families=families, unrelated=kept, dropped=dropped,
                     n_pairs=int(len(pairs)))
