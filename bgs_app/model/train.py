"""Training the multi-task SFCN: masked loss, schedule, validation, checkpoints, resume.

Every epoch ends with an atomically written checkpoint; a rerun with the same output
folder resumes from the last one. Data order, augmentation and dropout are functions
of (seed, epoch), so an interrupted and resumed run ends with the same weights as an
uninterrupted one (on CPU).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from bgs_app.model import distributed
from bgs_app.model.dataset import StoreDataset
from bgs_app.model.network import (
    DEFAULT_CHANNELS,
    SFCN,
    auto_poolings,
    class_probabilities,
    masked_cross_entropy,
)
from bgs_app.model.store import TensorStore
from bgs_app.stats.metrics import genotype_metrics
from bgs_app.utils.atomic import atomic_path, write_tsv
from bgs_app.utils.progress import Progress, duration

LOGGER = logging.getLogger("bgs_app")


@dataclass
class TrainConfig:
    """Training settings (recorded in the model bundle).

    ``poolings`` (an int, ``"auto"`` or None: all), ``readout``, ``coord_channels`` and
    ``norm`` are the network's options (:class:`bgs_app.model.network.SFCN`);
    ``max_shift`` is the augmentation's largest shift in voxels (None: 3 mm, rounded);
    ``intensity_augment`` adds intensity scaling and gamma (for T1w inputs, not for
    log-Jacobian maps, whose values are volume ratios).
    """

    epochs: int = 30
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    warmup_epochs: int = 1
    schedule: str = "cosine"
    patience: int = 10
    seed: int = 0
    channels: tuple[int, ...] = field(default=DEFAULT_CHANNELS)
    dropout: float = 0.5
    augment: bool = True
    class_weighting: bool = False
    num_workers: int = 0
    device: str = "cpu"
    compile: bool = False
    selection: str = "informative"
    poolings: int | str | None = None
    readout: str = "mean"
    coord_channels: bool = False
    norm: str = "batch"
    max_shift: int | None = None
    intensity_augment: bool = True


#: How the best epoch (and early stopping) is judged.
SELECTIONS = ("informative", "mean")


def head_losses(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per head, the mean cross-entropy of predicted probabilities (rows, heads, 3)
    against hard calls (rows, heads) or probabilities (rows, heads, 3); NaN missing."""
    targets = np.asarray(targets, np.float64)
    if targets.ndim == 2:
        called = ~np.isnan(targets)
        targets = np.where(called[..., None],
                           np.eye(3)[np.nan_to_num(targets).astype(int)], 0.0)
    else:
        called = ~np.isnan(targets).any(axis=-1)
        targets = np.where(called[..., None], targets, 0.0)
    nll = -(np.nan_to_num(targets) * np.log(np.asarray(probs, np.float64) + 1e-9)).sum(-1)
    n = called.sum(0)
    return np.where(n > 0, (nll * called).sum(0) / np.maximum(n, 1), np.nan)


def genotype_prior(targets: np.ndarray) -> np.ndarray:
    """Per head, the genotype frequencies of the training labels (heads, 3): what a
    network that learned nothing about a SNP predicts for it."""
    targets = np.asarray(targets, np.float64)
    if targets.ndim == 2:
        counts = np.stack([(targets == c).sum(0) for c in range(3)], axis=1).astype(float)
    else:
        counts = np.nansum(targets, axis=0)
    counts = counts + 0.5  # no zero probability for a class the training set lacks
    return counts / counts.sum(1, keepdims=True)


def selection_loss(probs: np.ndarray, targets: np.ndarray, prior: np.ndarray,
                   how: str = "informative") -> float:
    """The validation number that picks the best epoch and stops training.

    ``mean``: the mean cross-entropy over every head. ``informative`` (default): only
    heads that beat their genotype prior on the validation set count, by how much
    (the mean over heads of ``min(loss - prior loss, 0)``), so hundreds of null heads,
    whose validation loss only rises as they overfit, do not decide when a few causal
    heads peak; while no head beats its prior, the mean cross-entropy decides (it is
    positive, the gain negative, so any epoch where a head beats its prior ranks better).
    """
    losses = head_losses(probs, targets)
    if how == "mean":
        return float(np.nanmean(losses))
    if how != "informative":
        raise ValueError(f"checkpoint selection {how!r}: choose from {SELECTIONS}")
    baseline = head_losses(np.broadcast_to(prior, np.shape(probs)), targets)
    gain = np.minimum(losses - baseline, 0.0)
    if not np.nanmin(gain, initial=0.0) < 0:
        return float(np.nanmean(losses))
    return float(np.nanmean(gain))


