"""The model bundle: a folder other sites can use, safe to load (no pickles).

``weights.safetensors``  the network's tensors (safetensors; never pickle)
``model.json``           architecture, SNPs and counted alleles, grid, template,
                         normalisation, training summary, per-SNP test metrics,
                         package version, and the SHA-256 of the weights
``training_log.tsv``     one row per epoch (copied from training, when given; an
                         ensemble's has one per network and epoch, with ``member``)
``SHA256SUMS``           the manifest: the SHA-256 of every other file, in the format of
                         ``sha256sum`` (``sha256sum -c SHA256SUMS`` checks a copy), written
                         last, so a bundle without it is incomplete

:func:`read_bundle` checks a bundle (manifest, ``model.json`` fields, grid) without
torch, so that a process that forks workers afterwards (Nipype's MultiProc) never
starts torch's thread pool; :func:`load_bundle` also builds the network.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bgs_app import __version__
from bgs_app.config import MAX_ENSEMBLE
from bgs_app.errors import BgsError
from bgs_app.utils.atomic import atomic_path, write_json, write_text
from bgs_app.utils.hashing import file_sha256

BUNDLE_FORMAT = 2
MANIFEST = "SHA256SUMS"
#: Files every bundle has (the manifest must list them).
REQUIRED = ("model.json", "weights.safetensors")


def save_bundle(model, folder: str | Path, *, snps: list[str],
                counted_alleles: dict[str, str], grid: dict, training: dict | None = None,
                metrics: list[dict] | None = None, training_log: str | Path | None = None,
                other_alleles: dict[str, str] | None = None,
                allele_freqs: dict[str, float] | None = None) -> Path:
    """Write a model bundle.

    Parameters
    ----------
    model : bgs_app.model.network.SFCN or bgs_app.model.network.Ensemble
    folder : path-like
    snps : list of str
        SNPs in head order.
    counted_alleles : dict
        SNP -> counted (A1) allele.
    other_alleles, allele_freqs : dict, optional
        SNP -> other (A2) allele, and the counted allele's frequency in the training
        data: what lets a site with the alleles swapped, or a strand-ambiguous SNP, be
        aligned.
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
    (folder / MANIFEST).unlink(missing_ok=True)  # incomplete until the manifest is back
    weights = folder / "weights.safetensors"
    with atomic_path(weights) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(tmp))
    files = list(REQUIRED)
    if training_log is not None:
        with atomic_path(folder / "training_log.tsv") as tmp:
            shutil.copyfile(training_log, tmp)
        files.append("training_log.tsv")
    write_json(folder / "model.json", {
        "bundle_format": BUNDLE_FORMAT, "bgs_app_version": __version__,
        "architecture": model.architecture(),
        "snps": [{"snp": s, "counted_allele": counted_alleles.get(s),
                  **({"other_allele": other_alleles.get(s)} if other_alleles else {}),
                  **({"counted_allele_freq": allele_freqs.get(s)} if allele_freqs else {})}
                 for s in snps],
        "grid": grid, "training": training or {}, "test_metrics": metrics or [],
        "weights_sha256": file_sha256(weights),
    })
    write_text(folder / MANIFEST, "".join(f"{file_sha256(folder / name)}  {name}\n"
                                          for name in sorted(files)))
    return folder


def _fail(folder: Path, what: str) -> BgsError:
    return BgsError(f"{folder}: {what}; the bundle is damaged or was edited: get it again "
                    "(or retrain it)")


def _check_manifest(folder: Path) -> None:
    path = folder / MANIFEST
    if not path.is_file():
        raise _fail(folder, f"no {MANIFEST} manifest (an incomplete bundle, or one made by "
                            "an older bgs_app)")
    listed = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise _fail(folder, f"{MANIFEST} has a malformed line {line.strip()!r}")
        listed[parts[1].lstrip("*")] = parts[0].lower()
    missing = [name for name in REQUIRED if name not in listed]
    if missing:
        raise _fail(folder, f"{MANIFEST} does not list {', '.join(missing)}")
    for name, digest in listed.items():
        target = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise _fail(folder, f"{MANIFEST} names a file outside the bundle ({name})")
        if not target.is_file():
            raise _fail(folder, f"{name}, listed in {MANIFEST}, is missing")
        if file_sha256(target) != digest:
            raise _fail(folder, f"{name} does not match its SHA-256 in {MANIFEST} "
                                "(modified or corrupt)")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_options(folder: Path, arch: dict) -> None:
    """The architecture options (absent in bundles made before they existed: SFCN's)."""
    from bgs_app.model.network import NORMS, READOUTS

    poolings = arch.get("poolings")
    if poolings is not None and (not _is_int(poolings)
                                 or not 0 <= poolings < len(arch["channels"])):
        raise _fail(folder, f"architecture.poolings must be an integer from 0 to the number "
                            f"of 3^3 blocks, not {poolings!r}")
    for name, allowed in (("readout", READOUTS), ("norm", NORMS)):
        if arch.get(name, allowed[0]) not in allowed:
            raise _fail(folder, f"architecture.{name} must be one of {', '.join(allowed)}, "
                                f"not {arch.get(name)!r}")
    if not isinstance(arch.get("coord_channels", False), bool):
        raise _fail(folder, "architecture.coord_channels must be true or false")
    ensemble = arch.get("ensemble", 1)
    if not _is_int(ensemble) or not 1 <= ensemble <= MAX_ENSEMBLE:
        raise _fail(folder, f"architecture.ensemble must be an integer from 1 to "
                            f"{MAX_ENSEMBLE}, not {ensemble!r}")


