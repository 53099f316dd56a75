"""Anatomical preprocessing of one T1w image: the heart of the participant level."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bgs_app.interfaces.ants import (
    ApplyTransforms,
    AtroposSegment,
    N4BiasCorrection,
    Register,
)
from bgs_app.interfaces.idps import ComputeIDPs
from bgs_app.interfaces.images import HeadMaskInit, LoadT1w
from bgs_app.interfaces.masks import InputBrainMask, RefineMask
from bgs_app.interfaces.modelgrid import LogJacobianImage, ModelGridImage
from bgs_app.interfaces.quality import PlausibilityCheck
from bgs_app.interfaces.segmentation import TissueDseg
from bgs_app.interfaces.transforms import CompositeTransform, InvertAffine
from bgs_app.templates import ATLAS_NAME, Template
from bgs_app.workflows.memory import node_mem_gb

#: ``--skull-strip-t1w`` values of a workflow (``auto`` is decided per image, before the
#: workflow is built: see :func:`bgs_app.workflows.base.skull_strip_mode`).
SKULL_STRIP_MODES = ("force", "skip")
#: ``--skull-strip-method`` values.
SKULL_STRIP_METHODS = ("ants", "deepbet")

OUTPUTS = (
    "t1w_preproc", "head_mask", "brain_mask", "t1w2tpl_affine", "tpl2t1w_affine",
    "t1w2tpl_warp", "tpl2t1w_warp", "t1w2tpl_xfm", "tpl2t1w_xfm", "gm_probseg",
    "wm_probseg", "csf_probseg", "dseg", "atlas_dseg", "idps", "model_t1w",
    "model_logjacobian", "plausibility",
)


def _file_name(path: str) -> str:
    import os

    return os.path.basename(path)


def _template_mask_nodes(wf: pe.Workflow, template: Template, n4: pe.Node, stage: str,
                         omp_nthreads: int) -> tuple[pe.Node, pe.Node]:
    """The template's brain mask resampled onto the bias-corrected T1w (``mask_<stage>``;
    its transforms are connected by the caller) and refined on it (``refine_<stage>``)."""
    warp = pe.Node(ApplyTransforms(moving=str(template.mask), interpolation="linear",
                                   out_name=f"mask_{stage}.nii.gz", num_threads=omp_nthreads),
                   name=f"mask_{stage}", mem_gb=node_mem_gb(f"mask_{stage}"),
                   n_procs=omp_nthreads)
    refine = pe.Node(RefineMask(), name=f"refine_{stage}",
                     mem_gb=node_mem_gb(f"refine_{stage}"))
    wf.connect([(n4, warp, [("out_file", "reference")]),
                (warp, refine, [("out_file", "in_file")]),
                (n4, refine, [("out_file", "t1w")])])
    return warp, refine


def init_anat_preproc_wf(*, template: Template, resolution: float = 2.0,
                         registration: str = "syn", sloppy: bool = False,
                         omp_nthreads: int = 1, participant_id: str = "sub-unknown",
                         session_id: str = "", seed: int = 0,
                         check_plausibility: bool = True, skull_strip: str = "force",
                         skull_strip_method: str = "deepbet",
                         name: str = "anat_preproc_wf") -> pe.Workflow:
    """Preprocess one T1w image: checks, N4, registration, mask, tissues, IDPs, model grid.

    Parameters
    ----------
    template : bgs_app.templates.Template
        Registration template (see :func:`bgs_app.templates.get_template`).
    resolution : float
        Model-grid spacing in mm.
    registration : {"syn", "affine"}
        ``syn``: affine then SyN (masks and segmentation priors follow the nonlinear
        transform); ``affine``: affine only. The model-grid image always uses the affine.
    sloppy : bool
        Fewer iterations everywhere (tests only).
    omp_nthreads : int
        Threads per node (ITK).
    participant_id, session_id : str
        Written in the IDP table.
    seed : int
        Seed of the registrations' metric sampling (Atropos uses its constant seed):
        with one thread per process (``omp_nthreads=1``) the same inputs and seed give
        byte-identical outputs (ANTs' multi-threaded metrics sum in thread order).
    check_plausibility : bool
        Fail an image whose brain or intracranial volume, or whose similarity to the
        template after registration, is implausible (see
        :mod:`bgs_app.interfaces.quality`); False measures without failing.
    skull_strip : {"force", "skip"}
        ``force``: extract the brain (with ``skull_strip_method``); ``skip``: the input is
        already brain-extracted, and its non-zero voxels are the brain mask.
    skull_strip_method : {"deepbet", "ants"}
        ``deepbet``: the deep brain extractor deepbet [@deepbet], whose mask also
        restricts the brain-extracted registration passes; ``ants``: the template's
        brain mask through the inverse registration, refined on the image (it cut into
        the cortex at the vertex of real heads, see ``benchmarks/skull_strip.py``).
    name : str
        Workflow name.

    Inputs
    ------
    t1w
        A raw T1w image (any orientation, whole head or skull-stripped).

    Outputs
    -------
    t1w_preproc
        Bias-corrected T1w in RAS orientation (native space).
    head_mask, brain_mask
        Head and brain masks (native space).
    t1w2tpl_affine, tpl2t1w_affine
        ITK affine transforms; ``t1w2tpl_affine`` resamples the T1w into the template.
    t1w2tpl_warp, tpl2t1w_warp
        SyN displacement fields (applied after / before the affine); undefined with
        ``registration="affine"``.
    t1w2tpl_xfm, tpl2t1w_xfm
        The whole transform (SyN and affine, or the affine alone) as one ITK composite
        transform (``.h5``), as sMRIPrep writes it.
    gm_probseg, wm_probseg, csf_probseg
        Tissue probability maps (native space).
    dseg
        Discrete tissue segmentation (GM 1, WM 2, CSF 3; native space).
    atlas_dseg
        The label atlas in native space.
    idps
        One-row TSV of tissue, intracranial and regional volumes.
    model_t1w
        The CNN's input: brain-extracted, affinely aligned, model box, mean-normalised.
    model_logjacobian
        The log-Jacobian determinant of the SyN deformation on the model grid (zero
        outside the brain; tensor-based morphometry): the CNN's alternative input
        (``--cnn-input logjacobian``); undefined with ``registration="affine"``.
    plausibility
        Brain-mask volume, eTIV and template similarity (``brain_ml``, ``etiv_ml``,
        ``template_similarity``, ``problems``). ``idps`` and ``model_t1w`` are given only
        for a plausible image (unless ``check_plausibility`` is False).
    """
    if registration not in ("syn", "affine"):
        raise ValueError("registration must be 'syn' or 'affine'")
    if skull_strip not in SKULL_STRIP_MODES:
        raise ValueError(f"skull_strip must be one of {SKULL_STRIP_MODES}")
    if skull_strip_method not in SKULL_STRIP_METHODS:
        raise ValueError(f"skull_strip_method must be one of {SKULL_STRIP_METHODS}")
    # Where the brain mask comes from: the template's, brought back by the registration
    # (ants), or one made before registration (deepbet, or the input's own extraction).
    own_mask = skull_strip == "skip" or skull_strip_method == "deepbet"
    if skull_strip == "skip":
        mask_text = ("The input was already brain-extracted: its non-zero voxels (holes "
                     "filled) gave the brain mask.")
    elif skull_strip_method == "deepbet":
        mask_text = ("The brain mask was computed with deepbet [@deepbet], a deep "
                     "brain extractor, and restricted the brain-extracted passes.")
    else:
        mask_text = ("The template's brain mask, brought back through the inverse "
                     "transform and refined on the image's intensities, gave the brain "
                     "mask.")
    wf = pe.Workflow(name=name)
    wf.__desc__ = (
        "The T1-weighted (T1w) image was checked, reoriented to RAS and corrected for "
        "intensity non-uniformity with N4 [@n4] (ANTs through antspyx). It was registered "
        f"to the {template.name} template in two affine passes — first with the whole head, "
        "initialised from the position of the vertex and with the metric restricted to the "
        "template's dilated brain mask so that the scalp could not pull the registration, "
        "then with the brain extracted"
        + (", followed by symmetric image normalisation (SyN) [@ants]" if registration == "syn"
           else "")
        + " (at 2 mm, or at the image's own voxel size when it was coarser). " + mask_text
        + " Grey matter, white matter and CSF were segmented with "
        "Atropos [@atropos] "
        + ("using the template's tissue probability maps as priors, and regional grey-matter "
           f"volumes were computed over the {ATLAS_NAME} atlas brought to the subject. "
           if template.gm is not None else "initialised by k-means. ")
        + "The CNN's input was the brain-extracted "
        f"image resampled through the affine transform into a {resolution:g} mm grid covering "
        "the brain and divided by its mean inside the brain mask."
        + (" The log-Jacobian determinant of the SyN deformation (tensor-based "
           "morphometry: the log of the local volume relative to the template) was "
           "written on the same grid." if registration == "syn" else "")
        + (" Images whose brain-mask or estimated intracranial volume was implausible, or "
           "that correlated weakly with the template after registration, were excluded."
           if check_plausibility else "")
    )
    inputnode = pe.Node(niu.IdentityInterface(fields=["t1w"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=list(OUTPUTS)), name="outputnode")

    load = pe.Node(LoadT1w(), name="load_t1w", mem_gb=node_mem_gb("load_t1w"))
    head = pe.Node(HeadMaskInit(), name="head_mask", mem_gb=node_mem_gb("head_mask"))
    n4 = pe.Node(N4BiasCorrection(shrink_mm=12.0 if sloppy else 8.0,
                                  iterations=[20, 10] if sloppy else [50, 50, 30],
                                  num_threads=omp_nthreads), name="n4",
                 mem_gb=node_mem_gb("n4"), n_procs=omp_nthreads)
    reg_head = pe.Node(Register(fixed=str(template.t1w_reg), fixed_mask=str(template.mask_reg),
                                fixed_mask_dilation=4, transform="Affine", sloppy=sloppy,
                                coarse=True, seed=seed, num_threads=omp_nthreads),
                       name="register_head", mem_gb=node_mem_gb("register_head"),
                       n_procs=omp_nthreads)
    reg_brain = pe.Node(Register(fixed=str(template.t1w_reg), fixed_mask=str(template.mask_reg),
                                 fixed_mask_dilation=2, moving_mask_dilation=3,
                                 transform="Affine", sloppy=sloppy, seed=seed,
                                 num_threads=omp_nthreads), name="register_brain",
                        mem_gb=node_mem_gb("register_brain"),
                        n_procs=omp_nthreads)
    invert = pe.Node(InvertAffine(), name="invert_affine", mem_gb=node_mem_gb("invert_affine"))
    has_priors = None not in (template.gm, template.wm, template.csf)
    atropos = pe.Node(AtroposSegment(iterations=2 if sloppy else 3, num_threads=omp_nthreads),
                      name="atropos", mem_gb=node_mem_gb("atropos"), n_procs=omp_nthreads)
    if has_priors:  # template-space priors, warped by Atropos onto its working grid
        atropos.inputs.priors = [str(template.gm), str(template.wm), str(template.csf)]
    atlas = pe.Node(ApplyTransforms(interpolation="nearestNeighbor",
                                    out_name="atlas_dseg.nii.gz", num_threads=omp_nthreads),
                    name="warp_atlas", mem_gb=node_mem_gb("warp_atlas"), n_procs=omp_nthreads)
    idps = pe.Node(ComputeIDPs(template_mask=str(template.mask), participant_id=participant_id,
                               session_id=session_id), name="idps", mem_gb=node_mem_gb("idps"))
    if template.atlas is not None:
        atlas.inputs.moving = str(template.atlas)
        idps.inputs.atlas_labels = str(template.atlas_labels)
    model = pe.Node(ModelGridImage(resolution=resolution), name="model_grid",
                    mem_gb=node_mem_gb("model_grid"))
    plausible = pe.Node(PlausibilityCheck(template_t1w=str(template.t1w),
                                          template_mask=str(template.mask),
                                          enabled=check_plausibility),
                        name="plausibility", mem_gb=node_mem_gb("plausibility"))

    if own_mask:
        if skull_strip == "skip":
            brain = pe.Node(InputBrainMask(), name="input_brain_mask",
                            mem_gb=node_mem_gb("input_brain_mask"))
        else:
            from bgs_app.interfaces.deepbet import DeepBetMask

            brain = pe.Node(DeepBetMask(num_threads=omp_nthreads), name="deepbet_mask",
                            mem_gb=node_mem_gb("deepbet_mask"),
                            n_procs=omp_nthreads)
        wf.connect(load, "out_file", brain, "in_file")
        coarse_src = final_src = brain
    else:
        # The template's mask through the head pass (it restricts the brain passes), then
        # through the final transform (the brain mask); each refined on the image.
        mask_coarse, refine_coarse = _template_mask_nodes(wf, template, n4, "coarse",
                                                          omp_nthreads)
        mask_final, refine_final = _template_mask_nodes(wf, template, n4, "final",
                                                        omp_nthreads)
        wf.connect([(reg_head, mask_coarse, [("inverse_transforms", "transforms"),
                                             ("inverse_invert", "invert")])])
        coarse_src, final_src = refine_coarse, refine_final
    wf.connect([
        (inputnode, load, [("t1w", "in_file")]),
        (load, head, [("out_file", "in_file")]),
        (load, n4, [("out_file", "in_file")]),
        (head, n4, [("head_mask", "mask_file")]),
        (n4, reg_head, [("out_file", "moving")]),
        (head, reg_head, [("init_transform", "initial_transform")]),
        (n4, reg_brain, [("out_file", "moving")]),
        (coarse_src, reg_brain, [("out_file", "moving_mask")]),
        (reg_head, reg_brain, [("affine", "initial_transform")]),
        (reg_brain, invert, [("affine", "in_file")]),
        (n4, atropos, [("out_file", "in_file")]),
        (final_src, atropos, [("out_file", "mask_file")]),
        (atropos, idps, [("gm", "gm"), ("wm", "wm"), ("csf", "csf")]),
        (final_src, idps, [("out_file", "mask")]),
        (reg_brain, idps, [("affine", "affine")]),
        (n4, model, [("out_file", "t1w")]),
        (final_src, model, [("out_file", "mask")]),
        (reg_brain, model, [("affine", "affine")]),
        (n4, outputnode, [("out_file", "t1w_preproc")]),
        (head, outputnode, [("head_mask", "head_mask")]),
        (final_src, outputnode, [("out_file", "brain_mask")]),
        (reg_brain, outputnode, [("affine", "t1w2tpl_affine")]),
        (invert, outputnode, [("out_file", "tpl2t1w_affine")]),
        (atropos, outputnode, [("gm", "gm_probseg"), ("wm", "wm_probseg"),
                               ("csf", "csf_probseg")]),
        (inputnode, plausible, [(("t1w", _file_name), "in_file")]),
        (idps, plausible, [("out_file", "idps")]),
        (model, plausible, [("out_file", "model_t1w")]),
        (plausible, outputnode, [("idps", "idps"), ("model_t1w", "model_t1w"),
                                 ("measures", "plausibility")]),
    ])
    if registration == "syn":
        reg_syn = pe.Node(Register(fixed=str(template.t1w_reg),
                                   fixed_mask=str(template.mask_reg), fixed_mask_dilation=2,
                                   moving_mask_dilation=3, transform="SyNOnly", sloppy=sloppy,
                                   seed=seed, num_threads=omp_nthreads),
                          name="register_syn", mem_gb=node_mem_gb("register_syn"),
                          n_procs=omp_nthreads)
        wf.connect([
            (n4, reg_syn, [("out_file", "moving")]),
            (coarse_src, reg_syn, [("out_file", "moving_mask")]),
            (reg_brain, reg_syn, [("affine", "initial_transform")]),
            (reg_syn, outputnode, [("warp", "t1w2tpl_warp"),
                                   ("inverse_warp", "tpl2t1w_warp")]),
        ])
        logjac = pe.Node(LogJacobianImage(), name="model_logjacobian",
                         mem_gb=node_mem_gb("model_logjacobian"))
        wf.connect([
            (reg_syn, logjac, [("warp", "warp")]),
            (plausible, logjac, [("model_t1w", "model_t1w")]),
            (logjac, outputnode, [("out_file", "model_logjacobian")]),
        ])
        inverse_source = reg_syn
    else:
        inverse_source = reg_brain
    # The whole transform in one composite file each way (sMRIPrep's .h5).
    xfm_fwd = pe.Node(CompositeTransform(out_name="t1w2tpl_xfm.h5"), name="composite_t1w2tpl",
                      mem_gb=node_mem_gb("composite_t1w2tpl"))
    xfm_inv = pe.Node(CompositeTransform(out_name="tpl2t1w_xfm.h5"), name="composite_tpl2t1w",
                      mem_gb=node_mem_gb("composite_tpl2t1w"))
    dseg = pe.Node(TissueDseg(), name="tissue_dseg", mem_gb=node_mem_gb("tissue_dseg"))
    wf.connect([
        (inverse_source, xfm_fwd, [("forward_transforms", "transforms")]),
        (inverse_source, xfm_inv, [("inverse_transforms", "transforms"),
                                   ("inverse_invert", "invert")]),
        (xfm_fwd, outputnode, [("out_file", "t1w2tpl_xfm")]),
        (xfm_inv, outputnode, [("out_file", "tpl2t1w_xfm")]),
        (atropos, dseg, [("gm", "gm"), ("wm", "wm"), ("csf", "csf")]),
        (final_src, dseg, [("out_file", "mask")]),
        (dseg, outputnode, [("out_file", "dseg")]),
    ])
    warped = [] if own_mask else [mask_final]
    if has_priors:
        wf.connect(inverse_source, "inverse_transforms", atropos, "prior_transforms")
        wf.connect(inverse_source, "inverse_invert", atropos, "prior_invert")
    if template.atlas is not None:
        wf.connect([(n4, atlas, [("out_file", "reference")]),
                    (atlas, idps, [("out_file", "atlas")]),
                    (atlas, outputnode, [("out_file", "atlas_dseg")])])
        warped.append(atlas)
    for node in warped:
        wf.connect(inverse_source, "inverse_transforms", node, "transforms")
        wf.connect(inverse_source, "inverse_invert", node, "invert")
    return wf
