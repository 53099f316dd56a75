"""The IDP baseline (``idp_scores.tsv``): regional volumes predict each genotype on the
CNN's split, so that the two are compared on the same held-out participants."""

from __future__ import annotations

import logging

import pandas as pd

from bgs_app.config import RunContext
from bgs_app.group.stage import performance_part, stage

LOGGER = logging.getLogger("bgs_app")


def idp_baseline(context: RunContext, images: pd.DataFrame, dosages: pd.DataFrame,
                 split: pd.Series) -> pd.DataFrame | None:
    """Fit the baseline (skipped when current); return its scores (long) or None.

    Returns
    -------
    pandas.DataFrame or None
        The rows of ``idp_scores.tsv``; None without IDP tables (a user template
        without an atlas).
    """
    from bgs_app.stats.baseline import fit_idp_baseline, idp_features
    from bgs_app.stats.tables import write_idp_scores
    from bgs_app.utils.atomic import write_tsv

    paths = images.dropna(subset=["idps"])
    part = performance_part(context, "idp")
    if paths.empty:
        part.unlink(missing_ok=True)
        LOGGER.warning("No IDP tables found (custom template without an atlas?); the IDP "
                       "baseline is skipped")
        return None
    tables = [pd.read_csv(p, sep="\t", na_values="n/a") for p in paths["idps"]]
    idps = pd.concat(tables, ignore_index=True).groupby("participant_id").mean(
        numeric_only=True)
    out = context.group_dir
    fitted = stage(context, "idp", [idps.round(6).to_numpy().tolist(),
                                    dosages.to_numpy().tolist(), split.to_dict(),
                                    context.config.seed],
                   [out / "idp_scores.tsv", part])
    if fitted.current():
        LOGGER.info("IDP baseline is current; skipped")
        return pd.read_csv(out / "idp_scores.tsv", sep="\t", na_values="n/a")
    LOGGER.info("IDP baseline: %d participants, %d features", len(idps), idps.shape[1])
    scores, perf = fit_idp_baseline(idp_features(idps), dosages, split,
                                    seed=context.config.seed)
    write_idp_scores(scores, out)
    write_tsv(perf, part)
    fitted.done()
    return scores
