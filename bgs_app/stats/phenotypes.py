"""Phenotypes and covariates from participants.tsv and phenotype/*.tsv."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from bgs_app.errors import UsageError

#: How a phenotype table with several visits per participant (``session_id``) becomes
#: one value per participant: the visit of the participant's image(s) (else the first),
#: the first or last visit, or the mean over visits.
SESSION_POLICIES = ("match", "first", "last", "mean")


def _session_key(label) -> tuple:
    text = str(label)
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def _one_row_per_participant(table: pd.DataFrame, policy: str,
                             image_sessions: Mapping[str, Iterable[str]] | None
                             ) -> pd.DataFrame:
    """Reduce a phenotype table with ``session_id`` to one row per participant."""
    if policy not in SESSION_POLICIES:
        raise UsageError(f"--phenotype-session must be one of {', '.join(SESSION_POLICIES)}")
    table = table.assign(_order=table["session_id"].map(_session_key))
    table = table.sort_values(["participant_id", "_order"], kind="stable")
    rows = []
    for pid, visits in table.groupby("participant_id", sort=False):
        visits = visits.drop(columns=["_order"])
        if policy == "match":
            wanted = {str(s) for s in (image_sessions or {}).get(pid, []) if s is not None}
            matched = visits[visits["session_id"].astype(str).isin(wanted)]
            chosen = matched if len(matched) else visits.iloc[:1]
        elif policy == "first":
            chosen = visits.iloc[:1]
        elif policy == "last":
            chosen = visits.iloc[-1:]
        else:
            chosen = visits
        if len(chosen) == 1:
            rows.append(chosen.iloc[0])
            continue
        numeric = chosen.drop(columns=["participant_id", "session_id"]).apply(
            pd.to_numeric, errors="coerce")
        row = chosen.iloc[0].copy()
        for column in numeric.columns:
            if numeric[column].notna().any():
                row[column] = numeric[column].mean()
        rows.append(row)
    return pd.DataFrame(rows).drop(columns=["session_id"]).reset_index(drop=True)


def read_tables(bids_dir: Path, *, session: str = "match",
                image_sessions: Mapping[str, Iterable[str]] | None = None) -> pd.DataFrame:
    """participants.tsv joined with every phenotype/*.tsv (index ``participant_id``).

    Parameters
    ----------
    bids_dir : pathlib.Path
    session : {"match", "first", "last", "mean"}
        How tables with a ``session_id`` column (several visits) give one row per
        participant (:data:`SESSION_POLICIES`).
    image_sessions : mapping, optional
        Participant -> the sessions of its images (for ``match``).
    """
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
                           dtype={"participant_id": str, "session_id": str})
        if "participant_id" not in more.columns:
            raise UsageError(f"{extra}: a phenotype table needs a participant_id column")
        if "session_id" in more.columns and more["participant_id"].duplicated().any():
            more = _one_row_per_participant(more, session, image_sessions)
        more = more.set_index("participant_id")
        if more.index.duplicated().any():
            shown = ", ".join(sorted(set(more.index[more.index.duplicated()]))[:10])
            raise UsageError(f"{extra}: participants listed more than once without a "
                             f"session_id column: {shown}")
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
                    extra_covariates: pd.DataFrame | None = None, session: str = "match",
                    image_sessions: Mapping[str, Iterable[str]] | None = None
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
        More covariates by participant (genetic PCs, IDPs such as eTIV).
    session, image_sessions
        See :func:`read_tables`.

    Returns
    -------
    phenotypes, covariates : pandas.DataFrame
    """
    table = read_tables(bids_dir, session=session, image_sessions=image_sessions)
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

