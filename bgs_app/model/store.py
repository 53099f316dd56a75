"""The tensor store: model-grid images in one memory-mapped float16 array.

Built once from the participant-level model-grid images (in parallel, with progress)
and rebuilt only for what changed (by content checksum). Training reads volumes from
the memory map instead of decompressing NIfTI files. Layout of a store folder:

``volumes.f16``   raw float16 array, shape (N, X, Y, Z), C order
``index.tsv``     one row per volume: row, participant_id, session_id, source, sha256
``manifest.json`` grid (shape, affine, resolution), template, normalisation, dtype
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from bgs_app.errors import BgsError
from bgs_app.utils.atomic import atomic_path, write_json, write_tsv
from bgs_app.utils.hashing import file_sha256

LOGGER = logging.getLogger("bgs_app")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class StoreItem:
    """One model-grid image to store."""

    participant_id: str
    session_id: str | None
    source: Path


def _grid_of(img: nb.Nifti1Image) -> dict:
    return {"shape": [int(n) for n in img.shape[:3]],
            "affine": np.round(img.affine, 6).tolist()}


class TensorStore:
    """Read access to a built store (a read-only memory map)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        try:
            self.manifest = json.loads((self.folder / "manifest.json").read_text())
            self.index = pd.read_csv(self.folder / "index.tsv", sep="\t", na_values="n/a",
                                     keep_default_na=False,
                                     dtype={"participant_id": str, "session_id": str})
        except (OSError, json.JSONDecodeError) as err:
            raise BgsError(f"{self.folder} is not a complete tensor store ({err}); "
                           "rebuild it") from err
        shape = (len(self.index), *self.manifest["grid"]["shape"])
        self.volumes = np.memmap(self.folder / "volumes.f16", dtype=np.float16, mode="r",
                                 shape=shape)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, row: int) -> np.ndarray:
        """Volume ``row`` as float32 (X, Y, Z)."""
        return np.asarray(self.volumes[row], dtype=np.float32)

    @property
    def grid(self) -> dict:
        """Shape, affine and resolution of the stored grid."""
        return self.manifest["grid"]


def build_store(items: list[StoreItem], folder: str | os.PathLike, *,
                grid_metadata: dict | None = None, nprocs: int = 2,
                progress: bool = True) -> TensorStore:
    """Build (or refresh) a tensor store from model-grid images.

    Parameters
    ----------
    items : list of StoreItem
        The images, in the order rows should have.
    folder : path-like
        The store folder.
    grid_metadata : dict, optional
        Template, resolution and normalisation of the grid, recorded in the manifest.
    nprocs : int
        Threads reading images (gzip decompression releases the GIL).
    progress : bool
        Log progress lines (:mod:`bgs_app.utils.progress`) while checking, hashing and
        reading the images.

    Returns
    -------
    TensorStore

    Raises
    ------
    BgsError
        An image is made on another grid than the others (the message lists them).
    """
    from bgs_app.utils.progress import Progress, tracked

    def counted(values, what):
        return tracked(values, what, len(items), "image") if progress else values

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not items:
        raise BgsError("no model-grid image to store")
    first = nb.load(items[0].source)
    grid = _grid_of(first)
    wrong = [str(it.source) for it in counted(items, "tensor store: checking grids")
             if _grid_of(nb.load(it.source)) != grid]
    if wrong:
        raise BgsError(f"{len(wrong)} model-grid image(s) are on another grid than "
                       f"{items[0].source.name} (shape {grid['shape']}): "
                       f"{', '.join(wrong[:10])}; rerun the participant level with one "
                       "--resolution and template")
    with ThreadPoolExecutor(max(1, nprocs)) as pool:
        digests = list(counted(pool.map(lambda it: file_sha256(it.source), items),
                               "tensor store: hashing"))
    old = _reusable(folder, grid)
    manifest = {"format_version": FORMAT_VERSION, "dtype": "float16",
                "grid": {**grid, **({"resolution": grid_metadata.get("Resolution")}
                                    if grid_metadata else {})},
                "metadata": grid_metadata or {}}
    shape = (len(items), *grid["shape"])
    reuse = {}
    if old is not None:
        old_rows = {d: r for d, r in zip(old.index["sha256"], old.index["row"], strict=True)}
        reuse = {i: old_rows[d] for i, d in enumerate(digests) if d in old_rows}
    data_path = folder / "volumes.f16"
    with atomic_path(data_path) as tmp:
        target = np.memmap(tmp, dtype=np.float16, mode="w+", shape=shape)
        for i, j in reuse.items():
            target[i] = old.volumes[j]
        todo = [i for i in range(len(items)) if i not in reuse]

        def load(i):
            data = np.asarray(nb.load(items[i].source).dataobj, dtype=np.float32)
            target[i] = data.astype(np.float16)
            return i

        bar = Progress("tensor store: reading", len(todo), "volume",
                       interval=None if progress else float("inf"), final=False)
        with ThreadPoolExecutor(max(1, nprocs)) as pool:
            for _ in pool.map(load, todo):
                bar.update()
        target.flush()
    index = pd.DataFrame({"row": range(len(items)),
                          "participant_id": [it.participant_id for it in items],
                          "session_id": [it.session_id for it in items],
                          "source": [str(it.source) for it in items], "sha256": digests})
    write_tsv(index, folder / "index.tsv")
    write_json(folder / "manifest.json", manifest)
    LOGGER.info("Tensor store %s: %d volumes (%d reused, %d read)", folder, len(items),
                len(reuse), len(items) - len(reuse))
    return TensorStore(folder)


def _reusable(folder: Path, grid: dict) -> TensorStore | None:
    """The existing store when its grid matches (its volumes can be reused)."""
    if not (folder / "manifest.json").is_file():
        return None
    try:
        store = TensorStore(folder)
    except (BgsError, ValueError):
        return None
    if {k: store.grid.get(k) for k in ("shape", "affine")} != grid:
        return None
    return store
