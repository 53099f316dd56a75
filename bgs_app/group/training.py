"""Training: the tensor store, then one model bundle per model of the split (``model/``).

Each model trains with checkpoints in the work folder (an interrupted run resumes from
the last one) and is written as a bundle with its held-out metrics; a bundle made from
the same store, genotypes, split and settings is reused. Under ``torchrun`` every rank
trains (DistributedDataParallel); rank 0 builds the store and writes the bundles.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bgs_app.config import RunContext
from bgs_app.errors import BgsError
from bgs_app.group.stage import stage
from bgs_app.model import distributed

LOGGER = logging.getLogger("bgs_app")


@dataclass
class TrainedModel:
    """A trained model and the participants it holds out.

    Attributes
    ----------
    name : str
        ``model`` (held-out split) or ``fold-<k>``.
    model : bgs_app.model.network.SFCN
    test : list of str
        The participants it scores.
    meta : dict
        Its bundle's ``model.json``.
    """

    name: str
    model: object
    test: list[str]
    meta: dict


#: What the CNN (and the voxel baselines) can read: the participant level's model-grid
#: T1w, or the log-Jacobian map written beside it.
INPUTS = ("t1w", "logjacobian")


def input_paths(images: pd.DataFrame, kind: str = "t1w") -> list[Path]:
    """The files of ``kind`` for the rows of ``images`` (model-grid T1w paths)."""
    from bgs_app.bids.derivatives import logjacobian_path

    if kind not in INPUTS:
        raise ValueError(f"unknown input {kind!r}; choose from {INPUTS}")
    paths = [Path(p) for p in images["path"]]
    return paths if kind == "t1w" else [logjacobian_path(p) for p in paths]


def input_metadata(kind: str) -> dict:
    """What a bundle's ``grid`` records about its input (absent: the T1w)."""
    if kind == "t1w":
        return {}
    return {"Input": kind,
            "Normalisation": "log-Jacobian determinant of the nonlinear registration "
                             "(log volume ratio to the template), zero outside the brain"}


def bundle_input(meta: dict) -> str:
    """The input a bundle's network reads (``t1w`` for bundles without the field)."""
    return str((meta.get("grid") or {}).get("Input", "t1w"))


def resolve_cnn_input(choice: str, images: pd.DataFrame) -> str:
    """``--cnn-input``: ``auto`` is ``logjacobian`` when every image has its map (the
    participant level with ``--registration syn``), else ``t1w``."""
    if choice != "auto":
        return choice
    return "logjacobian" if has_logjacobian(images) else "t1w"


def has_logjacobian(images: pd.DataFrame) -> bool:
    """Whether every image has its log-Jacobian map (the participant level writes them
    with ``--registration syn``)."""
    return len(images) > 0 and all(p.is_file() for p in input_paths(images, "logjacobian"))


def build_store(context: RunContext, images: pd.DataFrame, grid: dict, kind: str = "t1w"):
    """The tensor store of the model-grid images, or of their log-Jacobian maps (built
    by rank 0, opened by the others).

    Raises
    ------
    BgsError
        ``kind="logjacobian"`` and some images have no map (the message names them).

    Returns
    -------
    bgs_app.model.store.TensorStore
    """
    from bgs_app.model.store import StoreItem, TensorStore
    from bgs_app.model.store import build_store as build

    folder = context.group_work / ("store" if kind == "t1w" else f"store-{kind}")
    paths = input_paths(images, kind)
    missing = [p for p in paths if not p.is_file()]  # every rank sees the same files
    if missing:
        raise BgsError(
            f"--cnn-input {kind}: {len(missing)} of {len(paths)} image(s) have no "
            f"log-Jacobian map ({', '.join(p.name for p in missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}); run the participant level with "
            "--registration syn (the default) with this version, which writes "
            "*_desc-logjacobian_map.nii.gz beside each model-grid image")
    if not context.is_main:
        distributed.barrier()  # rank 0 builds the store
        return TensorStore(folder)
    items = [StoreItem(r.participant_id, r.session_id, path)
             for r, path in zip(images.itertuples(), paths, strict=True)]
    store = build(items, folder, grid_metadata=grid, nprocs=context.config.nprocs)
    distributed.barrier()
    return store


