"""Errors a user can cause, each with the exit code the BIDS-Apps specification recommends.

The command line catches :class:`BgsError` and prints its message as one line on
stderr; every other exception is a bug and ends with a traceback written to a log
file.
"""

from __future__ import annotations

EXIT_SUCCESS = 0
EXIT_FAILURE = 1
EXIT_BIDS_INVALID = 16
EXIT_UNKNOWN_LEVEL = 17
EXIT_NO_DATA = 18
EXIT_USAGE = 64


class BgsError(Exception):
    """A failure caused by the user's input, reported without a traceback."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(BgsError):
    """Wrong command-line or configuration-file usage."""

    exit_code = EXIT_USAGE


class BidsInvalidError(BgsError):
    """The input dataset is not valid BIDS."""

    exit_code = EXIT_BIDS_INVALID


class UnknownLevelError(BgsError):
    """The analysis level is neither ``participant`` nor ``group``."""

    exit_code = EXIT_UNKNOWN_LEVEL


class NoDataError(BgsError):
    """Participant, session or BIDS filters matched nothing."""

    exit_code = EXIT_NO_DATA
