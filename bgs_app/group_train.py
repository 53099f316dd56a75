"""Group level, train mode: genotypes, split, store, training, scores, saliency, baseline,
associations (``bgs_app BIDS OUT group --genotypes PREFIX``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from bgs_app.config import Config
from bgs_app.errors import NoDataError
from bgs_app.group import (
    SPLIT_COLUMNS,
    GroupInputs,
    _device,
    _digest,
    _sites,
    _snps,
    _stamp_ok,
    _write_stamp,
    group_dir,
    group_work_dir,
    write_table,
)
from bgs_app.templates import Template
from bgs_app.utils.atomic import write_tsv

LOGGER = logging.getLogger("bgs_app")
MIN_TRAIN = 8


def load_study_genotypes(config: Config, participants: list[str],
                         snps: list[str] | None = None, *, write: bool = True):
    """Genotypes of the participants after QC, with the QC tables written.

    ``snps`` (a model's SNPs) overrides ``--snps``/``--snps-file`` and the panel.
    """
    from bgs_app.genetics import load_genotypes
    from bgs_app.genetics.tables import write_genotype_tables

    thresholds = {"maf": config.maf, "geno": config.geno, "hwe": config.hwe,
                  "mind": config.mind}
    genotypes = load_genotypes(config.genotypes, snps or _snps(config),
                               participants, id_map=config.genotype_id_map, **thresholds)
    if write:
        write_genotype_tables(genotypes, group_dir(config), thresholds)
    LOGGER.info("Genotypes: %s", genotypes.summary)
    return genotypes


def _barrier() -> None:
    """Wait for every rank when launched by ``torchrun`` (nothing otherwise)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        from bgs_app.model.train import _distributed

        _distributed()
        dist.barrier()


def _folds(split: pd.Series, cv_folds: int, val_fraction: float, seed: int
           ) -> list[tuple[str, list[str], list[str], list[str]]]:
    """(name, train, val, test) participant lists per model."""
    if cv_folds and cv_folds > 1:
        out = []
        for k in range(cv_folds):
            test = split.index[split == f"fold-{k}"].tolist()
            rest = split.index[split != f"fold-{k}"].to_numpy()
            rng = np.random.default_rng([seed, k])
            rest = rest[rng.permutation(len(rest))]
            n_val = max(1, int(round(val_fraction * len(split))))
            out.append((f"fold-{k}", sorted(rest[n_val:]), sorted(rest[:n_val]), test))
        return out
    return [("model", split.index[split == "train"].tolist(),
             split.index[split == "val"].tolist(), split.index[split == "test"].tolist())]


def train_and_score(config: Config, inputs: GroupInputs, template: Template, *,
                    rank_only: bool = False) -> None:
    """Every train-mode stage up to the associations (the report is written after).

    Parameters
    ----------
    config : Config
    inputs : GroupInputs
    template : Template
    rank_only : bool
        A ``torchrun`` worker other than rank 0: take part in training only.
    """
    from bgs_app.interfaces.modelgrid import grid_metadata
    from bgs_app.model.split import make_split
    from bgs_app.model.store import StoreItem, build_store

    out, work = group_dir(config), group_work_dir(config)
    images = inputs.images
    ids = sorted(images["participant_id"].unique())
    genotypes = load_study_genotypes(config, ids, write=not rank_only)
    dosages = genotypes.dosages
    kept = [p for p in ids if p in dosages.index]
    if len(kept) < 3 * MIN_TRAIN:
        raise NoDataError(f"only {len(kept)} participant(s) have both a model-grid image and "
                          f"genotypes passing QC; at least {3 * MIN_TRAIN} are needed to "
                          "train and test a model")
    split = make_split(kept, _sites(config, kept), test_fraction=config.test_fraction,
                       val_fraction=config.val_fraction, cv_folds=config.cv_folds,
                       seed=config.seed)
    if not rank_only:
        write_table(split.reset_index(), out / "split.tsv", SPLIT_COLUMNS,
                    {"Seed": config.seed, "TestFraction": config.test_fraction,
                     "ValFraction": config.val_fraction, "CVFolds": config.cv_folds})
    images = images[images["participant_id"].isin(kept)].reset_index(drop=True)
    grid = grid_metadata(inputs.resolution, inputs.template)
    items = [StoreItem(r.participant_id, r.session_id, Path(r.path))
             for r in images.itertuples()]
    store_dir = work / "store"
    if rank_only:
        from bgs_app.model.store import TensorStore

        _barrier()  # rank 0 builds the store
        store = TensorStore(store_dir)
    else:
        store = build_store(items, store_dir, grid_metadata=grid, nprocs=config.nprocs,
                            progress=config.verbose >= 1)
        _barrier()
    models = _train_models(config, store, images, dosages, split, genotypes.counted_allele,
                           grid, rank_only=rank_only)
    if rank_only:
        return
    probs, scored = _score(config, models, store, images, split)
    _write_scores_and_performance(config, probs, scored, images, dosages, list(dosages.columns),
                                  models)
    if not config.no_saliency:
        _group_saliency(config, models, store, images, split, dosages, template, grid)
    idp_scores = _idp_baseline(config, images, dosages, split)
    work = group_work_dir(config)
    _associations(config, out, dosages, idp_scores,
                  [work / "performance_cnn.tsv", work / "performance_idp.tsv"])


def _train_models(config, store, images, dosages, split, counted, grid, *, rank_only=False):
    """Train one model (or one per fold); return [(name, model, test ids, meta)]."""
    from bgs_app.model.bundle import load_bundle, save_bundle
    from bgs_app.model.train import TrainConfig, train_model

    snps = list(dosages.columns)
    cfg = TrainConfig(epochs=config.epochs, batch_size=config.batch_size,
                      lr=config.learning_rate, seed=config.seed,
                      channels=tuple(config.channels), patience=config.patience,
                      device=_device(config), compile=config.torch_compile,
                      num_workers=0 if config.nprocs < 4 else min(4, config.nprocs // 2))
    out, work = group_dir(config), group_work_dir(config)
    rows_of = {}
    for i, pid in enumerate(images["participant_id"]):
        rows_of.setdefault(pid, []).append(i)
    models = []
    for name, train, val, test in _folds(split, config.cv_folds, config.val_fraction,
                                         config.seed):
        if len(train) < MIN_TRAIN or not val or not test:
            raise NoDataError(f"{name}: {len(train)} training, {len(val)} validation and "
                              f"{len(test)} test participants; too few to train (use more "
                              "participants or change --test-fraction/--val-fraction)")
        bundle_dir = out / "model" if name == "model" else out / "model" / name
        train_dir = work / "train" / name
        digest = _digest(store.index["sha256"].tolist(), dosages.to_numpy().tolist(),
                         split.to_dict(), vars(cfg), snps)
        stamp = work / "stamps" / f"train-{name}.json"
        if _stamp_ok(stamp, digest, [bundle_dir / "model.json"]):  # every rank agrees
            if not rank_only:
                model, meta = load_bundle(bundle_dir)
                LOGGER.info("%s: trained model is current; reusing %s", name, bundle_dir)
                models.append((name, model, test, meta))
            continue
        run_stamp = work / "stamps" / f"run-{name}.json"
        stale = train_dir.exists() and not _stamp_ok(run_stamp, digest, [train_dir])
        _barrier()  # every rank has looked before rank 0 changes anything
        if not rank_only:
            if stale:
                import shutil

                shutil.rmtree(train_dir)  # checkpoints made from other data or settings
            _write_stamp(run_stamp, digest)
        _barrier()

        def rows(pids):
            return [r for p in pids for r in rows_of[p]]

        def dos(pids):
            return dosages.loc[[p for p in pids for _ in rows_of[p]]].to_numpy(np.float32)

        LOGGER.info("%s: training on %d, validating on %d, testing on %d participants",
                    name, len(train), len(val), len(test))
        model, log = train_model(store, rows(train), dos(train), rows(val), dos(val), snps,
                                 train_dir, cfg)
        if rank_only:
            continue
        from bgs_app.model.scores import predict_volumes
        from bgs_app.stats.metrics import genotype_metrics

        test_rows = rows(test)
        probs = predict_volumes(model, (store[r] for r in test_rows), device=cfg.device)
        metrics = []
        for j, snp in enumerate(snps):
            m = genotype_metrics(dos(test)[:, j], probs[:, j])
            metrics.append({"snp": snp, **{k: (None if not np.isfinite(v) else float(v))
                                           for k, v in m.items()}})
        training = {"config": {k: (list(v) if isinstance(v, tuple) else v)
                               for k, v in vars(cfg).items()},
                    "n_train": len(train), "n_val": len(val), "n_test": len(test),
                    "epochs_run": int(len(log)), "split": name,
                    "genotypes": str(config.genotypes)}
        save_bundle(model.cpu(), bundle_dir, snps=snps, counted_alleles=counted, grid=grid,
                    training=training, metrics=metrics,
                    training_log=train_dir / "training_log.tsv")
        _write_stamp(stamp, digest)
        model, meta = load_bundle(bundle_dir)
        models.append((name, model, test, meta))
    return models


def _score(config, models, store, images, split):
    """Probabilities of every image from the model that did not train on it."""
    from bgs_app.model.scores import predict_volumes

    device = _device(config)
    probs = np.full((len(images), models[0][1].n_snps, 3), np.nan)
    scored = pd.Series("", index=images.index)
    for name, model, test, _ in models:
        if name == "model":
            rows = list(range(len(images)))
        else:
            rows = [i for i, p in enumerate(images["participant_id"]) if p in set(test)]
        probs[rows] = predict_volumes(model, (store[r] for r in rows), device=device)
        scored.iloc[rows] = [split[p] for p in images["participant_id"].iloc[rows]]
    return probs, scored


def _write_scores_and_performance(config, probs, scored, images, dosages, snps, models):
    from bgs_app.model.scores import SCORES_SIDECAR, scores_long
    from bgs_app.stats.metrics import genotype_metrics

    out = group_dir(config)
    sessions = images["session_id"].tolist()
    long = scores_long(probs, snps, images["participant_id"].tolist(), sessions,
                       scored.tolist())
    write_table(long, out / "scores.tsv", SCORES_SIDECAR,
                {"Models": {name: meta["weights_sha256"] for name, _, _, meta in models}})
    held = scored.str.startswith("fold-") | (scored == "test")
    rows = []
    for j, snp in enumerate(snps):
        d = dosages.loc[images["participant_id"][held], snp].to_numpy(float)
        rows.append({"model": "cnn", "snp": snp,
                     **genotype_metrics(d, probs[held.to_numpy(), j])})
    write_tsv(pd.DataFrame(rows), group_work_dir(config) / "performance_cnn.tsv")


def _group_saliency(config, models, store, images, split, dosages, template, grid):
    """Group saliency over held-out subjects: mean brain-normalised |attribution| per SNP,
    genotype-correlation maps, and their atlas regions."""
    from bgs_app.model.saliency import GenotypeCorrelation, group_saliency
    from bgs_app.workflows.scores import snp_label

    out = group_dir(config) / "saliency"
    method = config.saliency_method or "integrated_gradients"
    snps = list(dosages.columns)
    digest = _digest([m[3]["weights_sha256"] for m in models], method, config.ig_steps,
                     config.saliency_by_genotype, "genotype-correlation-1")
    stamp = group_work_dir(config) / "stamps" / "saliency.json"
    expected = [out / f"snp-{snp_label(s)}_desc-saliency_map.nii.gz" for s in snps]
    if _stamp_ok(stamp, digest, expected):
        LOGGER.info("Group saliency is current; skipped")
        return
    held = []
    for name, model, test, _ in models:
        test = set(test)
        held.append((name, model, [i for i, p in enumerate(images["participant_id"])
                                   if p in test]))
    everyone = sorted({i for _, _, rows in held for i in rows})
    correlation = GenotypeCorrelation(
        snps, dosages.loc[images["participant_id"][everyone]].to_numpy(float))
    sums, counts = {}, {}
    for name, model, rows in held:
        subject_dosages = [dosages.loc[images["participant_id"][i]].to_numpy(float)
                           for i in rows]
        groups = subject_dosages if config.saliency_by_genotype else None
        LOGGER.info("%s: %s saliency of %d SNP(s) over %d held-out image(s)", name, method,
                    len(snps), len(rows))
        maps = group_saliency(model, (store[r] for r in rows), snps, method=method,
                              groups=groups, correlation=correlation,
                              dosages=subject_dosages, n_steps=config.ig_steps,
                              device=_device(config))
        for snp, by_key in maps.items():
            for key, amap in by_key.items():
                n = len(rows) if key == "all" else sum(
                    1 for g in groups if g[snps.index(snp)] == int(key))
                sums[(snp, key)] = sums.get((snp, key), 0) + amap * n
                counts[(snp, key)] = counts.get((snp, key), 0) + n
    write_saliency_outputs(out, sums, counts, snps, template, grid, method)
    write_genotype_correlation_outputs(out, correlation, template, grid, method)
    _write_stamp(stamp, digest)


def write_saliency_outputs(out: Path, sums: dict, counts: dict, snps: list[str],
                           template: Template, grid: dict, method: str) -> None:
    """Group saliency maps (NIfTI, model grid) and their atlas region tables."""
    import nibabel as nb

    from bgs_app.model.saliency import region_table
    from bgs_app.templates import atlas_on_grid
    from bgs_app.utils.atomic import save_nifti, write_json
    from bgs_app.workflows.scores import snp_label

    out.mkdir(parents=True, exist_ok=True)
    atlas, labels = atlas_on_grid(template, grid)
    affine = np.asarray(grid["Affine"])
    for (snp, key), total in sums.items():
        if not counts[(snp, key)]:
            continue
        sigma = GROUP_SMOOTHING_MM / float(grid["Resolution"])
        mean = smooth_within_brain(total / counts[(snp, key)], sigma)
        extra = "" if key == "all" else f"_genotype-{key}"
        path = out / f"snp-{snp_label(snp)}{extra}_desc-saliency_map.nii.gz"
        save_nifti(nb.Nifti1Image(mean, affine), path)
        meta = {"SNP": snp, "Method": method, "Subjects": int(counts[(snp, key)]),
                "SmoothingSigmaMm": GROUP_SMOOTHING_MM,
                "Description": "Mean over held-out subjects of the absolute attribution of "
                               "the SNP's score, each divided by its mean in the brain, "
                               "smoothed within the brain (Gaussian, SmoothingSigmaMm)"
                               + ("" if key == "all" else f"; subjects with genotype {key}"),
                "SpatialReference": template.name}
        write_json(path.with_name(path.name.replace(".nii.gz", ".json")), meta)
        if key == "all" and atlas is not None:
            table = region_table(mean, atlas, labels, top=None)
            write_table(table, out / f"snp-{snp_label(snp)}_desc-regions_saliency.tsv",
                        REGION_COLUMNS, {"Atlas": "Harvard-Oxford (max-prob, 25%)",
                                         "SNP": snp, "Method": method})


def write_genotype_correlation_outputs(out: Path, correlation, template: Template,
                                       grid: dict, method: str) -> None:
    """Genotype-correlation maps (|r| smoothed within the brain) and their region tables.

    Parameters
    ----------
    out : pathlib.Path
        ``group/saliency``.
    correlation : bgs_app.model.saliency.GenotypeCorrelation
        Fed with every held-out subject's attributions (through
        :func:`~bgs_app.model.saliency.group_saliency`); its ``inside`` is the mask.
    template, grid, method
        As for :func:`write_saliency_outputs`.
    """
    import nibabel as nb

    from bgs_app.model.saliency import region_table
    from bgs_app.templates import atlas_on_grid
    from bgs_app.utils.atomic import save_nifti, write_json
    from bgs_app.workflows.scores import snp_label

    inside = correlation.inside
    if inside is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    atlas, labels = atlas_on_grid(template, grid)
    affine = np.asarray(grid["Affine"])
    sigma = GROUP_SMOOTHING_MM / float(grid["Resolution"])
    for snp, r in correlation.maps().items():
        j = correlation.snps.index(snp)
        data = smooth_within_brain(np.where(inside, np.abs(r), 0).astype(np.float32), sigma)
        path = out / f"snp-{snp_label(snp)}_desc-genotypecorr_map.nii.gz"
        save_nifti(nb.Nifti1Image(data, affine), path)
        write_json(path.with_name(path.name.replace(".nii.gz", ".json")), {
            "SNP": snp, "Method": method, "Subjects": int(correlation.count[j]),
            "SmoothingSigmaMm": GROUP_SMOOTHING_MM,
            "NullLevel": round(float(np.sqrt(2 / np.pi / max(correlation.count[j], 1))), 4),
            "Description": "Absolute Pearson correlation, over held-out subjects with a "
                           "genotype call, between the subject's attribution at the voxel "
                           "and the SNP's dosage, smoothed within the brain (Gaussian, "
                           "SmoothingSigmaMm). High where the genotype changes what the "
                           "score's attribution sees; NullLevel is the mean |r| expected "
                           "at a voxel without any such change.",
            "SpatialReference": template.name})
        if atlas is not None:
            table = region_table(data, atlas, labels, top=None)
            write_table(table, out / f"snp-{snp_label(snp)}_desc-regions_genotypecorr.tsv",
                        {**REGION_COLUMNS, "mean_saliency": {
                            "Description": "Mean genotype correlation |r| in the region"}},
                        {"Atlas": "Harvard-Oxford (max-prob, 25%)", "SNP": snp,
                         "Method": method})


#: Gaussian smoothing of group saliency maps (sigma, mm; FWHM about 14 mm, as in
#: voxel-based morphometry): single-voxel gradients are noisy, and the anatomy an effect
#: changes (the boundaries it moves) surrounds its centre.
GROUP_SMOOTHING_MM = 6.0


def smooth_within_brain(volume: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing normalised by the smoothed brain mask (no leak from outside)."""
    from scipy.ndimage import gaussian_filter

    brain = (volume > 0).astype(np.float32)
    if sigma <= 0:
        return volume.astype(np.float32)
    num = gaussian_filter(volume.astype(np.float32) * brain, sigma)
    den = gaussian_filter(brain, sigma)
    out = np.where(brain > 0, num / np.maximum(den, 1e-6), 0.0)
    return out.astype(np.float32)


REGION_COLUMNS = {
    "region": {"Description": "Atlas region"},
    "label": {"Description": "Atlas label value"},
    "voxels": {"Description": "Model-grid voxels of the region"},
    "mean_saliency": {"Description": "Mean group saliency in the region (1 = brain mean)"},
    "rank": {"Description": "Rank by mean saliency (1 = most salient)"},
}


def _idp_baseline(config, images, dosages, split):
    """IDP baseline on the same split; returns its scores (long) or None."""
    from bgs_app.stats.baseline import fit_idp_baseline, idp_features
    from bgs_app.stats.tables import write_idp_scores

    paths = images.dropna(subset=["idps"])
    perf_path = group_work_dir(config) / "performance_idp.tsv"
    if paths.empty:
        perf_path.unlink(missing_ok=True)
        LOGGER.warning("No IDP tables found (custom template without an atlas?); the IDP "
                       "baseline is skipped")
        return None
    tables = [pd.read_csv(p, sep="\t", na_values="n/a") for p in paths["idps"]]
    idps = pd.concat(tables, ignore_index=True).groupby("participant_id").mean(
        numeric_only=True)
    digest = _digest(idps.round(6).to_numpy().tolist(), dosages.to_numpy().tolist(),
                     split.to_dict(), config.seed)
    stamp = group_work_dir(config) / "stamps" / "idp.json"
    out = group_dir(config)
    if _stamp_ok(stamp, digest, [out / "idp_scores.tsv", perf_path]):
        LOGGER.info("IDP baseline is current; skipped")
        return pd.read_csv(out / "idp_scores.tsv", sep="\t", na_values="n/a")
    LOGGER.info("IDP baseline: %d participants, %d features", len(idps), idps.shape[1])
    scores, perf = fit_idp_baseline(idp_features(idps), dosages, split, seed=config.seed)
    write_idp_scores(scores, out)
    write_tsv(perf, perf_path)
    _write_stamp(stamp, digest)
    return scores


def _associations(config, out, dosages, idp_scores, performance: list[Path],
                  gate_performance: pd.DataFrame | None = None) -> None:
    """``performance.tsv`` from its parts; associations of the held-out (or applied) CNN
    scores, IDP scores and genotypes with cognition.

    ``gate_performance`` (apply mode without site genotypes: the bundle's recorded test
    metrics) decides which scores are validated when ``performance`` has no rows.
    """
    from bgs_app.group import _measures
    from bgs_app.model.scores import scores_wide
    from bgs_app.stats import associate_sources, load_phenotypes
    from bgs_app.stats.gate import validated_scores
    from bgs_app.stats.tables import write_associations, write_performance

    perf = [pd.read_csv(p, sep="\t", na_values="n/a") for p in performance if p.is_file()]
    perf_table = pd.concat(perf, ignore_index=True) if perf else None
    if perf_table is not None:
        write_performance(perf_table, out)
    measures = _measures(config)
    if not measures:
        LOGGER.warning("No cognitive measures (--phenotypes, or phenotype/*.tsv); "
                       "associations skipped")
        return
    long = pd.read_csv(out / "scores.tsv", sep="\t", na_values="n/a")
    splits = sorted(s for s in long["split"].unique() if s in ("test", "apply")
                    or s.startswith("fold-"))
    cnn = scores_wide(long, splits)
    extra = None
    if config.genetic_pcs:
        from bgs_app.genetics.pca import genetic_pcs

        extra = genetic_pcs(config.pca_genotypes or config.genotypes, config.genetic_pcs,
                            list(cnn.index), id_map=config.genotype_id_map, seed=config.seed)
    pheno, covs = load_phenotypes(config.bids_dir, measures, config.covariates,
                                  nonlinear_age=config.nonlinear_age, extra_covariates=extra)
    sources = {"cnn": cnn}
    if idp_scores is not None and len(idp_scores):
        for model, rows in idp_scores.groupby("model"):
            sources[model] = rows.pivot_table(index="participant_id", columns="snp",
                                              values="score")
    if dosages is not None:
        sources["genotype"] = dosages.reindex(cnn.index)
    validated = None
    gate = {"Gate": config.score_gate}
    if config.score_gate == "validated":
        basis = perf_table if perf_table is not None and len(perf_table) else gate_performance
        validated = {name: set() for name in sources if name != "genotype"}
        if basis is not None and len(basis):
            validated.update({k: v for k, v in validated_scores(basis).items()
                              if k in sources})
            gate["Basis"] = ("held-out performance on these participants"
                             if basis is perf_table else "the model's recorded test metrics")
        else:
            gate["Basis"] = "none: no genotypes and no recorded test metrics"
        gate["ValidatedScores"] = {k: sorted(v) for k, v in validated.items()}
        for name, snps in validated.items():
            n_all = sources[name].shape[1]
            LOGGER.info("Score gate: %d of %d %s score(s) predict their genotype "
                        "(held-out r > 0, Bonferroni p < 0.05) and are tested", len(snps),
                        n_all, name)
    table = associate_sources(sources, pheno.reindex(cnn.index),
                              None if covs is None else covs.reindex(cnn.index),
                              validated=validated)
    write_associations(table, out, {"Measures": measures,
                                    "Covariates": list(config.covariates or []),
                                    "Participants": int(len(cnn)), "ScoreGate": gate})
    if len(table) and table["p"].isna().all():
        LOGGER.warning("No association could be estimated: %d participant(s) with scores is "
                       "too few for the measures and covariates (use --cv-folds so that "
                       "every participant is scored, or more participants)", len(cnn))
    LOGGER.info("Associations: %d tests (%d in the family), %d Bonferroni-significant",
                len(table), int(table["validated"].sum()),
                int((table["p_bonferroni"] < 0.05).sum()))
