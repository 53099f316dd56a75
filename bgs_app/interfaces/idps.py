"""Imaging-derived phenotypes: tissue volumes, intracranial volume, regional GM volumes."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bgs_app.templates import ATLAS_DESCRIPTION, ATLAS_NAME


def affine_determinant(transform_file) -> float:
    """Volume scaling of an ITK affine transform (template to subject: subject/template)."""
    import ants

    tx = ants.read_transform(str(transform_file))
    matrix = np.asarray(tx.parameters[:9], float).reshape(3, 3)
    return float(abs(np.linalg.det(matrix)))


def compute_idps(gm, wm, csf, mask, atlas, atlas_labels, affine, template_mask) -> pd.DataFrame:
    """One row of IDPs for one T1w image.

    Parameters
    ----------
    gm, wm, csf : path-like
        Tissue probability maps in subject space.
    mask : path-like
        Brain mask in subject space.
    atlas : path-like or None
        Label atlas resampled to subject space (nearest neighbour); None (a template
        without an atlas) gives no regional columns.
    atlas_labels : path-like
        TSV with ``index`` and ``name``.
    affine : path-like
        Template-to-subject ITK affine (for the estimated TIV).
    template_mask : path-like
        The template's brain mask.

    Returns
    -------
    pandas.DataFrame
        Columns ``gm_volume``, ``wm_volume``, ``csf_volume``, ``brain_volume``,
        ``tiv`` (brain-mask volume), ``etiv`` (template mask volume times the affine's
        determinant, as FreeSurfer's eTIV uses the Talairach transform) and
        ``gm_<region>`` for every atlas region, all in mm^3.
    """
    mask_img = nb.load(mask)
    voxel = float(np.prod(mask_img.header.get_zooms()[:3]))
    inside = np.asarray(mask_img.dataobj) > 0
    probs = {name: nb.load(path).get_fdata(dtype=np.float32) * inside
             for name, path in (("gm", gm), ("wm", wm), ("csf", csf))}
    row = {f"{name}_volume": float(p.sum() * voxel) for name, p in probs.items()}
    row["brain_volume"] = row["gm_volume"] + row["wm_volume"]
    row["tiv"] = float(inside.sum() * voxel)
    tmask = nb.load(template_mask)
    tvox = float(np.prod(tmask.header.get_zooms()[:3]))
    row["etiv"] = float((np.asarray(tmask.dataobj) > 0).sum() * tvox
                        * affine_determinant(affine))
    if atlas is None:
        return pd.DataFrame([row])
    labels = np.asarray(nb.load(atlas).dataobj).astype(np.int32)
    names = pd.read_csv(atlas_labels, sep="\t")
    sums = np.bincount(labels.ravel(), weights=probs["gm"].ravel(),
                       minlength=int(names["index"].max()) + 1) * voxel
    for index, name in zip(names["index"], names["name"], strict=True):
        row[f"gm_{name}"] = float(sums[index])
    return pd.DataFrame([row])


def idp_sidecar(columns) -> dict:
    """JSON sidecar describing every IDP column."""
    desc = {
        "gm_volume": "Total grey-matter volume (sum of GM probability in the brain mask)",
        "wm_volume": "Total white-matter volume", "csf_volume": "Total CSF volume in the mask",
        "brain_volume": "Grey plus white matter", "tiv": "Volume of the brain mask",
        "etiv": "Estimated total intracranial volume: template brain-mask volume times the "
                "determinant of the subject's affine transform",
    }
    out = {"Atlas": {"Name": ATLAS_NAME, "Description": ATLAS_DESCRIPTION}}
    for col in columns:
        if col in ("participant_id", "session_id"):
            continue
        text = desc.get(col) or (f"Grey-matter volume in the {col[3:].replace('_', ' ')} "
                                 f"region of the {ATLAS_NAME} atlas")
        out[col] = {"Description": text, "Units": "mm^3"}
    return out


class _IDPInputSpec(BaseInterfaceInputSpec):
    gm = File(exists=True, mandatory=True)
    wm = File(exists=True, mandatory=True)
    csf = File(exists=True, mandatory=True)
    mask = File(exists=True, mandatory=True)
    atlas = File(exists=True)
    atlas_labels = File(exists=True)
    affine = File(exists=True, mandatory=True)
    template_mask = File(exists=True, mandatory=True)
    participant_id = traits.Str(mandatory=True)
    session_id = traits.Str("")


class _IDPOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class ComputeIDPs(SimpleInterface):
    """Tissue, intracranial and regional volumes as a one-row TSV."""

    input_spec = _IDPInputSpec
    output_spec = _IDPOutputSpec

    def _run_interface(self, runtime):
        from nipype.interfaces.base import isdefined

        atlas = self.inputs.atlas if isdefined(self.inputs.atlas) else None
        labels = self.inputs.atlas_labels if isdefined(self.inputs.atlas_labels) else None
        table = compute_idps(self.inputs.gm, self.inputs.wm, self.inputs.csf, self.inputs.mask,
                             atlas, labels, self.inputs.affine, self.inputs.template_mask)
        if self.inputs.session_id:
            table.insert(0, "session_id", self.inputs.session_id)
        table.insert(0, "participant_id", self.inputs.participant_id)
        out = Path(runtime.cwd) / "idps.tsv"
        table.to_csv(out, sep="\t", index=False, na_rep="n/a", float_format="%.2f")
        (Path(runtime.cwd) / "idps.json").write_text(
            json.dumps(idp_sidecar(table.columns), indent=2))
        self._results["out_file"] = str(out)
        return runtime
