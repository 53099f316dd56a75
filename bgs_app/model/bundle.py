"""The model bundle: a folder other sites can use, safe to load (no pickles).

``weights.safetensors``  the network's tensors (safetensors; never pickle)
``model.json``           architecture, SNPs and counted alleles, grid, template,
                         normalisation, training summary, per-SNP test metrics,
                         package version, and the SHA-256 of the weights
``training_log.tsv``     one row per epoch (copied from training, when given)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bgs_app import __version__
from bgs_app.errors import BgsError
from bgs_app.model.network import SFCN
from bgs_app.utils.atomic import atomic_path, write_json
from bgs_app.utils.hashing import file_sha256

BUNDLE_FORMAT = 1


def save_bundle(model: SFCN, folder: str | Path, *, snps: list[str],
                counted_alleles: dict[str, str], grid: dict, training: dict | None = None,
                metrics: list[dict] | None = None, training_log: str | Path | None = None
                ) -> Path:
    """Write a model bundle.

    Parameters
    ----------
    model : SFCN
    folder : path-like
    snps : list of str
        SNPs in head order.
    counted_alleles : dict
        SNP -> counted (A1) allele.
    grid : dict
        The model-grid metadata (``bgs_app.interfaces.modelgrid.grid_metadata``):
        Template, Resolution, Shape, Affine, Normalisation.
    training : dict, optional
        Training settings and data summary.
    metrics : list of dict, optional
        Per-SNP test metrics.
    training_log : path-like, optional

    Returns
    -------
    pathlib.Path
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "weights.safetensors"
    with atomic_path(weights) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(tmp))
    if training_log is not None:
        shutil.copyfile(training_log, folder / "training_log.tsv")
    write_json(folder / "model.json", {
        "bundle_format": BUNDLE_FORMAT, "bgs_app_version": __version__,
        "architecture": {"name": "SFCN", "channels": list(model.channels),
                         "n_snps": model.n_snps, "dropout": model.dropout.p},
        "snps": [{"snp": s, "counted_allele": counted_alleles.get(s)} for s in snps],
        "grid": grid, "training": training or {}, "test_metrics": metrics or [],
        "weights_sha256": file_sha256(weights),
    })
    return folder


def load_bundle(folder: str | Path, *, expect_grid: dict | None = None
                ) -> tuple[SFCN, dict]:
    """Load a model bundle, checking it before use.

    Parameters
    ----------
    folder : path-like
    expect_grid : dict, optional
        The grid the caller's images are on (Template, Resolution, Shape, Affine);
        a bundle made for another grid or template is refused.

    Returns
    -------
    model : SFCN
        In evaluation mode.
    meta : dict
        ``model.json``.

    Raises
    ------
    BgsError
        Missing files, tampered weights, an unknown format, or another grid.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    meta_path, weights = folder / "model.json", folder / "weights.safetensors"
    if not meta_path.is_file() or not weights.is_file():
        raise BgsError(f"{folder} is not a bgs_app model bundle (model.json and "
                       "weights.safetensors are needed)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise BgsError(f"{meta_path}: not valid JSON ({err})") from err
    if meta.get("bundle_format") != BUNDLE_FORMAT:
        raise BgsError(f"{folder}: unknown bundle format {meta.get('bundle_format')!r}")
    if file_sha256(weights) != meta.get("weights_sha256"):
        raise BgsError(f"{weights}: the weights do not match the checksum in model.json "
                       "(modified or corrupt); get the bundle again")
    if expect_grid is not None:
        grid = meta.get("grid", {})
        for key in ("Template", "Resolution", "Shape"):
            if grid.get(key) != expect_grid.get(key):
                raise BgsError(
                    f"the model in {folder} was trained on {key} {grid.get(key)!r}, the "
                    f"images are on {expect_grid.get(key)!r}; rerun the participant level "
                    f"with --resolution {grid.get('Resolution')} and --template "
                    f"{grid.get('Template')}")
    arch = meta["architecture"]
    model = SFCN(int(arch["n_snps"]), channels=tuple(arch["channels"]),
                 dropout=float(arch.get("dropout", 0.5)))
    try:
        state = load_file(str(weights))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError) as err:
        raise BgsError(f"{weights}: cannot load the weights ({err})") from err
    return model.eval(), meta



def bundle_summary(folder: str | Path, meta: dict) -> dict:
    """What names a model in the sidecars of its scores and maps."""
    return {"Path": str(Path(folder).resolve()), "Version": meta.get("bgs_app_version"),
            "WeightsSHA256": meta.get("weights_sha256"),
            "Template": meta.get("grid", {}).get("Template"),
            "Resolution": meta.get("grid", {}).get("Resolution"),
            "CountedAlleles": {s["snp"]: s.get("counted_allele") for s in meta["snps"]}}