def train_models(context: RunContext, store, images: pd.DataFrame, dosages: pd.DataFrame,
                 split: pd.Series, alleles: pd.DataFrame, grid: dict, *,
                 probabilities: np.ndarray | None = None,
                 families: pd.Series | None = None, kind: str = "t1w"
                 ) -> list[TrainedModel]:
    """Train every model of ``split`` (or reuse its bundle when current).

    Parameters
    ----------
    context : RunContext
    store : bgs_app.model.store.TensorStore
        Rows in the order of ``images``.
    images : pandas.DataFrame
        See :class:`bgs_app.group.inputs.GroupInputs`.
    dosages : pandas.DataFrame
        Participants x SNPs after QC.
    split : pandas.Series
        Participant -> set or fold (:func:`bgs_app.group.split.make_study_split`); its
        models are :func:`bgs_app.group.split.model_sets`.
    alleles : pandas.DataFrame
        Index SNP: ``counted_allele``, ``other_allele``, ``counted_allele_freq``
        (recorded in the bundles).
    grid : dict
        :func:`bgs_app.grid.grid_metadata`.
    probabilities : numpy.ndarray, optional
        ``dosages.shape + (3,)`` genotype probabilities (imputed dosages): the training
        targets (soft labels) instead of the hard calls.
    families : pandas.Series, optional
        Participant -> family (``--kinship``): validation sets are drawn by family.
    kind : {"t1w", "logjacobian"}
        What ``store`` holds (the resolved ``--cnn-input``): log-Jacobian maps are
        augmented by shifts only.

    Returns
    -------
    list of TrainedModel
        On every rank (under ``torchrun`` each loads the bundles rank 0 wrote).
    """
    from bgs_app.group.split import model_sets
    from bgs_app.model.bundle import load_bundle
    from bgs_app.model.train import TrainConfig

    config = context.config
    sets = model_sets(context, split, families)
    snps = list(dosages.columns)
    cfg = TrainConfig(epochs=config.epochs, batch_size=config.batch_size,
                      lr=config.learning_rate, seed=config.seed,
                      channels=tuple(config.channels), patience=config.patience,
                      selection=config.checkpoint_selection,
                      poolings=(None if config.poolings == "all" else config.poolings
                                if config.poolings == "auto" else int(config.poolings)),
                      readout=config.readout, coord_channels=config.coord_channels,
                      norm=config.norm, max_shift=config.max_shift,
                      intensity_augment=kind == "t1w",
                      device=context.device, compile=config.torch_compile,
                      num_workers=0 if config.nprocs < 4 else min(4, config.nprocs // 2))
    members = int(config.ensemble)
    rows_of: dict[str, list[int]] = {}
    for i, pid in enumerate(images["participant_id"]):
        rows_of.setdefault(pid, []).append(i)

    def rows(pids):
        return [r for p in pids for r in rows_of[p]]

    def dos(pids):
        return dosages.loc[[p for p in pids for _ in rows_of[p]]].to_numpy(np.float32)

    def labels(pids):
        if probabilities is None:
            return dos(pids)
        at = dosages.index.get_indexer([p for p in pids for _ in rows_of[p]])
        return np.asarray(probabilities, np.float32)[at]

    models = []
    for k, (name, train, val, test) in enumerate(sets):
        bundle_dir = (context.group_dir / "model" if name == "model"
                      else context.group_dir / "model" / name)
        train_dir = context.group_work / "train" / name
        parts = [store.index["sha256"].tolist(), dosages.to_numpy().tolist(),
                 split.to_dict(), vars(cfg), snps,
                 None if probabilities is None else hashlib.sha256(np.ascontiguousarray(
                     probabilities, np.float32).tobytes()).hexdigest()]
        if members > 1:
            parts.append({"ensemble": members})
        trained = stage(context, f"train-{name}", parts, [bundle_dir / "model.json"])
        if trained.current():  # every rank agrees
            model, meta = load_bundle(bundle_dir)
            LOGGER.info("%s: trained model is current; reusing %s", name, bundle_dir)
            models.append(TrainedModel(name, model, test, meta))
            continue
        checkpoints = stage(context, f"run-{name}", parts, [train_dir])
        stale = train_dir.exists() and not checkpoints.current()
        distributed.barrier()  # every rank has looked before rank 0 changes anything
        if context.is_main:
            if stale:
                shutil.rmtree(train_dir)  # checkpoints made from other data or settings
            checkpoints.done()
        distributed.barrier()
        LOGGER.info("%s: training on %d, validating on %d, testing on %d participants%s",
                    name, len(train), len(val), len(test),
                    f" ({members} networks, seeds {cfg.seed} to {cfg.seed + members - 1})"
                    if members > 1 else "")
        model, log = _train_members(store, rows(train), labels(train), rows(val),
                                    labels(val), snps, train_dir, cfg, members,
                                    f"{name} ({k + 1}/{len(sets)})")
        metrics = _held_out_metrics(model, store, rows(test), dos(test), snps, cfg.device)
        if context.is_main:
            _save(model, bundle_dir, snps, alleles, grid,
                  _training_summary(context, cfg, train, val, test, log, name, members),
                  metrics, train_dir)
            trained.done()
        distributed.barrier()  # the bundle is written: every rank scores with it
        model, meta = load_bundle(bundle_dir)
        models.append(TrainedModel(name, model, test, meta))
    return models


def _train_members(store, train_rows, train_labels, val_rows, val_labels, snps,
                   train_dir: Path, cfg, members: int, label: str):
    """Train one network, or ``members`` networks with seeds ``cfg.seed`` upwards (each
    in its own ``member-<k>`` folder, resumed on its own) as an
    :class:`~bgs_app.model.network.Ensemble`. Returns the model and the training log
    (with a ``member`` column for an ensemble; also written to ``train_dir``)."""
    from dataclasses import replace

    from bgs_app.model.network import Ensemble
    from bgs_app.model.train import train_model
    from bgs_app.utils.atomic import write_tsv

    if members == 1:
        return train_model(store, train_rows, train_labels, val_rows, val_labels, snps,
                           train_dir, cfg, label=label)
    networks, logs = [], []
    for m in range(members):
        net, log = train_model(store, train_rows, train_labels, val_rows, val_labels, snps,
                               train_dir / f"member-{m + 1}", replace(cfg, seed=cfg.seed + m),
                               label=f"{label}, network {m + 1}/{members}")
        networks.append(net)
        logs.append(log.assign(member=m + 1))
    log = pd.concat(logs, ignore_index=True)
    if distributed.join()[0] == 0:
        write_tsv(log, train_dir / "training_log.tsv")
    return Ensemble(networks), log


def _save(model, bundle_dir, snps, alleles, grid, training, metrics, train_dir) -> None:
    from bgs_app.model.bundle import save_bundle

    save_bundle(model.cpu(), bundle_dir, snps=snps,
                counted_alleles=alleles["counted_allele"].to_dict(),
                other_alleles=alleles["other_allele"].to_dict(),
                allele_freqs={k: round(float(v), 6) for k, v in
                              alleles["counted_allele_freq"].items()},
                grid=grid, training=training, metrics=metrics,
                training_log=train_dir / "training_log.tsv")


def _held_out_metrics(model, store, rows: list[int], dosages: np.ndarray, snps: list[str],
                      device: str) -> list[dict]:
    """Per-SNP metrics of a model on its held-out images (recorded in the bundle)."""
    from bgs_app.model.scores import predict_rows
    from bgs_app.stats.metrics import genotype_metrics

    probs = predict_rows(model, store, rows, device=device, label="held-out metrics")
    metrics = []
    for j, snp in enumerate(snps):
        m = genotype_metrics(dosages[:, j], probs[:, j])
        metrics.append({"snp": snp, **{k: (None if not np.isfinite(v) else float(v))
                                       for k, v in m.items()}})
    return metrics


def _training_summary(context: RunContext, cfg, train, val, test, log, name: str,
                      members: int = 1) -> dict:
    summary = {"config": {k: (list(v) if isinstance(v, tuple) else v)
                          for k, v in vars(cfg).items()},
               "n_train": len(train), "n_val": len(val), "n_test": len(test),
               "epochs_run": int(len(log)), "split": name,
               "genotypes": str(context.config.genotypes)}
    if members > 1:
        summary.update(ensemble=members, seeds=[cfg.seed + m for m in range(members)],
                       epochs_run=[int((log["member"] == m + 1).sum())
                                   for m in range(members)])
    return summary
