"""The model-grid image: brain-extracted T1w, affinely aligned, cropped box, normalised."""

from __future__ import annotations

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

from bgs_app.grid import model_grid


def make_model_image(t1w, mask, affine_transform, resolution: float, out_file) -> None:
    """Bring the brain-extracted T1w into the model box through the affine, normalised.

    Parameters
    ----------
    t1w, mask : path-like
        Bias-corrected T1w and brain mask (subject space).
    affine_transform : path-like
        Template-to-subject ITK affine (antspyx forward transform of the affine stage).
    resolution : float
        Grid spacing in mm.
    out_file : path-like
    """
    import ants

    shape, affine = model_grid(resolution)
    ref_path = Path(out_file).with_name("model_grid_reference.nii.gz")
    nb.Nifti1Image(np.zeros(shape, np.float32), affine).to_filename(ref_path)
    ref = ants.image_read(str(ref_path))
    image = ants.image_read(str(t1w)) * ants.image_read(str(mask))
    moved = ants.apply_transforms(ref, image, [str(affine_transform)], interpolator="linear")
    moved_mask = ants.apply_transforms(ref, ants.image_read(str(mask)), [str(affine_transform)],
                                       interpolator="linear")
    data = moved.numpy().astype(np.float32)
    inside = moved_mask.numpy() > 0.5
    if not inside.any():
        raise ValueError("the brain mask falls outside the model grid")
    data = data / float(data[inside].mean())
    data[~inside] = 0.0
    out = nb.Nifti1Image(data.astype(np.float32), affine)
    out.header.set_xyzt_units("mm", "sec")
    out.to_filename(out_file)
    ref_path.unlink()


class _ModelGridInputSpec(BaseInterfaceInputSpec):
    t1w = File(exists=True, mandatory=True)
    mask = File(exists=True, mandatory=True)
    affine = File(exists=True, mandatory=True)
    resolution = traits.Float(2.0, usedefault=True)


class _ModelGridOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class ModelGridImage(SimpleInterface):
    """The CNN's input image for one T1w."""

    input_spec = _ModelGridInputSpec
    output_spec = _ModelGridOutputSpec

    def _run_interface(self, runtime):
        out = Path(runtime.cwd) / "model_t1w.nii.gz"
        make_model_image(self.inputs.t1w, self.inputs.mask, self.inputs.affine,
                         self.inputs.resolution, out)
        self._results["out_file"] = str(out)
        return runtime
