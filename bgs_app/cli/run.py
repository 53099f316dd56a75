"""Entry point of ``bgs_app``: parse, check, dispatch, and turn errors into exit codes.

Every error a user can cause ends with one message on stderr and the exit code
of :mod:`bgs_app.errors`; anything else is a bug, whose traceback goes to a
crash file under ``OUT_DIR/logs/`` named in the message.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path

from bgs_app.errors import EXIT_FAILURE, BgsError

LOGGER = logging.getLogger("bgs_app")


def main(argv: list[str] | None = None) -> int:
    """Run ``bgs_app`` and return its exit code.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 success, 1 failure, 16 invalid BIDS, 17 unknown level, 18 nothing
        matched, 64 usage error.
    """
    from bgs_app.cli.parser import parse_args

    log_dir: Path | None = None
    _writable_caches()
    try:
        config = parse_args(argv)
        from bgs_app.bids.inputs import check_paths

        check_paths(config.bids_dir, config.output_dir, config.work_dir)
        log_dir = _log_dir(config.output_dir)
        if config.work_dir is None and not (config.boilerplate_only or config.reports_only):
            _check_default_work(config)
        from bgs_app.log import setup_logging

        setup_logging(config.verbose, log_dir / f"bgs_app-{config.run_id}.log")
        config = _bounded(config)
        config.write(log_dir)
        return dispatch(config)
    except BgsError as err:
        LOGGER.debug("user error", exc_info=True)
        print(f"bgs_app: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("bgs_app: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: keep the traceback, show one line
        crash = _write_crash(log_dir, err)
        print(f"bgs_app: unexpected error: {type(err).__name__}: {err}. The traceback is in "
              f"{crash}; please report it with that file.", file=sys.stderr)
        return EXIT_FAILURE


def _bounded(config):
    """``config`` with ``--nprocs`` and ``--omp-nthreads`` at most the usable CPUs."""
    import dataclasses

    from bgs_app.utils.processes import usable_cpus

    cpus = usable_cpus()
    changes = {}
    for name, flag in (("nprocs", "--nprocs"), ("omp_nthreads", "--omp-nthreads")):
        value = getattr(config, name)
        if value is not None and value > cpus:
            LOGGER.warning("%s %d is more than the %d CPU(s) this process may use; using %d",
                           flag, value, cpus, cpus)
            changes[name] = cpus
    return dataclasses.replace(config, **changes) if changes else config


def dispatch(config) -> int:
    """Run the analysis level that ``config`` asks for and return the exit code."""
    LOGGER.info("bgs_app %s level: %s -> %s", config.analysis_level, config.bids_dir,
                config.output_dir)
    if not config.skip_bids_validation:
        from bgs_app.bids.inputs import validate_dataset

        LOGGER.info("Validating %s with bids-validator-deno", config.bids_dir)
        for warning in validate_dataset(config.bids_dir)[:20]:
            LOGGER.warning("BIDS validator: %s", warning)
    from bgs_app.config import resolve_context

    if config.analysis_level == "participant":
        from bgs_app.participant import run_participant_level

        return run_participant_level(config, resolve_context(config))
    from bgs_app.group import run_group_level

    if config.genotypes is None and config.model is None and not (
            config.boilerplate_only or config.reports_only):
        return run_group_level(config)  # refused before anything is resolved
    return run_group_level(config, resolve_context(config, device=True))


def _log_dir(output_dir: Path) -> Path:
    log_dir = Path(output_dir) / "logs"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BgsError(f"cannot create the output folder {output_dir}: {err.strerror}") from err
    return log_dir


def _writable_caches() -> None:
    """Point matplotlib's and the validator's (Deno's) caches at folders that can be written.

    Their defaults lie under HOME, which in a container is often the read-only image
    (``--no-home``, a read-only bind): then they go to ``$TMPDIR/bgs_app-<uid>/``.
    """
    home = Path(os.path.expanduser("~"))
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache")
    for variable, default in (("MPLCONFIGDIR", home / ".config" / "matplotlib"),
                              ("DENO_DIR", xdg / "deno")):
        folder = Path(os.environ.get(variable) or default)
        if not _writable(folder):
            fallback = Path(tempfile.gettempdir()) / f"bgs_app-{os.getuid()}" / variable.lower()
            if _writable(fallback):
                os.environ[variable] = str(fallback)


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".bgs_app-probe-"):
            return True
    except OSError:
        return False


def _check_default_work(config) -> None:
    """The default work folder (next to the output) must be writable: say how to choose one.

    In a container the output is typically bound at ``/out``, which puts the default at
    ``/work`` inside the read-only image.
    """
    from bgs_app.bids.inputs import ensure_writable
    from bgs_app.config import work_root

    ensure_writable(work_root(config), "default work folder (next to the output folder)",
                    hint="pass a writable folder with -w (in a container: bind a writable "
                         "host folder, e.g. -B /scratch/work:/work, and pass -w /work)")


def _write_crash(log_dir: Path | None, err: BaseException) -> Path:
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    LOGGER.debug(text)  # the run's log file; the console gets one line
    folder = log_dir if log_dir is not None else Path(tempfile.gettempdir())
    try:
        with tempfile.NamedTemporaryFile("w", dir=folder, prefix="crash-", suffix=".txt",
                                         delete=False) as fh:
            fh.write(text)
            return Path(fh.name)
    except OSError:
        sys.stderr.write(text)
        return Path("<stderr>")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
