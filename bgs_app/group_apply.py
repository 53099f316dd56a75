"""Group level, apply mode: a site scores its subjects with a released model and tests
the scores against its phenotypes (``bgs_app BIDS OUT group --model MODEL_DIR``)."""

from __future__ import annotations

import logging

import pandas as pd

from bgs_app.config import Config
from bgs_app.group import GroupInputs, _device, group_dir, group_work_dir, write_table
from bgs_app.templates import Template
from bgs_app.utils.atomic import write_tsv

LOGGER = logging.getLogger("bgs_app")


def apply_model(config: Config, inputs: GroupInputs, template: Template) -> None:
    """Score every subject with ``config.model``; saliency, associations (and, with
    ``--genotypes``, performance on this site and genotype rows)."""
    from bgs_app.group_train import (
        _associations,
        load_study_genotypes,
        write_genotype_correlation_outputs,
        write_saliency_outputs,
    )
    from bgs_app.interfaces.modelgrid import grid_metadata
    from bgs_app.model.bundle import load_bundle
    from bgs_app.model.saliency import GenotypeCorrelation, group_saliency
    from bgs_app.model.scores import SCORES_SIDECAR, load_volume, predict_volumes, scores_long
    from bgs_app.stats.metrics import genotype_metrics

    out = group_dir(config)
    grid = grid_metadata(inputs.resolution, inputs.template)
    model, meta = load_bundle(config.model, expect_grid=grid)
    snps = [s["snp"] for s in meta["snps"]]
    sha = meta["weights_sha256"]
    images = inputs.images
    probs = predict_volumes(model, (load_volume(p, meta["grid"]) for p in images["path"]),
                            device=_device(config))
    LOGGER.info("Scored %d image(s) with %s", len(images), config.model)
    long = scores_long(probs, snps, images["participant_id"].tolist(),
                       images["session_id"].tolist(), ["apply"] * len(images))
    write_table(long, out / "scores.tsv", SCORES_SIDECAR, {"Models": {"model": sha},
                                                           "ModelPath": str(config.model)})
    dosages = None
    perf_path = group_work_dir(config) / "performance_cnn.tsv"
    perf_path.parent.mkdir(parents=True, exist_ok=True)
    if config.genotypes is not None:
        genotypes = load_study_genotypes(config, sorted(images["participant_id"].unique()),
                                         snps)
        dosages = genotypes.dosages.reindex(columns=snps)
        rows = []
        for j, snp in enumerate(snps):
            d = dosages.reindex(images["participant_id"])[snp].to_numpy(float)
            rows.append({"model": "cnn", "snp": snp, **genotype_metrics(d, probs[:, j])})
        write_tsv(pd.DataFrame(rows), perf_path)
    elif perf_path.exists():
        perf_path.unlink()
    if not config.no_saliency:
        method = config.saliency_method or "integrated_gradients"
        correlation = per_image = None
        if dosages is not None:
            per_image = dosages.reindex(images["participant_id"]).to_numpy(float)
            correlation = GenotypeCorrelation(snps, per_image)
        maps = group_saliency(model, (load_volume(p, meta["grid"]) for p in images["path"]),
                              snps, method=method, n_steps=config.ig_steps,
                              correlation=correlation, dosages=per_image,
                              device=_device(config))
        sums = {(s, k): m * len(images) for s, by in maps.items() for k, m in by.items()}
        counts = {key: len(images) for key in sums}
        write_saliency_outputs(out / "saliency", sums, counts, snps, template, grid, method)
        if correlation is not None:
            write_genotype_correlation_outputs(out / "saliency", correlation, template, grid,
                                               method)
    recorded = pd.DataFrame([{"model": "cnn", **m} for m in meta.get("test_metrics") or []])
    _associations(config, out, dosages, None, [perf_path],
                  gate_performance=recorded if len(recorded) else None)
