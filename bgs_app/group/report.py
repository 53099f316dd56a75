"""The report (``report.html``) and the methods boilerplate (``CITATION.md``) of the
group level, from the tables and maps the other stages wrote."""

from __future__ import annotations

import logging
from pathlib import Path

from bgs_app.config import RunContext

LOGGER = logging.getLogger("bgs_app")


def write_boilerplate(context: RunContext) -> Path:
    """``group/CITATION.md`` for the run's options (and, when present, its results' N)."""
    from bgs_app.reports.boilerplate import write_group_boilerplate

    return write_group_boilerplate(context.config, context.template.name, context.group_dir)


def write_report(context: RunContext) -> Path:
    """``group/report.html``."""
    from bgs_app.reports.group import write_group_report

    return write_group_report(context.config, context.template, context.group_dir)
