"""Torch dataset over the tensor store, with augmentation that keeps left and right."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from bgs_app.model.store import TensorStore


class StoreDataset(Dataset):
    """Volumes of a tensor store with their genotypes.

    Parameters
    ----------
    store : TensorStore
    rows : sequence of int
        Store rows in this dataset.
    dosages : numpy.ndarray
        (len(rows), n_snps) with 0/1/2 or NaN.
    augment : bool
        Random shifts (in whole voxels per axis, zero-filled) and intensity scaling and
        gamma. Never a left-right flip: effects may be lateralised.
    max_shift_mm : float
        Largest shift, rounded to voxels; small, because genotype effects are tied to
        anatomical location.
    max_shift : int, optional
        Largest shift in voxels (overrides ``max_shift_mm``; 0: none).
    seed, epoch : int
        Augmentation is a function of (seed, epoch, item), so a resumed run sees the
        same augmented volumes as an uninterrupted one.
    intensity : bool
        With ``augment``, also random intensity scaling and gamma (T1w inputs); False
        for log-Jacobian maps (shifts only).
    """

    def __init__(self, store: TensorStore, rows, dosages, *, augment: bool = False,
                 max_shift_mm: float = 3.0, max_shift: int | None = None, seed: int = 0,
                 intensity: bool = True):
        self.store = store
        self.rows = np.asarray(rows, int)
        self.dosages = np.array(dosages, np.float32)  # a writable copy
        self.augment = augment
        spacing = float(np.abs(np.asarray(store.grid["affine"])[:3, :3]).max())
        self.max_shift = (int(round(max_shift_mm / spacing)) if max_shift is None
                          else int(max_shift))
        self.seed = int(seed)
        self.intensity = bool(intensity)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        volume = self.store[int(self.rows[i])]
        if self.augment:
            volume = self._augment(volume, np.random.default_rng([self.seed, self.epoch, i]))
        return torch.from_numpy(np.array(volume, np.float32, copy=True))[None], torch.from_numpy(
            self.dosages[i])

    def _augment(self, volume: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        shifts = rng.integers(-self.max_shift, self.max_shift + 1, 3)
        out = np.zeros_like(volume)
        src = tuple(slice(max(0, -s), n - max(0, s)) for s, n in zip(shifts, volume.shape,
                                                                       strict=True))
        dst = tuple(slice(max(0, s), n - max(0, -s)) for s, n in zip(shifts, volume.shape,
                                                                       strict=True))
        out[dst] = volume[src]
        if not self.intensity:
            return out
        positive = out > 0
        gamma = rng.uniform(0.9, 1.1)
        out[positive] = out[positive] ** gamma
        return out * rng.uniform(0.9, 1.1)
