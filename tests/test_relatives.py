"""Relatives: kinship tables, families that no split divides, the unrelated set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bgs_app.genetics.kinship import (
    family_components,
    read_kinship,
    related_pairs,
    unrelated_set,
)
from bgs_app.genetics.plink import GenotypeError
from bgs_app.stats.splits import make_split, training_sets
from tests.test_genetics import qc_fileset

__all__ = ["qc_fileset"]


def test_reads_king_plink2_and_ukb_tables(tmp_path):
    king = tmp_path / "a.kin0"
    king.write_text("#FID1\tID1\tFID2\tID2\tNSNP\tHETHET\tIBS0\tKINSHIP\n"
                    "f1\tA\tf2\tB\t1000\t0.1\t0.001\t0.25\n")
    plink = tmp_path / "b.kin0"
    plink.write_text("#FID1\tIID1\tFID2\tIID2\tNSNP\tHETHET\tIBS0\tKINSHIP\n"
                     "f1\tA\tf2\tB\t1000\t0.1\t0.001\t0.125\n")
    ukb = tmp_path / "ukb_rel.dat"
    ukb.write_text("ID1 ID2 HetHet IBS0 Kinship\n1001 1002 0.05 0.002 0.24\n")
    assert read_kinship(king).iloc[0].tolist() == ["A", "B", 0.25]
    assert read_kinship(plink)["kinship"].iloc[0] == 0.125
    assert read_kinship(ukb).iloc[0].tolist() == ["1001", "1002", 0.24]
    bad = tmp_path / "bad.txt"
    bad.write_text("A B C\n1 2 3\n")
    with pytest.raises(GenotypeError, match="needs columns ID1"):
        read_kinship(bad)


def _families(n_people: int, seed: int) -> tuple[list[str], pd.DataFrame]:
    """People in sibships of 1-4 plus a few cousin links (kinship below the cut-off)."""
    rng = np.random.default_rng(seed)
    people, rows, i = [], [], 0
    while len(people) < n_people:
        size = int(rng.choice([1, 1, 2, 2, 3, 4]))
        members = [f"P{i + k:04d}" for k in range(size)]
        i += size
        people += members
        rows += [(a, b, 0.25) for x, a in enumerate(members) for b in members[x + 1:]]
    rows += [(people[0], people[-1], 0.03)]  # below 0.0442: not related
    return people, pd.DataFrame(rows, columns=["iid1", "iid2", "kinship"])


@pytest.mark.parametrize("cv_folds", [0, 5])
def test_no_family_straddles_a_split(cv_folds):
    people, table = _families(300, 1)
    pairs = related_pairs(table, people)
    families = family_components(people, pairs)
    assert families[people[0]] != families[people[-1]]
    sites = pd.Series(np.where(np.arange(len(people)) % 3 == 0, "s1", "s2"), index=people)
    for seed in range(5):
        split = make_split(people, sites, cv_folds=cv_folds, seed=seed, families=families)
        assert (split.groupby(families).nunique() == 1).all()
        for _, train, val, test in training_sets(split, 0.1, seed, families):
            for a, b in ((train, val), (train, test), (val, test)):
                assert not set(families[a]) & set(families[b])
        counts = split.value_counts()
        if cv_folds:
            assert counts.max() - counts.min() <= 4  # balanced within a family size
        else:
            assert abs(counts["test"] - 60) <= 4 and abs(counts["val"] - 30) <= 4


def test_without_families_the_split_is_unchanged():
    people = [f"sub-{i:03d}" for i in range(50)]
    singles = pd.Series(people, index=people)
    for folds in (0, 4):
        assert make_split(people, cv_folds=folds, seed=3).equals(
            make_split(people, cv_folds=folds, seed=3, families=singles))


def test_unrelated_set_is_maximal_and_unrelated():
    people, table = _families(200, 2)
    pairs = related_pairs(table, people)
    kept, dropped = unrelated_set(people, pairs)
    kept_set = set(kept)
    linked = {(a, b) for a, b in zip(pairs["iid1"], pairs["iid2"], strict=True)}
    assert not any(a in kept_set and b in kept_set for a, b in linked)
    # Maximal: every dropped person has a kept relative; one person per sibship.
    for person, (relative, kinship) in dropped.items():
        assert relative in kept_set and kinship >= 0.0442
        assert (person, relative) in linked or (relative, person) in linked
    families = family_components(people, pairs)
    assert len(kept) == families.nunique()
    # A chain A-B-C keeps A and C, not B.
    chain = pd.DataFrame({"iid1": ["A", "B"], "iid2": ["B", "C"], "kinship": [0.25, 0.25]})
    assert unrelated_set(["A", "B", "C"], chain)[0] == ["A", "C"]


def test_group_relatives_write_families_and_the_unrelated_set(qc_fileset, tmp_path):
    """The group stage pairs kinship IIDs with participants, writes who is left out of
    the associations and why, and --keep-relatives keeps everyone."""
    import json

    from bgs_app.config import Config, RunContext
    from bgs_app.genetics import load_genotypes
    from bgs_app.group.relatives import study_relatives

    kin = tmp_path / "study.kin0"
    kin.write_text("#FID1\tID1\tFID2\tID2\tNSNP\tHETHET\tIBS0\tKINSHIP\n"
                   "0021\t0021\t0022\t0022\t60\t0.1\t0.001\t0.25\n"
                   "0022\t0022\t0023\t0023\t60\t0.1\t0.001\t0.24\n"
                   "0024\t0024\t0025\t0025\t60\t0.1\t0.02\t0.03\n")  # not related
    participants = [f"sub-{i:04d}" for i in range(20, 60)]
    for keep_relatives in (False, True):
        out = tmp_path / f"out{keep_relatives}"
        config = Config.create(bids_dir=tmp_path, output_dir=out, analysis_level="group",
                               kinship=kin, keep_relatives=keep_relatives,
                               skull_strip_method="ants")
        context = RunContext(config, template=None)
        genotypes = load_genotypes(qc_fileset, participants=participants)
        analysed = [p for p in participants if p in genotypes.dosages.index]
        relatives = study_relatives(context, genotypes, analysed)
        fam = relatives.families
        assert fam["sub-0021"] == fam["sub-0022"] == fam["sub-0023"]
        assert fam["sub-0024"] != fam["sub-0025"]
        subjects = pd.read_csv(out / "group" / "subjects.tsv", sep="\t", dtype=str)
        rows = subjects.set_index("participant_id")
        if keep_relatives:
            assert relatives.unrelated == analysed and not relatives.dropped
            continue
        assert set(relatives.dropped) == {"sub-0022"}  # the middle of the chain
        assert rows.loc["sub-0022", "association_set"] == (
            "no: related to sub-0021 (kinship 0.250)")
        assert rows.loc["sub-0023", "association_set"] == "yes"
        sidecar = json.loads((out / "group" / "subjects.json").read_text())
        assert sidecar["Relatives"]["RelatedPairs"] == 2
