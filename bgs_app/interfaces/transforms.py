"""Affine transform files: inversion (ITK ``.mat`` written by antspyx)."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec


def invert_affine(in_file, out_file) -> None:
    """Write the inverse of an ITK affine transform."""
    import ants

    tx = ants.read_transform(str(in_file))
    ants.write_transform(ants.invert_ants_transform(tx), str(out_file))


class _InvertInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)


class _InvertOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class InvertAffine(SimpleInterface):
    """Invert an affine transform."""

    input_spec = _InvertInputSpec
    output_spec = _InvertOutputSpec

    def _run_interface(self, runtime):
        out = Path(runtime.cwd) / "inverse.mat"
        invert_affine(self.inputs.in_file, out)
        self._results["out_file"] = str(out)
        return runtime
