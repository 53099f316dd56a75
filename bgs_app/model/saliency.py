"""Saliency maps: where each brain-genotype score looks (captum).

The attribution target is a SNP's expected dosage (the score itself). Methods:

``gradient``              plain input gradients (captum ``Saliency``); cheap, the
                          participant-level default on CPU
``integrated_gradients``  Integrated Gradients from a zero (background) image; the
                          default for group maps
``smoothgrad``            gradients averaged over noisy copies (``NoiseTunnel``)

Group maps average *brain-normalised absolute* attributions: each subject's map is
divided by its mean absolute attribution inside the brain, so that every subject
weighs the same, then averaged over held-out subjects. They show where a score looks;
in a multi-task network the heads share one trunk, so every score, a null SNP's too,
looks at much the same anatomy.

Genotype-correlation maps (:class:`GenotypeCorrelation`) ask a narrower question: at
which voxels does the attribution of a SNP's score change with that SNP's dosage across
held-out subjects? Each voxel holds the Pearson correlation, over subjects with a call,
between the subject's attribution there and the dosage. A null SNP's map is noise
(|r| of about 1/sqrt(n) everywhere); a causal SNP's map is high where its genotype
changes the anatomy the network reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from bgs_app.model.network import SFCN, expected_dosage

METHODS = ("gradient", "integrated_gradients", "smoothgrad")


class _DosageHead(nn.Module):
    """The network with the expected dosage (batch, n_snps) as its output."""

    def __init__(self, model: SFCN):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return expected_dosage(self.model(x).float())


def attribute(model: SFCN, volume: np.ndarray, snp_index: int, *, method: str = "gradient",
              n_steps: int = 32, internal_batch_size: int = 4, nt_samples: int = 8,
              noise_sd: float = 0.1, device: str = "cpu") -> np.ndarray:
    """Attribution of one SNP's score to every voxel of one model-grid volume.

    Parameters
    ----------
    model : SFCN
    volume : numpy.ndarray
        (X, Y, Z) model-grid image.
    snp_index : int
        Head of the SNP.
    method : {"gradient", "integrated_gradients", "smoothgrad"}
    n_steps : int
        Integrated Gradients path steps.
    internal_batch_size : int
        Volumes per forward/backward pass inside Integrated Gradients and SmoothGrad,
        which bounds memory (at 1 mm, a few volumes at a time).
    nt_samples : int
        SmoothGrad noisy copies.
    noise_sd : float
        SmoothGrad noise, in units of the normalised intensity (brain mean 1).
    device : str

    Returns
    -------
    numpy.ndarray
        (X, Y, Z) signed attributions (float32).
    """
    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency

    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; choose from {METHODS}")
    head = _DosageHead(model.to(device).eval())
    x = torch.from_numpy(np.asarray(volume, np.float32))[None, None].to(device)
    x.requires_grad_(True)
    if method == "gradient":
        attr = Saliency(head).attribute(x, target=int(snp_index), abs=False)
    elif method == "integrated_gradients":
        attr = IntegratedGradients(head).attribute(
            x, baselines=torch.zeros_like(x), target=int(snp_index), n_steps=int(n_steps),
            internal_batch_size=int(internal_batch_size))
    else:
        attr = NoiseTunnel(Saliency(head)).attribute(
            x, nt_type="smoothgrad", nt_samples=int(nt_samples),
            nt_samples_batch_size=int(internal_batch_size), stdevs=float(noise_sd),
            target=int(snp_index), abs=False)
    return attr.detach().float().cpu().numpy()[0, 0]


def _head_gradients(model: SFCN, pooled: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """d score_j / d pooled features, (batch, heads, channels): the read-out's own
    derivative (softmax of a linear layer), no backward pass through the trunk."""
    n = pooled.shape[0]
    with torch.no_grad():
        logits = model.head(pooled).view(n, model.n_snps, 3).float()[:, heads]
        prob = torch.softmax(logits, dim=-1)
        copies = torch.arange(3, dtype=prob.dtype, device=prob.device)
        score = prob @ copies
        d_logits = prob * (copies - score[..., None])  # (n, heads, 3)
        weight = model.head.weight.reshape(model.n_snps, 3, -1).float()[heads]
        return torch.einsum("nhk,hkc->nhc", d_logits, weight)


#: Feature channels whose input gradients are held at once in :func:`_chain_gradients`
#: (each a volume): the heads are combined from them by one matrix product per block.
JACOBIAN_CHANNELS = 8


def _chain_gradients(model, x: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """Input gradients of the scores of ``heads`` at the volumes ``x`` (n, 1, X, Y, Z),
    by the chain rule: one backward pass per pooled feature channel, combined per head,
    so the cost grows with the channels, not the heads. Returns (n, heads, X, Y, Z).
    An :class:`~bgs_app.model.network.Ensemble`'s score is its members' mean, and so is
    its gradient."""
    from bgs_app.model.network import networks_of

    members = networks_of(model)
    if len(members) > 1:
        total = _network_chain_gradients(members[0], x, heads)
        for member in members[1:]:
            total += _network_chain_gradients(member, x, heads)
        return total / len(members)
    return _network_chain_gradients(members[0], x, heads)


def _network_chain_gradients(model: SFCN, x: torch.Tensor, heads: torch.Tensor
                             ) -> torch.Tensor:
    """:func:`_chain_gradients` of one network."""
    x = x.detach().requires_grad_(True)
    pooled = model.readout_input(x)  # (n, C, 1, 1, 1) or the map; no dropout in eval
    features = pooled.flatten(1)
    per_head = _head_gradients(model, pooled.detach(), heads)  # (n, heads, C)
    n, channels = x.shape[0], features.shape[1]
    out = torch.zeros((n, len(heads), x[0, 0].numel()), dtype=torch.float32, device=x.device)
    for start in range(0, channels, JACOBIAN_CHANNELS):
        block = range(start, min(start + JACOBIAN_CHANNELS, channels))
        jacobian = torch.stack([torch.autograd.grad(
            features[:, c].sum(), x, retain_graph=c < channels - 1)[0].reshape(n, -1)
            for c in block], dim=1).float()  # (n, block, voxels)
        out += torch.bmm(per_head[:, :, block.start:block.stop].contiguous(), jacobian)
    return out.reshape(n, len(heads), *x.shape[2:])


def attribute_heads(model: SFCN, volume: np.ndarray, heads: Sequence[int], *,
                    method: str = "gradient", n_steps: int = 32,
                    internal_batch_size: int = 4, nt_samples: int = 8,
                    noise_sd: float = 0.1, device: str = "cpu",
                    strategy: str = "auto", seed: int = 0) -> np.ndarray:
    """Attributions of several SNPs' scores to one volume, at a cost that does not grow
    with the number of SNPs.

    The heads read out the pooled features ``f`` (``model.n_features`` numbers), so
    ``d score_j / d x = sum_c (d score_j / d f_c) (d f_c / d x)``: the feature Jacobian
    takes one backward pass per feature channel and serves every head; the read-out's
    derivative is closed-form. Integrated Gradients and SmoothGrad apply this at each
    path step or noisy copy. With ``strategy="auto"`` the chain rule is used when there
    are more heads than channels; otherwise :func:`attribute` (captum) per head, which
    it equals (to float rounding; tested to 1e-5).

    Parameters
    ----------
    model : SFCN
    volume : numpy.ndarray
        (X, Y, Z) model-grid image.
    heads : sequence of int
        The SNPs' heads.
    method, n_steps, internal_batch_size, nt_samples, noise_sd, device
        As for :func:`attribute`.
    strategy : {"auto", "chain", "per-head"}
    seed : int
        SmoothGrad's noise (chain rule).

    Returns
    -------
    numpy.ndarray
        (len(heads), X, Y, Z) signed attributions (float32).
    """
    if method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; choose from {METHODS}")
    heads = [int(h) for h in heads]
    channels = model.n_features
    if strategy == "per-head" or (strategy == "auto" and len(heads) <= channels):
        return np.stack([attribute(model, volume, h, method=method, n_steps=n_steps,
                                   internal_batch_size=internal_batch_size,
                                   nt_samples=nt_samples, noise_sd=noise_sd, device=device)
                         for h in heads]) if heads else np.zeros((0, *np.shape(volume)),
                                                                 np.float32)
    model = model.to(device).eval()
    x = torch.from_numpy(np.asarray(volume, np.float32))[None, None].to(device)
    index = torch.tensor(heads, device=device)
    if method == "gradient":
        return _chain_gradients(model, x, index)[0].cpu().numpy()
    batch = max(1, int(internal_batch_size))
    total = torch.zeros((len(heads), *x.shape[2:]), dtype=torch.float32, device=device)
    if method == "integrated_gradients":
        from captum.attr._utils.approximation_methods import approximation_parameters

        step_sizes, alphas = approximation_parameters("gausslegendre")
        weights, points = step_sizes(int(n_steps)), alphas(int(n_steps))
        for start in range(0, len(points), batch):
            a = torch.tensor(points[start:start + batch], dtype=x.dtype, device=device)
            w = torch.tensor(weights[start:start + batch], dtype=torch.float32,
                             device=device)
            grads = _chain_gradients(model, a[:, None, None, None, None] * x, index)
            total += torch.einsum("n,nh...->h...", w, grads)
        return (total * x[0].float()).cpu().numpy()
    generator = torch.Generator(device=device).manual_seed(int(seed))
    for start in range(0, int(nt_samples), batch):
        n = min(batch, int(nt_samples) - start)
        noise = torch.randn((n, *x.shape[1:]), generator=generator, device=device)
        total += _chain_gradients(model, x + float(noise_sd) * noise, index).sum(0)
    return (total / int(nt_samples)).cpu().numpy()


#: Memory the maps of one chain-rule pass may take (bytes).
CHAIN_MEMORY = 1 << 30


def heads_per_pass(model: SFCN, n_heads: int, n_voxels: int) -> int:
    """How many heads :func:`attribute_heads` should take at once: all of them when they
    are no more than the feature channels (captum per head is then cheaper), else as
    many as :data:`CHAIN_MEMORY` holds maps of ``n_voxels`` (at least 4 x channels)."""
    channels = model.n_features
    if n_heads <= channels:
        return max(n_heads, 1)
    return int(min(n_heads, max(4 * channels, CHAIN_MEMORY // (4 * max(n_voxels, 1)))))


def normalised_abs(attr: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Absolute attribution divided by its mean inside the brain (0 outside)."""
    out = np.abs(attr).astype(np.float32)
    inside = brain > 0
    mean = float(out[inside].mean()) if inside.any() else 0.0
    out = out / mean if mean > 0 else out
    out[~inside] = 0.0
    return out


