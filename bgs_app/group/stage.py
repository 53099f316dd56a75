"""Resuming a stage: a digest of what it is made from, and a stamp that says it is done.

A stage computes its digest (:func:`digest` of its inputs and settings), asks its
:class:`Stage` whether its outputs are current (they exist and the stamp records the same
digest), and after writing them (atomically: :mod:`bgs_app.utils.atomic`,
:func:`bgs_app.utils.tables.write_table`) marks it done. A rerun skips current stages; a
stage whose inputs changed runs again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bgs_app.config import RunContext
from bgs_app.utils.atomic import write_json


def digest(*parts) -> str:
    """SHA-256 of ``parts`` as JSON (keys sorted, anything else by ``str``)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Stage:
    """One resumable stage of the group level.

    Attributes
    ----------
    stamp : pathlib.Path
        ``<work>/group/stamps/<name>.json``.
    digest : str
        What the outputs are made from.
    outputs : list of pathlib.Path
        Files that must exist for the stage to be current.
    """

    stamp: Path
    digest: str
    outputs: list[Path] = field(default_factory=list)

    def current(self) -> bool:
        """True when every output exists and the stamp records this digest."""
        if not self.stamp.is_file() or not all(p.exists() for p in self.outputs):
            return False
        return json.loads(self.stamp.read_text()).get("digest") == self.digest

    def done(self) -> None:
        """Record that the outputs are made from this digest."""
        write_json(self.stamp, {"digest": self.digest})


def stage(context: RunContext, name: str, parts: Iterable, outputs: Iterable[Path] = ()
          ) -> Stage:
    """The :class:`Stage` named ``name``, made from ``parts``.

    Parameters
    ----------
    context : RunContext
    name : str
        The stamp's name (``train-fold-0``, ``saliency``...).
    parts : iterable
        Everything the outputs depend on (digested).
    outputs : iterable of pathlib.Path
    """
    return Stage(stamp=context.group_work / "stamps" / f"{name}.json",
                 digest=digest(*parts), outputs=list(outputs))


def performance_part(context: RunContext, source: str) -> Path:
    """Where one source's rows of ``performance.tsv`` wait (``cnn``, ``idp``) until the
    associations stage assembles the table."""
    return context.group_work / f"performance_{source}.tsv"
