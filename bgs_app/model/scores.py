"""Brain-genotype scores: expected dosages and class probabilities from a trained model.

A score is the network's expected count of the counted (A1) allele, ``p1 + 2 p2``,
kept with the three class probabilities ``p0``, ``p1``, ``p2``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd
import torch

from bgs_app.errors import BgsError
from bgs_app.model.network import SFCN, class_probabilities

SCORE_COLUMNS = ["snp", "counted_allele", "score", "p0", "p1", "p2"]


def load_volume(path: str | Path, grid: dict | None = None) -> np.ndarray:
    """A model-grid image as float32 (X, Y, Z), checked against a model's grid.

    Parameters
    ----------
    path : path-like
    grid : dict, optional
        The bundle's grid (``Shape``, ``Affine``); another grid is refused.
    """
    img = nb.load(path)
    if grid is not None:
        shape = [int(n) for n in img.shape[:3]]
        if shape != list(grid["Shape"]) or not np.allclose(img.affine, grid["Affine"],
                                                           atol=1e-3):
            raise BgsError(f"{path} is on grid {shape} with another affine than the "
                           f"model's ({grid['Shape']} at {grid['Resolution']} mm); rerun the "
                           f"participant level with --resolution {grid['Resolution']}")
    return np.asarray(img.dataobj, dtype=np.float32)


def predict_volumes(model: SFCN, volumes: Iterable[np.ndarray], *, batch_size: int = 4,
                    device: str = "cpu") -> np.ndarray:
    """Class probabilities for model-grid volumes.

    Parameters
    ----------
    model : SFCN
    volumes : iterable of numpy.ndarray
        (X, Y, Z) arrays on the model's grid.
    batch_size : int
    device : str

    Returns
    -------
    numpy.ndarray
        (n, n_snps, 3) probabilities of 0, 1 and 2 counted alleles.
    """
    model = model.to(device).eval()
    out, batch = [], []

    def flush():
        x = torch.from_numpy(np.stack(batch))[:, None].to(device)
        x = x.to(memory_format=torch.channels_last_3d)
        with torch.no_grad(), torch.autocast(device_type="cuda", dtype=torch.bfloat16,
                                             enabled=str(device).startswith("cuda")):
            logits = model(x)
        out.append(class_probabilities(logits.float()).cpu().numpy())
        batch.clear()

    for volume in volumes:
        batch.append(np.asarray(volume, np.float32))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return np.concatenate(out) if out else np.zeros((0, model.n_snps, 3), np.float32)


def predict_rows(model: SFCN, store, rows: Sequence[int], *, device: str = "cpu",
                 label: str = "scoring") -> np.ndarray:
    """Class probabilities of rows of a tensor store, shared between ``torchrun`` ranks.

    Each rank predicts its share of ``rows`` (:func:`bgs_app.model.distributed.shard`) on
    its own GPU, and the shares are summed over the ranks, so every rank returns all of
    them; alone, it predicts every row.

    Parameters
    ----------
    model : SFCN
    store : bgs_app.model.store.TensorStore
    rows : sequence of int
    device : str
    label : str
        Names the progress lines.

    Returns
    -------
    numpy.ndarray
        (len(rows), n_snps, 3) probabilities, in the order of ``rows``.
    """
    from bgs_app.model import distributed
    from bgs_app.utils.progress import tracked

    rows = list(rows)
    positions = distributed.shard(list(range(len(rows))))
    volumes = tracked((store[rows[i]] for i in positions), label, len(positions), "image")
    mine = predict_volumes(model, volumes, device=distributed.device_for_rank(device))
    out = np.zeros((len(rows), model.n_snps, 3), np.float64)
    out[positions] = mine
    return distributed.all_reduce_sum(out)


def scores_frame(probs: np.ndarray, snps: Sequence[str], counted: dict[str, str] | None = None
                 ) -> pd.DataFrame:
    """One subject's scores table (``sub-X_desc-bgs_scores.tsv``).

    Parameters
    ----------
    probs : numpy.ndarray
        (n_snps, 3) class probabilities.
    snps : sequence of str
    counted : dict, optional
        SNP -> counted allele.
    """
    probs = np.asarray(probs, np.float64)
    counted = counted or {}
    return pd.DataFrame({"snp": list(snps), "counted_allele": [counted.get(s) for s in snps],
                         "score": probs[:, 1] + 2 * probs[:, 2], "p0": probs[:, 0],
                         "p1": probs[:, 1], "p2": probs[:, 2]})


def scores_long(probs: np.ndarray, snps: Sequence[str], participant_ids: Sequence[str],
                session_ids: Sequence[str | None] | None = None,
                split: Sequence[str] | None = None,
                alleles: pd.DataFrame | None = None) -> pd.DataFrame:
    """Group scores in the long format of ``group/scores.tsv``.

    Parameters
    ----------
    probs : numpy.ndarray
        (n, n_snps, 3).
    snps : sequence of str
    participant_ids : sequence of str
    session_ids : sequence, optional
        Written only when some are not None.
    split : sequence of str, optional
        The set or fold each subject's score came from.
    alleles : pandas.DataFrame, optional
        Index SNP: ``counted_allele``, ``other_allele``, ``counted_allele_freq``
        (written after ``snp``).
    """
    probs = np.asarray(probs, np.float64)
    n, k = probs.shape[:2]
    frame = pd.DataFrame({"participant_id": np.repeat(list(participant_ids), k)})
    if session_ids is not None and any(s is not None for s in session_ids):
        frame["session_id"] = np.repeat([s if s is not None else "n/a" for s in session_ids],
                                        k)
    frame["snp"] = np.tile(list(snps), n)
    if alleles is not None:
        for column in ("counted_allele", "other_allele", "counted_allele_freq"):
            if column in alleles:
                frame[column] = frame["snp"].map(alleles[column])
    flat = probs.reshape(n * k, 3)
    frame["score"] = flat[:, 1] + 2 * flat[:, 2]
    frame["p0"], frame["p1"], frame["p2"] = flat[:, 0], flat[:, 1], flat[:, 2]
    if split is not None:
        frame["split"] = np.repeat(list(split), k)
    return frame


def scores_wide(long: pd.DataFrame, splits: Sequence[str] | None = None) -> pd.DataFrame:
    """Participants x SNPs score matrix from the long table (sessions averaged).

    Parameters
    ----------
    long : pandas.DataFrame
        ``group/scores.tsv`` rows.
    splits : sequence of str, optional
        Keep only rows from these sets or folds (e.g. the held-out ones).
    """
    rows = long if splits is None else long[long["split"].isin(list(splits))]
    wide = rows.pivot_table(index="participant_id", columns="snp", values="score",
                            aggfunc="mean")
    return wide[[s for s in dict.fromkeys(long["snp"]) if s in wide.columns]]


SCORES_SIDECAR = {
    "participant_id": {"Description": "BIDS participant label"},
    "session_id": {"Description": "BIDS session label"},
    "snp": {"Description": "SNP the score predicts (its model head)"},
    "counted_allele": {"Description": "The allele whose copies the score counts (PLINK A1)"},
    "other_allele": {"Description": "The SNP's other allele (PLINK A2)"},
    "counted_allele_freq": {"Description": "Frequency of the counted allele among the "
                                           "genotyped participants (a released model "
                                           "without site genotypes: in its training data)"},
    "score": {"Description": "Brain-genotype score: expected count of the counted allele "
                             "predicted from the image, p1 + 2 p2", "Units": "alleles"},
    "p0": {"Description": "Predicted probability of 0 copies of the counted allele"},
    "p1": {"Description": "Predicted probability of 1 copy of the counted allele"},
    "p2": {"Description": "Predicted probability of 2 copies of the counted allele"},
    "split": {"Description": "The set (train, val, test) or cross-fitting fold (fold-<k>) "
                             "the participant belonged to for the model that scored it; "
                             "only test and fold-<k> scores are out-of-sample"},
}
