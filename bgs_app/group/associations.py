"""Associations (``associations.tsv``, and ``performance.tsv`` from its parts): every
held-out (or applied) CNN score, every baseline score and every genotype against every
cognitive measure under the covariates, with the score gate deciding the tested family."""

from __future__ import annotations

import logging

import pandas as pd

from bgs_app.config import RunContext
from bgs_app.group.inputs import (
    GroupInputs,
    ancestry_groups,
    covariate_frame,
    image_sessions,
    measures,
    plan_covariates,
)
from bgs_app.group.stage import performance_part
from bgs_app.stats.claims import MIN_FIRST_STAGE_F

LOGGER = logging.getLogger("bgs_app")


def associate_scores(context: RunContext, inputs: GroupInputs,
                     dosages: pd.DataFrame | None, idp_scores: pd.DataFrame | None, *,
                     performance: tuple[str, ...] = ("cnn", "idp"),
                     gate_performance: pd.DataFrame | None = None,
                     alleles: pd.DataFrame | None = None,
                     flipped: list[str] | None = None,
                     tested: pd.DataFrame | None = None,
                     unrelated: list[str] | None = None) -> None:
    """Write ``performance.tsv`` from its parts and ``associations.tsv``.

    Parameters
    ----------
    context : RunContext
    inputs : bgs_app.group.inputs.GroupInputs
        The images (their sessions, for the phenotypes; their IDPs, for IDP covariates).
    dosages : pandas.DataFrame, optional
        Participants x SNPs: the genotype rows (and, with the CNN's performance, the
        gate's basis).
    idp_scores : pandas.DataFrame, optional
        The baselines' scores (long; the IDP baseline's and the voxel-ridge one's).
    performance : tuple of str
        The sources whose performance parts this run made (apply mode: ``cnn`` only).
    gate_performance : pandas.DataFrame, optional
        Apply mode without site genotypes: the bundle's recorded test metrics, which
        decide the validated scores when no performance was measured here.
    alleles : pandas.DataFrame, optional
        Index SNP: ``counted_allele``, ``other_allele``, ``counted_allele_freq``.
    flipped : list of str, optional
        Apply mode: SNPs whose site dosages were flipped to count the model's allele.
    tested : pandas.DataFrame, optional
        The tested SNPs with ``chrom`` and ``pos``, left out of computed genetic PCs.
    unrelated : list of str, optional
        With ``--kinship``: the unrelated set; the associations use only these
        participants (the gate's held-out performance uses every scored participant).
    """
    from bgs_app.model.scores import scores_wide
    from bgs_app.stats import load_phenotypes
    from bgs_app.stats.claims import association_table
    from bgs_app.stats.gate import validated_scores
    from bgs_app.stats.tables import write_associations, write_performance

    config, out = context.config, context.group_dir
    parts = [performance_part(context, source) for source in performance]
    perf = [pd.read_csv(p, sep="\t", na_values="n/a") for p in parts if p.is_file()]
    perf_table = pd.concat(perf, ignore_index=True) if perf else None
    names = measures(config)
    long = pd.read_csv(out / "scores.tsv", sep="\t", na_values="n/a")
    splits = sorted(s for s in long["split"].unique() if s in ("test", "apply")
                    or s.startswith("fold-"))
    cnn = scores_wide(long, splits)
    baselines = {}
    if idp_scores is not None and len(idp_scores):
        for model, rows in idp_scores.groupby("model"):
            baselines[model] = rows.pivot_table(index="participant_id", columns="snp",
                                                values="score")
    sources = {"cnn": cnn, **baselines}
    folds = (long.drop_duplicates("participant_id").set_index("participant_id")["split"]
             .reindex(cnn.index))
    cross_fitted = perf_table is not None and dosages is not None and bool(
        folds.astype(str).str.startswith("fold-").all())
    if not names:
        if cross_fitted:
            perf_table = fold_gate(perf_table, sources, dosages, folds, None)
        if perf_table is not None:
            write_performance(perf_table, out)
        LOGGER.warning("No cognitive measures (--phenotypes, or phenotype/*.tsv); "
                       "associations skipped")
        return
    plan = plan_covariates(config, inputs, log=False)  # said when it was checked
    extra = covariate_frame(context, plan, inputs, list(cnn.index), tested)
    pheno, covs = load_phenotypes(config.bids_dir, names, plan.table + plan.pc_columns,
                                  nonlinear_age=config.nonlinear_age, extra_covariates=extra,
                                  session=config.phenotype_session,
                                  image_sessions=image_sessions(inputs))
    pcs = pc_columns(plan, covs)
    if perf_table is not None and pcs and dosages is not None:
        perf_table = adjust_performance(perf_table, sources, dosages, covs[pcs])
    if cross_fitted:
        perf_table = fold_gate(perf_table, sources, dosages, folds,
                               covs[pcs] if pcs else None)
    if perf_table is not None:
        write_performance(perf_table, out)
    n_scored = len(cnn)
    if unrelated is not None:
        cnn = cnn[cnn.index.isin(set(unrelated))]
        LOGGER.info("Associations: %d of %d scored participants are in the unrelated set",
                    len(cnn), n_scored)
    validated = None
    gate = {"Gate": config.score_gate}
    if config.score_gate == "validated":
        basis = perf_table if perf_table is not None and len(perf_table) else gate_performance
        validated = {name: set() for name in sources}
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
    table = association_table(
        pheno.reindex(cnn.index), None if covs is None else covs.reindex(cnn.index),
        cnn=cnn, dosages=None if dosages is None else dosages.reindex(cnn.index),
        baselines=baselines, validated=validated, alleles=alleles, fdr=config.fdr_method)
    if dosages is not None:
        from bgs_app.group.sumstats import write_sumstats

        write_sumstats(out, table, dosages.reindex(cnn.index), pheno.reindex(cnn.index),
                       None if covs is None else covs.reindex(cnn.index), tested, alleles,
                       scores=cnn, extra={"Covariates": [] if covs is None
                                          else list(covs.columns),
                                          "UnrelatedSet": unrelated is not None})
    groups = ancestry_groups(config, list(cnn.index), inputs)
    if groups is not None:
        write_ancestry_tables(out, groups, sources, dosages, pheno.reindex(cnn.index),
                              None if covs is None else covs.reindex(cnn.index), cnn,
                              baselines, validated, alleles, config)
    families = {f: int(n) for f, n in table.loc[table["family"] != "", "family"]
                .value_counts().sort_index().items()}
    write_associations(table, out, {"Measures": names,
                                    "Covariates": list(covs.columns) if covs is not None
                                    else [],
                                    "CovariateSources": {
                                        "table": plan.table, "idp": plan.idp,
                                        "precomputed_pcs": plan.pc_columns,
                                        "computed_pcs": plan.compute_pcs},
                                    "PhenotypeSession": config.phenotype_session,
                                    "Participants": int(len(cnn)), "ScoreGate": gate,
                                    "GateAdjustedFor": pcs,
                                    "UnrelatedSet": unrelated is not None,
                                    "FDR": config.fdr_method,
                                    "MinFirstStageF": MIN_FIRST_STAGE_F,
                                    "Families": families,
                                    **({"AllelesFlippedToModel": sorted(flipped)}
                                       if flipped else {})})
    if len(table) and table["p"].isna().all():
        LOGGER.warning("No association could be estimated: %d participant(s) with scores is "
                       "too few for the measures and covariates (use --cv-folds so that "
                       "every participant is scored, or more participants)", len(cnn))
    claims = table.drop_duplicates(["source", "snp", "measure"])
    claims = claims[claims["source"] == "cnn"]["claim"].value_counts()
    LOGGER.info("Associations: %d rows; families %s; CNN claims: %d genetic, %d anatomical",
                len(table), ", ".join(f"{k} {v}" for k, v in families.items()) or "none",
                int(claims.get("genetic", 0)), int(claims.get("anatomical", 0)))


