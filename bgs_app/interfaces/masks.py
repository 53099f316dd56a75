"""Brain masks: the template mask brought back to the subject, refined; skull stripping."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec
from scipy import ndimage


def refine_mask(prob_file, t1w_file, out_file) -> None:
    """Threshold a warped template mask and refine it on the subject's intensities.

    The warped mask (probability after linear interpolation) is thresholded at 0.5;
    its largest connected part is kept and holes are filled. In a 2-voxel band at its
    edge, voxels darker than a tenth of the brain's median intensity (air, bone) are
    removed: the template's mask may reach into dark skull when a brain is smaller
    than the template's.
    """
    prob = nb.load(prob_file)
    full = np.asarray(prob.dataobj) > 0.5
    mask_out = np.zeros(full.shape, bool)
    if full.any():
        # Work inside the mask's bounding box (plus a margin): binary morphology is costly.
        idx = np.argwhere(full)
        lo = np.maximum(idx.min(0) - 4, 0)
        hi = np.minimum(idx.max(0) + 5, full.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        mask = full[box]
        labels, n = ndimage.label(mask)
        if n > 1:
            sizes = ndimage.sum(mask, labels, range(1, n + 1))
            mask = labels == (int(np.argmax(sizes)) + 1)
        mask = ndimage.binary_fill_holes(mask)
        t1 = nb.load(t1w_file).get_fdata(dtype=np.float32)[box]
        median = float(np.median(t1[mask]))
        band = mask & ~ndimage.binary_erosion(mask, iterations=2)
        mask &= ~(band & (t1 < 0.1 * median))
        mask = ndimage.binary_fill_holes(ndimage.binary_opening(mask, iterations=1))
        mask_out[box] = mask
    mask = mask_out
    out = nb.Nifti1Image(mask.astype(np.uint8), prob.affine)
    out.header.set_xyzt_units("mm", "sec")
    out.to_filename(out_file)


class _RefineInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="template mask resampled to the subject")
    t1w = File(exists=True, mandatory=True, desc="bias-corrected T1w")


class _OutSpec(TraitedSpec):
    out_file = File(exists=True)


class RefineMask(SimpleInterface):
    """Binary brain mask from the warped template mask, refined on the T1w."""

    input_spec = _RefineInputSpec
    output_spec = _OutSpec

    def _run_interface(self, runtime):
        out = Path(runtime.cwd) / "brain_mask.nii.gz"
        refine_mask(self.inputs.in_file, self.inputs.t1w, out)
        self._results["out_file"] = str(out)
        return runtime


#: An image is taken as brain-extracted when its faces are background and its non-zero
#: voxels fill less than this (litres): a brain with its CSF is 1.1–2.0 l, a head > 3 l.
STRIPPED_MAX_LITRES = 2.5
#: The share of face voxels allowed to be non-zero in a brain-extracted image.
STRIPPED_MAX_FACE_FRACTION = 1e-3


def is_skull_stripped(path: str | Path) -> bool:
    """Whether a T1w image is already brain-extracted (``--skull-strip-t1w auto``).

    As sMRIPrep's test, the faces of the image must be background (zero); and its
    non-zero voxels must fill less than :data:`STRIPPED_MAX_LITRES`, which no whole head
    does, so that a head with a zero background is not mistaken for a brain.

    Parameters
    ----------
    path : str or path-like
        A T1w image (NIfTI or MGH).

    Returns
    -------
    bool
    """
    img = nb.load(str(path))
    data = np.asarray(img.dataobj)
    if data.ndim == 4:
        data = data[..., 0]
    faces = [data[0], data[-1], data[:, 0], data[:, -1], data[:, :, 0], data[:, :, -1]]
    n_face = sum(f.size for f in faces)
    nonzero_face = sum(int(np.count_nonzero(f)) for f in faces)
    if nonzero_face > STRIPPED_MAX_FACE_FRACTION * n_face:
        return False
    litres = np.count_nonzero(data) * float(np.prod(img.header.get_zooms()[:3])) / 1e6
    return bool(litres < STRIPPED_MAX_LITRES)


def input_brain_mask(t1w_file, out_file) -> None:
    """The brain mask of an input that is already brain-extracted: its non-zero voxels.

    The largest connected part is kept and its holes filled (dark ventricles or sulci
    set to zero by the extraction stay inside).
    """
    img = nb.load(str(t1w_file))
    mask = np.asarray(img.dataobj) > 0
    if mask.ndim == 4:
        mask = mask[..., 0]
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, range(1, n + 1))
        mask = labels == (int(np.argmax(sizes)) + 1)
    mask = ndimage.binary_fill_holes(mask)
    out = nb.Nifti1Image(mask.astype(np.uint8), img.affine)
    out.header.set_xyzt_units("mm", "sec")
    out.to_filename(str(out_file))


class _InputMaskInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True,
                   desc="brain-extracted T1w, reoriented (zero outside the brain)")


class InputBrainMask(SimpleInterface):
    """Brain mask of a brain-extracted input (``--skull-strip-t1w skip``)."""

    input_spec = _InputMaskInputSpec
    output_spec = _OutSpec

    def _run_interface(self, runtime):
        out = Path(runtime.cwd) / "brain_mask.nii.gz"
        input_brain_mask(self.inputs.in_file, out)
        self._results["out_file"] = str(out)
        return runtime
