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


def make_logjacobian_image(warp, model_t1w, out_file) -> None:
    """The log-Jacobian determinant of the SyN deformation on the model grid.

    ANTs computes it on the displacement field's own grid (template space, the
    registration's spacing); it is box-averaged to about the model spacing and resampled
    (linear) onto the model grid, zero outside the model image's brain.

    Parameters
    ----------
    warp : path-like
        The SyN displacement field (``t1w2tpl_warp``: defined on the template, applied after
        the affine), so the determinant is the subject's local volume relative to the
        template once the affine is removed.
    model_t1w : path-like
        The model-grid image (grid and brain).
    out_file : path-like
    """
    import ants
    from scipy.ndimage import uniform_filter

    field = ants.image_read(str(warp))
    domain = field.split_channels()[0] if field.components > 1 else field
    logjac = ants.create_jacobian_determinant_image(domain, str(warp), do_log=True)
    data = logjac.numpy()
    model = nb.load(model_t1w)
    spacing = float(np.mean(logjac.spacing))
    resolution = float(np.abs(np.diag(model.affine)[:3]).mean())
    size = max(1, int(round(resolution / spacing)))
    if size > 1:
        data = uniform_filter(data, size=size, mode="constant")
    smoothed = ants.from_numpy(data.astype(np.float32), origin=logjac.origin,
                               spacing=logjac.spacing, direction=logjac.direction)
    ref = ants.image_read(str(model_t1w))
    values = ants.resample_image_to_target(smoothed, ref, interp_type="linear").numpy()
    brain = np.asarray(model.dataobj) != 0
    out = nb.Nifti1Image(np.where(brain, values, 0.0).astype(np.float32), model.affine)
    out.header.set_xyzt_units("mm", "sec")
    out.to_filename(out_file)


class _LogJacobianInputSpec(BaseInterfaceInputSpec):
    warp = File(exists=True, mandatory=True, desc="SyN displacement field (template domain)")
    model_t1w = File(exists=True, mandatory=True, desc="the model-grid image")


class LogJacobianImage(SimpleInterface):
    """The log-Jacobian map of the nonlinear registration on the model grid (TBM)."""

    input_spec = _LogJacobianInputSpec
    output_spec = _ModelGridOutputSpec

    def _run_interface(self, runtime):
        out = Path(runtime.cwd) / "model_logjacobian.nii.gz"
        make_logjacobian_image(self.inputs.warp, self.inputs.model_t1w, out)
        self._results["out_file"] = str(out)
        return runtime
