"""SFCN-style fully convolutional 3D CNN with one 3-class genotype head per SNP.

Peng et al. (2021), "Accurate brain age prediction with lightweight deep neural
networks", Medical Image Analysis 68:101871: five blocks of Conv3d(3^3)-BatchNorm-
MaxPool(2)-ReLU, a 1^3 convolution block, global average pooling, dropout and a 1^3
convolution head. The pooling is adaptive, so any model grid works.
"""

from __future__ import annotations

import torch
from torch import nn

DEFAULT_CHANNELS = (32, 64, 128, 256, 256, 64)


class SFCN(nn.Module):
    """Multi-task SFCN: genotype class logits for every SNP.

    Parameters
    ----------
    n_snps : int
        Number of SNPs (heads).
    channels : sequence of int
        Widths of the five 3^3 blocks and of the final 1^3 block.
    dropout : float
        Dropout before the head.
    in_channels : int
        Input channels (1: a T1w image).
    """

    def __init__(self, n_snps: int, channels=DEFAULT_CHANNELS, dropout: float = 0.5,
                 in_channels: int = 1):
        super().__init__()
        if n_snps < 1:
            raise ValueError("the network needs at least one SNP")
        if len(channels) < 2:
            raise ValueError("channels: the 3^3 blocks' widths, then the 1^3 block's")
        self.n_snps = n_snps
        self.channels = tuple(int(c) for c in channels)
        layers: list[nn.Module] = []
        previous = in_channels
        for width in self.channels[:-1]:
            layers += [nn.Conv3d(previous, width, kernel_size=3, padding=1),
                       nn.BatchNorm3d(width), nn.MaxPool3d(2), nn.ReLU(inplace=True)]
            previous = width
        layers += [nn.Conv3d(previous, self.channels[-1], kernel_size=1),
                   nn.BatchNorm3d(self.channels[-1]), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Conv3d(self.channels[-1], 3 * n_snps, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, n_snps, 3) for inputs of shape (batch, 1, X, Y, Z)."""
        out = self.head(self.dropout(self.pool(self.features(x))))
        return out.view(x.shape[0], self.n_snps, 3)


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
