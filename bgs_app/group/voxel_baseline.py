"""The voxel-ridge baseline (``voxel_scores.tsv``): a ridge logistic regression on the
model-grid voxels predicts each genotype on the CNN's split, so that the CNN is compared
with a linear model on the same images and the same held-out participants."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bgs_app.config import RunContext
from bgs_app.group.stage import performance_part, stage

LOGGER = logging.getLogger("bgs_app")


def participant_volumes(store, images: pd.DataFrame, participants: list[str]) -> np.ndarray:
    """(participants, X, Y, Z): each participant's model-grid image from the store, its
    sessions averaged (as the IDP baseline averages their tables)."""
    ids = images["participant_id"].to_numpy()
    return np.stack([np.mean([np.asarray(store[int(r)], np.float32)
                              for r in np.flatnonzero(ids == p)], axis=0)
                     for p in participants])


def voxel_baseline(context: RunContext, store, images: pd.DataFrame, dosages: pd.DataFrame,
                   split: pd.Series) -> pd.DataFrame | None:
    """Fit the baseline (skipped when current, or with ``--no-voxel-baseline``); return
    its scores (long) or None.

    Parameters
    ----------
    context : RunContext
    store : bgs_app.model.store.TensorStore
        Rows in the order of ``images``.
    images : pandas.DataFrame
        See :class:`bgs_app.group.inputs.GroupInputs`.
    dosages : pandas.DataFrame
        Participants x SNPs after QC.
    split : pandas.Series
        The CNN's split.

    Returns
    -------
    pandas.DataFrame or None
        The rows of ``voxel_scores.tsv``.
    """
    from bgs_app.stats.tables import write_voxel_scores
    from bgs_app.stats.voxel_baseline import fit_voxel_baseline, voxel_features
    from bgs_app.utils.atomic import write_tsv

    out = context.group_dir
    part = performance_part(context, "voxel")
    if context.config.no_voxel_baseline:
        part.unlink(missing_ok=True)
        (out / "voxel_scores.tsv").unlink(missing_ok=True)
        (out / "voxel_scores.json").unlink(missing_ok=True)
        return None
    fitted = stage(context, "voxel", [store.index["sha256"].tolist(),
                                      dosages.to_numpy().tolist(), split.to_dict(),
                                      context.config.seed],
                   [out / "voxel_scores.tsv", part])
    if fitted.current():
        LOGGER.info("Voxel-ridge baseline is current; skipped")
        return pd.read_csv(out / "voxel_scores.tsv", sep="\t", na_values="n/a")
    participants = list(dict.fromkeys(images["participant_id"]))
    volumes = participant_volumes(store, images, participants)
    spacing = float(np.abs(np.asarray(store.grid["affine"])[:3, :3]).max())
    features = pd.DataFrame(voxel_features(volumes, spacing), index=participants)
    del volumes
    LOGGER.info("Voxel-ridge baseline: %d participants, %d voxels", *features.shape)
    scores, perf = fit_voxel_baseline(features, dosages, split, seed=context.config.seed)
    write_voxel_scores(scores, out, {"Voxels": int(features.shape[1])})
    write_tsv(perf, part)
    fitted.done()
    return scores
