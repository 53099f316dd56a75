"""The split (``split.tsv``): held-out test and validation sets, or cross-fitting folds,
and the models it defines (who each trains on, validates on and scores)."""

from __future__ import annotations

from bgs_app.config import RunContext
from bgs_app.errors import NoDataError
from bgs_app.group.inputs import sites
from bgs_app.utils.tables import write_table

#: Fewest training participants of a model.
MIN_TRAIN = 8

SPLIT_COLUMNS = {
    "participant_id": {"Description": "BIDS participant label"},
    "split": {"Description": "train, val (early stopping) or test (held out); or "
                             "fold-<k> with cross-fitting (scored by the model trained "
                             "without fold k)"},
    "family": {"Description": "With --kinship: the participant's family; a family is "
                              "never divided between sets or folds"},
}


def make_study_split(context: RunContext, participants: list[str], families=None):
    """Split the participants (written as ``split.tsv`` by rank 0).

    With ``families`` (participant -> family, from ``--kinship``) whole families are
    drawn, so relatives never straddle two sets or folds.

    Raises
    ------
    NoDataError
        Too few participants to train and test a model.
    """
    from bgs_app.stats.splits import make_split

    config = context.config
    if len(participants) < 3 * MIN_TRAIN:
        raise NoDataError(f"only {len(participants)} participant(s) have both a model-grid "
                          f"image and genotypes passing QC; at least {3 * MIN_TRAIN} are "
                          "needed to train and test a model")
    split = make_split(participants, sites(config, participants),
                       test_fraction=config.test_fraction, val_fraction=config.val_fraction,
                       cv_folds=config.cv_folds, seed=config.seed, families=families)
    if context.is_main:
        table = split.reset_index()
        if families is not None:
            table["family"] = families.reindex(split.index).to_numpy()
        write_table(table, context.group_dir / "split.tsv", SPLIT_COLUMNS,
                    {"Seed": config.seed, "TestFraction": config.test_fraction,
                     "ValFraction": config.val_fraction, "CVFolds": config.cv_folds,
                     "FamilyAware": families is not None})
    return split


def model_sets(context: RunContext, split, families=None
               ) -> list[tuple[str, list[str], list[str], list[str]]]:
    """``(name, train, validation, test)`` participants of every model of ``split``
    (validation sets drawn by whole families when ``families`` is given).

    Raises
    ------
    NoDataError
        A model would have too few participants to train, validate or test.
    """
    from bgs_app.stats.splits import training_sets

    config = context.config
    sets = training_sets(split, config.val_fraction, config.seed, families)
    for name, train, val, test in sets:
        if len(train) < MIN_TRAIN or not val or not test:
            raise NoDataError(f"{name}: {len(train)} training, {len(val)} validation and "
                              f"{len(test)} test participants; too few to train (use more "
                              "participants or change --test-fraction/--val-fraction)")
    return sets
