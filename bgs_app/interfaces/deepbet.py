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
        run_in_fresh_process(self.inputs.in_file, out, self.inputs.num_threads)
        self._results["out_file"] = str(out)
        return runtime


def run_in_fresh_process(in_file, out_file, num_threads: int = 1) -> None:
    """:func:`deepbet_mask` in a new Python process.

    A Nipype worker is forked from its workflow's process; when that process has run
    torch before (a user's own pipeline, a test session), torch's OpenMP threads do not
    survive the fork and the forked worker's first convolution never returns. A fresh
    interpreter (about 2 s of imports) has no such state.

    Raises
    ------
    RuntimeError
        deepbet failed; the message ends with its error.
    """
    import subprocess
    import sys

    code = ("import sys\nfrom bgs_app.interfaces.deepbet import deepbet_mask\n"
            "deepbet_mask(sys.argv[1], sys.argv[2], int(sys.argv[3]))\n")
    result = subprocess.run([sys.executable, "-c", code, str(in_file), str(out_file),
                             str(int(num_threads))], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise RuntimeError(f"deepbet failed on {Path(in_file).name}: "
                           f"{lines[-1] if lines else 'exit ' + str(result.returncode)}")