#: Subjects whose maps are added to the permuted sums together (one matrix product).
PERMUTATION_BATCH = 32


class GenotypeCorrelation:
    """Voxelwise correlation between attributions and dosage, accumulated subject by
    subject (memory: four float32 maps per SNP, about 80 MB per SNP at 1 mm).

    Parameters
    ----------
    snps : sequence of str
        Head order of the model.
    dosages : numpy.ndarray
        (subjects, n_snps) dosages (0-2, NaN where missing) of *every* subject that will
        be added, so that the dosage mean is known before the first map arrives.
    keep : iterable of str, optional
        Only these SNPs' maps are accumulated (default all): memory grows with them,
        not with the heads.
    n_perm : int
        Permutations of the dosages among the subjects with a call (0: none), for a
        family-wise threshold of a map's maximum (:meth:`null_maxima`); each kept SNP
        holds ``n_perm`` more maps. Subjects must then be added with their row in
        ``dosages`` (``subject``), so that every ``torchrun`` rank permutes alike.
    seed : int
        Seed of the permutations.

    Notes
    -----
    With centred dosages ``e = d - mean(d)`` the sums kept are ``sum(a * e)``,
    ``sum(a - a0)`` and ``sum((a - a0)^2)`` (``a0``: the first map added, a shift that
    keeps float32 sums accurate), so ``r = cov(a, d) / (sd(a) sd(d))`` is exact. A
    permutation ``pi`` of the called subjects changes only the first sum, to
    ``sum(a_i * e_pi(i))``: the permuted maps are streamed like the observed one.
    """

    def __init__(self, snps: Sequence[str], dosages: np.ndarray,
                 keep: Iterable[str] | None = None, *, n_perm: int = 0, seed: int = 0):
        self.snps = list(snps)
        self.kept = set(self.snps) if keep is None else set(keep) & set(self.snps)
        self._skip = [snp not in self.kept for snp in self.snps]
        dosages = np.asarray(dosages, float)
        self.mean = np.nanmean(dosages, axis=0) if len(dosages) else np.zeros(len(snps))
        self.sd = np.nanstd(dosages, axis=0) if len(dosages) else np.zeros(len(snps))
        self.n_perm = int(n_perm)
        # Per kept SNP, (n_perm, subjects) permuted centred dosages (NaN: no call).
        self._permuted: list[np.ndarray | None] = [None] * len(self.snps)
        self._perm_ae: list[np.ndarray | None] = [None] * len(self.snps)
        # Maps waiting to be added to the permuted sums by one matrix product.
        self._pending: list[list] = [[] for _ in self.snps]
        if self.n_perm > 0:
            rng = np.random.default_rng([int(seed), 20260417])
            for j in range(len(self.snps)):
                if self._skip[j]:
                    continue
                d = dosages[:, j]
                called = np.flatnonzero(np.isfinite(d))
                table = np.full((self.n_perm, len(d)), np.nan, np.float32)
                for k in range(self.n_perm):
                    table[k, called] = d[rng.permutation(called)] - self.mean[j]
                self._permuted[j] = table
        self.count = np.zeros(len(self.snps), int)
        self._ae: list[np.ndarray | None] = [None] * len(self.snps)
        self._a: list[np.ndarray | None] = [None] * len(self.snps)
        self._aa: list[np.ndarray | None] = [None] * len(self.snps)
        self._shift: list[np.ndarray | None] = [None] * len(self.snps)
        self._support: np.ndarray | None = None
        self._volumes = 0

    def add_brain(self, brain: np.ndarray) -> None:
        """Count one subject's brain voxels (the maps' mask is where most subjects have
        brain)."""
        brain = np.asarray(brain, bool)
        self._support = brain.astype(np.int32) if self._support is None else \
            self._support + brain
        self._volumes += 1

    @property
    def inside(self) -> np.ndarray | None:
        """Voxels inside the brain of more than half the subjects added (or None)."""
        return None if self._support is None else self._support > 0.5 * self._volumes

    def add(self, j: int, attribution: np.ndarray, dosage: float,
            subject: int | None = None) -> None:
        """Add one subject's attribution map for head ``j`` with its dosage (and, with
        permutations, its row ``subject`` in the constructor's ``dosages``)."""
        if not np.isfinite(dosage) or self._skip[j]:
            return
        a = np.asarray(attribution, np.float32)
        if self._shift[j] is None:
            self._shift[j] = a.copy()
            self._ae[j] = np.zeros_like(a)
            self._a[j] = np.zeros_like(a)
            self._aa[j] = np.zeros_like(a)
            if self._permuted[j] is not None:
                self._perm_ae[j] = np.zeros((self.n_perm, a.size), np.float32)
        shifted = a - self._shift[j]
        self._ae[j] += a * np.float32(dosage - self.mean[j])
        self._a[j] += shifted
        self._aa[j] += shifted * shifted
        if self._permuted[j] is not None:
            if subject is None:
                raise ValueError("with permutations, add each subject with its row "
                                 "(subject=) in the dosages")
            self._pending[j].append((int(subject), a.reshape(-1)))
            if len(self._pending[j]) >= PERMUTATION_BATCH:
                self._flush(j)
        self.count[j] += 1

    def _flush(self, j: int) -> None:
        """Add the waiting maps of head ``j`` to its permuted sums (one GEMM)."""
        if not self._pending[j]:
            return
        rows = [subject for subject, _ in self._pending[j]]
        maps = np.stack([a for _, a in self._pending[j]])  # (batch, voxels)
        self._perm_ae[j] += self._permuted[j][:, rows] @ maps
        self._pending[j] = []

    def reduce(self, all_reduce_sum, shape: tuple[int, ...]) -> None:
        """Sum the accumulators of every ``torchrun`` rank, each of which added its own
        subjects (all ranks call it; ``all_reduce_sum`` is
        :func:`bgs_app.model.distributed.all_reduce_sum`).

        Each rank's sums are first moved to one shift (the mean of the ranks' shifts), so
        that the sums add up exactly as if one process had added every subject.
        """
        zeros = np.zeros(shape, np.float32)
        support = self._support if self._support is not None else zeros.astype(np.int32)
        self._support = all_reduce_sum(support.astype(np.int64)).astype(np.int32)
        self._volumes = int(all_reduce_sum(np.array([self._volumes], np.int64))[0])
        for j in range(len(self.snps)):
            has = self._shift[j] is not None
            n = float(self.count[j])
            held = all_reduce_sum(np.array([1.0 if has else 0.0, n]))
            if held[0] == 0:
                continue  # no rank added a map for this head
            own = self._shift[j] if has else zeros
            common = (all_reduce_sum(own.astype(np.float64)) / held[0]).astype(np.float32)
            delta = own - common if has else zeros
            a = self._a[j] if has else zeros
            aa = self._aa[j] if has else zeros
            ae = self._ae[j] if has else zeros
            moved_a = a + np.float32(n) * delta
            moved_aa = aa + 2 * delta * a + np.float32(n) * delta * delta
            self._a[j] = all_reduce_sum(moved_a.astype(np.float64)).astype(np.float32)
            self._aa[j] = all_reduce_sum(moved_aa.astype(np.float64)).astype(np.float32)
            self._ae[j] = all_reduce_sum(ae.astype(np.float64)).astype(np.float32)
            if self._permuted[j] is not None:
                self._flush(j)
                perm = self._perm_ae[j] if has else np.zeros((self.n_perm, zeros.size),
                                                             np.float32)
                self._perm_ae[j] = all_reduce_sum(perm.astype(np.float64)).astype(
                    np.float32)
            self._shift[j] = common
            self.count[j] = int(round(held[1]))

    def _correlation(self, j: int, ae: np.ndarray) -> np.ndarray:
        n = int(self.count[j])
        var = self._aa[j] / n - (self._a[j] / n) ** 2
        sd = np.sqrt(np.clip(var, 0, None))
        r = np.where(sd > 0, (ae / n) / np.maximum(sd, 1e-30) / self.sd[j], 0.0)
        return np.clip(r, -1.0, 1.0).astype(np.float32)

    def _has_map(self, j: int) -> bool:
        return int(self.count[j]) >= 3 and self.sd[j] > 0

    def maps(self) -> dict[str, np.ndarray]:
        """Signed correlation maps (SNPs with at least 3 subjects and varying dosage)."""
        return {snp: self._correlation(j, self._ae[j]) for j, snp in enumerate(self.snps)
                if self._has_map(j)}

    def null_maxima(self, snp: str, statistic, chunk: int = 32) -> np.ndarray | None:
        """The maximum of a map statistic under each permutation of the dosages: its
        ``1 - alpha`` quantile is the family-wise threshold of the observed map's.

        Parameters
        ----------
        snp : str
        statistic : callable
            Maps a stack of signed correlation maps, (k, X, Y, Z), to their k maxima
            (e.g. of the smoothed ``|r|`` within the brain).
        chunk : int
            Permuted maps computed at once (memory: ``chunk`` maps).

        Returns
        -------
        numpy.ndarray or None
            (n_perm,) maxima; None without permutations or without a map.
        """
        j = self.snps.index(snp)
        if self._perm_ae[j] is None or not self._has_map(j):
            return None
        self._flush(j)
        shape = self._ae[j].shape
        out = []
        for start in range(0, self.n_perm, chunk):
            ae = self._perm_ae[j][start:start + chunk].reshape(-1, *shape)
            out.append(np.asarray(statistic(self._correlation(j, ae)), float).reshape(-1))
        return np.concatenate(out)


