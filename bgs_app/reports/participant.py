"""Per-subject HTML report: mask and tissues, registration, IDPs, errors."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from bgs_app import __version__
from bgs_app.bids.derivatives import branch_entities_of, derivative_name, parse_name
from bgs_app.reports.figures import contour_panels
from bgs_app.templates import ATLAS_NAME
from bgs_app.utils.atomic import write_text

LOGGER = logging.getLogger("bgs_app")
MAIN_VOLUMES = (("gm_volume", "Grey matter"), ("wm_volume", "White matter"),
                ("csf_volume", "CSF"), ("brain_volume", "Brain (GM + WM)"),
                ("tiv", "Brain mask"), ("etiv", "Estimated TIV"))


def _model_grid_image(anat: Path, entities: dict, template: str) -> Path | None:
    """The branch's model-grid image (any resolution), or None."""
    for path in sorted(anat.glob("*_desc-model_T1w.nii.gz")):
        found = parse_name(path.name)[0]
        if found.get("space") == template and branch_entities_of(path) == entities:
            return path
    return None


def _branch(anat: Path, stem: str, template) -> dict:
    """Figures and tables of one processed T1w (``stem`` = its entity prefix)."""
    entities = branch_entities_of(anat / f"{stem}_T1w.nii.gz")

    def named(extra: dict, suffix: str, extension: str = ".nii.gz") -> Path:
        return anat / derivative_name({**entities, **extra}, suffix, extension)

    preproc = nb.load(named({"desc": "preproc"}, "T1w"))
    mask = np.asarray(nb.load(named({"desc": "brain"}, "mask")).dataobj) > 0
    gm = nb.load(named({"label": "GM"}, "probseg")).get_fdata(dtype=np.float32)
    wm = nb.load(named({"label": "WM"}, "probseg")).get_fdata(dtype=np.float32)
    mask_fig = contour_panels(preproc.get_fdata(dtype=np.float32),
                              [(mask, "red"), (gm, "lime"), (wm, "deepskyblue")],
                              preproc.header.get_zooms(), crop_to=mask)
    model_path = _model_grid_image(anat, entities, template.name)
    reg_fig = ""
    if model_path is not None:
        reg_fig = _registration_figure(nb.load(model_path), template)
    idps = pd.read_csv(named({"desc": "idps"}, "morph", ".tsv"), sep="\t").iloc[0]
    volumes = [(label, float(idps[key]) / 1000.0) for key, label in MAIN_VOLUMES
               if key in idps]
    regions = sorted(((k[3:].replace("_", " "), float(v) / 1000.0) for k, v in idps.items()
                      if k.startswith("gm_") and k != "gm_volume"), key=lambda kv: -kv[1])
    return {"name": stem, "ok": True, "mask_figure": mask_fig, "registration_figure": reg_fig,
            "volumes": volumes, "regions": regions}


def _registration_figure(model: nb.Nifti1Image, template) -> str:
    import warnings

    from nilearn.image import resample_to_img

    warnings.filterwarnings("ignore", message="Resampling binary images")

    data = model.get_fdata(dtype=np.float32)
    contours = []
    if template is not None:
        mask = nb.load(template.mask)
        mask = nb.Nifti1Image(mask.get_fdata(dtype=np.float32), mask.affine)
        tmask = resample_to_img(mask, model, interpolation="linear",
                                force_resample=True, copy_header=True).get_fdata()
        contours.append((tmask, "red"))
        if template.wm is not None:
            twm = resample_to_img(nb.load(template.wm), model, interpolation="linear",
                                  force_resample=True, copy_header=True).get_fdata()
            contours.append((twm, "yellow"))
    return contour_panels(data, contours, model.header.get_zooms())


