"""Nipype interfaces around the model: scores and saliency maps for one subject."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bgs_app.interfaces._threads import limit_threads, limit_torch_threads


class _ScoreInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="model-grid T1w")
    model_dir = traits.Directory(exists=True, mandatory=True, desc="model bundle")
    num_threads = traits.Int(1, usedefault=True)


class _ScoreOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="scores TSV (with a JSON sidecar beside it)")


class ScoreImage(SimpleInterface):
    """Brain-genotype scores of one model-grid image."""

    input_spec = _ScoreInputSpec
    output_spec = _ScoreOutputSpec

    def _run_interface(self, runtime):
        from bgs_app.model.bundle import bundle_summary, load_bundle
        from bgs_app.model.scores import SCORES_SIDECAR, load_volume, predict_volumes, scores_frame
        from bgs_app.utils.atomic import write_json, write_tsv

        limit_torch_threads(self.inputs.num_threads)
        model, meta = load_bundle(self.inputs.model_dir)
        volume = load_volume(self.inputs.in_file, meta["grid"])
        probs = predict_volumes(model, [volume])[0]
        snps = [s["snp"] for s in meta["snps"]]
        counted = {s["snp"]: s.get("counted_allele") for s in meta["snps"]}
        out = Path(runtime.cwd) / "scores.tsv"
        write_tsv(scores_frame(probs, snps, counted), out)
        sidecar = {k: v for k, v in SCORES_SIDECAR.items() if k in
                   ("snp", "counted_allele", "score", "p0", "p1", "p2")}
        sidecar["Model"] = bundle_summary(self.inputs.model_dir, meta)
        write_json(out.with_suffix(".json"), sidecar)
        self._results["out_file"] = str(out)
        return runtime


class _SaliencyInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="model-grid T1w")
    model_dir = traits.Directory(exists=True, mandatory=True, desc="model bundle")
    method = traits.Enum("gradient", "integrated_gradients", "smoothgrad", usedefault=True)
    n_steps = traits.Int(32, usedefault=True)
    num_threads = traits.Int(1, usedefault=True)


class _SaliencyOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(File(exists=True), desc="one map per SNP, head order")


class SaliencyMaps(SimpleInterface):
    """One saliency map per SNP on the model grid (brain-normalised absolute values)."""

    input_spec = _SaliencyInputSpec
    output_spec = _SaliencyOutputSpec

    def _run_interface(self, runtime):
        from bgs_app.model.bundle import load_bundle
        from bgs_app.model.saliency import attribute_heads, heads_per_pass, normalised_abs
        from bgs_app.model.scores import load_volume

        limit_torch_threads(self.inputs.num_threads)
        model, meta = load_bundle(self.inputs.model_dir)
        img = nb.load(self.inputs.in_file)
        volume = load_volume(self.inputs.in_file, meta["grid"])
        out = []
        n_snps = len(meta["snps"])
        chunk = heads_per_pass(model, n_snps, volume.size)
        for j in range(n_snps):
            if j % chunk == 0:  # the chain rule when the heads outnumber the features
                block = attribute_heads(model, volume, range(j, min(j + chunk, n_snps)),
                                        method=self.inputs.method,
                                        n_steps=self.inputs.n_steps)
            attr = block[j % chunk]
            path = Path(runtime.cwd) / f"saliency_{j:03d}.nii.gz"
            amap = nb.Nifti1Image(normalised_abs(attr, volume != 0), img.affine)
            amap.header.set_xyzt_units("mm", "sec")
            amap.to_filename(path)
            out.append(str(path))
        self._results["out_files"] = out
        return runtime


class _NativeInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True)
    reference = File(exists=True, mandatory=True, desc="the subject's T1w")
    transform = File(exists=True, mandatory=True,
                     desc="template-to-T1w affine (resamples template images into the T1w)")
    num_threads = traits.Int(1, usedefault=True)


class _NativeOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(File(exists=True))


class MapsToNative(SimpleInterface):
    """Bring model-grid maps into the subject's T1w space (linear interpolation)."""

    input_spec = _NativeInputSpec
    output_spec = _NativeOutputSpec

    def _run_interface(self, runtime):
        import ants

        limit_threads(self.inputs.num_threads)
        ref = ants.image_read(self.inputs.reference)
        out = []
        for i, path in enumerate(self.inputs.in_files):
            moved = ants.apply_transforms(ref, ants.image_read(path), [self.inputs.transform],
                                          interpolator="linear")
            dest = Path(runtime.cwd) / f"native_{i:03d}.nii.gz"
            ants.image_write(moved, str(dest))
            img = nb.load(dest)
            data = np.asarray(img.dataobj, np.float32)
            nb.Nifti1Image(data, img.affine).to_filename(dest)
            out.append(str(dest))
        self._results["out_files"] = out
        return runtime
