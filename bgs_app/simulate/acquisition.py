"""Scanner side of the simulation: sites, head pose, native grids, bias, noise, writing.

One resampling per image: every native voxel is mapped to template space through
the inverse pose (an affine) and the subject's displacement field, and the head
model is sampled there once (torch ``grid_sample``, trilinear).
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nb
import numpy as np
import torch
from nibabel import orientations as ornt

from bgs_app.simulate.anatomy import HeadModel
from bgs_app.simulate.deform import FieldGrid


@dataclass(frozen=True)
class Site:
    """A scanner: orientation of the stored array, voxel size, field of view, storage."""

    name: str
    orientation: str  # axis codes of the stored array, e.g. "PIL"
    voxel_mm: tuple[float, float, float]  # per stored array axis, at --resolution 1
    fov_mm: tuple[float, float, float]  # per stored array axis
    dtype: str  # "int16-scaled", "int16" or "float32"
    intensity_scale: float
    noise: float  # Rician noise sigma relative to white matter
    bias: float  # amplitude of the log bias field


SITES = (
    Site("siteA", "PIL", (1.0, 1.0, 1.0), (256.0, 256.0, 176.0), "int16-scaled", 900.0,
         0.025, 0.18),
    Site("siteB", "LPS", (0.9375, 0.9375, 1.2), (240.0, 240.0, 192.0), "float32", 1.0,
         0.03, 0.25),
    Site("siteC", "RAS", (1.0, 1.0, 1.0), (184.0, 232.0, 232.0), "int16", 350.0, 0.02,
         0.15),
)


def rotation(angles_deg) -> np.ndarray:
    """Rotation matrix from roll/pitch/yaw about x, y, z (degrees)."""
    a, b, c = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_pose(rng: np.random.Generator, head_scale: float) -> np.ndarray:
    """Template-world to native-world affine: rotation, translation, scaling (4 x 4)."""
    angles = rng.uniform(-1, 1, 3) * np.array([10.0, 6.0, 6.0])
    scales = head_scale * (1.0 + rng.uniform(-0.015, 0.015, 3))
    pose = np.eye(4)
    pose[:3, :3] = rotation(angles) @ np.diag(scales)
    pose[:3, 3] = rng.uniform(-12, 12, 3)
    return pose


def native_grid(site: Site, pose: np.ndarray, rng: np.random.Generator,
                resolution: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the stored image: the site's field of view around the head.

    The field of view starts a little above the vertex and runs down as far as the
    site's coverage goes, so the neck is cut where the scanner cuts it.
    """
    codes = tuple(site.orientation)
    target = ornt.axcodes2ornt(codes)  # stored axis -> (world axis, direction)
    voxel = np.array(site.voxel_mm) * resolution
    shape = tuple(max(8, int(round(f / v))) for f, v in zip(site.fov_mm, voxel, strict=True))
    # The box is aligned with the scanner (world) axes; its centre follows the head.
    fov_world = np.zeros(3)
    for stored, (world_axis, _) in enumerate(target):
        fov_world[int(world_axis)] = site.fov_mm[stored]
    top_of_head = 95.0 + 8.0  # template z of the vertex, plus margin
    centre_template = np.array([0.0, -14.0, top_of_head - fov_world[2] / 2.0, 1.0])
    centre = (pose @ centre_template)[:3] + rng.uniform(-4, 4, 3)
    affine = np.zeros((4, 4))
    affine[3, 3] = 1.0
    for stored, (world_axis, direction) in enumerate(target):
        affine[int(world_axis), stored] = direction * voxel[stored]
    half = (np.array(shape) - 1) / 2.0
    affine[:3, 3] = centre - affine[:3, :3] @ half
    return shape, affine


def _to_grid_coords(world: torch.Tensor, affine: np.ndarray, shape) -> torch.Tensor:
    """World points (..., 3) -> ``grid_sample`` coordinates of a volume (order z, y, x)."""
    inv = np.linalg.inv(affine)
    # index_i = inv[i] . (x, y, z, 1); normalised = index * 2 / (n - 1) - 1
    scale = np.array([2.0 / (n - 1) for n in shape])[:, None]
    lin = (inv[:3, :3] * scale)[::-1].copy()  # rows in (z, y, x) order
    off = (inv[:3, 3] * scale[:, 0] - 1.0)[::-1].copy()
    return world @ torch.from_numpy(lin.T.astype(np.float32)) + torch.from_numpy(
        off.astype(np.float32))


def _native_box(bounds_world: np.ndarray, pose: np.ndarray, affine: np.ndarray, shape,
                margin_mm: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """Native voxel box [lo, hi) that holds a template-world box after the pose."""
    lo, hi = bounds_world[0] - margin_mm, bounds_world[1] + margin_mm
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])])
    vox = (np.linalg.inv(affine) @ pose @ corners.T)[:3]
    box_lo = np.clip(np.floor(vox.min(axis=1)).astype(int), 0, np.array(shape))
    box_hi = np.clip(np.ceil(vox.max(axis=1)).astype(int) + 1, 0, np.array(shape))
    return box_lo, box_hi


