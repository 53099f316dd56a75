"""Participant-level orchestration: select inputs, build and run the Nipype workflow.

This module stands without :mod:`bgs_app.group`; it receives a :class:`Config`.
"""

from __future__ import annotations

import logging

from bgs_app.bids import (
    collect_t1w,
    get_layout,
    select_subjects,
    write_bidsignore,
    write_derivative_description,
)
from bgs_app.config import Config

LOGGER = logging.getLogger("bgs_app")

#: Output files outside the BIDS specification, hidden from the validator.
BIDSIGNORE = ("group", "logs", "*_xfm.*", "*_morph.tsv",
              "*_morph.json", "*_scores.tsv", "*_scores.json", "*snp-*", "*.html", "figures")


def select_inputs(config: Config):
    """The T1w images the participant level will process, per ``config``.

    Returns
    -------
    list of bgs_app.bids.T1wInput
    """
    return select_participants(config)[1]


def select_participants(config: Config):
    """The selected participants and their T1w images.

    Returns
    -------
    subjects : list of str
        Participant labels (requested with ``--participant-label``, else all).
    inputs : list of bgs_app.bids.T1wInput
        Their T1w images; a participant may have none (see :func:`without_t1w`).
    """
    layout = get_layout(config.bids_dir, config.bids_database_dir)
    subjects = select_subjects(layout, config.participant_label)
    inputs = collect_t1w(layout, subjects, config.session_label, config.bids_filters)
    LOGGER.info("Selected %d T1w image(s) of %d participant(s)", len(inputs), len(subjects))
    return subjects, inputs


def without_t1w(subjects, inputs) -> list[str]:
    """Participants of ``subjects`` that have no image in ``inputs``."""
    found = {t.subject for t in inputs}
    return [s for s in subjects if s not in found]


def prepare_output(config: Config) -> None:
    """Write the derivatives dataset description and ``.bidsignore``."""
    config.output_dir.mkdir(parents=True, exist_ok=True)
    write_derivative_description(config.output_dir, config.bids_dir)
    write_bidsignore(config.output_dir, BIDSIGNORE)


def write_boilerplate(config: Config):
    """Write the participant level's methods paragraph (Markdown) for these options."""
    from bgs_app import __version__
    from bgs_app.templates import get_template
    from bgs_app.utils.atomic import write_text
    from bgs_app.workflows.anatomical import init_anat_preproc_wf

    template = get_template(config.template, str(config.template_mask)
                            if config.template_mask else None)
    wf = init_anat_preproc_wf(template=template, resolution=config.resolution,
                              registration=config.registration)
    text = (f"# Methods (participant level)\n\nResults were generated with bgs_app "
            f"{__version__}, which uses Nipype [@nipype] and ANTs [@ants] through antspyx.\n\n"
            f"{wf.__desc__}\n\n## References\n\n"
            "- [@nipype] Gorgolewski et al. (2011) Front Neuroinform 5:13.\n"
            "- [@ants] Avants et al. (2008) Med Image Anal 12:26-41.\n"
            "- [@n4] Tustison et al. (2010) IEEE Trans Med Imaging 29:1310-1320.\n"
            "- [@atropos] Avants et al. (2011) Neuroinformatics 9:381-400.\n")
    return write_text(config.output_dir / "logs" / "CITATION.md", text)


def run_participant_level(config: Config) -> int:
    """Run the participant level for ``config`` and return the exit code.

    Selects the T1w images, writes the derivatives description, then builds and
    runs the participant workflow (one branch per image); a failing subject is
    reported and does not stop the others.
    """
    subjects, inputs = select_participants(config)
    missing = without_t1w(subjects, inputs)
    prepare_output(config)
    if config.boilerplate_only:
        path = write_boilerplate(config)
        LOGGER.info("Methods boilerplate written to %s", path)
        return 0
    if config.reports_only:
        from bgs_app.reports.participant import write_participant_reports
        from bgs_app.templates import get_template

        name = get_template(config.template, str(config.template_mask)
                            if config.template_mask else None).name
        written = write_participant_reports(config.output_dir,
                                            sorted({t.subject for t in inputs}), name,
                                            nprocs=config.nprocs)
        LOGGER.info("Wrote %d report(s)", len(written))
        return 0
    from bgs_app.workflows.execute import run_participant_workflow

    failures = {}
    if missing:
        what = ("no T1w image matched the query (check its anat/ folder, --session-label "
                "and --bids-filter-file)")
        if config.participant_label:  # asked for by name: a failure
            failures = {f"sub-{label}": what for label in missing}
        else:
            LOGGER.warning("%d participant(s) have no T1w image and are skipped: %s",
                           len(missing), ", ".join(f"sub-{m}" for m in missing[:20])
                           + (" ..." if len(missing) > 20 else ""))
    return run_participant_workflow(config, inputs, failures)
