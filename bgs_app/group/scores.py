"""Scores (``scores.tsv``): every image scored by the model that did not train on it, or by
a released model (apply mode); and the CNN's held-out performance, a part of
``performance.tsv`` kept in the work folder until the associations stage assembles it."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bgs_app.config import RunContext
from bgs_app.group.stage import performance_part
from bgs_app.utils.atomic import write_tsv
from bgs_app.utils.tables import write_table

LOGGER = logging.getLogger("bgs_app")


def score_held_out(context: RunContext, models: list, store, images: pd.DataFrame,
                   split: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Probabilities of every image from the model that did not train on it.

    Under ``torchrun`` every rank calls it and scores a share of the images.

    Returns
    -------
    probs : numpy.ndarray
        (images, SNPs, 3).
    scored : pandas.Series
        Per image, the set or fold the scoring model held it in.
    """
    from bgs_app.model.scores import predict_rows

    probs = np.full((len(images), models[0].model.n_snps, 3), np.nan)
    scored = pd.Series("", index=images.index)
    for trained in models:
        if trained.name == "model":
            rows = list(range(len(images)))
        else:
            test = set(trained.test)
            rows = [i for i, p in enumerate(images["participant_id"]) if p in test]
        # Under torchrun every rank scores its share (and every rank gets all scores).
        probs[rows] = predict_rows(trained.model, store, rows, device=context.device,
                                   label=f"{trained.name}: scoring")
        scored.iloc[rows] = [split[p] for p in images["participant_id"].iloc[rows]]
    return probs, scored


def write_held_out_scores(context: RunContext, probs: np.ndarray, scored: pd.Series,
                          images: pd.DataFrame, dosages: pd.DataFrame, models: list,
                          alleles: pd.DataFrame | None = None) -> None:
    """``scores.tsv`` and the CNN's performance on the held-out participants."""
    from bgs_app.model.scores import SCORES_SIDECAR, scores_long

    snps = list(dosages.columns)
    long = scores_long(probs, snps, images["participant_id"].tolist(),
                       images["session_id"].tolist(), scored.tolist(), alleles=alleles)
    write_table(long, context.group_dir / "scores.tsv", SCORES_SIDECAR,
                {"Models": {m.name: m.meta["weights_sha256"] for m in models}})
    held = (scored.str.startswith("fold-") | (scored == "test")).to_numpy()
    write_tsv(performance_rows(probs[held], images["participant_id"][held], dosages, snps,
                               alleles), performance_part(context, "cnn"))


def performance_rows(probs: np.ndarray, participants: pd.Series, dosages: pd.DataFrame,
                     snps: list[str], alleles: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per SNP, how the scores predict the genotypes, counting participants: the images
    of a participant (its sessions) are averaged first.

    Parameters
    ----------
    probs : numpy.ndarray
        (images, SNPs, 3) class probabilities.
    participants : pandas.Series
        The participant of each image.
    dosages : pandas.DataFrame
        Participants x SNPs.
    snps : list of str
        Head order.
    alleles : pandas.DataFrame, optional
        Written beside each SNP.
    """
    from bgs_app.stats.metrics import genotype_metrics

    ids = pd.Index(participants.to_numpy())
    order = list(dict.fromkeys(ids))
    flat = pd.DataFrame(probs.reshape(len(ids), -1), index=ids)
    mean = flat.groupby(level=0, sort=False).mean().reindex(order).to_numpy()
    mean = mean.reshape(len(order), probs.shape[1], 3)
    rows = []
    for j, snp in enumerate(snps):
        d = dosages.reindex(order)[snp].to_numpy(float)
        row = {"model": "cnn", "snp": snp}
        if alleles is not None and snp in alleles.index:
            row.update(alleles.loc[snp, ["counted_allele", "other_allele",
                                         "counted_allele_freq"]].to_dict())
        rows.append({**row, **genotype_metrics(d, mean[:, j])})
    return pd.DataFrame(rows)


def score_applied(context: RunContext, model, meta: dict, images: pd.DataFrame,
                  dosages: pd.DataFrame | None, alleles: pd.DataFrame | None = None,
                  flipped: list[str] | None = None) -> np.ndarray:
    """Apply mode: every image scored by the released model (``scores.tsv``), and its
    performance on this site's genotypes when they are given.

    Returns
    -------
    numpy.ndarray
        (images, SNPs, 3) probabilities.
    """
    from bgs_app.model.scores import SCORES_SIDECAR, load_volume, predict_volumes, scores_long
    from bgs_app.utils.progress import tracked

    config = context.config
    snps = [s["snp"] for s in meta["snps"]]
    volumes = tracked((load_volume(p, meta["grid"]) for p in images["path"]), "scoring",
                      len(images), "image")
    probs = predict_volumes(model, volumes, device=context.device)
    LOGGER.info("Scored %d image(s) with %s", len(images), config.model)
    long = scores_long(probs, snps, images["participant_id"].tolist(),
                       images["session_id"].tolist(), ["apply"] * len(images),
                       alleles=alleles)
    extra = {"Models": {"model": meta["weights_sha256"]}, "ModelPath": str(config.model)}
    if flipped:
        extra["AllelesFlippedToModel"] = sorted(flipped)
    write_table(long, context.group_dir / "scores.tsv", SCORES_SIDECAR, extra)
    part = performance_part(context, "cnn")
    part.parent.mkdir(parents=True, exist_ok=True)
    if dosages is not None:
        write_tsv(performance_rows(probs, images["participant_id"], dosages, snps, alleles),
                  part)
    elif part.exists():
        part.unlink()
    return probs
