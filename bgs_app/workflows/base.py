"""The participant workflow: one anatomical branch per T1w image, with its outputs."""

from __future__ import annotations

import re
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bgs_app import __version__
from bgs_app.bids.derivatives import (
    LOGJACOBIAN_SIDECAR,
    derivative_path,
    logjacobian_path,
    model_grid_entities,
)
from bgs_app.bids.inputs import T1wInput
from bgs_app.grid import grid_metadata
from bgs_app.interfaces.io import CompletionRecord, DerivativesSink
from bgs_app.templates import Template
from bgs_app.utils.hashing import file_sha256
from bgs_app.workflows.anatomical import init_anat_preproc_wf
from bgs_app.workflows.scores import ScoringOptions, init_bgs_scores_wf

#: Raw-file entities that carry into derivative names.
CARRIED = ("sub", "ses", "acq", "ce", "rec", "run")
_ENTITY_KEYS = {"subject": "sub", "session": "ses", "acquisition": "acq", "ceagent": "ce",
                "reconstruction": "rec", "run": "run"}


def branch_entities(t1w: T1wInput) -> dict[str, str]:
    """Entities of a T1w image that its derivatives keep (sub, ses, acq, ce, rec, run)."""
    out = {}
    for key, value in t1w.entities.items():
        short = _ENTITY_KEYS.get(key)
        if short:
            out[short] = str(value)
    return {k: out[k] for k in CARRIED if k in out}


def branch_name(t1w: T1wInput) -> str:
    """A Nipype-safe name for a branch, e.g. ``sub_01_ses_1_run_2``."""
    ents = branch_entities(t1w)
    return re.sub(r"[^A-Za-z0-9_]", "_", "_".join(f"{k}_{v}" for k, v in ents.items()))


def record_path(output_dir: Path, t1w: T1wInput) -> Path:
    """Where a branch's completion record lives."""
    return Path(output_dir) / "logs" / "participant" / f"{branch_name(t1w)}.json"


def branch_settings(*, template: str, resolution: float, registration: str, sloppy: bool,
                    seed: int, scoring: ScoringOptions | None = None,
                    skull_strip: str = "force", skull_strip_method: str = "deepbet") -> dict:
    """The settings a branch's outputs depend on (recorded in its completion record;
    outputs made with other settings are stale). ``skull_strip`` is the mode requested
    (``auto`` included): what ``auto`` decides depends on the input only, whose content
    the record pins."""
    return {"template": template, "resolution": resolution, "registration": registration,
            "sloppy": sloppy, "seed": seed, "skull_strip": skull_strip,
            "skull_strip_method": skull_strip_method,
            **(scoring.settings() if scoring is not None else {})}


def skull_strip_mode(requested: str, t1w_path: Path) -> str:
    """The skull-stripping mode of one image: ``force`` or ``skip``.

    Parameters
    ----------
    requested : {"auto", "force", "skip"}
        ``--skull-strip-t1w``; ``auto`` skips images that are already brain-extracted
        (:func:`bgs_app.interfaces.masks.is_skull_stripped`), as sMRIPrep decides when it
        builds its workflow.
    t1w_path : pathlib.Path
        The raw T1w image.
    """
    if requested != "auto":
        return requested
    from bgs_app.interfaces.masks import is_skull_stripped

    try:
        stripped = is_skull_stripped(t1w_path)
    except Exception:  # noqa: BLE001 - unreadable: the workflow's first node says why
        stripped = False
    return "skip" if stripped else "force"


def provenance(t1w: T1wInput, settings: dict) -> dict:
    """What a branch's outputs depend on: the input's content and the settings.

    The input's size and modification time are recorded too: a rerun does not hash an
    input whose size and time are unchanged (as ``make`` and ``rsync`` decide).
    """
    stat = Path(t1w.path).stat()
    return {"input": str(t1w.path), "input_sha256": file_sha256(t1w.path),
            "input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns,
            "settings": dict(settings), "bgs_app_version": __version__}


