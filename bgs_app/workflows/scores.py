"""Scores and saliency maps of one subject with a model bundle (participant ``--model``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bgs_app.interfaces.scoring import MapsToNative, SaliencyMaps, ScoreImage
from bgs_app.workflows.memory import node_mem_gb


@dataclass(frozen=True)
class ScoringOptions:
    """What the participant level needs to score with a model bundle.

    Attributes
    ----------
    model_dir : pathlib.Path
        The bundle folder.
    snps : tuple of str
        The model's SNPs in head order.
    weights_sha256 : str
        Identifies the model (recorded in completion records).
    saliency_method : str or None
        ``gradient``, ``integrated_gradients``, ``smoothgrad``, or None for no maps.
    ig_steps : int
    native : bool
        Also write the maps in the subject's T1w space.
    input : {"t1w", "logjacobian"}
        What the model reads (its bundle's ``grid.Input``): the model-grid T1w, or the
        log-Jacobian map (needs ``--registration syn``).
    """

    model_dir: Path
    snps: tuple[str, ...]
    weights_sha256: str
    saliency_method: str | None = "gradient"
    ig_steps: int = 32
    native: bool = False
    input: str = "t1w"

    def settings(self) -> dict:
        """Settings that make outputs made with other settings stale."""
        return {"model_sha256": self.weights_sha256, "saliency_method": self.saliency_method,
                "ig_steps": self.ig_steps, "saliency_native": self.native}


def init_bgs_scores_wf(*, options: ScoringOptions, omp_nthreads: int = 1,
                       resolution: float = 2.0, name: str = "bgs_scores_wf") -> pe.Workflow:
    """Brain-genotype scores and saliency maps of one model-grid image.

    Parameters
    ----------
    options : ScoringOptions
    omp_nthreads : int
        Threads for torch and ITK.
    resolution : float
        The model grid's spacing (mm): what the scoring and saliency nodes' declared
        memory follows (:func:`bgs_app.workflows.memory.node_mem_gb`).
    name : str

    Returns
    -------
    nipype.pipeline.engine.Workflow

    Inputs
    ------
    model_t1w
        Model-grid T1w (``..._desc-model_T1w.nii.gz``).
    t1w_preproc
        The subject's T1w (reference of native-space maps).
    tpl2t1w_affine
        Template-to-T1w affine (resamples template images into the T1w).

    Outputs
    -------
    scores
        Scores TSV (a JSON sidecar beside it names the model).
    saliency_maps
        One model-grid map per SNP (head order); empty without saliency.
    saliency_native
        The same in T1w space, with ``native``.
    """
    wf = pe.Workflow(name=name)
    wf.__desc__ = (
        f"Brain-genotype scores (expected counts of the counted allele, p1 + 2 p2, for "
        f"{len(options.snps)} SNPs) were computed from the model-grid image with the model "
        f"bundle {options.model_dir.name} (weights SHA-256 {options.weights_sha256[:12]}).")
    inputnode = pe.Node(niu.IdentityInterface(fields=["model_t1w", "t1w_preproc",
                                                      "tpl2t1w_affine"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["scores", "saliency_maps",
                                                       "saliency_native"]), name="outputnode")
    score = pe.Node(ScoreImage(model_dir=str(options.model_dir), num_threads=omp_nthreads),
                    name="score", n_procs=omp_nthreads,
                    mem_gb=node_mem_gb("score", resolution))
    wf.connect([(inputnode, score, [("model_t1w", "in_file")]),
                (score, outputnode, [("out_file", "scores")])])
    if options.saliency_method is None:
        return wf
    wf.__desc__ += (f" Saliency maps of each score ({options.saliency_method.replace('_', ' ')}"
                    ", captum) were normalised by their mean absolute value in the brain.")
    saliency = pe.Node(SaliencyMaps(model_dir=str(options.model_dir),
                                    method=options.saliency_method, n_steps=options.ig_steps,
                                    num_threads=omp_nthreads),
                       name="saliency", n_procs=omp_nthreads,
                       mem_gb=node_mem_gb("saliency", resolution))
    wf.connect([(inputnode, saliency, [("model_t1w", "in_file")]),
                (saliency, outputnode, [("out_files", "saliency_maps")])])
    if options.native:
        native = pe.Node(MapsToNative(num_threads=omp_nthreads), name="saliency_native",
                         n_procs=omp_nthreads, mem_gb=node_mem_gb("saliency_native"))
        wf.connect([(saliency, native, [("out_files", "in_files")]),
                    (inputnode, native, [("t1w_preproc", "reference"),
                                         ("tpl2t1w_affine", "transform")]),
                    (native, outputnode, [("out_files", "saliency_native")])])
    return wf