def _bounds(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World bounding box (2 x 3) of a volume's non-zero voxels."""
    nz = [np.flatnonzero(volume.any(axis=tuple(a for a in range(3) if a != ax)))
          for ax in range(3)]
    lo = np.array([n[0] for n in nz], float)
    hi = np.array([n[-1] for n in nz], float)
    pts = np.stack([affine[:3, :3] @ lo + affine[:3, 3], affine[:3, :3] @ hi + affine[:3, 3]])
    return np.sort(pts, axis=0)


def sample_subject(head: HeadModel, field: np.ndarray, grid: FieldGrid, pose: np.ndarray,
                   shape, affine, step: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Resample the head model into one native image through the pose and the field.

    The native-to-template mapping (affine pose, then the smooth displacement field)
    is evaluated every ``step`` voxels and interpolated in between; the head model is
    then sampled once at every native voxel of the head's box (air elsewhere).

    Parameters
    ----------
    head : HeadModel
    field : numpy.ndarray
        Subject's pull-back displacement on ``grid``, ``(3, *grid.shape)``.
    grid : FieldGrid
    pose : numpy.ndarray
        Template-world to native-world affine.
    shape, affine
        Native grid.
    step : int
        Spacing (voxels) at which the mapping is evaluated exactly.

    Returns
    -------
    intensity : numpy.ndarray
        Noise-free T1w intensity (white matter = 1), float32.
    brain : numpy.ndarray
        Brain-mask partial volume in [0, 1], float32.
    """
    cache = _SHARED_VOLUMES.get(id(head))
    if cache is None:
        cache = {
            "intensity": torch.from_numpy(head.intensity)[None, None],
            "brain": torch.from_numpy(head.brain)[None, None],
            "head_bounds": _bounds(head.intensity > 0, head.affine),
            "brain_bounds": _bounds(head.brain > 0, head.affine),
        }
        _SHARED_VOLUMES.clear()
        _SHARED_VOLUMES[id(head)] = cache
    intensity = np.zeros(shape, np.float32)
    brain = np.zeros(shape, np.float32)
    lo, hi = _native_box(cache["head_bounds"], pose, affine, shape)
    size = hi - lo
    if np.any(size < 2):
        return intensity, brain
    coarse = [int(np.ceil((n - 1) / step)) + 1 for n in size]
    # coarse voxel -> native voxel -> native world -> template world.
    to_native = np.diag([step, step, step, 1.0])
    to_native[:3, 3] = lo
    to_template = np.linalg.inv(pose) @ affine @ to_native
    idx = [torch.arange(n, dtype=torch.float32) for n in coarse]
    vox = torch.stack(torch.meshgrid(*idx, indexing="ij"), dim=-1)
    world = vox @ torch.from_numpy(to_template[:3, :3].T.astype(np.float32)) + \
        torch.from_numpy(to_template[:3, 3].astype(np.float32))
    disp = torch.nn.functional.grid_sample(
        torch.from_numpy(field)[None], _to_grid_coords(world, grid.affine, grid.shape)[None],
        mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    world = world + disp.permute(1, 2, 3, 0)
    coords = _to_grid_coords(world, head.affine, head.intensity.shape)
    full = [(n - 1) * step + 1 for n in coarse]
    coords = torch.nn.functional.interpolate(
        coords.permute(3, 0, 1, 2)[None], size=full, mode="trilinear", align_corners=True)
    coords = coords[0, :, : size[0], : size[1], : size[2]].permute(1, 2, 3, 0).contiguous()
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    intensity[box] = torch.nn.functional.grid_sample(
        cache["intensity"], coords[None], mode="bilinear", padding_mode="zeros",
        align_corners=True)[0, 0].numpy()
    # The brain occupies a smaller box: sample the mask there only.
    blo, bhi = _native_box(cache["brain_bounds"], pose, affine, shape)
    blo, bhi = np.maximum(blo, lo), np.minimum(bhi, hi)
    if np.all(bhi - blo >= 2):
        sub = coords[tuple(slice(int(a - o), int(b - o)) for a, b, o in
                           zip(blo, bhi, lo, strict=True))].contiguous()
        brain[tuple(slice(int(a), int(b)) for a, b in zip(blo, bhi, strict=True))] = \
            torch.nn.functional.grid_sample(cache["brain"], sub[None], mode="bilinear",
                                            padding_mode="zeros", align_corners=True)[0, 0].numpy()
    return intensity, brain


_SHARED_VOLUMES: dict = {}


def corrupt(intensity: np.ndarray, site: Site, rng: np.random.Generator) -> np.ndarray:
    """Apply a smooth multiplicative bias field and Rician noise."""
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    coeffs = torch.from_numpy(rng.uniform(-1, 1, (1, 1, 4, 4, 4)).astype(np.float32))
    bias = torch.nn.functional.interpolate(coeffs, size=intensity.shape, mode="trilinear",
                                           align_corners=True)[0, 0]
    img = torch.from_numpy(intensity) * torch.exp(site.bias * bias)
    real = img + site.noise * torch.randn(img.shape, generator=gen)
    imag = site.noise * torch.randn(img.shape, generator=gen)
    return torch.sqrt(real * real + imag * imag).numpy()


def to_nifti(data: np.ndarray, affine: np.ndarray, site: Site) -> nb.Nifti1Image:
    """Store an image as the site's scanner would (int16 with or without scaling, float32)."""
    values = data * site.intensity_scale
    if site.dtype == "int16":
        img = nb.Nifti1Image(np.clip(np.rint(values), 0, 32767).astype(np.int16), affine)
    elif site.dtype == "int16-scaled":
        img = nb.Nifti1Image(values.astype(np.float32), affine)
        img.set_data_dtype(np.int16)
    else:
        img = nb.Nifti1Image(values.astype(np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img
