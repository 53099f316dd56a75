"""Brain masks from deepbet, a published deep brain extractor (``--skull-strip-method
deepbet``, the default).

deepbet (Fisch et al., 2024; MIT licence) ships its TorchScript weights (its own files,
not a user's) inside its PyPI wheel, so nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

#: The probability threshold of deepbet's own command line.
THRESHOLD = 0.5


def deepbet_available() -> bool:
    """Whether the optional ``deepbet`` package can be imported."""
    return importlib.util.find_spec("deepbet") is not None


def deepbet_mask(in_file: str | Path, out_file: str | Path, num_threads: int = 1) -> float:
    """Write deepbet's brain mask of a T1w image; return its volume in ml.

    Parameters
    ----------
    in_file : path-like
        A whole-head T1w image (any orientation; deepbet works in RAS internally and
        writes the mask on the input's grid).
    out_file : path-like
        The binary mask (NIfTI, uint8).
    num_threads : int
        Torch threads (the extraction runs on the CPU: a participant-level node must not
        take a GPU that the group level may be using).
    """
    import nibabel as nb
    import numpy as np
    import torch
    from deepbet import BrainExtraction

    torch.set_num_threads(max(1, int(num_threads)))
    img = nb.load(str(in_file))
    _, mask, _ = BrainExtraction(no_gpu=True).run(img, threshold=THRESHOLD)
    data = np.asarray(mask.dataobj).astype(np.uint8)
    out = nb.Nifti1Image(data, img.affine)
    out.header.set_xyzt_units("mm", "sec")
    out.to_filename(str(out_file))
    return float(data.sum() * np.prod(img.header.get_zooms()[:3]) / 1000.0)


class _InputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="T1w image (RAS)")
    num_threads = traits.Int(1, usedefault=True, desc="torch threads")


class _OutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="binary brain mask")


class DeepBetMask(SimpleInterface):
    """Brain mask of a T1w image by deepbet."""

    input_spec = _InputSpec
    output_spec = _OutputSpec

    def _run_interface(self, runtime):
        out = Path(runtime.cwd) / "brain_mask.nii.gz"
        deepbet_mask(self.inputs.in_file, out, self.inputs.num_threads)
        self._results["out_file"] = str(out)
        return runtime
