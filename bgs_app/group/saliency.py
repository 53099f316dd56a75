"""Group maps (``saliency/``): where each score looks, over the held-out (or applied)
images, and where its attributions change with its SNP's dosage.

Per SNP: the mean brain-normalised |attribution| (``desc-saliency``; with
``--saliency-by-genotype`` also per genotype class), the genotype-correlation map
(``desc-genotypecorr``, when dosages are known), both smoothed within the brain, with a
JSON sidecar and an atlas-region table each. The genotype-correlation map's sidecar gives
a family-wise threshold: the 95th percentile of the map's maximum when the dosages are
permuted among the subjects (max statistic, as the voxelwise test's).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bgs_app.bids.derivatives import group_map_name, group_regions_name, sidecar_path
from bgs_app.config import GROUP_SMOOTHING_MM, RunContext
from bgs_app.group.stage import stage
from bgs_app.model import distributed
from bgs_app.utils.progress import tracked
from bgs_app.utils.tables import write_table

LOGGER = logging.getLogger("bgs_app")

REGION_COLUMNS = {
    "region": {"Description": "Atlas region"},
    "label": {"Description": "Atlas label value"},
    "voxels": {"Description": "Model-grid voxels of the region"},
    "mean_saliency": {"Description": "Mean group saliency in the region (1 = brain mean)"},
    "rank": {"Description": "Rank by mean saliency (1 = most salient)"},
}
ATLAS = "Harvard-Oxford (max-prob, 25%)"

#: Permutations of the dosages for the genotype-correlation maps' family-wise threshold
#: (at most; fewer when :data:`PERMUTATION_BYTES` would be exceeded).
CORRELATION_PERMUTATIONS = 199

#: Memory of the permuted maps, all kept SNPs together (each permutation holds one map
#: per SNP); below :data:`MIN_PERMUTATIONS` permutations no threshold is given.
PERMUTATION_BYTES = 1 << 30
MIN_PERMUTATIONS = 19

#: Family-wise error rate of the genotype-correlation threshold.
CORRELATION_ALPHA = 0.05


def correlation_permutations(n_kept: int, grid: dict) -> int:
    """How many permutations the genotype-correlation maps of ``n_kept`` SNPs on
    ``grid`` get: :data:`CORRELATION_PERMUTATIONS`, fewer when their maps would pass
    :data:`PERMUTATION_BYTES` (e.g. 1 mm with many SNPs), 0 below
    :data:`MIN_PERMUTATIONS`."""
    voxels = int(np.prod([int(n) for n in grid["Shape"]]))
    fits = PERMUTATION_BYTES // max(4 * voxels * max(int(n_kept), 1), 1)
    n_perm = int(min(CORRELATION_PERMUTATIONS, fits))
    return n_perm if n_perm >= MIN_PERMUTATIONS else 0


def _method(context: RunContext) -> str:
    return context.config.saliency_method or "integrated_gradients"


def _resolution(grid: dict) -> str:
    """The BIDS ``Resolution`` of a map named with ``res-`` (the model grid)."""
    return (f"{float(grid['Resolution']):g} mm isotropic model grid in {grid['Template']}, "
            "affine alignment")


#: Up to this many SNPs every SNP gets a genotype-correlation map; beyond, only those
#: whose CNN score passes the score gate on its held-out correlation (four maps per SNP
#: in memory: a 500-SNP panel would otherwise need them for 500 mostly null heads).
ALL_CORRELATION_MAPS = 64


def correlation_snps(snps: list[str], performance: pd.DataFrame | None) -> list[str]:
    """The SNPs that get genotype-correlation maps (see :data:`ALL_CORRELATION_MAPS`)."""
    from bgs_app.stats.gate import validated_scores

    if len(snps) <= ALL_CORRELATION_MAPS:
        return list(snps)
    if performance is None or not len(performance):
        return []
    gated = validated_scores(performance[performance["model"] == "cnn"]).get("cnn", set())
    return [s for s in snps if s in gated]


def _cnn_performance(context: RunContext) -> pd.DataFrame | None:
    from bgs_app.group.stage import performance_part

    part = performance_part(context, "cnn")
    return pd.read_csv(part, sep="\t", na_values="n/a") if part.is_file() else None


def held_out_maps(context: RunContext, models: list, store, images: pd.DataFrame,
                  dosages: pd.DataFrame, grid: dict) -> None:
    """Group maps over the held-out images of every model (skipped when current).

    Under ``torchrun`` every rank calls it and computes the maps of a share of the
    images; rank 0 writes the sums.
    """
    from bgs_app.model.saliency import GenotypeCorrelation, group_saliency

    config = context.config
    out = context.group_dir / "saliency"
    method = _method(context)
    snps = list(dosages.columns)
    kept = correlation_snps(snps, _cnn_performance(context) if context.is_main else None)
    if context.distributed:  # rank 0 wrote the performance: every rank takes its choice
        mask = np.array([float(context.is_main and s in kept) for s in snps])
        kept = [s for s, m in zip(snps, distributed.all_reduce_sum(mask), strict=True)
                if m > 0]
    n_perm = correlation_permutations(len(kept), grid)
    maps_stage = stage(context, "saliency",
                       [[m.meta["weights_sha256"] for m in models], method, config.ig_steps,
                        config.saliency_by_genotype, "genotype-correlation-2", kept,
                        n_perm, config.seed],
                       [out / group_map_name(s, "saliency", grid=grid) for s in snps])
    if maps_stage.current():
        LOGGER.info("Group saliency is current; skipped")
        return
    held = []
    for trained in models:
        test = set(trained.test)
        held.append((trained.name, trained.model,
                     [i for i, p in enumerate(images["participant_id"]) if p in test]))
    everyone = sorted({i for _, _, rows in held for i in rows})
    if len(kept) < len(snps):
        LOGGER.info("Genotype-correlation maps for the %d of %d SNPs whose scores pass the "
                    "gate (beyond %d SNPs, maps are kept for gated scores only)", len(kept),
                    len(snps), ALL_CORRELATION_MAPS)
    correlation = GenotypeCorrelation(
        snps, dosages.loc[images["participant_id"][everyone]].to_numpy(float), keep=kept,
        n_perm=n_perm, seed=config.seed)
    position = {i: k for k, i in enumerate(everyone)}
    sums, counts = {}, {}
    device = distributed.device_for_rank(context.device)
    for name, model, rows in held:
        # Under torchrun every rank takes its share of the images; the sums are added up
        # over the ranks below.
        rows = distributed.shard(rows)
        subject_dosages = [dosages.loc[images["participant_id"][i]].to_numpy(float)
                           for i in rows]
        groups = subject_dosages if config.saliency_by_genotype else None
        LOGGER.info("%s: %s saliency of %d SNP(s) over %d held-out image(s)", name, method,
                    len(snps), len(rows))
        volumes = tracked((store[r] for r in rows), f"{name}: {method} saliency", len(rows),
                          "image")
        maps = group_saliency(model, volumes, snps, method=method,
                              groups=groups, correlation=correlation,
                              dosages=subject_dosages, subjects=[position[i] for i in rows],
                              n_steps=config.ig_steps, device=device)
        for snp, by_key in maps.items():
            for key, amap in by_key.items():
                n = len(rows) if key == "all" else sum(
                    1 for g in groups if g[snps.index(snp)] == int(key))
                sums[(snp, key)] = sums.get((snp, key), 0) + amap * n
                counts[(snp, key)] = counts.get((snp, key), 0) + n
    if context.distributed:
        shape = tuple(int(v) for v in grid["Shape"])
        keys = [(s, k) for s in snps
                for k in ["all", *(["0", "1", "2"] if config.saliency_by_genotype else [])]]
        zeros = np.zeros(shape, np.float64)
        for key in keys:
            total = np.asarray(sums.get(key, zeros), np.float64)
            sums[key] = distributed.all_reduce_sum(total).astype(np.float32)
            counts[key] = int(distributed.all_reduce_sum(
                np.array([counts.get(key, 0)], np.int64))[0])
        correlation.reduce(distributed.all_reduce_sum, shape)
        if not context.is_main:
            return
    write_saliency_outputs(context, sums, counts, snps, grid, method)
    write_genotype_correlation_outputs(context, correlation, grid, method)
    maps_stage.done()


def applied_maps(context: RunContext, model, meta: dict, images: pd.DataFrame,
                 dosages: pd.DataFrame | None, grid: dict) -> None:
    """Apply mode: group maps over every image (genotype correlation with dosages)."""
    from bgs_app.model.saliency import GenotypeCorrelation, group_saliency
    from bgs_app.model.scores import load_volume

    config = context.config
    method = _method(context)
    snps = [s["snp"] for s in meta["snps"]]
    correlation = per_image = None
    if dosages is not None:
        per_image = dosages.reindex(images["participant_id"]).to_numpy(float)
        recorded = pd.DataFrame([{"model": "cnn", **m}
                                 for m in meta.get("test_metrics") or []])
        kept = correlation_snps(snps, recorded)
        correlation = GenotypeCorrelation(snps, per_image, keep=kept,
                                          n_perm=correlation_permutations(len(kept), grid),
                                          seed=config.seed)
    volumes = tracked((load_volume(p, meta["grid"]) for p in images["path"]),
                      f"{method} saliency", len(images), "image")
    maps = group_saliency(model, volumes, snps, method=method, n_steps=config.ig_steps,
                          correlation=correlation, dosages=per_image,
                          subjects=range(len(images)), device=context.device)
    sums = {(s, k): m * len(images) for s, by in maps.items() for k, m in by.items()}
    counts = {key: len(images) for key in sums}
    write_saliency_outputs(context, sums, counts, snps, grid, method)
    if correlation is not None:
        write_genotype_correlation_outputs(context, correlation, grid, method)


def write_saliency_outputs(context: RunContext, sums: dict, counts: dict, snps: list[str],
                           grid: dict, method: str) -> None:
    """Group saliency maps (NIfTI, model grid) and their atlas region tables."""
    import nibabel as nb

    from bgs_app.model.saliency import region_table
    from bgs_app.templates import atlas_on_grid
    from bgs_app.utils.atomic import save_nifti, write_json

    out = context.group_dir / "saliency"
    out.mkdir(parents=True, exist_ok=True)
    atlas, labels = atlas_on_grid(context.template, grid)
    affine = np.asarray(grid["Affine"])
    for (snp, key), total in sums.items():
        if not counts[(snp, key)]:
            continue
        sigma = GROUP_SMOOTHING_MM / float(grid["Resolution"])
        mean = smooth_within_brain(total / counts[(snp, key)], sigma)
        path = out / group_map_name(snp, "saliency", None if key == "all" else key, grid)
        save_nifti(nb.Nifti1Image(mean, affine), path)
        meta = {"SNP": snp, "Method": method, "Subjects": int(counts[(snp, key)]),
                "SmoothingSigmaMm": GROUP_SMOOTHING_MM,
                "Description": "Mean over held-out subjects of the absolute attribution of "
                               "the SNP's score, each divided by its mean in the brain, "
                               "smoothed within the brain (Gaussian, SmoothingSigmaMm)"
                               + ("" if key == "all" else f"; subjects with genotype {key}"),
                "SpatialReference": context.template.name,
                "Resolution": _resolution(grid)}
        write_json(sidecar_path(path), meta)
        if key == "all" and atlas is not None:
            table = region_table(mean, atlas, labels, top=None)
            write_table(table, out / group_regions_name(snp, "saliency"), REGION_COLUMNS,
                        {"Atlas": ATLAS, "SNP": snp, "Method": method})


def write_genotype_correlation_outputs(context: RunContext, correlation, grid: dict,
                                       method: str) -> None:
    """Genotype-correlation maps (|r| smoothed within the brain) and their region tables.

    Parameters
    ----------
    context : RunContext
    correlation : bgs_app.model.saliency.GenotypeCorrelation
        Fed with every held-out subject's attributions (through
        :func:`~bgs_app.model.saliency.group_saliency`); its ``inside`` is the mask.
    grid, method
        As for :func:`write_saliency_outputs`.
    """
    import nibabel as nb

    from bgs_app.model.saliency import region_table
    from bgs_app.templates import atlas_on_grid
    from bgs_app.utils.atomic import save_nifti, write_json

    inside = correlation.inside
    if inside is None:
        return
    out = context.group_dir / "saliency"
    out.mkdir(parents=True, exist_ok=True)
    atlas, labels = atlas_on_grid(context.template, grid)
    affine = np.asarray(grid["Affine"])
    sigma = GROUP_SMOOTHING_MM / float(grid["Resolution"])
    def smoothed(r: np.ndarray) -> np.ndarray:  # (k, X, Y, Z) signed -> smoothed |r|
        return smooth_within_brain(np.where(inside, np.abs(r), 0).astype(np.float32), sigma)

    def maxima(stack: np.ndarray) -> np.ndarray:
        return smoothed(stack).reshape(len(stack), -1)[:, inside.reshape(-1)].max(axis=1)

    for snp, r in correlation.maps().items():
        j = correlation.snps.index(snp)
        data = smoothed(r)
        path = out / group_map_name(snp, "genotypecorr", grid=grid)
        save_nifti(nb.Nifti1Image(data, affine), path)
        null = correlation.null_maxima(snp, maxima)
        write_json(sidecar_path(path), {
            **family_wise_threshold(data[inside], null, CORRELATION_ALPHA),
            "SNP": snp, "Method": method, "Subjects": int(correlation.count[j]),
            "Resolution": _resolution(grid),
            "SmoothingSigmaMm": GROUP_SMOOTHING_MM,
            "NullLevel": round(float(np.sqrt(2 / np.pi / max(correlation.count[j], 1))), 4),
            "Description": "Absolute Pearson correlation, over held-out subjects with a "
                           "genotype call, between the subject's attribution at the voxel "
                           "and the SNP's dosage, smoothed within the brain (Gaussian, "
                           "SmoothingSigmaMm). High where the genotype changes what the "
                           "score's attribution sees; NullLevel is the mean |r| expected "
                           "at a voxel without any such change.",
            "SpatialReference": context.template.name})
        if atlas is not None:
            table = region_table(data, atlas, labels, top=None)
            write_table(table, out / group_regions_name(snp, "genotypecorr"),
                        {**REGION_COLUMNS, "mean_saliency": {
                            "Description": "Mean genotype correlation |r| in the region"}},
                        {"Atlas": ATLAS, "SNP": snp, "Method": method})


def family_wise_threshold(values: np.ndarray, null: np.ndarray | None,
                          alpha: float) -> dict:
    """Sidecar fields of a max-statistic permutation threshold for a map.

    Parameters
    ----------
    values : numpy.ndarray
        The map's values inside the brain.
    null : numpy.ndarray or None
        The map's maximum under each permutation (None: no permutations were run).
    alpha : float

    Returns
    -------
    dict
        ``Permutations``, ``ThresholdFWE`` (the smallest value whose exceedance by the
        maximum has permutation probability at most ``alpha``, the observed map counted
        among the permutations), ``PeakPFWE`` (the corrected p of the map's maximum) and
        ``VoxelsAboveThreshold``; without permutations ``Permutations`` 0 and why.
    """
    if null is None or not len(null):
        return {"Permutations": 0,
                "ThresholdFWE": None,
                "ThresholdNote": "no permutations: fewer than the minimum fit the memory "
                                 "budget at this grid and number of SNPs"}
    null = np.sort(np.asarray(null, float))
    peak = float(np.max(values)) if np.size(values) else float("nan")
    # With the observed map as one of n + 1 equally likely arrangements, P(max >= t) <=
    # alpha for t the ceil((1 - alpha)(n + 1))-th smallest permutation maximum.
    rank = int(np.ceil((1 - alpha) * (len(null) + 1)))
    threshold = float(null[min(rank, len(null)) - 1])
    return {"Permutations": int(len(null)), "Alpha": alpha,
            "ThresholdFWE": round(threshold, 6),
            "PeakPFWE": round(float((1 + np.sum(null >= peak)) / (len(null) + 1)), 6),
            "VoxelsAboveThreshold": int(np.sum(np.asarray(values) > threshold)),
            "ThresholdDescription": "Max-statistic permutation threshold: the dosages "
                                    "permuted among the subjects with a call, the map "
                                    "recomputed and smoothed the same way; voxels above "
                                    "ThresholdFWE are significant at Alpha family-wise "
                                    "error; PeakPFWE is the corrected p of the map's "
                                    "maximum."}


def smooth_within_brain(volume: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing normalised by the smoothed brain mask (no leak from outside);
    the brain is where the map is positive. A stack of maps, (k, X, Y, Z), is smoothed
    map by map."""
    from scipy.ndimage import gaussian_filter

    volume = np.asarray(volume, np.float32)
    brain = (volume > 0).astype(np.float32)
    if sigma <= 0:
        return volume
    sigmas = (0.0,) * (volume.ndim - 3) + (float(sigma),) * 3
    num = gaussian_filter(volume * brain, sigmas)
    den = gaussian_filter(brain, sigmas)
    out = np.where(brain > 0, num / np.maximum(den, 1e-6), 0.0)
    return out.astype(np.float32)
