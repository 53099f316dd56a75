"""Associations (``associations.tsv``, and ``performance.tsv`` from its parts): every
held-out (or applied) CNN score, every baseline score and every genotype against every
cognitive measure under the covariates, with the score gate deciding the tested family."""

from __future__ import annotations

import logging

import pandas as pd

from bgs_app.config import RunContext
from bgs_app.group.inputs import measures
from bgs_app.group.stage import performance_part

LOGGER = logging.getLogger("bgs_app")


def associate_scores(context: RunContext, dosages: pd.DataFrame | None,
                     idp_scores: pd.DataFrame | None, *,
                     performance: tuple[str, ...] = ("cnn", "idp"),
                     gate_performance: pd.DataFrame | None = None) -> None:
    """Write ``performance.tsv`` from its parts and ``associations.tsv``.

    Parameters
    ----------
    context : RunContext
    dosages : pandas.DataFrame, optional
        Participants x SNPs: the genotype rows (and, with the CNN's performance, the
        gate's basis).
    idp_scores : pandas.DataFrame, optional
        The baseline's scores (long).
    performance : tuple of str
        The sources whose performance parts this run made (apply mode: ``cnn`` only).
    gate_performance : pandas.DataFrame, optional
        Apply mode without site genotypes: the bundle's recorded test metrics, which
        decide the validated scores when no performance was measured here.
    """
    from bgs_app.model.scores import scores_wide
    from bgs_app.stats import associate_sources, load_phenotypes
    from bgs_app.stats.gate import validated_scores
    from bgs_app.stats.tables import write_associations, write_performance

    config, out = context.config, context.group_dir
    parts = [performance_part(context, source) for source in performance]
    perf = [pd.read_csv(p, sep="\t", na_values="n/a") for p in parts if p.is_file()]
    perf_table = pd.concat(perf, ignore_index=True) if perf else None
    if perf_table is not None:
        write_performance(perf_table, out)
    names = measures(config)
    if not names:
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
    pheno, covs = load_phenotypes(config.bids_dir, names, config.covariates,
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
    write_associations(table, out, {"Measures": names,
                                    "Covariates": list(config.covariates or []),
                                    "Participants": int(len(cnn)), "ScoreGate": gate})
    if len(table) and table["p"].isna().all():
        LOGGER.warning("No association could be estimated: %d participant(s) with scores is "
                       "too few for the measures and covariates (use --cv-folds so that "
                       "every participant is scored, or more participants)", len(cnn))
    LOGGER.info("Associations: %d tests (%d in the family), %d Bonferroni-significant",
                len(table), int(table["validated"].sum()),
                int((table["p_bonferroni"] < 0.05).sum()))
