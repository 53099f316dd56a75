"""Deformations in template space: genotype effects, ageing and individual anatomy.

All fields are *pull-back* displacements ``u`` on a 2 mm grid covering the head:
a subject's anatomy at template-space point ``y`` is the template's at ``y + u(y)``.
The subject's local volume relative to the template is then ``1 / det(I + du/dy)``,
about ``1 - div u`` for small fields.

An effect pattern ``S`` (fractional volume change per unit: per allele, per year)
becomes a displacement by solving ``laplacian(phi) = -S`` and taking ``u = grad phi``
(spectrally, so that ``div u = -S`` holds exactly on the grid). Expansion inside a
blob thus pushes the surrounding tissue outwards, as growth does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: What a causal SNP's effect can be (``SimulationParams.effect_kinds``): a regional
#: volume change, Gaussian blobs, a constant-volume shape change, a fine pattern.
EFFECT_KINDS = ("atlas", "blobs", "shape", "pattern")

#: Spacing (mm) of the deformation grid.
FIELD_SPACING = 2.0

#: Candidate blob centres (template world mm, RAS), one list per lobe, so that the
#: blobs of one SNP can be spread over different lobes.
LOBE_CENTRES = {
    "frontal": [(30, 40, 20), (-30, 40, 20), (20, 55, 0), (-40, 25, 35)],
    "parietal": [(32, -55, 45), (-32, -55, 45), (8, -62, 42), (-45, -38, 40)],
    "temporal": [(52, -20, -10), (-52, -20, -10), (45, 0, -28), (-45, -45, -5)],
    "occipital": [(20, -88, 8), (-20, -88, 8), (10, -80, -5)],
    "cerebellum": [(25, -65, -35), (-25, -65, -35)],
    "deep": [(12, -18, 8), (-12, -18, 8), (-38, 5, 5), (38, 5, 5), (6, 22, 28)],
}


@dataclass(frozen=True)
class FieldGrid:
    """The 2 mm grid of the deformation fields (covering the head grid)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @classmethod
    def from_head(cls, head_shape, head_affine) -> FieldGrid:
        """Block-mean (2 x 2 x 2) grid of the 1 mm head grid."""
        shape = tuple(int(n // 2) for n in head_shape)
        affine = head_affine.copy()
        affine[:3, :3] = head_affine[:3, :3] * FIELD_SPACING
        affine[:3, 3] = head_affine[:3, 3] + 0.5 * np.diag(head_affine)[:3]
        return cls(shape=shape, affine=affine)

    def world(self) -> list[np.ndarray]:
        """World coordinates of the grid points (three broadcastable arrays)."""
        out = []
        for axis in range(3):
            coords = np.arange(self.shape[axis], dtype=np.float32) * self.affine[axis, axis]
            coords += self.affine[axis, 3]
            out.append(coords.reshape([-1 if a == axis else 1 for a in range(3)]))
        return out


def gaussian_blob(grid: FieldGrid, centre, sigma: float) -> np.ndarray:
    """A unit-peak Gaussian on ``grid`` (``sigma`` in mm)."""
    x, y, z = grid.world()
    r2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2
    return np.exp(-r2 / (2.0 * sigma**2)).astype(np.float32)


def displacement_from_pattern(pattern: np.ndarray) -> np.ndarray:
    """The pull-back displacement whose divergence is ``-pattern``.

    Parameters
    ----------
    pattern : numpy.ndarray
        Fractional volume change on the field grid.

    Returns
    -------
    numpy.ndarray
        Displacement (mm), shape ``(3, *pattern.shape)``, float32.
    """
    shape = pattern.shape
    spectrum = np.fft.rfftn(pattern - pattern.mean(), axes=(0, 1, 2))
    freqs = [np.fft.fftfreq(n, d=FIELD_SPACING) for n in shape[:2]]
    freqs.append(np.fft.rfftfreq(shape[2], d=FIELD_SPACING))
    k = [2.0 * np.pi * f.reshape([-1 if a == i else 1 for a in range(3)])
         for i, f in enumerate(freqs)]
    k2 = k[0] ** 2 + k[1] ** 2 + k[2] ** 2
    k2[0, 0, 0] = 1.0
    phi = spectrum / k2  # laplacian(phi) = -pattern
    phi[0, 0, 0] = 0.0
    out = np.empty((3, *shape), np.float32)
    for axis in range(3):
        out[axis] = np.fft.irfftn(1j * k[axis] * phi, s=shape, axes=(0, 1, 2))
    return out


def divergence(field: np.ndarray) -> np.ndarray:
    """Finite-difference divergence of a displacement field on the field grid."""
    return sum(np.gradient(field[a], FIELD_SPACING, axis=a) for a in range(3))


def _jacobian_determinant(field: np.ndarray) -> np.ndarray:
    """``det(I + grad u)`` of a displacement field on the field grid."""
    grads = [[np.gradient(field[i], FIELD_SPACING, axis=j) for j in range(3)]
             for i in range(3)]
    j = [[grads[i][jj] + (1.0 if i == jj else 0.0) for jj in range(3)] for i in range(3)]
    return (j[0][0] * (j[1][1] * j[2][2] - j[1][2] * j[2][1])
            - j[0][1] * (j[1][0] * j[2][2] - j[1][2] * j[2][0])
            + j[0][2] * (j[1][0] * j[2][1] - j[1][1] * j[2][0]))


def volume_change(field: np.ndarray) -> np.ndarray:
    """Subject volume relative to template, minus one: ``1 / det(I + grad u) - 1``."""
    det = _jacobian_determinant(field)
    return (1.0 / det - 1.0).astype(np.float32)


def log_jacobian(field: np.ndarray) -> np.ndarray:
    """Log of the subject's local volume relative to the template, ``-log det(I + grad u)``.

    The tensor-based-morphometry map of the nonlinear anatomy (the affine part, head size
    and pose, is not in ``field``): positive where the subject is larger. Equal to
    ``log(1 + volume_change(field))``; where the field folds (det <= 0) the value is
    clipped at +/- 3.
    """
    det = _jacobian_determinant(field)
    return np.clip(-np.log(np.maximum(det, np.exp(-3.0))), -3.0, 3.0).astype(np.float32)


def random_warp(grid: FieldGrid, rng: np.random.Generator, rms_mm: float,
                weight: np.ndarray) -> np.ndarray:
    """A smooth random displacement (several mm) without a linear (affine) part.

    Parameters
    ----------
    grid : FieldGrid
    rng : numpy.random.Generator
    rms_mm : float
        Root-mean-square displacement over the brain.
    weight : numpy.ndarray
        Brain weights on ``grid`` (where the RMS and the affine fit are taken).

    Returns
    -------
    numpy.ndarray
        ``(3, *grid.shape)`` float32.
    """
    import torch

    step = 4  # control points every 8 mm
    coarse_shape = [int(np.ceil(n / step)) + 1 for n in grid.shape]
    noise = rng.standard_normal((3, *coarse_shape)).astype(np.float32)
    noise = np.stack([ndimage.gaussian_filter(c, 1.5, mode="nearest") for c in noise])
    field = torch.nn.functional.interpolate(
        torch.from_numpy(noise)[None], size=grid.shape, mode="trilinear", align_corners=True
    )[0].numpy()
    # Remove the best affine fit over the brain, so that the native-to-template affine
    # stays the true one.
    x, y, z = grid.world()
    sel = weight > 0.5
    design = np.stack([np.broadcast_to(v, grid.shape)[sel] for v in (x, y, z)]
                      + [np.ones(int(sel.sum()), np.float32)], axis=1)
    for axis in range(3):
        coef, *_ = np.linalg.lstsq(design, field[axis][sel], rcond=None)
        field[axis] -= (coef[0] * x + coef[1] * y + coef[2] * z + coef[3]).astype(np.float32)
    rms = float(np.sqrt(np.mean(np.sum(field[:, sel] ** 2, axis=0))))
    field *= rms_mm / max(rms, 1e-6)
    return field
