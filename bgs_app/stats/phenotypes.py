"""Phenotypes and covariates from participants.tsv and phenotype/*.tsv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bgs_app.errors import UsageError


def read_tables(bids_dir: Path) -> pd.DataFrame:
    """participants.tsv joined with every phenotype/*.tsv (index ``participant_id``)."""
    bids_dir = Path(bids_dir)
    path = bids_dir / "participants.tsv"
    if not path.is_file():
        raise UsageError(f"{path} does not exist: phenotypes and covariates come from "
                         "participants.tsv and phenotype/*.tsv")
    table = pd.read_csv(path, sep="\t", na_values="n/a", keep_default_na=False,
                        dtype={"participant_id": str})
    table = table.set_index("participant_id")
    for extra in sorted((bids_dir / "phenotype").glob("*.tsv")):
        more = pd.read_csv(extra, sep="\t", na_values="n/a", keep_default_na=False,
                           dtype={"participant_id": str})
        if "participant_id" not in more.columns:
            raise UsageError(f"{extra}: a phenotype table needs a participant_id column")
        more = more.set_index("participant_id")
        clash = [c for c in more.columns if c in table.columns and c != "session_id"]
        if clash:
            more = more.rename(columns={c: f"{extra.stem}.{c}" for c in clash})
        table = table.join(more.drop(columns=["session_id"], errors="ignore"), how="outer")
    return table


def _select(table: pd.DataFrame, names, what: str) -> pd.DataFrame:
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise UsageError(f"{what} column(s) {', '.join(missing)} not found; available: "
                         f"{', '.join(map(str, table.columns))}")
    return table[list(names)]


def load_phenotypes(bids_dir: Path, measures, covariates=None, *, nonlinear_age: bool = False,
                    age: str = "age", sex: str = "sex",
                    extra_covariates: pd.DataFrame | None = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Cognitive measures and covariates, by column name.

    Parameters
    ----------
    bids_dir : pathlib.Path
    measures : list of str
        Columns of participants.tsv or phenotype/*.tsv.
    covariates : list of str, optional
        Likewise; non-numeric columns are dummy-coded by the association code.
    nonlinear_age : bool
        Add ``age^2`` and ``age x sex`` (as UK Biobank analyses do).
    age, sex : str
        Names of the age and sex columns.
    extra_covariates : pandas.DataFrame, optional
        More covariates by participant (genetic PCs).

    Returns
    -------
    phenotypes, covariates : pandas.DataFrame
    """
    table = read_tables(bids_dir)
    pheno = _select(table, measures, "phenotype").apply(pd.to_numeric, errors="coerce")
    covs = _select(table, covariates, "covariate").copy() if covariates else None
    if nonlinear_age:
        if covs is None or age not in covs.columns:
            raise UsageError(f"nonlinear age terms need '{age}' among the covariates")
        a = pd.to_numeric(covs[age], errors="coerce")
        covs[f"{age}^2"] = (a - a.mean()) ** 2
        if sex in covs.columns:
            male = covs[sex].astype(str).str.upper().str[0].map({"M": 1.0, "F": 0.0})
            covs[f"{age}x{sex}"] = (a - a.mean()) * male
    if extra_covariates is not None:
        covs = extra_covariates if covs is None else covs.join(extra_covariates, how="left")
    for frame in (pheno, covs):
        if frame is not None:
            frame.index.name = "participant_id"
    return pheno, covs

