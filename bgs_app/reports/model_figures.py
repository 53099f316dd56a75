"""Figures of the model: training curves and group saliency maps."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from bgs_app.reports.figures import to_data_uri


def training_curves(log: pd.DataFrame, title: str = "") -> str:
    """Training and validation loss, and validation AUC per SNP, by epoch (PNG data URI).

    Parameters
    ----------
    log : pandas.DataFrame
        ``training_log.tsv`` rows (``epoch``, ``train_loss``, ``val_loss``,
        ``val_auc_<snp>``...; an ensemble's also ``member``).
    title : str
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    # An ensemble's log has a ``member`` column: every network's losses, the first's AUCs.
    members = [part for _, part in log.groupby("member")] if "member" in log else [log]
    for i, part in enumerate(members):
        left.plot(part["epoch"], part["train_loss"], label="training" if i == 0 else None,
                  color="#34495e", alpha=1.0 if i == 0 else 0.45)
        left.plot(part["epoch"], part["val_loss"], label="validation" if i == 0 else None,
                  color="#c0392b", alpha=1.0 if i == 0 else 0.45)
    left.set_xlabel("epoch")
    left.set_ylabel("masked cross-entropy")
    left.legend(fontsize=8, title=f"{len(members)} networks" if len(members) > 1 else None,
                title_fontsize=7)
    aucs = [c for c in log.columns if c.startswith("val_auc_")]
    for col in aucs:
        right.plot(members[0]["epoch"], members[0][col], lw=1, label=col[len("val_auc_"):])
    right.axhline(0.5, color="#999", lw=0.8, ls="--")
    right.set_xlabel("epoch")
    right.set_ylabel("validation AUC")
    if 0 < len(aucs) <= 16:
        right.legend(fontsize=6, ncol=2)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return to_data_uri(fig, facecolor="white")


def saliency_figure(path: str | Path, template_t1w: str | Path, title: str) -> str:
    """A group saliency map over the template (orthogonal slices; PNG data URI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from nilearn import plotting

    img = nb.load(path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    positive = data[data > 0]
    threshold = float(np.percentile(positive, 90)) if positive.size else 0.0
    fig = plt.figure(figsize=(8, 2.8))
    display = plotting.plot_stat_map(img, bg_img=str(template_t1w), threshold=threshold,
                                     display_mode="ortho", cmap="hot", figure=fig,
                                     title=title, annotate=True, draw_cross=False,
                                     colorbar=True, symmetric_cbar=False)
    uri = to_data_uri(fig, facecolor="white")
    display.close()
    return uri
