"""The cohort's image QC (``qc.tsv``): each model-grid image's quality measures, their
robust z-scores, and the outliers (``qc_outliers.txt``, ready for ``--exclude-label``).

Flagged images are reported, not removed: a reviewer decides, and reruns with
``--exclude-label group/qc_outliers.txt`` (or an edited copy) to leave them out.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from bgs_app.config import RunContext
from bgs_app.group.stage import stage
from bgs_app.stats.qc import (
    MIN_SPREAD,
    OUTLIER_Z,
    QC_MEASURES,
    flag_outliers,
    intensity_outliers,
    similarity_inside,
    template_on_grid,
)
from bgs_app.utils.atomic import write_text
from bgs_app.utils.progress import tracked
from bgs_app.utils.tables import write_table

LOGGER = logging.getLogger("bgs_app")

QC_COLUMNS = {
    "participant_id": "BIDS participant", "session_id": "BIDS session (n/a: none)",
    **QC_MEASURES,
    **{f"z_{m}": f"Robust z-score of {m} in this cohort: (x - median) / max(1.4826 MAD, "
                 f"{MIN_SPREAD[m]:g})" for m in QC_MEASURES},
    "outlier": f"Whether any measure is missing or has a robust z beyond ±{OUTLIER_Z:g}",
    "reason": "The measures that flag the image",
}


def image_qc(context: RunContext, images: pd.DataFrame) -> pd.DataFrame:
    """Write ``qc.tsv`` (and ``qc_outliers.txt``) for the model-grid images (skipped when
    current).

    Parameters
    ----------
    context : RunContext
    images : pandas.DataFrame
        See :class:`bgs_app.group.inputs.GroupInputs` (``path``, ``idps``).

    Returns
    -------
    pandas.DataFrame
        The table of ``qc.tsv``.
    """
    out = context.group_dir / "qc.tsv"
    files = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in images["path"]]
    files += [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in images["idps"]
              if isinstance(p, Path)]
    qc_stage = stage(context, "qc", [files, "qc-2", OUTLIER_Z], [out])
    if qc_stage.current():
        return pd.read_csv(out, sep="\t", na_values="n/a", dtype={"session_id": str})
    reference, mask = template_on_grid(context.template.t1w, context.template.mask,
                                       nb.load(images["path"].iloc[0]))
    rows = []
    for row in tracked(images.itertuples(), "image QC", len(images), "image"):
        data = np.asarray(nb.load(row.path).dataobj, dtype=np.float32)
        idps = (pd.read_csv(row.idps, sep="\t").iloc[0] if isinstance(row.idps, Path)
                else pd.Series(dtype=float))
        rows.append({"participant_id": row.participant_id, "session_id": row.session_id,
                     "brain_ml": _ml(idps.get("tiv")), "etiv_ml": _ml(idps.get("etiv")),
                     "template_similarity": round(similarity_inside(data, reference, mask), 4),
                     "intensity_outliers": round(intensity_outliers(data), 5)})
    table = flag_outliers(pd.DataFrame(rows))
    write_table(table, out, QC_COLUMNS,
                {"OutlierThreshold": OUTLIER_Z,
                 "Description": "Image QC of the model-grid images: flagged images are "
                                "reported, not removed (qc_outliers.txt lists their "
                                "participants for --exclude-label)"})
    flagged = sorted(table.loc[table["outlier"], "participant_id"].unique())
    write_text(context.group_dir / "qc_outliers.txt", "".join(f"{p}\n" for p in flagged))
    LOGGER.info("Image QC: %d of %d image(s) flagged (%s); to leave them out, rerun with "
                "--exclude-label %s", int(table["outlier"].sum()), len(table),
                ", ".join(flagged[:10]) + (" ..." if len(flagged) > 10 else "") or "none",
                context.group_dir / "qc_outliers.txt")
    qc_stage.done()
    return table


def _ml(value) -> float:
    return round(float(value) / 1000.0, 1) if value is not None and pd.notna(value) \
        else float("nan")


