"""Matching genotyped people (FAM IIDs) to BIDS participants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bgs_app.genetics.plink import GenotypeError


def _label(value: str) -> str:
    value = str(value).strip()
    return value[4:] if value.startswith("sub-") else value


def match_ids(iids: list[str], participants: list[str] | None,
              id_map: str | Path | None = None) -> pd.DataFrame:
    """Pair FAM IIDs with BIDS participant labels.

    Parameters
    ----------
    iids : list of str
        IIDs in FAM order.
    participants : list of str or None
        BIDS participant labels (with or without ``sub-``); None keeps every IID
        (participant_id then ``sub-<IID>``).
    id_map : path-like, optional
        TSV with columns ``participant_id`` and ``iid`` for sites whose genotype IDs
        differ from the BIDS labels.

    Returns
    -------
    pandas.DataFrame
        One row per person seen on either side: ``iid``, ``participant_id``
        (``sub-<label>``), ``fam_index`` (row in the .fam, or -1), ``status``
        (``matched``, ``genotype-only``, ``mri-only``).

    Raises
    ------
    GenotypeError
        Duplicate IIDs in the .fam, duplicate mappings, or no overlap at all.
    """
    fam = pd.Series(iids, dtype=str)
    dups = sorted(set(fam[fam.duplicated()]))
    if dups:
        raise GenotypeError(f"duplicate IIDs in the .fam file: {', '.join(dups[:10])}"
                            + (" ..." if len(dups) > 10 else "")
                            + "; make IIDs unique (or give --genotype-id-map)")
    iid_to_row = {iid: i for i, iid in enumerate(fam.tolist())}
    if participants is None:
        return pd.DataFrame({"iid": fam, "participant_id": "sub-" + fam,
                             "fam_index": range(len(fam)), "status": "matched"})
    labels = [_label(p) for p in participants]
    if id_map is not None:
        mapping = pd.read_csv(id_map, sep="\t", dtype=str)
        if not {"participant_id", "iid"} <= set(mapping.columns):
            raise GenotypeError(f"{id_map}: the ID map needs columns participant_id and iid")
        mapping["participant_id"] = mapping["participant_id"].map(_label)
        for column in ("participant_id", "iid"):
            dup = sorted(set(mapping.loc[mapping[column].duplicated(), column]))
            if dup:
                raise GenotypeError(f"{id_map}: duplicate {column} values: "
                                    f"{', '.join(dup[:10])}")
        label_to_iid = dict(zip(mapping["participant_id"], mapping["iid"], strict=True))
    else:
        label_to_iid = {}
        for label in labels:
            if label in iid_to_row:
                label_to_iid[label] = label
            elif f"sub-{label}" in iid_to_row:
                label_to_iid[label] = f"sub-{label}"
    rows, used = [], set()
    for label in labels:
        iid = label_to_iid.get(label)
        if iid is not None and iid in iid_to_row:
            rows.append((iid, f"sub-{label}", iid_to_row[iid], "matched"))
            used.add(iid)
        else:
            rows.append((None, f"sub-{label}", -1, "mri-only"))
    table = pd.DataFrame(rows, columns=["iid", "participant_id", "fam_index", "status"])
    others = ~fam.isin(used)
    table = pd.concat([table, pd.DataFrame({
        "iid": fam[others].to_numpy(), "participant_id": None,
        "fam_index": np.flatnonzero(others.to_numpy()), "status": "genotype-only"})],
        ignore_index=True)
    if not (table["status"] == "matched").any():
        example = ", ".join(list(iid_to_row)[:3])
        raise GenotypeError(
            f"no genotyped person matches a participant: {len(labels)} participants (e.g. "
            f"sub-{labels[0] if labels else '?'}), {len(iid_to_row)} IIDs (e.g. {example}). "
            "IIDs must equal the labels (with or without 'sub-'), or give "
            "--genotype-id-map TSV with participant_id and iid")
    return table