def group_saliency(model: SFCN, volumes: Iterable[np.ndarray], snps: Sequence[str], *,
                   method: str = "integrated_gradients", groups: Sequence | None = None,
                   correlation: GenotypeCorrelation | None = None,
                   dosages: Sequence | None = None, subjects: Sequence | None = None,
                   chunk: int | None = None,
                   **kwargs) -> dict[str, dict[str, np.ndarray]]:
    """Mean brain-normalised absolute saliency per SNP over subjects.

    Parameters
    ----------
    model : SFCN
    volumes : iterable of numpy.ndarray
        Held-out subjects' model-grid images.
    snps : sequence of str
        Head order of the model.
    method : str
        See :func:`attribute`.
    groups : sequence, optional
        Per subject, a (n_snps,) array of genotypes (0/1/2/NaN): maps are also averaged
        within each genotype class (keys ``"0"``, ``"1"``, ``"2"``).
    correlation : GenotypeCorrelation, optional
        Also fed every subject's attributions (with ``dosages``), for genotype-correlation
        maps computed in the same pass.
    dosages : sequence, optional
        Per subject, a (n_snps,) array of dosages; required with ``correlation``.
    subjects : sequence of int, optional
        Per subject, its row in the dosages ``correlation`` was made with (needed when
        it permutes them).
    chunk : int, optional
        SNPs attributed together (:func:`attribute_heads`: by the chain rule when more
        than the feature channels), which bounds memory to ``chunk`` maps; default
        :func:`heads_per_pass`.
    **kwargs
        Passed to :func:`attribute_heads`.

    Returns
    -------
    dict
        SNP -> {"all": map, ["0"/"1"/"2": map]} (float32 arrays).
    """
    if correlation is not None and dosages is None:
        raise ValueError("correlation maps need the subjects' dosages")
    sums: dict[str, dict[str, np.ndarray]] = {s: {} for s in snps}
    counts: dict[str, dict[str, int]] = {s: {} for s in snps}
    for i, volume in enumerate(volumes):
        if i == 0:
            chunk = int(chunk) if chunk else heads_per_pass(model, len(snps), volume.size)
        brain = volume != 0  # log-Jacobian maps are negative in places
        if correlation is not None:
            correlation.add_brain(brain)
        for j, snp in enumerate(snps):
            if j % chunk == 0:
                block = attribute_heads(model, volume, range(j, min(j + chunk, len(snps))),
                                        method=method, **kwargs)
            raw = block[j % chunk]
            if correlation is not None:
                correlation.add(j, raw, float(dosages[i][j]),
                                None if subjects is None else int(subjects[i]))
            amap = normalised_abs(raw, brain)
            keys = ["all"]
            if groups is not None and not np.isnan(groups[i][j]):
                keys.append(str(int(groups[i][j])))
            for key in keys:
                sums[snp][key] = sums[snp].get(key, 0) + amap
                counts[snp][key] = counts[snp].get(key, 0) + 1
    return {s: {k: (v / counts[s][k]).astype(np.float32) for k, v in sums[s].items()}
            for s in snps}


def region_table(saliency: np.ndarray, atlas: np.ndarray, labels: dict[int, str],
                 top: int | None = 10) -> pd.DataFrame:
    """Atlas regions ranked by mean saliency.

    Parameters
    ----------
    saliency : numpy.ndarray
        A group map on the model grid.
    atlas : numpy.ndarray
        Integer labels on the same grid.
    labels : dict
        Label -> region name.
    top : int, optional
        Keep the top regions.

    Returns
    -------
    pandas.DataFrame
        Columns ``region``, ``label``, ``voxels``, ``mean_saliency``, ``rank``.
    """
    rows = []
    for label, name in labels.items():
        inside = atlas == label
        if label == 0 or not inside.any():
            continue
        rows.append({"region": name, "label": int(label), "voxels": int(inside.sum()),
                     "mean_saliency": float(saliency[inside].mean())})
    frame = pd.DataFrame(rows, columns=["region", "label", "voxels", "mean_saliency"])
    frame = frame.sort_values("mean_saliency", ascending=False).reset_index(drop=True)
    frame["rank"] = np.arange(1, len(frame) + 1)
    return frame.head(top) if top else frame