def expected_outputs(output_dir: Path, t1w: T1wInput, template: str, resolution: float,
                     registration: str, scoring: ScoringOptions | None = None
                     ) -> dict[str, Path]:
    """Derivative paths of one branch, by output name (``saliency_<i>`` per SNP)."""
    ents = branch_entities(t1w)
    out = Path(output_dir)

    def path(extra, suffix, ext):
        return derivative_path(out, {**ents, **extra}, suffix, ext)

    paths = {
        "t1w_preproc": path({"desc": "preproc"}, "T1w", ".nii.gz"),
        "brain_mask": path({"desc": "brain"}, "mask", ".nii.gz"),
        "t1w2tpl_xfm": path({"from": "T1w", "to": template, "mode": "image"}, "xfm", ".h5"),
        "tpl2t1w_xfm": path({"from": template, "to": "T1w", "mode": "image"}, "xfm", ".h5"),
        "t1w2tpl_affine": path({"from": "T1w", "to": template, "mode": "image",
                                "desc": "affine"}, "xfm", ".mat"),
        "tpl2t1w_affine": path({"from": template, "to": "T1w", "mode": "image",
                                "desc": "affine"}, "xfm", ".mat"),
        "dseg": path({}, "dseg", ".nii.gz"),
        "gm_probseg": path({"label": "GM"}, "probseg", ".nii.gz"),
        "wm_probseg": path({"label": "WM"}, "probseg", ".nii.gz"),
        "csf_probseg": path({"label": "CSF"}, "probseg", ".nii.gz"),
        "idps": path({"desc": "idps"}, "morph", ".tsv"),
        "model_t1w": path(model_grid_entities({}, template, resolution), "T1w", ".nii.gz"),
    }
    if registration == "syn":
        paths["model_logjacobian"] = logjacobian_path(paths["model_t1w"])
        paths["t1w2tpl_warp"] = path({"from": "T1w", "to": template, "mode": "image",
                                      "desc": "nonlinear"}, "xfm", ".nii.gz")
        paths["tpl2t1w_warp"] = path({"from": template, "to": "T1w", "mode": "image",
                                      "desc": "nonlinear"}, "xfm", ".nii.gz")
    if scoring is not None:
        paths["scores"] = path({"desc": "bgs"}, "scores", ".tsv")
        if scoring.saliency_method is not None:
            for i, snp in enumerate(scoring.snps):
                paths[f"saliency_{i}"] = path({"space": template, "res": resolution,
                                               "snp": snp, "desc": "saliency"},
                                              "map", ".nii.gz")
                if scoring.native:
                    paths[f"saliency_native_{i}"] = path(
                        {"snp": snp, "desc": "saliency"}, "map", ".nii.gz")
    return paths


def _mask_description(template: str, registration: str, skull_strip: str,
                      skull_strip_method: str) -> str:
    if skull_strip == "skip":
        return "Non-zero voxels of the brain-extracted input (holes filled)"
    if skull_strip_method == "deepbet":
        return "Brain mask by deepbet (a deep brain extractor)"
    return (f"{template} brain mask through the inverse "
            f"{'SyN' if registration == 'syn' else 'affine'} transform, refined on the T1w")


def _metadata(name: str, source: str, template: str, resolution: float,
              registration: str, skull_strip: str = "force",
              skull_strip_method: str = "deepbet") -> dict:
    sources = [source]
    spatial = "orig"
    parts = "SyN and affine" if registration == "syn" else "affine"
    meta = {
        "t1w_preproc": {"SkullStripped": skull_strip == "skip", "Sources": sources,
                        "Description": "T1w reoriented to RAS and corrected for intensity "
                                       "non-uniformity (N4)"},
        "brain_mask": {"Type": "Brain", "Sources": sources, "SpatialReference": spatial,
                       "Description": _mask_description(template, registration, skull_strip,
                                                        skull_strip_method)},
        "t1w2tpl_affine": {"Description": f"ITK affine (antspyx): resamples the T1w into "
                                          f"{template} (template-to-T1w point mapping)"},
        "tpl2t1w_affine": {"Description": f"ITK affine (antspyx): resamples {template} "
                                          "images into the T1w"},
        "t1w2tpl_xfm": {"Description": f"ITK composite transform (HDF5, {parts}): "
                                       f"resamples the T1w into {template} with "
                                       "antsApplyTransforms"},
        "tpl2t1w_xfm": {"Description": f"ITK composite transform (HDF5, {parts}): "
                                       f"resamples {template} images into the T1w"},
        "dseg": {"Sources": sources, "SpatialReference": spatial, "Manual": False,
                 "Description": "Most probable tissue in the brain mask (Atropos posteriors): "
                                "labels in dseg.tsv at the dataset root"},
        "t1w2tpl_warp": {"Description": "SyN displacement field applied after the affine"},
        "tpl2t1w_warp": {"Description": "Inverse SyN displacement field, applied before the "
                                        "inverse affine"},
        "idps": None,
    }
    for label in ("GM", "WM", "CSF"):
        meta[f"{label.lower()}_probseg"] = {
            "Sources": sources, "SpatialReference": spatial,
            "Description": f"{label} posterior probability (Atropos, template priors)"}
    model = grid_metadata(resolution, template)
    model.update({"SkullStripped": True, "Sources": sources,
                  "Resolution": f"{resolution:g} mm isotropic model grid in {template}, "
                                "affine alignment"})
    meta["model_t1w"] = model
    meta["model_logjacobian"] = {**LOGJACOBIAN_SIDECAR, "Sources": sources,
                                 "Resolution": model["Resolution"].replace(
                                     "affine alignment", "after the affine alignment")}
    return meta.get(name)


