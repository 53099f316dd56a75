"""Transform files: affine inversion and composite transforms (ITK, written by antspyx)."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)


def invert_affine(in_file, out_file) -> None:
    """Write the inverse of an ITK affine transform."""
    import ants

    tx = ants.read_transform(str(in_file))
    ants.write_transform(ants.invert_ants_transform(tx), str(out_file))


def composite_transform(transforms, invert, out_file) -> None:
    """Write a list of transforms as one ITK composite transform (HDF5, ``.h5``).

    The composite resamples exactly as the list does with ``antsApplyTransforms`` (or
    :func:`ants.apply_transforms`): it is the file sMRIPrep and fMRIPrep write as
    ``from-T1w_to-<template>_mode-image_xfm.h5``.

    Parameters
    ----------
    transforms : list of path-like
        In antspyx order (``fwdtransforms``: the displacement field first, then the
        affine): ITK affines (``.mat``) and displacement fields (``.nii.gz``).
    invert : list of bool
        Invert that transform (affines only), as ``whichtoinvert``.
    out_file : path-like
        The ``.h5`` file.
    """
    import ants

    parts = []
    for path, flip in zip(transforms, invert, strict=True):
        path = str(path)
        if path.endswith((".nii", ".nii.gz")):
            if flip:
                raise ValueError(f"{path}: a displacement field cannot be inverted here")
            parts.append(ants.transform_from_displacement_field(ants.image_read(path)))
        else:
            tx = ants.read_transform(path)
            parts.append(ants.invert_ants_transform(tx) if flip else tx)
    ants.write_transform(ants.compose_ants_transforms(parts), str(out_file))


class _InvertInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)


class _OutputSpec(TraitedSpec):
    out_file = File(exists=True)


class InvertAffine(SimpleInterface):
    """Invert an affine transform."""

    input_spec = _InvertInputSpec
    output_spec = _OutputSpec

    def _run_interface(self, runtime):
        out = Path(runtime.cwd) / "inverse.mat"
        invert_affine(self.inputs.in_file, out)
        self._results["out_file"] = str(out)
        return runtime


class _CompositeInputSpec(BaseInterfaceInputSpec):
    transforms = InputMultiObject(File(exists=True), mandatory=True,
                                  desc="transforms in antspyx order")
    invert = traits.List(traits.Bool, [], usedefault=True,
                         desc="invert each transform (default: none)")
    out_name = traits.Str("composite_xfm.h5", usedefault=True)


class CompositeTransform(SimpleInterface):
    """One ITK composite transform (``.h5``) from a list of transforms."""

    input_spec = _CompositeInputSpec
    output_spec = _OutputSpec

    def _run_interface(self, runtime):
        out = Path(runtime.cwd) / self.inputs.out_name
        invert = list(self.inputs.invert) or [False] * len(self.inputs.transforms)
        composite_transform(self.inputs.transforms, invert, out)
        self._results["out_file"] = str(out)
        return runtime
