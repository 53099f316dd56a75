"""Logging: one ``bgs_app`` logger, a console handler set by ``-v``, a file per run."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LOGGER_NAME = "bgs_app"
FORMAT = "%(asctime)s | %(levelname)-7s | %(message)s"


def setup_logging(verbose: int = 0, log_file: Path | None = None) -> logging.Logger:
    """Configure the ``bgs_app`` logger.

    Parameters
    ----------
    verbose : int
        0: progress and warnings; 1: debug messages; 2: also Nipype's debug messages.
    log_file : pathlib.Path, optional
        A file that receives every message at debug level.

    Returns
    -------
    logging.Logger
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if verbose < 1 else logging.DEBUG)
    console.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
    logger.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(handler)
    logger.propagate = False
    return logger
