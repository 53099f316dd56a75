"""Atomic file writing: a temporary file in the target folder, then a rename.

An interrupted run therefore never leaves a half-written file under its final
name, and a rerun can trust that every file it finds is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Parameters
    ----------
    path : path-like
        Final destination. Its parent folder is created if needed.

    Yields
    ------
    pathlib.Path
        A temporary path with the same suffixes (so writers that look at the
        extension, such as nibabel, behave as for the final name).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=f".tmp{suffix}",
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; give the final file the permissions of a normal one.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temporaries(folder: str | os.PathLike, subjects) -> list[Path]:
    """Delete temporaries that a killed run of these participants left in ``folder``.

    :func:`atomic_path` removes its temporary on every exit it sees, but a process killed
    with SIGKILL (or by a cluster's out-of-memory killer) leaves it behind. They are hidden
    files (``.<name>.<random>.tmp<suffixes>``) and never carry a final name; a rerun of the
    same participants calls this first. Only the participants' own folders and their
    files in ``logs/`` are searched, so a concurrent run on other participants (an array
    job writing into the same output folder) keeps its temporaries.

    Parameters
    ----------
    folder : path-like
        The output (derivatives) folder.
    subjects : iterable of str
        Participant labels without ``sub-``.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    folder = Path(folder)
    removed = []
    for label in sorted(set(subjects)):
        prefix = f".sub-{label}"
        found = [p for p in (folder / f"sub-{label}").rglob(".*.tmp*")]
        found += [p for p in (folder / "logs").rglob(f"{prefix}[._]*.tmp*")]
        for path in found:
            if path.is_file() and path.name.startswith(".") and ".tmp" in path.name:
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return the path."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def save_nifti(img, path: str | os.PathLike) -> Path:
    """Save a nibabel image atomically and return the path."""
    with atomic_path(path) as tmp:
        img.to_filename(str(tmp))
    return Path(path)


def write_tsv(df, path: str | os.PathLike, **kwargs) -> Path:
    """Write a pandas DataFrame as a BIDS TSV (``n/a`` for missing) atomically."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", na_rep="n/a", **kwargs)
    return Path(path)
