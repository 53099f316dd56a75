"""Plausibility of a preprocessed T1w: brain and intracranial volume, template similarity.

An image can pass every step of the participant level and still be nonsense: uniform
noise gets a 3 L "brain", a contrast-inverted or non-T1w image registers to the
template with negative similarity. Such a subject fails here with a message saying
what was implausible, so that its model-grid image and IDPs never reach the group
level.
"""

from __future__ import annotations

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

from bgs_app.interfaces.images import ImageCheckError
from bgs_app.stats.qc import similarity_inside, template_on_grid

#: Plausible brain-mask volume (mL): adult brains with their CSF, generous both ways
#: (measured: 1.34-1.88 L on the real heads of ../shared/testdata, 1.6 L simulated;
#: uniform noise 2.7 L).
BRAIN_ML = (600.0, 2600.0)
#: Plausible estimated intracranial volume (mL; measured 1.4-1.9 L real, 1.8 L
#: simulated, 3.0 L noise).
ETIV_ML = (800.0, 2800.0)
#: Lowest Pearson correlation between the model-grid image and the template where both
#: have brain (measured, sloppy registration: real heads 0.38-0.64, simulated 0.74;
#: uniform noise 0.04, inverted contrasts -0.18 and -0.68).
MIN_SIMILARITY = 0.2


def template_similarity(model_t1w: str | Path, template_t1w: str | Path,
                        template_mask: str | Path) -> float:
    """Pearson correlation of a model-grid image with the template where both have brain.

    Only voxels inside the template's brain mask *and* the subject's brain (non-zero in
    the model-grid image) count, so that the shape of the brain mask alone (which any
    input gets from the template) does not make noise look like a brain.

    Parameters
    ----------
    model_t1w : path-like
        The subject's model-grid image (brain-extracted, affinely aligned).
    template_t1w, template_mask : path-like
        The template image and its brain mask (any grid; resampled onto the model grid).

    Returns
    -------
    float
        The correlation (NaN when either image is constant inside the mask).
    """
    img = nb.load(model_t1w)
    reference, mask = template_on_grid(template_t1w, template_mask, img)
    return similarity_inside(np.asarray(img.dataobj, dtype=np.float32), reference, mask)


def plausibility(idps: pd.DataFrame | dict, similarity: float) -> dict:
    """The plausibility measures of one image and what is wrong with them.

    Parameters
    ----------
    idps : pandas.DataFrame or dict
        The image's IDP row (``tiv``: brain-mask volume, ``etiv``; mm^3).
    similarity : float
        :func:`template_similarity`.

    Returns
    -------
    dict
        ``brain_ml``, ``etiv_ml``, ``template_similarity`` and ``problems`` (a list of
        sentences; empty when the image is plausible).
    """
    row = idps.iloc[0].to_dict() if isinstance(idps, pd.DataFrame) else dict(idps)
    brain, etiv = float(row["tiv"]) / 1000.0, float(row["etiv"]) / 1000.0
    problems = []
    if not BRAIN_ML[0] <= brain <= BRAIN_ML[1]:
        problems.append(f"the brain mask is {brain:.0f} mL, outside the plausible "
                        f"{BRAIN_ML[0]:.0f}-{BRAIN_ML[1]:.0f} mL")
    if not ETIV_ML[0] <= etiv <= ETIV_ML[1]:
        problems.append(f"the estimated intracranial volume is {etiv:.0f} mL, outside the "
                        f"plausible {ETIV_ML[0]:.0f}-{ETIV_ML[1]:.0f} mL")
    if not similarity >= MIN_SIMILARITY:  # NaN fails too
        problems.append(f"after registration the image correlates {similarity:.2f} with the "
                        f"template inside its brain (at least {MIN_SIMILARITY} expected): "
                        "not a T1-weighted brain, an inverted contrast, or a failed "
                        "registration")
    return {"brain_ml": round(brain, 1), "etiv_ml": round(etiv, 1),
            "template_similarity": round(float(similarity), 4), "problems": problems}


class _PlausibilityInputSpec(BaseInterfaceInputSpec):
    model_t1w = File(exists=True, mandatory=True, desc="model-grid image")
    idps = File(exists=True, mandatory=True, desc="IDP table (tiv, etiv)")
    template_t1w = File(exists=True, mandatory=True)
    template_mask = File(exists=True, mandatory=True)
    in_file = traits.Str("", usedefault=True, desc="the raw image's name (for messages)")
    enabled = traits.Bool(True, usedefault=True, desc="False: measure, never fail")


class _PlausibilityOutputSpec(TraitedSpec):
    model_t1w = File(exists=True, desc="the model-grid image, when plausible")
    idps = File(exists=True, desc="the IDP table, when plausible")
    measures = traits.Dict(desc="brain_ml, etiv_ml, template_similarity, problems")


class PlausibilityCheck(SimpleInterface):
    """Pass the model-grid image and IDPs on only when the image is a plausible T1w brain.

    Fails (:class:`~bgs_app.interfaces.images.ImageCheckError`) with every implausible
    measure named, unless ``enabled`` is False (``--skip-plausibility-checks``).
    """

    input_spec = _PlausibilityInputSpec
    output_spec = _PlausibilityOutputSpec

    def _run_interface(self, runtime):
        similarity = template_similarity(self.inputs.model_t1w, self.inputs.template_t1w,
                                         self.inputs.template_mask)
        measures = plausibility(pd.read_csv(self.inputs.idps, sep="\t"), similarity)
        if measures["problems"] and self.inputs.enabled:
            name = self.inputs.in_file or "the image"
            raise ImageCheckError(
                f"{name}: implausible after preprocessing: " + "; ".join(measures["problems"])
                + ". Check the image (a T1w of a human head?); if it is right, rerun with "
                "--skip-plausibility-checks")
        self._results.update(model_t1w=self.inputs.model_t1w, idps=self.inputs.idps,
                             measures=measures)
        return runtime