def build_participant_report(output_dir: Path, subject: str, template,
                             failures: dict[str, str] | None = None) -> Path:
    """Write ``OUT_DIR/sub-<label>.html`` from the outputs found on disk.

    Parameters
    ----------
    output_dir : pathlib.Path
    subject : str
        Label without ``sub-``.
    template : bgs_app.templates.Template
        The run's template (its name is the outputs' ``space-``; the registration figure
        draws its brain mask).
    failures : dict, optional
        Branch keys (``sub-X[_ses-Y]``) to error messages.

    Returns
    -------
    pathlib.Path
    """
    from jinja2 import Environment, PackageLoader, select_autoescape

    output_dir = Path(output_dir)
    branches = []
    for preproc in sorted(output_dir.glob(f"sub-{subject}/**/sub-{subject}*_desc-preproc_T1w"
                                          ".nii.gz")):
        stem = preproc.name.replace("_desc-preproc_T1w.nii.gz", "")
        try:
            branches.append(_branch(preproc.parent, stem, template))
        except (OSError, KeyError, ValueError) as err:
            branches.append({"name": stem, "ok": False})
            if stem not in (failures or {}):  # the failure's own reason comes first
                failures = {**(failures or {}), stem: f"outputs incomplete: {err}"}
    errors = sorted((k, v) for k, v in (failures or {}).items()
                    if k == f"sub-{subject}" or k.startswith(f"sub-{subject}_"))
    for key, _ in errors:
        if key not in {b["name"] for b in branches}:
            branches.append({"name": key, "ok": False})
    env = Environment(loader=PackageLoader("bgs_app", "data/templates"),
                      autoescape=select_autoescape(["html"]))
    html = env.get_template("participant.html").render(
        subject=subject, version=__version__, template=template.name, atlas=ATLAS_NAME,
        date=dt.datetime.now().strftime("%Y-%m-%d %H:%M"), branches=branches, errors=errors)
    return write_text(output_dir / f"sub-{subject}.html", html)


def write_participant_reports(output_dir: Path, subjects: list[str], template,
                              failures: dict[str, str] | None = None,
                              nprocs: int = 1) -> list[Path]:
    """Write the report of every subject; a failing report is logged, not fatal.

    Parameters
    ----------
    output_dir : pathlib.Path
        The derivatives folder.
    subjects : list of str
        Participant labels (without ``sub-``).
    template : bgs_app.templates.Template
        See :func:`build_participant_report`.
    failures : dict, optional
        ``{image key: message}`` of failed images, shown in their subject's report.
    nprocs : int
        Reports written in parallel by this many processes (figures take about 0.6 s
        per subject; one process below a handful of subjects).

    Returns
    -------
    list of pathlib.Path
        The reports written.
    """
    tasks = [(output_dir, s, template, failures) for s in subjects]
    results = None
    if nprocs > 1 and len(subjects) >= 2 * nprocs:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        from bgs_app.utils.processes import die_with_parent

        # fork: the children need nothing re-imported (works from scripts, notebooks
        # and stdin alike); the parent runs no torch or ITK threads at this point.
        context = mp.get_context("fork" if "fork" in mp.get_all_start_methods()
                                 else None)
        try:
            with ProcessPoolExecutor(max_workers=nprocs, mp_context=context,
                                     initializer=die_with_parent,
                                     initargs=(os.getpid(),)) as pool:
                results = list(pool.map(_one_report, tasks, chunksize=4))
        except (BrokenProcessPool, OSError) as err:
            LOGGER.warning("Parallel report writing failed (%s); writing them one by one",
                           err)
    if results is None:
        results = [_one_report(t) for t in tasks]
    written = []
    for subject, path, error in results:
        if path is None:
            LOGGER.warning("sub-%s: the report could not be written (%s)", subject, error)
        else:
            written.append(path)
    return written


def _one_report(args: tuple) -> tuple[str, Path | None, str | None]:
    output_dir, subject, template, failures = args
    try:
        return subject, build_participant_report(output_dir, subject, template, failures), None
    except Exception as err:  # a report must never hide the run's results
        return subject, None, str(err)
