"""Group tables of the statistics (TSV with ``n/a`` and a JSON sidecar each)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bgs_app.utils.tables import write_table

ASSOCIATION_COLUMNS = {
    "source": "Where the predictor comes from: cnn (brain-genotype score), idp-<model> "
              "(IDP-baseline score) or genotype (the called dosage)",
    "snp": "SNP (or score column) the predictor belongs to",
    "measure": "Cognitive measure (the outcome)",
    "n": "Complete cases of this test",
    "beta": "Standardised coefficient of the predictor (outcome and predictor z-scored "
            "within the complete cases; OLS with an intercept and the covariates)",
    "se": "Standard error of beta", "t": "t statistic", "p": "Two-sided p-value",
    "ci_low": "Lower bound of the 95 % confidence interval of beta",
    "ci_high": "Upper bound of the 95 % confidence interval of beta",
    "p_bonferroni": "p multiplied by the number of tests in the family (the rows with "
                    "validated true), capped at 1; n/a outside the family",
    "q_fdr": "Benjamini-Hochberg q over the family; n/a outside it",
    "validated": "true when the row is in the tested family: a genotype row, or a score "
                 "whose held-out score-dosage correlation is positive and Bonferroni-"
                 "significant over its model's SNPs (--score-gate validated); false rows "
                 "keep beta, se, t and p for reference but are not corrected or claimed",
}
PERFORMANCE_COLUMNS = {
    "model": "cnn or idp-<model>", "snp": "SNP",
    "n_test": "Held-out (or out-of-fold) participants with a called genotype",
    "auc": "One-vs-rest ROC AUC averaged over the genotype classes present",
    "auc_carrier": "ROC AUC of the score for carrying at least one counted allele",
    "r_dosage": "Pearson correlation of the score (p1 + 2 p2) with the dosage",
    "p_r_dosage": "Two-sided p-value of r_dosage",
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


def write_idp_scores(table: pd.DataFrame, group_dir: Path, extra: dict | None = None):
    """``group/idp_scores.tsv`` and its sidecar."""
    return write_table(table, Path(group_dir) / "idp_scores.tsv", SCORE_COLUMNS, extra)