def build_network(n_snps: int, cfg: TrainConfig, grid_shape: tuple[int, ...]) -> SFCN:
    """The network ``cfg`` describes on a grid of ``grid_shape`` (``poolings="auto"``
    keeps a last map of about 5 x 6 x 5, see :func:`~bgs_app.model.network.auto_poolings`)."""
    poolings = cfg.poolings
    if poolings == "auto":
        poolings = auto_poolings(grid_shape, len(cfg.channels) - 1)
    return SFCN(n_snps, channels=cfg.channels, dropout=cfg.dropout,
                poolings=None if poolings is None else int(poolings), readout=cfg.readout,
                coord_channels=cfg.coord_channels, norm=cfg.norm,
                grid_shape=tuple(int(n) for n in grid_shape))


def _lr_factor(epoch: int, cfg: TrainConfig) -> float:
    if epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1)
        return 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))
    return 0.1 ** ((epoch - cfg.warmup_epochs) // max(cfg.epochs // 3, 1))


def _class_weights(labels: np.ndarray) -> torch.Tensor:
    if labels.ndim == 3:  # genotype probabilities: expected counts
        counts = np.nansum(labels, axis=0).astype(float)
    else:
        counts = np.stack([(labels == c).sum(0) for c in range(3)], axis=1).astype(float)
    weights = counts.sum(1, keepdims=True) / (3 * np.maximum(counts, 1))
    return torch.from_numpy(np.clip(weights, 0.2, 10.0)).float()


def predict(model: SFCN, dataset: StoreDataset, batch_size: int = 8,
            device: str = "cpu") -> np.ndarray:
    """Class probabilities (n, n_snps, 3) for every item of a dataset."""
    model.eval()
    out = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with torch.no_grad():
        for x, _ in loader:
            x = x.to(device).to(memory_format=torch.channels_last_3d)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16,
                                enabled=str(device).startswith("cuda")):
                logits = model(x)
            out.append(class_probabilities(logits.float()).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.n_snps, 3))


