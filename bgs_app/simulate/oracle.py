"""Oracle preprocessing: model-grid images made from the simulation's true transforms."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np


def truth_model_grid(study: Path, out: Path, resolution: float, template: str
                     = "MNI152NLin2009aSym", nprocs: int = 1,
                     participants: list[str] | None = None, idps: bool = False) -> Path:
    """Model-grid images made from the simulation's *true* brain masks and transforms,
    written where the participant level would put them.

    Tests and benchmarks of the model stages (training, scores, saliency, associations)
    use these to measure what the CNN finds given correct preprocessing, without paying
    for the participant level on hundreds of subjects (that level is tested against the
    same truth in test_participant.py). Only numpy/scipy and the model grid's definition
    here: no preprocessing code. Without ``idps`` no IDP tables are written, and the
    group level runs without the IDP baseline on such a folder.

    Parameters
    ----------
    study : pathlib.Path
        A study written by ``bgs-simulate``.
    out : pathlib.Path
        The derivatives folder to fill (``sub-*/anat/*_desc-model_T1w.nii.gz``).
    resolution : float
        Model grid spacing in mm.
    template : str
        Template name written in the ``space-`` entity.
    nprocs : int
        Images made in parallel (processes).
    participants : list of str, optional
        Only these participants (``sub-`` labels); default: all.
    idps : bool
        Also write the IDP table beside each image: the simulation's true regional
        volumes (the truth's ``idps.tsv``: what a perfect nonlinear registration and
        segmentation give), so that the group level's IDP baseline is an upper bound of
        what the participant level's IDPs can do.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    from concurrent.futures import ProcessPoolExecutor

    t1ws = sorted(Path(study).glob("sub-*/**/anat/*_T1w.nii.gz"))
    if participants is not None:
        keep = set(participants)
        t1ws = [t for t in t1ws if t.name.split("_")[0] in keep]
    if idps and not (Path(study) / "derivatives/simulation-truth/idps.tsv").is_file():
        raise ValueError(f"{study} has no true IDP table (idps.tsv of the truth); "
                         "simulate it again with this version of bgs-simulate")
    tasks = [(t1w, Path(study), Path(out), float(resolution), template, idps)
             for t1w in t1ws]
    if nprocs > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(min(nprocs, len(tasks))) as pool:
            list(pool.map(_one_image, tasks, chunksize=4))
    else:
        for task in tasks:
            _one_image(task)
    return Path(out)


def _one_image(task: tuple) -> Path:
    """One participant's oracle model-grid image."""
    import json

    from scipy.ndimage import map_coordinates

    from bgs_app.bids.derivatives import derivative_path, model_grid_path, parse_name
    from bgs_app.grid import model_grid
    from bgs_app.utils.atomic import save_nifti

    t1w, study, out, resolution, template, with_idps = task
    shape, affine = model_grid(resolution)
    world = affine[:3, :3] @ np.indices(shape).reshape(3, -1) + affine[:3, 3:]
    truth = study / "derivatives" / "simulation-truth"
    entities = {k: v for k, v in parse_name(t1w.name)[0].items() if k in ("sub", "ses")}
    img = nb.load(t1w)
    mask = nb.load(derivative_path(truth, {**entities, "desc": "truth"}, "mask",
                                   ".nii.gz")).get_fdata(dtype=np.float32)
    to_template = np.array(json.loads(derivative_path(
        truth, {**entities, "desc": "truth"}, "xfm", ".json").read_text())[
            "AffineNativeToTemplate"])
    native = np.linalg.inv(img.affine) @ np.linalg.inv(to_template)
    vox = native[:3, :3] @ world + native[:3, 3:]
    data = img.get_fdata(dtype=np.float32)
    values = map_coordinates(data * mask, vox, order=1).reshape(shape)
    inside = map_coordinates(mask, vox, order=1).reshape(shape) > 0.5
    values = np.where(inside, values / values[inside].mean(), 0).astype(np.float32)
    dest = model_grid_path(out, entities, template, resolution)
    _write_log_jacobian(truth, entities, world, shape, affine, inside, resolution, dest)
    if with_idps:
        import pandas as pd

        from bgs_app.bids.derivatives import idps_path
        from bgs_app.utils.atomic import write_tsv

        table = pd.read_csv(truth / "idps.tsv", sep="\t")
        row = table[table["participant_id"] == f"sub-{entities['sub']}"]
        if "ses" in entities and entities["ses"]:
            row.insert(1, "session_id", f"ses-{entities['ses']}")
        write_tsv(row, idps_path(dest))
    # Atomic: a killed run must not leave a half-written image for the group level.
    return save_nifti(nb.Nifti1Image(values, affine), dest)


def _write_log_jacobian(truth: Path, entities: dict, world: np.ndarray, shape, affine,
                        inside: np.ndarray, resolution: float, dest: Path) -> Path | None:
    """The true log-Jacobian map (the truth's, on its 2 mm field grid) on the model grid,
    beside ``dest``: box-averaged to about the model spacing, then trilinear. Studies
    simulated before the truth had the map get none."""
    from scipy.ndimage import map_coordinates, uniform_filter

    from bgs_app.bids.derivatives import LOGJACOBIAN_SIDECAR, logjacobian_path, sidecar_path
    from bgs_app.utils.atomic import save_nifti, write_json

    found = sorted((truth / f"sub-{entities['sub']}" / "anat").glob(
        f"sub-{entities['sub']}_space-*_desc-logjacobian_map.nii.gz"))
    if not found:
        return None
    src = found[0]
    img = nb.load(src)
    data = img.get_fdata(dtype=np.float32)
    spacing = float(np.abs(np.diag(img.affine)[:3]).mean())
    size = max(1, int(round(resolution / spacing)))
    if size > 1:
        data = uniform_filter(data, size=size, mode="constant")
    vox = np.linalg.inv(img.affine)
    coords = vox[:3, :3] @ world + vox[:3, 3:]
    values = map_coordinates(data, coords, order=1).reshape(shape)
    values = np.where(inside, values, 0.0).astype(np.float32)
    path = logjacobian_path(dest)
    write_json(sidecar_path(path), {**LOGJACOBIAN_SIDECAR,
                                    "Sources": [f"bids::{src.name}"],
                                    "Note": "oracle: the simulation's true deformation"})
    return save_nifti(nb.Nifti1Image(values, affine), path)