def init_single_t1w_wf(*, t1w: T1wInput, output_dir: Path, template: Template,
                       resolution: float, registration: str, sloppy: bool,
                       omp_nthreads: int, bids_dir: Path,
                       scoring: ScoringOptions | None = None, seed: int = 0,
                       check_plausibility: bool = True, skull_strip: str = "auto",
                       skull_strip_method: str = "deepbet") -> pe.Workflow:
    """Preprocess one T1w image and write its derivatives (then its completion record).

    Parameters
    ----------
    t1w : bgs_app.bids.T1wInput
    output_dir : pathlib.Path
        The derivatives dataset.
    template : bgs_app.templates.Template
    resolution : float
    registration : {"syn", "affine"}
    sloppy : bool
    omp_nthreads : int
    bids_dir : pathlib.Path
        The raw dataset (for ``Sources`` in sidecars).
    scoring : ScoringOptions, optional
        Score the model-grid image with a model bundle (and write saliency maps).
    seed : int
        Seed of the registrations (see :func:`init_anat_preproc_wf`).
    check_plausibility : bool
        See :func:`init_anat_preproc_wf`.
    skull_strip : {"auto", "force", "skip"}
        ``--skull-strip-t1w`` (``auto`` is decided here, from the image: see
        :func:`skull_strip_mode`).
    skull_strip_method : {"ants", "deepbet"}
        See :func:`init_anat_preproc_wf`.

    Returns
    -------
    nipype.pipeline.engine.Workflow
    """
    name = branch_name(t1w)
    wf = pe.Workflow(name=f"single_t1w_{name}")
    ents = branch_entities(t1w)
    mode = skull_strip_mode(skull_strip, Path(t1w.path))
    anat = init_anat_preproc_wf(
        template=template, resolution=resolution, registration=registration, sloppy=sloppy,
        omp_nthreads=omp_nthreads, participant_id=f"sub-{t1w.subject}",
        session_id=f"ses-{t1w.session}" if t1w.session else "", seed=seed,
        check_plausibility=check_plausibility, skull_strip=mode,
        skull_strip_method=skull_strip_method)
    anat.inputs.inputnode.t1w = str(t1w.path)
    try:
        source = "bids:raw:" + t1w.path.relative_to(bids_dir).as_posix()
    except ValueError:
        source = t1w.path.as_uri()
    paths = expected_outputs(output_dir, t1w, template.name, resolution, registration,
                             scoring)
    merge = pe.Node(niu.Merge(len(paths)), name="merge_outputs")
    scores_wf = None
    if scoring is not None:
        scores_wf = init_bgs_scores_wf(options=scoring, omp_nthreads=omp_nthreads,
                                       resolution=resolution)
        image = ("outputnode.model_logjacobian" if scoring.input == "logjacobian"
                 else "outputnode.model_t1w")
        wf.connect([(anat, scores_wf, [(image, "inputnode.model_t1w"),
                                       ("outputnode.t1w_preproc", "inputnode.t1w_preproc"),
                                       ("outputnode.tpl2t1w_affine",
                                        "inputnode.tpl2t1w_affine")])])
    for index, (output, path) in enumerate(paths.items(), start=1):
        meta = _metadata(output, source, template.name, resolution, registration, mode,
                         skull_strip_method)
        node = pe.Node(DerivativesSink(out_path=str(path)), name=f"ds_{output}",
                       run_without_submitting=True)
        if output.startswith("saliency_"):
            native = output.startswith("saliency_native_")
            i = int(output.rsplit("_", 1)[1])
            meta = {"Sources": [source], "SNP": scoring.snps[i],
                    "Method": scoring.saliency_method, "ModelSHA256": scoring.weights_sha256,
                    "Description": "Absolute saliency of the SNP's brain-genotype score, "
                                   "divided by its mean inside the brain"
                                   + (" (brought into T1w space)" if native else "")}
            if not native:  # a res- file: its sidecar says what the resolution is
                meta["Resolution"] = (f"{resolution:g} mm isotropic model grid in "
                                      f"{template.name}, affine alignment")
            pick = pe.Node(niu.Select(index=i), name=f"pick_{output}",
                           run_without_submitting=True)
            field = "saliency_native" if native else "saliency_maps"
            wf.connect(scores_wf, f"outputnode.{field}", pick, "inlist")
            wf.connect(pick, "out", node, "in_file")
        elif output == "scores":
            wf.connect(scores_wf, "outputnode.scores", node, "in_file")
        else:
            wf.connect(anat, f"outputnode.{output}", node, "in_file")
        if meta:
            node.inputs.metadata = meta
        wf.connect(node, "out_file", merge, f"in{index}")
    settings = branch_settings(template=template.name, resolution=resolution,
                               registration=registration, sloppy=sloppy, seed=seed,
                               scoring=scoring, skull_strip=skull_strip,
                               skull_strip_method=skull_strip_method)
    stamp = pe.Node(CompletionRecord(record=str(record_path(output_dir, t1w)),
                                     provenance={**provenance(t1w, settings),
                                                 "entities": ents,
                                                 "skull_strip_used": mode}),
                    name="completion_record", run_without_submitting=True)
    wf.connect(merge, "out", stamp, "outputs")
    return wf


