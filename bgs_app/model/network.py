"""SFCN-style fully convolutional 3D CNN with one 3-class genotype head per SNP.

Peng et al. (2021), "Accurate brain age prediction with lightweight deep neural
networks", Medical Image Analysis 68:101871: five blocks of Conv3d(3^3)-BatchNorm-
MaxPool(2)-ReLU, a 1^3 convolution block, global average pooling, dropout and a 1^3
convolution head. The pooling is adaptive, so any model grid works.

Options, each recorded in the model bundle: fewer poolings (so that a coarse grid keeps
a last map of about 5 x 6 x 5, as SFCN has at 1 mm, instead of 1 x 1 x 1 at 4 mm), a
linear read-out of the whole last map (location-aware) instead of the average, input
coordinate channels, and GroupNorm in place of BatchNorm. :class:`Ensemble` averages
the genotype probabilities of several such networks (trained with different seeds).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

DEFAULT_CHANNELS = (32, 64, 128, 256, 256, 64)

#: The read-outs of the last feature map: ``mean`` (SFCN's global average pooling) or
#: ``flatten`` (one linear map of the whole last map per SNP: where a feature is counts).
READOUTS = ("mean", "flatten")

#: Normalisation layers: ``batch`` (SFCN's) or ``group`` (8 groups; for small batches).
NORMS = ("batch", "group")

#: ``auto`` poolings keep a last map of at least this many voxels along every axis
#: (SFCN's own geometry at 1 mm: 5 x 6 x 5).
MIN_FINAL_MAP = 5


def auto_poolings(shape, n_blocks: int, min_size: int = MIN_FINAL_MAP) -> int:
    """How many of ``n_blocks`` pooled blocks keep a last map of at least ``min_size``
    voxels per axis on a grid of ``shape`` (5 x 6 x 5 at 1, 2 and 4 mm)."""
    k = 0
    while k < n_blocks and min(int(n) // 2 ** (k + 1) for n in shape) >= min_size:
        k += 1
    return k


def final_map_shape(shape, poolings: int) -> tuple[int, int, int]:
    """The last feature map's shape after ``poolings`` 2x max-poolings (floor)."""
    out = [int(n) for n in shape]
    for _ in range(poolings):
        out = [n // 2 for n in out]
    return tuple(out)


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(width)
    if kind == "group":
        return nn.GroupNorm(8 if width % 8 == 0 else 1, width)
    raise ValueError(f"norm {kind!r}: choose from {', '.join(NORMS)}")


class SFCN(nn.Module):
    """Multi-task SFCN: genotype class logits for every SNP.

    Parameters
    ----------
    n_snps : int
        Number of SNPs (heads).
    channels : sequence of int
        Widths of the 3^3 blocks and of the final 1^3 block.
    dropout : float
        Dropout before the head.
    in_channels : int
        Input channels (1: a T1w image).
    poolings : int, optional
        How many of the 3^3 blocks end with a 2x max-pooling (the first ones); None: all
        (SFCN). The others keep the resolution (see :func:`auto_poolings`).
    readout : {"mean", "flatten"}
        Global average pooling, or a linear read-out of the whole last map (needs
        ``grid_shape``).
    coord_channels : bool
        Append three channels of normalised voxel coordinates (-1 to 1) to the input,
        so that the convolutions know where they are.
    norm : {"batch", "group"}
        The normalisation after every convolution.
    grid_shape : tuple of int, optional
        The input grid (for ``readout="flatten"``).
    """

    def __init__(self, n_snps: int, channels=DEFAULT_CHANNELS, dropout: float = 0.5,
                 in_channels: int = 1, *, poolings: int | None = None,
                 readout: str = "mean", coord_channels: bool = False, norm: str = "batch",
                 grid_shape: tuple[int, int, int] | None = None):
        super().__init__()
        if n_snps < 1:
            raise ValueError("the network needs at least one SNP")
        if len(channels) < 2:
            raise ValueError("channels: the 3^3 blocks' widths, then the 1^3 block's")
        if readout not in READOUTS:
            raise ValueError(f"readout {readout!r}: choose from {', '.join(READOUTS)}")
        self.n_snps = n_snps
        self.channels = tuple(int(c) for c in channels)
        n_blocks = len(self.channels) - 1
        self.poolings = n_blocks if poolings is None else int(poolings)
        if not 0 <= self.poolings <= n_blocks:
            raise ValueError(f"poolings must be between 0 and {n_blocks}")
        self.readout, self.norm, self.coord_channels = readout, norm, bool(coord_channels)
        layers: list[nn.Module] = []
        previous = in_channels + (3 if self.coord_channels else 0)
        for i, width in enumerate(self.channels[:-1]):
            # Identity in place of an omitted pooling keeps the layers' names (and
            # so the weights' keys) those of SFCN.
            layers += [nn.Conv3d(previous, width, kernel_size=3, padding=1),
                       _norm(norm, width),
                       nn.MaxPool3d(2) if i < self.poolings else nn.Identity(),
                       nn.ReLU(inplace=True)]
            previous = width
        layers += [nn.Conv3d(previous, self.channels[-1], kernel_size=1),
                   _norm(norm, self.channels[-1]), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        if readout == "mean":
            self.final_map = (1, 1, 1)
            self.pool: nn.Module = nn.AdaptiveAvgPool3d(1)
        else:
            if grid_shape is None:
                raise ValueError("readout='flatten' needs the grid shape")
            self.final_map = final_map_shape(grid_shape, self.poolings)
            if min(self.final_map) < 1:
                raise ValueError(f"the grid {tuple(grid_shape)} is too small for "
                                 f"{self.poolings} poolings")
            self.pool = nn.Identity()
        self.head = nn.Conv3d(self.channels[-1], 3 * n_snps, kernel_size=self.final_map)

    @property
    def n_features(self) -> int:
        """The read-out's inputs: the last block's channels (times the last map's
        voxels with ``readout="flatten"``)."""
        return self.channels[-1] * int(np.prod(self.final_map))

    def architecture(self) -> dict:
        """What rebuilds this network (recorded in the model bundle)."""
        return {"name": "SFCN", "channels": list(self.channels), "n_snps": self.n_snps,
                "dropout": self.dropout.p, "poolings": self.poolings,
                "readout": self.readout, "coord_channels": self.coord_channels,
                "norm": self.norm, "final_map": list(self.final_map)}

    def _with_coordinates(self, x: torch.Tensor) -> torch.Tensor:
        if not self.coord_channels:
            return x
        axes = [torch.linspace(-1.0, 1.0, n, dtype=x.dtype, device=x.device)
                for n in x.shape[2:]]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
        return torch.cat([x, grid.unsqueeze(0).expand(x.shape[0], -1, -1, -1, -1)], dim=1)

    def readout_input(self, x: torch.Tensor) -> torch.Tensor:
        """The head's input: pooled features (batch, C, 1, 1, 1) or the last map."""
        return self.pool(self.features(self._with_coordinates(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, n_snps, 3) for inputs of shape (batch, 1, X, Y, Z)."""
        out = self.head(self.dropout(self.readout_input(x)))
        return out.view(x.shape[0], self.n_snps, 3)


class Ensemble(nn.Module):
    """Networks of one architecture, trained with different seeds, as one model: the
    genotype probabilities are the members' mean, so the score (the expected dosage) is
    the mean of theirs, and so is its gradient.

    Parameters
    ----------
    members : sequence of SFCN
        At least one network, all with the same heads.

    Notes
    -----
    ``forward`` returns the logarithm of the mean probabilities: logits whose softmax is
    that mean, so everything that reads logits (scores, saliency, the loss) reads the
    ensemble as it reads one network.
    """

    def __init__(self, members):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one network")
        if len({m.n_snps for m in members}) != 1:
            raise ValueError("the ensemble's networks must have the same heads")
        self.members = nn.ModuleList(members)
        self.n_snps = members[0].n_snps

    @property
    def n_features(self) -> int:
        """A member's read-out inputs (see :attr:`SFCN.n_features`)."""
        return self.members[0].n_features

    def architecture(self) -> dict:
        """The members' architecture with ``ensemble``: their number."""
        return {**self.members[0].architecture(), "ensemble": len(self.members)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log mean class probabilities, (batch, n_snps, 3)."""
        probs = torch.stack([torch.softmax(m(x).float(), dim=-1) for m in self.members])
        return torch.log(probs.mean(0).clamp_min(1e-12))


def networks_of(model: nn.Module) -> list[SFCN]:
    """The networks of a model: an :class:`Ensemble`'s members, or the model itself."""
    return list(model.members) if isinstance(model, Ensemble) else [model]


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """P(0), P(1), P(2) copies of the counted allele, per SNP."""
    return torch.softmax(logits, dim=-1)


def expected_dosage(logits: torch.Tensor) -> torch.Tensor:
    """The brain-genotype score: ``p1 + 2 p2`` per SNP, in [0, 2]."""
    prob = class_probabilities(logits)
    return prob[..., 1] + 2.0 * prob[..., 2]


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                         class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over the genotyped entries (NaN targets are ignored).

    Parameters
    ----------
    logits : torch.Tensor
        (batch, n_snps, 3).
    targets : torch.Tensor
        (batch, n_snps) hard calls 0/1/2, or (batch, n_snps, 3) genotype probabilities
        (soft labels: the cross-entropy against the distribution, of which a hard call is
        the one-hot case); NaN where missing. A non-integer 2-D target is refused rather
        than truncated.
    class_weights : torch.Tensor, optional
        (n_snps, 3) weights (e.g. up-weighting rare homozygotes); a soft label weighs
        its classes by their probabilities.
    """
    if targets.dim() == logits.dim() - 1:
        called = ~torch.isnan(targets)
        calls = torch.where(called, targets, torch.zeros_like(targets))
        if not torch.equal(calls, torch.round(calls)):
            raise ValueError("hard-call targets must be 0, 1 or 2; pass dosages as "
                             "genotype probabilities (batch, n_snps, 3)")
        targets = torch.nn.functional.one_hot(calls.long(), 3).to(logits.dtype)
    else:
        called = ~torch.isnan(targets).any(dim=-1)
        targets = torch.where(called.unsqueeze(-1), targets, torch.zeros_like(targets))
    if not called.any():
        return logits.sum() * 0.0
    logp = torch.log_softmax(logits, dim=-1)
    nll = -(targets * logp).sum(-1)
    if class_weights is not None:
        weight = (targets * class_weights.unsqueeze(0)).sum(-1)
        return (nll * weight * called).sum() / (weight * called).sum()
    return (nll * called).sum() / called.sum()
