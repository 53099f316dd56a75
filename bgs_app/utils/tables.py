"""The one writer of a TSV with its JSON sidecar (BIDS style: ``n/a`` for missing)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from bgs_app.utils.atomic import write_json, write_tsv


def write_table(frame: pd.DataFrame, path: Path, columns: Mapping[str, str | dict],
                extra: Mapping | None = None) -> Path:
    """Write ``frame`` as a TSV and, beside it, a JSON sidecar describing its columns.

    Parameters
    ----------
    frame : pandas.DataFrame
    path : pathlib.Path
        The ``.tsv`` file; the sidecar is the same name with ``.json``.
    columns : mapping
        Column name -> its description (a string, written as ``{"Description": ...}``,
        or a sidecar entry such as ``{"Description": ..., "Units": ...}``); only the
        columns of ``frame`` are described, in its order.
    extra : mapping, optional
        More sidecar keys (after the columns).

    Returns
    -------
    pathlib.Path
        ``path``; both files are written atomically.
    """
    path = Path(path)
    write_tsv(frame, path)
    described = {c: ({"Description": columns[c]} if isinstance(columns[c], str)
                     else columns[c]) for c in frame.columns if c in columns}
    write_json(path.with_suffix(".json"), {**described, **(extra or {})})
    return path