def init_participant_wf(*, inputs: list[T1wInput], output_dir: Path, bids_dir: Path,
                        template: Template, resolution: float = 2.0,
                        registration: str = "syn", sloppy: bool = False,
                        omp_nthreads: int = 1, scoring: ScoringOptions | None = None,
                        seed: int = 0, check_plausibility: bool = True,
                        skull_strip: str = "auto", skull_strip_method: str = "deepbet",
                        name: str = "bgs_app_participant_wf") -> pe.Workflow:
    """The participant level: one branch per T1w image.

    Parameters
    ----------
    inputs : list of bgs_app.bids.T1wInput
        The selected images (see :func:`bgs_app.bids.collect_t1w`).
    output_dir, bids_dir : pathlib.Path
    template : bgs_app.templates.Template
    resolution : float
        Model-grid spacing (mm).
    registration : {"syn", "affine"}
    sloppy : bool
    omp_nthreads : int
    scoring : ScoringOptions, optional
        Score every image with a model bundle (``--model``).
    seed : int
        Seed of the registrations (``--seed``).
    check_plausibility : bool
        Fail implausible images (``--skip-plausibility-checks`` turns it off).
    skull_strip : {"auto", "force", "skip"}
        ``--skull-strip-t1w`` (see :func:`init_single_t1w_wf`).
    skull_strip_method : {"ants", "deepbet"}
        ``--skull-strip-method``.
    name : str

    Returns
    -------
    nipype.pipeline.engine.Workflow
        With one sub-workflow per image; it has no inputs (they are set here).
    """
    wf = pe.Workflow(name=name)
    for t1w in inputs:
        wf.add_nodes([init_single_t1w_wf(
            t1w=t1w, output_dir=output_dir, template=template, resolution=resolution,
            registration=registration, sloppy=sloppy, omp_nthreads=omp_nthreads,
            bids_dir=bids_dir, scoring=scoring, seed=seed,
            check_plausibility=check_plausibility, skull_strip=skull_strip,
            skull_strip_method=skull_strip_method)])
    return wf