def pc_columns(plan, covs: pd.DataFrame | None) -> list[str]:
    """The genetic-PC columns among the covariates (precomputed ``pcK`` or computed
    ``PCK``)."""
    if covs is None:
        return []
    names = set(plan.pc_columns) | {f"PC{i + 1}" for i in range(plan.compute_pcs)}
    return [c for c in covs.columns if c in names]


def adjust_performance(perf: pd.DataFrame, sources: dict[str, pd.DataFrame],
                       dosages: pd.DataFrame, pcs: pd.DataFrame) -> pd.DataFrame:
    """``performance.tsv`` with ``r_dosage_pcs``/``p_r_dosage_pcs``: each source's
    held-out score-dosage correlation given the genetic PCs (what the gate judges)."""
    from bgs_app.stats.metrics import partial_score_dosage_correlation

    perf = perf.copy()
    values = []
    for model, snp in zip(perf["model"], perf["snp"], strict=True):
        scores = sources.get(str(model))
        if scores is None or snp not in scores.columns or snp not in dosages.columns:
            values.append({"r_dosage_pcs": float("nan"), "p_r_dosage_pcs": float("nan")})
            continue
        ids = scores.index
        values.append(partial_score_dosage_correlation(
            dosages[snp].reindex(ids).to_numpy(float), scores[snp].to_numpy(float),
            pcs.reindex(ids).to_numpy(float)))
    extra = pd.DataFrame(values, index=perf.index)
    return pd.concat([perf, extra], axis=1)


