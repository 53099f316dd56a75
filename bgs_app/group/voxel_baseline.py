"""The voxel-ridge baselines (``voxel_scores.tsv``): a ridge logistic regression on the
model-grid voxels (``voxel-ridge``), and on the log-Jacobian maps when the participant
level wrote them (``voxel-ridge-logjac``), predicts each genotype on the CNN's split, so
that the CNN is compared with a linear model on the same images and the same held-out
participants."""

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


def voxel_baseline(context: RunContext, stores: dict, images: pd.DataFrame,
                   dosages: pd.DataFrame, split: pd.Series) -> pd.DataFrame | None:
    """Fit the baselines (skipped when current, or with ``--no-voxel-baseline``); return
    their scores (long) or None.

    Parameters
    ----------
    context : RunContext
    stores : dict
        ``{"t1w": store[, "logjacobian": store]}`` (:class:`bgs_app.model.store.
        TensorStore`, rows in the order of ``images``): ``voxel-ridge`` is fitted on the
        T1w images, ``voxel-ridge-logjac`` on the log-Jacobian maps when given.
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
    from bgs_app.stats.voxel_baseline import (
        MODEL,
        MODEL_LOGJACOBIAN,
        fit_voxel_baseline,
        voxel_features,
    )
    from bgs_app.utils.atomic import write_tsv

    out = context.group_dir
    part = performance_part(context, "voxel")
    if context.config.no_voxel_baseline:
        part.unlink(missing_ok=True)
        (out / "voxel_scores.tsv").unlink(missing_ok=True)
        (out / "voxel_scores.json").unlink(missing_ok=True)
        return None
    names = {"t1w": MODEL, "logjacobian": MODEL_LOGJACOBIAN}
    fitted = stage(context, "voxel", [{k: s.index["sha256"].tolist()
                                       for k, s in sorted(stores.items())},
                                      dosages.to_numpy().tolist(), split.to_dict(),
                                      context.config.seed],
                   [out / "voxel_scores.tsv", part])
    if fitted.current():
        LOGGER.info("Voxel-ridge baseline is current; skipped")
        return pd.read_csv(out / "voxel_scores.tsv", sep="\t", na_values="n/a")
    participants = list(dict.fromkeys(images["participant_id"]))
    scores, perf, voxels = [], [], {}
    for kind, store in stores.items():
        volumes = participant_volumes(store, images, participants)
        spacing = float(np.abs(np.asarray(store.grid["affine"])[:3, :3]).max())
        features = pd.DataFrame(voxel_features(volumes, spacing), index=participants)
        del volumes
        LOGGER.info("%s baseline: %d participants, %d voxels", names[kind], *features.shape)
        s, p = fit_voxel_baseline(features, dosages, split, seed=context.config.seed,
                                  model=names[kind])
        scores.append(s)
        perf.append(p)
        voxels[names[kind]] = int(features.shape[1])
    scores = pd.concat(scores, ignore_index=True)
    write_voxel_scores(scores, out, {"Voxels": voxels})
    write_tsv(pd.concat(perf, ignore_index=True), part)
    fitted.done()
    return scores
