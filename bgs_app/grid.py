"""The model grid: a fixed box in template world coordinates, sampled at a resolution.

The one definition of the CNN's input grid, without Nipype or torch: the participant
level writes images on it (:mod:`bgs_app.interfaces.modelgrid`), model bundles record it
and scoring refuses images made on another (:mod:`bgs_app.model.bundle`), the group level
checks it, and the simulator's oracle writes on it.
"""

from __future__ import annotations

import numpy as np

#: The model box in template world coordinates (mm): lower corner and size.
MODEL_BOX_ORIGIN = (-80.0, -120.0, -70.0)
MODEL_BOX_SIZE = (160.0, 192.0, 160.0)
#: How the model-grid image's intensities are normalised.
NORMALISATION = "divided by the mean intensity inside the brain mask (SFCN convention)"


def model_grid(resolution: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the model grid at ``resolution`` mm (template world, RAS).

    The box is 160 x 192 x 160 mm from :data:`MODEL_BOX_ORIGIN`; at resolutions that do
    not divide it, the box grows to the next whole voxel.

    Parameters
    ----------
    resolution : float
        Voxel size in mm.

    Returns
    -------
    shape : tuple of int
    affine : numpy.ndarray
        4 x 4, voxel to template world (mm).
    """
    shape = tuple(int(np.ceil(s / resolution - 1e-6)) for s in MODEL_BOX_SIZE)
    affine = np.diag([resolution, resolution, resolution, 1.0])
    affine[:3, 3] = np.array(MODEL_BOX_ORIGIN) + resolution / 2.0
    return shape, affine


def grid_metadata(resolution: float, template: str) -> dict:
    """What identifies a model grid: checked by scoring and recorded in model bundles.

    Parameters
    ----------
    resolution : float
        Voxel size in mm.
    template : str
        The template's name (the ``space-`` entity).

    Returns
    -------
    dict
        ``Template``, ``Resolution``, ``Shape``, ``Affine``, ``BoxOrigin``, ``BoxSize``,
        ``Normalisation``.
    """
    shape, affine = model_grid(resolution)
    return {"Template": template, "Resolution": float(resolution), "Shape": list(shape),
            "Affine": affine.tolist(), "BoxOrigin": list(MODEL_BOX_ORIGIN),
            "BoxSize": list(MODEL_BOX_SIZE), "Normalisation": NORMALISATION}
