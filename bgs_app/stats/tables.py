"""Group tables of the statistics (TSV with ``n/a`` and a JSON sidecar each)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bgs_app.utils.tables import write_table

ASSOCIATION_COLUMNS = {
    "source": "Where the predictor comes from: cnn (brain-genotype score), idp-<model> "
              "(IDP-baseline score), voxel-ridge (ridge logistic regression on the "
              "model-grid voxels) or genotype (the dosage)",
    "snp": "SNP the row belongs to (its score's, or its own)",
    "counted_allele": "The allele whose copies dosages and scores count (PLINK A1)",
    "other_allele": "The SNP's other allele (PLINK A2)",
    "counted_allele_freq": "Frequency of the counted allele among the genotyped "
                           "participants (for a released model without site genotypes: "
                           "in its training data)",
    "measure": "Cognitive measure (the outcome)",
    "test": "score: measure ~ score + covariates (a brain-cognition association); "
            "first_stage: score ~ dosage + covariates (beta per allele in score units); "
            "reduced_form: measure ~ dosage + covariates (beta per counted allele in the "
            "measure's units); instrumented: the dosage as the instrument of the score "
            "(Wald ratio = 2SLS, in measure units per unit of score; p is the "
            "Anderson-Rubin test of no effect, equal to the reduced form's; the interval is "
            "the Anderson-Rubin confidence set); remainder: measure ~ score + dosage + "
            "covariates (the association of the score's non-genetic part, standardised)",
    "family": "The family the row is corrected in: genetic (reduced forms of the gated CNN "
              "SNPs: the primary family), score (score tests of the gated CNN scores), "
              "idp-<model> or voxel-ridge (score tests of a baseline's gated scores), "
              "genotype (reduced "
              "forms of every SNP); empty for rows that support a claim without being one",
    "n": "Participants in this test (sessions averaged, not counted as people)",
    "beta": "The coefficient: standardised (outcome and predictor z-scored within the "
            "complete cases) for score and remainder rows; per allele for first_stage "
            "(score units) and reduced_form (the measure's units); measure units per unit "
            "of score for instrumented rows",
    "se": "Standard error of beta (2SLS for instrumented rows)",
    "t": "t statistic", "p": "Two-sided p-value",
    "ci_low": "Lower bound of the 95 % confidence interval of beta (instrumented rows: of "
              "the Anderson-Rubin set, see ci_kind)",
    "ci_high": "Upper bound of the 95 % confidence interval of beta (instrumented rows: of "
               "the Anderson-Rubin set, see ci_kind)",
    "p_bonferroni": "p multiplied by the number of tests in the row's family, capped at 1; "
                    "n/a outside a family",
    "q_fdr": "Benjamini-Hochberg q (or Benjamini-Yekutieli with --fdr-method by) within the "
             "row's family; n/a outside a family",
    "validated": "true when the row's score passed the score gate (held-out score-dosage "
                 "correlation positive and Bonferroni-significant over its model's SNPs; "
                 "--score-gate validated), and for every genotype row",
    "claim": "What the CNN score x measure may claim (on every cnn row of the pair): "
             "genetic (the reduced form is Bonferroni-significant in the genetic family and "
             "the first stage has F >= 10: the SNP is linked to the measure and the score "
             "carries the SNP), anatomical (the score test is significant in the score "
             "family, the link is not genetic: a brain-cognition association), none",
    "f_stat": "First-stage F statistic of the dosage (first_stage rows)",
    "partial_r2": "The score's genetic share: partial R^2 of the dosage in the first stage",
    "ci_kind": "Shape of the Anderson-Rubin set (instrumented rows): bounded [ci_low, "
               "ci_high]; unbounded (the whole line, or a half-line); rays (-inf, ci_low] U "
               "[ci_high, inf)",
    "hausman_p": "Wu-Hausman test of the instrumented against the plain regression "
                 "(instrumented rows): small when the score's association is not the "
                 "genotype's",
}
PERFORMANCE_COLUMNS = {
    "model": "cnn or idp-<model>", "snp": "SNP",
    "counted_allele": "The allele whose copies the score counts (PLINK A1)",
    "other_allele": "The SNP's other allele (PLINK A2)",
    "counted_allele_freq": "Frequency of the counted allele among the genotyped "
                           "participants",
    "n_test": "Held-out (or out-of-fold) participants with a called genotype (images of a "
              "participant averaged)",
    "auc": "One-vs-rest ROC AUC averaged over the genotype classes present",
    "auc_carrier": "ROC AUC of the score for carrying at least one counted allele",
    "r_dosage": "Pearson correlation of the score (p1 + 2 p2) with the dosage",
    "p_r_dosage": "Two-sided p-value of r_dosage",
    "r_dosage_pcs": "With genetic PCs among the covariates: the correlation of score and "
                    "dosage after both are residualised on the PCs (what the score gate "
                    "judges then)",
    "p_r_dosage_pcs": "Two-sided p-value of r_dosage_pcs (t test, n - 2 - k df)",
    "p_r_dosage_folds": "With cross-fitting (--cv-folds): the p-value the score gate "
                        "uses instead of p_r_dosage. Each fold's correlation test is "
                        "exact (its model never saw the fold) but the folds share "
                        "training data, so the pooled p-value is too small under the "
                        "null; the folds' one-sided p-values for r > 0 are combined by "
                        "the Cauchy combination (Liu and Xie 2020), doubled to compare "
                        "with a two-sided p-value",
    "p_r_dosage_pcs_folds": "As p_r_dosage_folds, for the correlation given the genetic "
                            "PCs (residualised within each fold)",
    "first_stage_f": "F statistic of the score on the dosage (r^2 (n - 2) / (1 - r^2), no "
                     "covariates; associations.tsv has the first stage with them): 10 or "
                     "more is a strong instrument",
    "genetic_share": "The score's genetic share: r_dosage squared",
}
SCORE_COLUMNS = {
    "participant_id": "BIDS participant", "model": "Model that produced the score",
    "snp": "SNP", "score": "Expected dosage of the counted allele, p1 + 2 p2",
    "p0": "Predicted probability of 0 copies", "p1": "Predicted probability of 1 copy",
    "p2": "Predicted probability of 2 copies",
    "split": "train/val/test, or fold-<k> for cross-fitted scores",
}


def write_associations(table: pd.DataFrame, group_dir: Path, extra: dict | None = None):
    """``group/associations.tsv`` and its sidecar (``validated`` as true/false)."""
    if "validated" in table:
        table = table.assign(validated=table["validated"].map(
            lambda v: "true" if str(v).lower() == "true" else "false"))
    return write_table(table, Path(group_dir) / "associations.tsv", ASSOCIATION_COLUMNS, extra)


def write_performance(table: pd.DataFrame, group_dir: Path, extra: dict | None = None):
    """``group/performance.tsv`` and its sidecar."""
    return write_table(table, Path(group_dir) / "performance.tsv", PERFORMANCE_COLUMNS, extra)


ANCESTRY_COLUMN = {"ancestry": "The ancestry group (--ancestry-column) the row is "
                               "computed within; families are corrected within the group"}


def write_by_ancestry(table: pd.DataFrame, group_dir: Path, kind: str,
                      extra: dict | None = None):
    """``group/<kind>_by_ancestry.tsv`` (``performance`` or ``associations``)."""
    columns = {**ANCESTRY_COLUMN, **(PERFORMANCE_COLUMNS if kind == "performance"
                                     else ASSOCIATION_COLUMNS)}
    if "validated" in table:
        table = table.assign(validated=table["validated"].map(
            lambda v: "true" if str(v).lower() == "true" else "false"))
    return write_table(table, Path(group_dir) / f"{kind}_by_ancestry.tsv", columns, extra)


def write_voxel_scores(table: pd.DataFrame, group_dir: Path, extra: dict | None = None):
    """``group/voxel_scores.tsv`` (the voxel-ridge baseline's scores) and its sidecar."""
    return write_table(table, Path(group_dir) / "voxel_scores.tsv", SCORE_COLUMNS, extra)


def write_idp_scores(table: pd.DataFrame, group_dir: Path, extra: dict | None = None):
    """``group/idp_scores.tsv`` and its sidecar."""
    return write_table(table, Path(group_dir) / "idp_scores.tsv", SCORE_COLUMNS, extra)
