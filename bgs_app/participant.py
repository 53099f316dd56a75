"""Participant-level orchestration: select inputs, build and run the Nipype workflow.

This module stands without :mod:`bgs_app.group`; it receives a :class:`Config` (and the
:class:`~bgs_app.config.RunContext` resolved from it).
"""

from __future__ import annotations

import logging

from bgs_app.bids.derivatives import prepare_derivatives
from bgs_app.bids.inputs import collect_t1w, get_layout, select_subjects
from bgs_app.config import Config, RunContext, resolve_context

LOGGER = logging.getLogger("bgs_app")


def select_inputs(config: Config):
    """The T1w images the participant level will process, per ``config``.

    Returns
    -------
    list of bgs_app.bids.inputs.T1wInput
    """
    return select_participants(config)[1]


def select_participants(config: Config):
    """The selected participants and their T1w images.

    Returns
    -------
    subjects : list of str
        Participant labels (requested with ``--participant-label``, else all).
    inputs : list of bgs_app.bids.inputs.T1wInput
        Their T1w images; a participant may have none (see :func:`without_t1w`).
    """
    layout = get_layout(config.bids_dir, config.bids_database_dir, config.participant_label)
    subjects = select_subjects(layout, config.participant_label, config.exclude_label)
    inputs = collect_t1w(layout, subjects, config.session_label, config.bids_filters)
    LOGGER.info("Selected %d T1w image(s) of %d participant(s)", len(inputs), len(subjects))
    return subjects, inputs


def without_t1w(subjects, inputs) -> list[str]:
    """Participants of ``subjects`` that have no image in ``inputs``."""
    found = {t.subject for t in inputs}
    return [s for s in subjects if s not in found]


def write_boilerplate(context: RunContext):
    """Write the participant level's methods paragraph (Markdown) for these options."""
    from bgs_app import __version__
    from bgs_app.utils.atomic import write_text
    from bgs_app.workflows.anatomical import init_anat_preproc_wf

    config = context.config
    wf = init_anat_preproc_wf(template=context.template, resolution=config.resolution,
                              registration=config.registration,
                              check_plausibility=not config.skip_plausibility_checks,
                              skull_strip="skip" if config.skull_strip_t1w == "skip"
                              else "force", skull_strip_method=config.skull_strip_method)
    desc = wf.__desc__
    if config.skull_strip_t1w == "auto":
        desc += (" Images that were already brain-extracted (background on every face of "
                 "the image and less than 2.5 l of non-zero voxels) kept their extraction: "
                 "their non-zero voxels gave the brain mask.")
    from bgs_app.reports.references import bibtex, cited, reference_list

    body = (f"# Methods (participant level)\n\nResults were generated with bgs_app "
            f"{__version__}, which uses Nipype [@nipype] and ANTs [@ants] through antspyx.\n\n"
            f"{desc}")
    keys = cited(body)
    write_text(config.output_dir / "logs" / "CITATION.bib", bibtex(keys))
    return write_text(config.output_dir / "logs" / "CITATION.md",
                      body + "\n\n" + reference_list(keys))


def run_participant_level(config: Config, context: RunContext | None = None) -> int:
    """Run the participant level for ``config`` and return the exit code.

    Selects the T1w images, writes the derivatives description, then builds and
    runs the participant workflow (one branch per image); a failing subject is
    reported and does not stop the others.

    Parameters
    ----------
    config : Config
    context : RunContext, optional
        Resolved from ``config`` when not given.
    """
    context = context or resolve_context(config)
    subjects, inputs = select_participants(config)
    missing = without_t1w(subjects, inputs)
    prepare_derivatives(config.output_dir, config.bids_dir)
    if config.boilerplate_only:
        path = write_boilerplate(context)
        LOGGER.info("Methods boilerplate written to %s", path)
        return 0
    if config.reports_only:
        from bgs_app.reports.participant import write_participant_reports

        written = write_participant_reports(config.output_dir,
                                            sorted({t.subject for t in inputs}),
                                            context.template, nprocs=config.nprocs)
        LOGGER.info("Wrote %d report(s)", len(written))
        return 0
    from bgs_app.workflows.execute import run_participant_workflow

    write_boilerplate(context)  # logs/CITATION.md and .bib, as fMRIPrep writes every run
    from bgs_app.utils.atomic import remove_stale_temporaries

    stale = remove_stale_temporaries(config.output_dir, {t.subject for t in inputs})
    if stale:
        LOGGER.info("Removed %d temporary file(s) left by an interrupted run", len(stale))

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
    return run_participant_workflow(context, inputs, failures)
