"""Discrete tissue segmentation (``_dseg``) from the tissue probability maps."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec

from bgs_app.bids.derivatives import DSEG_LABELS

__all__ = ["DSEG_LABELS", "TissueDseg", "tissue_dseg"]

def tissue_dseg(gm, wm, csf, mask, out_file) -> None:
    """Label every brain voxel with its most probable tissue (GM 1, WM 2, CSF 3).

    Parameters
    ----------
    gm, wm, csf : path-like
        Posterior probability maps on one grid.
    mask : path-like
        Brain mask on that grid: voxels outside are 0.
    out_file : path-like
        The ``uint8`` label image.
    """
    probs = [nb.load(str(p)) for p in (gm, wm, csf)]
    stack = np.stack([p.get_fdata(dtype=np.float32) for p in probs])
    brain = np.asarray(nb.load(str(mask)).dataobj) > 0
    labels = (np.argmax(stack, axis=0) + 1).astype(np.uint8)
    labels[~brain | (stack.sum(axis=0) <= 0)] = 0
    out = nb.Nifti1Image(labels, probs[0].affine)
    out.header.set_xyzt_units("mm", "sec")
    out.to_filename(str(out_file))


class _InputSpec(BaseInterfaceInputSpec):
    gm = File(exists=True, mandatory=True)
    wm = File(exists=True, mandatory=True)
    csf = File(exists=True, mandatory=True)
    mask = File(exists=True, mandatory=True, desc="brain mask")


class _OutputSpec(TraitedSpec):
    out_file = File(exists=True)


class TissueDseg(SimpleInterface):
    """Discrete GM/WM/CSF segmentation from the posteriors."""

    input_spec = _InputSpec
    output_spec = _OutputSpec

    def _run_interface(self, runtime):
        out = Path(runtime.cwd) / "dseg.nii.gz"
        tissue_dseg(self.inputs.gm, self.inputs.wm, self.inputs.csf, self.inputs.mask, out)
        self._results["out_file"] = str(out)
        return runtime