def train_model(store: TensorStore, train_rows, train_dosages, val_rows, val_dosages,
                snps: list[str], out_dir: str | os.PathLike, cfg: TrainConfig | None = None,
                *, stop_after: int | None = None,
                label: str = "training") -> tuple[SFCN, pd.DataFrame]:
    """Train (or resume training) the network.

    Parameters
    ----------
    store : TensorStore
    train_rows, val_rows : sequence of int
        Store rows.
    train_dosages, val_dosages : numpy.ndarray
        (rows, n_snps) hard calls 0/1/2 or NaN, or (rows, n_snps, 3) genotype
        probabilities (soft labels; NaN where missing).
    snps : list of str
    out_dir : path-like
        Where ``checkpoint.pt``, ``best.pt`` and ``training_log.tsv`` go.
    cfg : TrainConfig
    stop_after : int, optional
        Stop after this epoch (for interruption tests); a rerun resumes.
    label : str
        What the progress lines call this training (``fold-1 (2/5)``).

    Returns
    -------
    model : SFCN
        With the best validation weights.
    log : pandas.DataFrame
        One row per epoch.
    """
    cfg = cfg or TrainConfig()
    out_dir = Path(out_dir)
    rank, world = distributed.join()
    device = distributed.device_for_rank(cfg.device)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = build_network(len(snps), cfg, tuple(store.grid["shape"])).to(device)
    # channels_last_3d: 0.71x the CPU training time (DESIGN), and what cuDNN prefers.
    model = model.to(memory_format=torch.channels_last_3d)
    use_bf16 = str(device).startswith("cuda")
    pin = use_bf16
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9,
                              weight_decay=cfg.weight_decay)
    train_set = StoreDataset(store, train_rows, train_dosages, augment=cfg.augment,
                             seed=cfg.seed, max_shift=cfg.max_shift,
                             intensity=cfg.intensity_augment)
    val_set = StoreDataset(store, val_rows, val_dosages)
    weights = _class_weights(np.asarray(train_dosages)) if cfg.class_weighting else None
    prior = genotype_prior(train_dosages)
    start, best_loss, stale, rows = 0, float("inf"), 0, []
    checkpoint = out_dir / "checkpoint.pt"
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=True, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, best_loss, stale = int(state["epoch"]) + 1, float(state["best_loss"]), int(
            state["stale"])
        rows = pd.read_csv(out_dir / "training_log.tsv", sep="\t").to_dict("records")[:start]
        LOGGER.info("Resuming training at epoch %d from %s", start, checkpoint)
    net: torch.nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device] if use_bf16 else None)
    if cfg.compile:
        net = torch.compile(net)
    for epoch in range(start, cfg.epochs):
        if stale >= cfg.patience:
            break
        for group in opt.param_groups:
            group["lr"] = cfg.lr * _lr_factor(epoch, cfg)
        began = time.perf_counter()
        model.train()
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout, per epoch
        train_set.epoch = epoch
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_set))
        if world > 1:  # every rank the same number of steps, each its own shard
            order = order[:len(order) // world * world][rank::world]
        # Workers are started per epoch, so each sees this epoch's augmentation seed.
        # A last batch of one volume would break BatchNorm: it is dropped for this epoch.
        loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=order.tolist(),
                            num_workers=cfg.num_workers, pin_memory=pin,
                            drop_last=len(order) % cfg.batch_size == 1)
        total, seen = 0.0, 0
        bar = Progress(f"{label}, epoch {epoch + 1}/{cfg.epochs}", len(loader), "batch",
                       final=False)
        for x, y in loader:
            x = x.to(device, non_blocking=pin).to(memory_format=torch.channels_last_3d)
            y = y.to(device, non_blocking=pin)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
                logits = net(x)
            loss = masked_cross_entropy(logits.float(), y, weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
            seen += len(x)
            bar.update()
        probs = predict(model, val_set, cfg.batch_size, device)
        val_loss = float(masked_cross_entropy(torch.from_numpy(np.log(probs + 1e-9)),
                                              torch.from_numpy(np.array(val_dosages,
                                                                        np.float32))))
        selection = selection_loss(probs, np.asarray(val_dosages, np.float32), prior,
                                   cfg.selection)
        row = {"epoch": epoch, "train_loss": total / max(seen, 1), "val_loss": val_loss,
               "val_selection": selection,
               "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - began,
               "volumes_per_s": seen / max(time.perf_counter() - began, 1e-9)}
        val_expected = _expected(val_dosages)
        for j, snp in enumerate(snps):
            row[f"val_auc_{snp}"] = genotype_metrics(val_expected[:, j], probs[:, j])["auc"]
        rows.append(row)
        # Every rank validates on the whole validation set, so every rank takes the same
        # early-stopping decision; only rank 0 writes.
        improved = selection < best_loss - 1e-6
        best_loss, stale = (selection, 0) if improved else (best_loss, stale + 1)
        if rank == 0:
            _write_epoch(out_dir, rows, model, opt, cfg, best_loss, stale, improved)
            _log_epoch(label, rows, cfg.epochs, stale, cfg.patience)
        if stop_after is not None and epoch >= stop_after:
            break
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    best = out_dir / "best.pt"
    if best.is_file():
        model.load_state_dict(torch.load(best, weights_only=True,
                                         map_location=device)["model"])
    return model, pd.DataFrame(rows)


def _expected(labels) -> np.ndarray:
    """Dosages of hard calls or genotype probabilities (rows, n_snps)."""
    labels = np.asarray(labels, np.float32)
    return labels @ np.array([0.0, 1.0, 2.0], np.float32) if labels.ndim == 3 else labels


def _write_epoch(out_dir: Path, rows: list, model: SFCN, opt, cfg: TrainConfig,
                 best_loss: float, stale: int, improved: bool) -> None:
    """Best weights, the training log and the checkpoint (each written atomically)."""
    if improved:
        _save(out_dir / "best.pt", {"model": model.state_dict()})
    write_tsv(pd.DataFrame(rows), out_dir / "training_log.tsv")
    row = rows[-1]
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    _save(out_dir / "checkpoint.pt", {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                      "epoch": row["epoch"], "best_loss": best_loss,
                                      "stale": stale, "config": config})


def _log_epoch(label: str, rows: list, epochs: int, stale: int, patience: int) -> None:
    """``label, epoch k/N: losses (seconds; time left at most)``."""
    row = rows[-1]
    left = epochs - row["epoch"] - 1
    mean = float(np.mean([r["seconds"] for r in rows]))
    eta = (f"; at most {duration(left * mean)} left for {left} epoch(s)" if left else "")
    stop = (f", {stale} without improvement (stops at {patience})" if stale else "")
    LOGGER.info("%s, epoch %d/%d: train %.4f, val %.4f (%s, %.1f volume(s)/s%s%s)", label,
                row["epoch"] + 1, epochs, row["train_loss"], row["val_loss"],
                duration(row["seconds"]), row["volumes_per_s"], eta, stop)


def _save(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
