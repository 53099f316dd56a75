"""Small, self-contained figures (PNG as data URIs) for the HTML reports."""

from __future__ import annotations

import base64
import io

import numpy as np


def to_data_uri(fig, facecolor: str = "black") -> str:
    """Render a matplotlib figure as a PNG data URI and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72, bbox_inches="tight", facecolor=facecolor)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _crop_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    if idx.size == 0:
        return tuple(slice(None) for _ in mask.shape)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, mask.shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def contour_panels(background: np.ndarray, contours: list[tuple[np.ndarray, str]],
                   zooms, crop_to: np.ndarray | None = None, margin_mm: float = 10.0,
                   title: str = "") -> str:
    """Sagittal, coronal and axial slices through the centre, with contour overlays.

    Parameters
    ----------
    background : numpy.ndarray
        RAS-oriented image.
    contours : list of (array, colour)
        Masks or probability maps (contoured at 0.5).
    zooms : sequence of float
        Voxel sizes (for the aspect ratio).
    crop_to : numpy.ndarray, optional
        Crop all panels to this mask's bounding box plus ``margin_mm``.
    title : str

    Returns
    -------
    str
        A PNG data URI.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    zooms = np.asarray(zooms, float)[:3]
    if crop_to is not None:
        box = _crop_box(crop_to, int(np.ceil(margin_mm / zooms.min())))
        background = background[box]
        contours = [(c[box], colour) for c, colour in contours]
        centre_mask = crop_to[box]
    else:
        centre_mask = background > 0
    centre = (np.argwhere(centre_mask).mean(0).round().astype(int)
              if centre_mask.any() else np.array(background.shape) // 2)
    vmax = np.percentile(background[background > 0], 99) if (background > 0).any() else 1.0
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    views = [(0, (1, 2)), (1, (0, 2)), (2, (0, 1))]
    for ax, (axis, (a, b)) in zip(axes, views, strict=True):
        index = [slice(None)] * 3
        index[axis] = int(np.clip(centre[axis], 0, background.shape[axis] - 1))
        ax.imshow(background[tuple(index)].T, cmap="gray", origin="lower", vmin=0, vmax=vmax,
                  aspect=zooms[b] / zooms[a], interpolation="nearest")
        for data, colour in contours:
            sl = data[tuple(index)].T.astype(float)
            if sl.min() < 0.5 < sl.max():
                ax.contour(sl, levels=[0.5], colors=colour, linewidths=0.8)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, color="white", fontsize=9)
    fig.patch.set_facecolor("black")
    return to_data_uri(fig)
