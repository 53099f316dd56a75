"""Loading and checking T1w images; a head mask and a first guess of the head's position."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nb
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)
from scipy import ndimage

from bgs_app.errors import BgsError

#: Smallest field of view (mm, every axis) that can hold a whole brain.
MIN_FOV_MM = 110.0
#: Brain centre in template world coordinates (RAS mm) and its height below the vertex.
TEMPLATE_BRAIN_CENTRE = (0.0, -18.0, 18.0)
VERTEX_TO_CENTRE_MM = 80.0
#: Fewest distinct intensities of a T1w (a uint8 scan has up to 255; masks and label
#: maps have a handful).
MIN_DISTINCT_VALUES = 16


class ImageCheckError(BgsError):
    """A T1w image that cannot be processed (wrong dimensions, partial field of view...)."""


def load_t1w(in_file: str | os.PathLike, out_file: str | os.PathLike) -> dict:
    """Check a T1w image and write it reoriented to RAS as float32.

    Checks: readable header and data (a truncated or corrupt file is named as such); a
    finite, invertible affine; 3-D (a 4-D file with one volume is squeezed; more volumes
    are refused); voxel sizes between 0.2 and 6 mm; a field of view of at least
    ``MIN_FOV_MM`` in every direction (a partial field of view cannot hold a brain);
    finite voxels (NaN or infinite values are refused, not zeroed); and an intensity
    spread (a constant image, or one with a handful of values such as a mask, is
    refused). Whether the image is a plausible T1w brain is checked after registration
    (:mod:`bgs_app.interfaces.quality`).

    Parameters
    ----------
    in_file : path-like
        The raw T1w image (any orientation, any data type).
    out_file : path-like
        Where to write the RAS, float32 image.

    Returns
    -------
    dict
        ``orientation`` (original axis codes), ``zooms``, ``shape``, ``fov_mm``.

    Raises
    ------
    ImageCheckError
        With a message naming the file and the problem.
    """
    name = Path(in_file).name
    try:
        img = nb.load(in_file)
    except Exception as err:  # nibabel raises many types for broken files
        raise ImageCheckError(f"{name}: cannot read the image ({err})") from err
    affine = np.asarray(img.affine, float)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise ImageCheckError(
            f"{name}: the image's affine (its sform/qform orientation) is singular or not "
            "finite, so its voxels have no position in space; fix the header (e.g. with "
            "the scanner's converter, dcm2niix) and rerun")
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        img = img.slicer[..., 0]
    elif len(shape) != 3:
        raise ImageCheckError(f"{name}: a T1w image must be 3-D, this one has shape {shape}; "
                              "split or average its volumes first")
    zooms = np.array(img.header.get_zooms()[:3], float)
    if np.any(zooms < 0.2) or np.any(zooms > 6.0):
        raise ImageCheckError(f"{name}: implausible voxel size {tuple(np.round(zooms, 3))} mm")
    fov = zooms * np.array(img.shape[:3])
    if np.any(fov < MIN_FOV_MM):
        raise ImageCheckError(
            f"{name}: partial field of view ({' x '.join(f'{v:.0f}' for v in fov)} mm); a whole "
            f"brain needs at least {MIN_FOV_MM:.0f} mm in every direction. Exclude this image "
            "(e.g. with --bids-filter-file) or acquire a whole-brain T1w")
    orientation = "".join(nb.aff2axcodes(img.affine))
    ras = nb.as_closest_canonical(img)
    try:
        data = np.asarray(ras.dataobj, dtype=np.float32)
    except Exception as err:  # EOFError, zlib.error, OSError, ValueError ...
        raise ImageCheckError(f"{name}: cannot read the image data, the file is truncated or "
                              f"corrupt ({type(err).__name__}: {err}); copy it again") from err
    bad = int((~np.isfinite(data)).sum())
    if bad:
        raise ImageCheckError(
            f"{name}: {bad} voxel(s) are NaN or infinite ({100 * bad / data.size:.2g} % of "
            "the image); bgs_app does not guess their values: fix the image (or replace "
            "them by 0 yourself if they lie outside the head)")
    data = np.clip(data, 0.0, None)
    if data.max() <= 0:
        raise ImageCheckError(f"{name}: the image is empty (no positive voxel)")
    positive = data[data > 0]
    low, high = np.percentile(positive, [1, 99])
    distinct = np.unique(positive[:: max(1, positive.size // 200_000)]).size
    if high <= low or distinct < MIN_DISTINCT_VALUES:
        raise ImageCheckError(
            f"{name}: the image has no intensity contrast ({distinct} distinct value(s), "
            f"1st-99th percentile {low:g}-{high:g}): a constant image, a mask or a label map "
            "is not a T1w")
    out = nb.Nifti1Image(data, ras.affine)
    out.header.set_xyzt_units("mm", "sec")
    out.to_filename(out_file)
    return {"orientation": orientation, "zooms": zooms.tolist(), "shape": list(img.shape[:3]),
            "fov_mm": fov.tolist()}


def head_mask_and_init(in_file: str | os.PathLike, mask_file: str | os.PathLike,
                       init_file: str | os.PathLike) -> list[float]:
    """A head mask and an initial template-to-subject translation from the head's shape.

    Whole-head scans hold neck and shoulders below the brain, so the image's centre of
    mass is a poor guess for the brain's. The vertex (top of the head) is not: the
    brain's centre lies ~80 mm below it, under the centre of the top 100 mm of head.

    Parameters
    ----------
    in_file : path-like
        RAS image (see :func:`load_t1w`).
    mask_file, init_file : path-like
        Outputs: head mask (NIfTI) and an ITK affine transform (``.mat``) mapping
        template points to subject points (antspyx's ``initial_transform`` convention).

    Returns
    -------
    list of float
        The estimated brain centre (RAS mm, subject space).
    """
    import ants

    img = nb.load(in_file)
    data = img.get_fdata(dtype=np.float32)
    zooms = np.array(img.header.get_zooms()[:3], float)
    # Work at ~3 mm: the head's outline needs no more, and it is 27 times cheaper.
    step = np.maximum(1, np.round(3.0 / zooms)).astype(int)
    small = data[:: step[0], :: step[1], :: step[2]]
    smooth = ndimage.gaussian_filter(small, 2.0 / (zooms * step))
    positive = smooth[smooth > 0]
    threshold = 0.15 * np.percentile(positive, 98) if positive.size else 0.0
    head = smooth > threshold
    labels, n = ndimage.label(head)
    if n > 1:
        sizes = ndimage.sum(head, labels, range(1, n + 1))
        head = labels == (int(np.argmax(sizes)) + 1)
    head = ndimage.binary_fill_holes(ndimage.binary_closing(head, iterations=2))
    if head.sum() == 0:
        raise ImageCheckError(f"{Path(in_file).name}: no head found in the image")
    full = np.zeros(data.shape, bool)
    up = head.repeat(step[0], 0).repeat(step[1], 1).repeat(step[2], 2)
    full[...] = up[: data.shape[0], : data.shape[1], : data.shape[2]]
    nb.Nifti1Image(full.astype(np.uint8), img.affine).to_filename(mask_file)
    small_affine = img.affine @ np.diag([*step, 1])
    world = np.argwhere(head) @ small_affine[:3, :3].T + small_affine[:3, 3]
    top = float(np.percentile(world[:, 2], 99.9))
    slab = world[world[:, 2] > top - 100.0]
    centre = np.array([slab[:, 0].mean(), slab[:, 1].mean(), top - VERTEX_TO_CENTRE_MM])
    lps = np.array([-1.0, -1.0, 1.0])
    shift = (centre - np.array(TEMPLATE_BRAIN_CENTRE)) * lps
    init = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                      translation=shift.tolist())
    ants.write_transform(init, str(init_file))
    return centre.tolist()


class _LoadT1wInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="raw T1w image")


class _LoadT1wOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="checked T1w, RAS, float32")
    orientation = traits.Str(desc="orientation of the raw image")


class LoadT1w(SimpleInterface):
    """Check a T1w image (3-D, voxel size, field of view) and reorient it to RAS."""

    input_spec = _LoadT1wInputSpec
    output_spec = _LoadT1wOutputSpec

    def _run_interface(self, runtime):
        out = Path(runtime.cwd) / "t1w_ras.nii.gz"
        info = load_t1w(self.inputs.in_file, out)
        self._results.update(out_file=str(out), orientation=info["orientation"])
        return runtime


class _HeadInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="RAS T1w image")


class _HeadOutputSpec(TraitedSpec):
    head_mask = File(exists=True, desc="head mask")
    init_transform = File(exists=True, desc="initial template-to-subject transform (ITK)")


class HeadMaskInit(SimpleInterface):
    """Head mask and a vertex-based initialisation of the registration."""

    input_spec = _HeadInputSpec
    output_spec = _HeadOutputSpec

    def _run_interface(self, runtime):
        mask = Path(runtime.cwd) / "head_mask.nii.gz"
        init = Path(runtime.cwd) / "init_tpl2t1w.mat"
        head_mask_and_init(self.inputs.in_file, mask, init)
        self._results.update(head_mask=str(mask), init_transform=str(init))
        return runtime