def fold_gate(perf: pd.DataFrame, sources: dict[str, pd.DataFrame], dosages: pd.DataFrame,
              folds: pd.Series, pcs: pd.DataFrame | None) -> pd.DataFrame:
    """``performance.tsv`` with the gate's p-values for cross-fitted scores:
    ``p_r_dosage_folds`` (and ``p_r_dosage_pcs_folds`` with genetic PCs), the per-fold
    correlation tests combined (:func:`bgs_app.stats.metrics.fold_combined_correlation`).

    Parameters
    ----------
    perf : pandas.DataFrame
        Performance rows (``model``, ``snp``).
    sources : dict
        ``{model: participants x SNPs scores}``.
    dosages : pandas.DataFrame
        Participants x SNPs.
    folds : pandas.Series
        Participant -> ``fold-<k>`` that scored it (the baselines use the CNN's folds).
    pcs : pandas.DataFrame, optional
        Participants x genetic PCs.
    """
    from bgs_app.stats.metrics import fold_combined_correlation

    plain, adjusted = [], []
    for model, snp in zip(perf["model"], perf["snp"], strict=True):
        scores = sources.get(str(model))
        if scores is None or snp not in scores.columns or snp not in dosages.columns:
            plain.append(float("nan"))
            adjusted.append(float("nan"))
            continue
        ids = scores.index
        d, s = dosages[snp].reindex(ids).to_numpy(float), scores[snp].to_numpy(float)
        f = folds.reindex(ids).astype(str).to_numpy()
        plain.append(fold_combined_correlation(d, s, f))
        if pcs is not None:
            adjusted.append(fold_combined_correlation(d, s, f, pcs.reindex(ids)
                                                      .to_numpy(float)))
    perf = perf.assign(p_r_dosage_folds=plain)
    if pcs is not None:
        perf = perf.assign(p_r_dosage_pcs_folds=adjusted)
    return perf


def write_ancestry_tables(out, groups: pd.Series, sources: dict, dosages, pheno, covs, cnn,
                          baselines: dict, validated, alleles, config) -> None:
    """``performance_by_ancestry.tsv`` and ``associations_by_ancestry.tsv``."""
    from bgs_app.stats.ancestry import (
        MIN_GROUP_N,
        associations_by_group,
        performance_by_group,
    )
    from bgs_app.stats.tables import write_by_ancestry

    sizes = {str(k): int(v) for k, v in groups.dropna().astype(str).value_counts()
             .sort_index().items()}
    extra = {"AncestryColumn": config.ancestry_column, "GroupSizes": sizes,
             "GroupSizesOf": "the participants of the associations (with --kinship, the "
                             "unrelated set); performance counts every scored one",
             "MinGroupSize": MIN_GROUP_N}
    if dosages is not None:
        write_by_ancestry(performance_by_group(groups, sources, dosages), out,
                          "performance", extra)
    table = associations_by_group(groups, pheno, covs, cnn=cnn, dosages=None if dosages
                                  is None else dosages.reindex(cnn.index),
                                  baselines=baselines, validated=validated, alleles=alleles,
                                  fdr=config.fdr_method)
    write_by_ancestry(table, out, "associations", {
        **extra, "Note": "descriptive: the claims are those of associations.tsv (the "
                         "pooled gate and families); each group's families are corrected "
                         "within the group"})
    LOGGER.info("Ancestry groups (%s): %s; tables by group written",
                config.ancestry_column, ", ".join(f"{k} {v}" for k, v in sizes.items()))
