"""Nipype workflows (``init_*_wf`` factories), importable into other pipelines."""

from bgs_app.workflows.anatomical import init_anat_preproc_wf

__all__ = ["init_anat_preproc_wf"]
