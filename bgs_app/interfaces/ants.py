"""antspyx steps: N4 bias correction, registration, applying transforms, Atropos."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bgs_app.interfaces._threads import limit_threads

#: Registration resolution (mm): moving images finer than this are resampled first; a
#: coarser moving image (e.g. 4 mm) is registered at its own voxel size (see
#: :func:`registration_levels`).
REGISTRATION_MM = 2.0


def registration_levels(fixed_mm: float, moving_mm: float) -> int:
    """How many of the finest pyramid levels to leave out when the moving image is
    coarser than the fixed one: the fixed image is then resampled to the moving voxel
    size and every level keeps its physical resolution (a 4 mm image against the 2 mm
    template: the 8 and 4 mm levels run, on a 4 mm template; the 2 mm one would only
    interpolate the 4 mm image). 0 for moving images at :data:`REGISTRATION_MM` or
    finer."""
    ratio = max(float(moving_mm), REGISTRATION_MM) / float(fixed_mm)
    return int(np.floor(np.log2(ratio) + 1e-6)) if ratio > 1 else 0


def n4_correct(in_file, mask_file, out_file, *, shrink_mm: float = 8.0,
               iterations=(50, 50, 30)) -> None:
    """N4 bias-field correction (antspyx) inside a mask; writes ``out_file``.

    The bias field is fitted on the image shrunk to about ``shrink_mm`` voxels (bias
    fields are smooth; at 1 mm input this is N4's shrink factor 8).
    """
    import ants

    img = ants.image_read(str(in_file))
    shrink_factor = max(1, int(round(shrink_mm / min(img.spacing))))
    mask = ants.image_read(str(mask_file))
    out = ants.n4_bias_field_correction(
        img, mask=mask, shrink_factor=shrink_factor,
        convergence={"iters": list(iterations), "tol": 1e-6})
    ants.image_write(out, str(out_file))


def register(fixed_file, moving_file, out_prefix, *, transform: str = "Affine",
             fixed_mask=None, fixed_mask_dilation: int = 0, moving_mask=None,
             moving_mask_dilation: int = 0, initial_transform=None,
             sloppy: bool = False, coarse: bool = False, seed: int = 0) -> dict:
    """Register ``moving`` (subject) to ``fixed`` (template) with antspyx.

    Parameters
    ----------
    fixed_file, moving_file : path-like
    out_prefix : str
        Prefix of the written transforms.
    transform : {"Affine", "SyNOnly"}
        An affine stage, or a SyN stage after ``initial_transform``.
    fixed_mask : path-like, optional
        Template mask restricting the metric (dilated by ``fixed_mask_dilation`` voxels),
        so that the subject's scalp cannot pull a brain-only template.
    moving_mask : path-like, optional
        Multiply the moving image by this mask first (skull stripping), dilated by
        ``moving_mask_dilation`` voxels so that the brain's own edge drives the metric.
    initial_transform : path-like, optional
        ITK transform (template to subject) to start from.
    sloppy : bool
        Fewer iterations, for tests.
    coarse : bool
        Stop the affine stage at half the registration resolution (a first pass).
    seed : int
        Seed of the metric's random sampling (through ``ANTS_RANDOM_SEED``; see
        :func:`ants_seed`): the same seed and inputs, on one thread, give the same
        transform.

    Returns
    -------
    dict
        ``forward`` (transforms that bring the subject into template space, in antspyx
        order) and ``inverse`` (template into subject) with ``inverse_invert`` flags.
    """
    import ants

    fixed = ants.image_read(str(fixed_file))
    moving = ants.image_read(str(moving_file))
    if moving_mask is not None:
        strip = ants.image_read(str(moving_mask))
        if moving_mask_dilation:
            strip = ants.iMath(strip, "MD", int(moving_mask_dilation))
        moving = moving * strip
    if min(moving.spacing) < REGISTRATION_MM:
        moving = ants.resample_image(moving, (REGISTRATION_MM,) * 3, use_voxels=False,
                                     interp_type=0)
    drop = registration_levels(min(fixed.spacing), min(moving.spacing))
    scale = 2 ** drop
    if drop:  # a coarse moving image: the template at its voxel size, levels kept in mm
        fixed = ants.resample_image(fixed, tuple(float(s) * scale for s in fixed.spacing),
                                    use_voxels=False, interp_type=0)
    mask = None
    if fixed_mask is not None:
        mask = ants.image_read(str(fixed_mask))
        if drop:
            mask = ants.resample_image_to_target(mask, fixed, interp_type="nearestNeighbor")
        if fixed_mask_dilation:
            mask = ants.iMath(mask, "MD", max(1, int(fixed_mask_dilation) // scale))
    kwargs = {}
    if transform == "Affine":
        levels = 2 if (sloppy or coarse) else 3
        iterations = ((200, 100) if sloppy else (500, 250, 100))[:levels]
        shrinks = (4, 2, 1)[:levels]
        kept = [k for k, f in enumerate(shrinks) if f >= scale] or [0]
        kwargs.update(aff_iterations=tuple(iterations[k] for k in kept),
                      aff_shrink_factors=tuple(max(1, shrinks[k] // scale) for k in kept),
                      aff_smoothing_sigmas=tuple((2, 1, 0)[k] / scale if drop
                                                 else (2, 1, 0)[k] for k in kept))
    elif transform == "SyNOnly":
        iterations = (20, 5, 0) if sloppy else (40, 20, 0)
        # antspyx halves the shrink factor per level down to 1 (4x2x1 for three levels):
        # leaving out the finest levels keeps the others' physical resolution; the
        # update field's smoothing is in voxels (3 at 2 mm: 6 mm).
        kwargs.update(reg_iterations=iterations[:max(1, len(iterations) - drop)],
                      syn_metric="mattes", flow_sigma=3 / scale, total_sigma=0)
    else:
        raise ValueError(f"unknown transform {transform!r}")
    os.environ["ANTS_RANDOM_SEED"] = str(ants_seed(seed))
    result = ants.registration(
        fixed, moving, type_of_transform=transform, mask=mask,
        initial_transform=str(initial_transform) if initial_transform else None,
        outprefix=str(out_prefix), aff_metric="mattes", **kwargs)
    forward = [str(p) for p in result["fwdtransforms"]]
    inverse = [str(p) for p in result["invtransforms"]]
    # Keep copies under our prefix: antspyx may point at the initial transform's file.
    forward = [_own_copy(p, out_prefix) for p in forward]
    inverse = [_own_copy(p, out_prefix) for p in inverse]
    invert = [p.endswith(".mat") for p in inverse]
    return {"forward": forward, "inverse": inverse, "inverse_invert": invert}


def ants_seed(seed: int) -> int:
    """ANTs' random seed for bgs_app's ``--seed``: a positive 32-bit integer.

    ANTs takes a seed of 0 to mean "seed from the clock", so ``--seed 0`` (the default)
    must not reach it as 0.
    """
    return int(seed) % 2_147_483_646 + 1


def _own_copy(path: str, prefix) -> str:
    if Path(path).name.startswith(Path(str(prefix)).name):
        return path
    target = f"{prefix}{Path(path).name}"
    shutil.copyfile(path, target)
    return target


def apply_transforms(reference, moving, transforms, out_file, *, invert=None,
                     interpolation: str = "linear") -> None:
    """Resample ``moving`` onto ``reference`` through ``transforms`` (antspyx order)."""
    import ants

    out = ants.apply_transforms(
        fixed=ants.image_read(str(reference)), moving=ants.image_read(str(moving)),
        transformlist=[str(t) for t in transforms],
        whichtoinvert=list(invert) if invert is not None else None,
        interpolator=interpolation)
    ants.image_write(out, str(out_file))


def atropos_segment(in_file, mask_file, priors, out_prefix, *, prior_weight: float = 0.25,
                    iterations: int = 3, resolution_mm: float = 2.5,
                    prior_transforms=None, prior_invert=None) -> list[str]:
    """Three-class tissue segmentation (Atropos), with template priors when given.

    Atropos runs on a ``resolution_mm`` copy of the image (it is the costly step at
    1 mm); its posteriors are interpolated back to the native grid and renormalised
    inside the mask. Without priors (a user template without tissue maps), classes
    are initialised by k-means and ordered by intensity (CSF < GM < WM on T1w).
    Atropos's random number generator starts from its constant seed (``-r 0``), so the
    same inputs give the same segmentation.
    With ``prior_transforms`` the priors are template-space maps, brought straight onto
    the working grid (cheaper than warping them to the native grid first).

    Returns
    -------
    list of str
        GM, WM and CSF posterior probability maps.
    """
    import ants

    img = ants.image_read(str(in_file))
    mask = ants.image_read(str(mask_file))
    work_img, work_mask = img, mask
    if resolution_mm and min(img.spacing) < resolution_mm:
        spacing = (resolution_mm,) * 3
        work_img = ants.resample_image(img, spacing, use_voxels=False, interp_type=0)
        work_mask = ants.resample_image_to_target(mask, work_img, interp_type="nearestNeighbor")
    if priors and prior_transforms:
        work_priors = [ants.apply_transforms(
            fixed=work_img, moving=ants.image_read(str(p)),
            transformlist=[str(t) for t in prior_transforms],
            whichtoinvert=list(prior_invert) if prior_invert is not None else None,
            interpolator="linear") * work_mask for p in priors]
    elif priors:
        work_priors = [ants.resample_image_to_target(ants.image_read(str(p)), work_img,
                                                     interp_type="linear") * work_mask
                       for p in priors]
    if priors:
        total = work_priors[0] + work_priors[1] + work_priors[2]
        arr = total.numpy()
        arr[arr < 1e-6] = 1.0
        norm = total.new_image_like(arr)
        init = [p / norm for p in work_priors]
        result = ants.atropos(a=work_img, x=work_mask, i=init, m="[0.1,1x1x1]",
                              c=f"[{iterations},0]", priorweight=prior_weight, r=0)
        posteriors = list(result["probabilityimages"])
    else:
        result = ants.atropos(a=work_img, x=work_mask, i="Kmeans[3]", m="[0.1,1x1x1]",
                              c=f"[{iterations},0]", r=0)
        posteriors = list(result["probabilityimages"])
        data = work_img.numpy()
        means = [float((p.numpy() * data).sum() / max(p.numpy().sum(), 1e-6))
                 for p in posteriors]
        csf, gm, wm = (posteriors[i] for i in np.argsort(means))
        posteriors = [gm, wm, csf]
    if work_img is not img:
        posteriors = [ants.resample_image_to_target(p, img, interp_type="linear")
                      for p in posteriors]
    inside = mask.numpy() > 0
    stack = np.stack([np.clip(p.numpy(), 0, None) for p in posteriors])
    total = stack.sum(0)
    total[total <= 0] = 1.0
    stack = np.where(inside, stack / total, 0.0).astype(np.float32)
    outputs = []
    for label, prob in zip(("GM", "WM", "CSF"), stack, strict=True):
        path = f"{out_prefix}label-{label}_probseg.nii.gz"
        ants.image_write(img.new_image_like(prob), path)
        outputs.append(path)
    return outputs


class _N4InputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)
    mask_file = File(exists=True, mandatory=True)
    shrink_mm = traits.Float(8.0, usedefault=True, desc="voxel size of the bias fit (mm)")
    iterations = traits.List(traits.Int, [50, 50, 30], usedefault=True)
    num_threads = traits.Int(1, usedefault=True)


class _OutFileSpec(TraitedSpec):
    out_file = File(exists=True)


class N4BiasCorrection(SimpleInterface):
    """N4 bias-field correction with antspyx."""

    input_spec = _N4InputSpec
    output_spec = _OutFileSpec

    def _run_interface(self, runtime):
        limit_threads(self.inputs.num_threads)
        out = Path(runtime.cwd) / "t1w_n4.nii.gz"
        n4_correct(self.inputs.in_file, self.inputs.mask_file, out,
                   shrink_mm=self.inputs.shrink_mm, iterations=self.inputs.iterations)
        self._results["out_file"] = str(out)
        return runtime


class _RegisterInputSpec(BaseInterfaceInputSpec):
    fixed = File(exists=True, mandatory=True, desc="template")
    moving = File(exists=True, mandatory=True, desc="subject image")
    transform = traits.Enum("Affine", "SyNOnly", usedefault=True)
    fixed_mask = File(exists=True)
    fixed_mask_dilation = traits.Int(0, usedefault=True)
    moving_mask = File(exists=True)
    moving_mask_dilation = traits.Int(0, usedefault=True)
    initial_transform = File(exists=True)
    sloppy = traits.Bool(False, usedefault=True)
    coarse = traits.Bool(False, usedefault=True)
    seed = traits.Int(0, usedefault=True, desc="seed of the metric sampling")
    num_threads = traits.Int(1, usedefault=True)


class _RegisterOutputSpec(TraitedSpec):
    forward_transforms = OutputMultiObject(File(exists=True))
    inverse_transforms = OutputMultiObject(File(exists=True))
    inverse_invert = traits.List(traits.Bool)
    affine = File(exists=True, desc="the affine part (template to subject, ITK)")
    warp = File(desc="forward displacement field (subject to template), SyN only")
    inverse_warp = File(desc="inverse displacement field, SyN only")


class Register(SimpleInterface):
    """Register a subject image to the template with antspyx (affine or SyN)."""

    input_spec = _RegisterInputSpec
    output_spec = _RegisterOutputSpec

    def _run_interface(self, runtime):
        limit_threads(self.inputs.num_threads)
        opt = {}
        for name in ("fixed_mask", "moving_mask", "initial_transform"):
            value = getattr(self.inputs, name)
            opt[name] = value if isdefined(value) else None
        result = register(self.inputs.fixed, self.inputs.moving,
                          os.path.join(runtime.cwd, "reg_"), transform=self.inputs.transform,
                          fixed_mask_dilation=self.inputs.fixed_mask_dilation,
                          moving_mask_dilation=self.inputs.moving_mask_dilation,
                          sloppy=self.inputs.sloppy, coarse=self.inputs.coarse,
                          seed=self.inputs.seed, **opt)
        self._results.update(forward_transforms=result["forward"],
                             inverse_transforms=result["inverse"],
                             inverse_invert=result["inverse_invert"])
        mats = [p for p in result["forward"] if p.endswith(".mat")]
        self._results["affine"] = mats[-1]
        warps = [p for p in result["forward"] if p.endswith(".nii.gz")]
        inverse_warps = [p for p in result["inverse"] if p.endswith(".nii.gz")]
        if warps:
            self._results.update(warp=warps[0], inverse_warp=inverse_warps[0])
        return runtime


class _ApplyInputSpec(BaseInterfaceInputSpec):
    reference = File(exists=True, mandatory=True)
    moving = File(exists=True, mandatory=True)
    transforms = InputMultiObject(File(exists=True), mandatory=True)
    invert = traits.List(traits.Bool)
    interpolation = traits.Enum("linear", "nearestNeighbor", "genericLabel", "bSpline",
                                usedefault=True)
    out_name = traits.Str("resampled.nii.gz", usedefault=True)
    num_threads = traits.Int(1, usedefault=True)


class ApplyTransforms(SimpleInterface):
    """Resample an image through antspyx transforms."""

    input_spec = _ApplyInputSpec
    output_spec = _OutFileSpec

    def _run_interface(self, runtime):
        limit_threads(self.inputs.num_threads)
        out = Path(runtime.cwd) / self.inputs.out_name
        invert = self.inputs.invert if isdefined(self.inputs.invert) else None
        apply_transforms(self.inputs.reference, self.inputs.moving, self.inputs.transforms,
                         out, invert=invert, interpolation=self.inputs.interpolation)
        self._results["out_file"] = str(out)
        return runtime


class _AtroposInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)
    mask_file = File(exists=True, mandatory=True)
    priors = InputMultiObject(File(exists=True), desc="GM, WM, CSF priors (optional)")
    prior_transforms = InputMultiObject(File(exists=True),
                                        desc="template-to-subject transforms of the priors")
    prior_invert = traits.List(traits.Bool)
    prior_weight = traits.Float(0.25, usedefault=True)
    iterations = traits.Int(3, usedefault=True)
    num_threads = traits.Int(1, usedefault=True)


class _AtroposOutputSpec(TraitedSpec):
    gm = File(exists=True)
    wm = File(exists=True)
    csf = File(exists=True)


class AtroposSegment(SimpleInterface):
    """GM/WM/CSF posterior probabilities with antspyx Atropos and template priors."""

    input_spec = _AtroposInputSpec
    output_spec = _AtroposOutputSpec

    def _run_interface(self, runtime):
        limit_threads(self.inputs.num_threads)
        import tempfile

        # antspyx writes Atropos's priors to temporary files: keep them in the work folder.
        previous, tempfile.tempdir = tempfile.tempdir, runtime.cwd
        try:
            priors = self.inputs.priors if isdefined(self.inputs.priors) else None
            transforms = (self.inputs.prior_transforms
                          if isdefined(self.inputs.prior_transforms) else None)
            invert = self.inputs.prior_invert if isdefined(self.inputs.prior_invert) else None
            gm, wm, csf = atropos_segment(self.inputs.in_file, self.inputs.mask_file,
                                          priors, os.path.join(runtime.cwd, "seg_"),
                                          prior_transforms=transforms,
                                          prior_invert=invert,
                                          prior_weight=self.inputs.prior_weight,
                                          iterations=self.inputs.iterations)
        finally:
            tempfile.tempdir = previous
        self._results.update(gm=gm, wm=wm, csf=csf)
        return runtime