def network_from(arch: dict, grid: dict | None = None):
    """The (untrained) network an ``architecture`` entry of ``model.json`` describes
    (an :class:`~bgs_app.model.network.Ensemble` when ``ensemble`` is above 1)."""
    from bgs_app.model.network import SFCN, Ensemble

    shape = tuple(int(n) for n in (grid or {}).get("Shape", ())) or None

    def one():
        return SFCN(int(arch["n_snps"]), channels=tuple(arch["channels"]),
                    dropout=float(arch.get("dropout", 0.5)), poolings=arch.get("poolings"),
                    readout=arch.get("readout", "mean"),
                    coord_channels=bool(arch.get("coord_channels", False)),
                    norm=arch.get("norm", "batch"), grid_shape=shape)

    members = int(arch.get("ensemble", 1))
    return one() if members == 1 else Ensemble([one() for _ in range(members)])


def _check_fields(folder: Path, meta) -> None:
    """Refuse a ``model.json`` whose fields cannot describe a network."""
    if not isinstance(meta, dict):
        raise _fail(folder, "model.json is not a JSON object")
    arch = meta.get("architecture")
    if not isinstance(arch, dict):
        raise _fail(folder, "model.json has no 'architecture'")
    if arch.get("name", "SFCN") != "SFCN":
        raise _fail(folder, f"unknown architecture {arch.get('name')!r} in model.json")
    channels = arch.get("channels")
    if (not isinstance(channels, list) or len(channels) < 2
            or not all(_is_int(c) and c > 0 for c in channels)):
        raise _fail(folder, f"architecture.channels must be a list of at least two positive "
                            f"integers, not {channels!r}")
    if not _is_int(arch.get("n_snps")) or arch["n_snps"] < 1:
        raise _fail(folder, f"architecture.n_snps must be a positive integer, not "
                            f"{arch.get('n_snps')!r}")
    dropout = arch.get("dropout", 0.5)
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not (
            0 <= dropout < 1):
        raise _fail(folder, f"architecture.dropout must be a number in [0, 1), not "
                            f"{dropout!r}")
    _check_options(folder, arch)
    snps = meta.get("snps")
    if (not isinstance(snps, list) or not all(isinstance(s, dict) and isinstance(
            s.get("snp"), str) and s["snp"] for s in snps)):
        raise _fail(folder, "model.json 'snps' must be a list of {\"snp\": name, "
                            "\"counted_allele\": allele} entries")
    if len(snps) != arch["n_snps"]:
        raise _fail(folder, f"model.json lists {len(snps)} SNPs for a network with "
                            f"{arch['n_snps']} heads")
    names = [s["snp"] for s in snps]
    if len(set(names)) != len(names):
        raise _fail(folder, "model.json lists a SNP twice")
    grid = meta.get("grid")
    if not isinstance(grid, dict) or not {"Template", "Resolution", "Shape", "Affine"} <= set(
            grid):
        raise _fail(folder, "model.json 'grid' must give Template, Resolution, Shape and "
                            "Affine")


def read_bundle(folder: str | Path, *, expect_grid: dict | None = None) -> dict:
    """Check a model bundle and return its ``model.json``, without importing torch.

    Parameters
    ----------
    folder : path-like
    expect_grid : dict, optional
        The grid the caller's images are on (Template, Resolution, Shape, Affine);
        a bundle made for another grid or template is refused.

    Returns
    -------
    dict
        ``model.json``.

    Raises
    ------
    BgsError
        Not a bundle, a file that does not match the manifest, an unknown format,
        fields that cannot describe a network, or another grid.
    """
    folder = Path(folder)
    meta_path, weights = folder / "model.json", folder / "weights.safetensors"
    if not meta_path.is_file() or not weights.is_file():
        raise BgsError(f"{folder} is not a bgs_app model bundle (model.json and "
                       "weights.safetensors are needed)")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BgsError(f"{meta_path}: not valid JSON ({err})") from err
    if not isinstance(meta, dict) or meta.get("bundle_format") != BUNDLE_FORMAT:
        found = meta.get("bundle_format") if isinstance(meta, dict) else None
        raise BgsError(f"{folder}: unknown bundle format {found!r} (this bgs_app reads "
                       f"format {BUNDLE_FORMAT})")
    _check_manifest(folder)
    if file_sha256(weights) != meta.get("weights_sha256"):
        raise BgsError(f"{weights}: the weights do not match the checksum in model.json "
                       "(modified or corrupt); get the bundle again")
    _check_fields(folder, meta)
    if expect_grid is not None:
        grid = meta["grid"]
        for key in ("Template", "Resolution", "Shape"):
            if grid.get(key) != expect_grid.get(key):
                raise BgsError(
                    f"the model in {folder} was trained on {key} {grid.get(key)!r}, the "
                    f"images are on {expect_grid.get(key)!r}; rerun the participant level "
                    f"with --resolution {grid.get('Resolution')} and --template "
                    f"{grid.get('Template')}")
    return meta


def load_bundle(folder: str | Path, *, expect_grid: dict | None = None):
    """Load a model bundle, checking it before use (see :func:`read_bundle`).

    Parameters
    ----------
    folder : path-like
    expect_grid : dict, optional
        See :func:`read_bundle`.

    Returns
    -------
    model : bgs_app.model.network.SFCN or bgs_app.model.network.Ensemble
        In evaluation mode.
    meta : dict
        ``model.json``.

    Raises
    ------
    BgsError
        As :func:`read_bundle`, and weights that do not fit the architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_bundle(folder, expect_grid=expect_grid)
    weights = Path(folder) / "weights.safetensors"
    try:
        model = network_from(meta["architecture"], meta.get("grid"))
    except ValueError as err:
        raise _fail(folder, f"the architecture cannot be built ({err})") from err
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
