"""Progress of long loops as log lines: k/N, rate and time left, about once a minute.

Lines, not a redrawn bar: cluster logs are files, where carriage returns pile up. The
interval is ``BGS_APP_PROGRESS_SECONDS`` (default 60; 0 logs every step).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

LOGGER = logging.getLogger("bgs_app")


def progress_interval() -> float:
    """Seconds between progress lines (``BGS_APP_PROGRESS_SECONDS``, default 60)."""
    try:
        return max(0.0, float(os.environ.get("BGS_APP_PROGRESS_SECONDS", "60")))
    except ValueError:
        return 60.0


def duration(seconds: float) -> str:
    """``seconds`` as ``42 s``, ``3.5 min`` or ``2.1 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Log ``what: k/N unit (rate, ETA)`` at most once an interval, and at the end.

    Parameters
    ----------
    what : str
        What is being done (``"scoring fold-0"``).
    total : int
        Steps in all.
    unit : str
        What a step is (``"volume"``), for the rate.
    interval : float, optional
        Seconds between lines; default :func:`progress_interval`.
    logger : logging.Logger, optional
    final : bool
        Also log when the last step is counted, if the loop lasted an interval or more
        (off where the caller logs its own summary, e.g. the end of an epoch).

    Examples
    --------
    >>> bar = Progress("scoring", 3, "volume", interval=0)
    >>> for _ in range(3):
    ...     bar.update()
    """

    def __init__(self, what: str, total: int, unit: str = "step", *,
                 interval: float | None = None, logger: logging.Logger | None = None,
                 final: bool = True):
        self.what, self.total, self.unit, self.final = what, int(total), unit, final
        self.interval = progress_interval() if interval is None else interval
        self.logger = logger or LOGGER
        self.done = 0
        self.start = self.last = time.monotonic()

    def update(self, steps: int = 1) -> None:
        """Count ``steps`` more; log when the interval has passed or all are done."""
        self.done += steps
        now = time.monotonic()
        # The last step is logged when the loop was long enough to log along the way.
        last = (self.final and self.total and self.done >= self.total
                and now - self.start >= self.interval)
        if last or (now - self.last >= self.interval and self.done < self.total):
            self.last = now
            self.logger.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """The progress line for the steps counted so far."""
        elapsed = max((now or time.monotonic()) - self.start, 1e-9)
        rate = self.done / elapsed
        text = f"{self.what}: {self.done}/{self.total} {self.unit}(s)"
        if rate >= 1:
            text += f", {rate:.1f} {self.unit}(s)/s"
        elif rate > 0:
            text += f", {1 / rate:.1f} s/{self.unit}"
        if self.done >= self.total:
            return text + f", done in {duration(elapsed)}"
        if rate > 0:
            text += f", about {duration((self.total - self.done) / rate)} left"
        return text


def tracked(items: Iterable[T], what: str, total: int, unit: str = "step") -> Iterator[T]:
    """Yield ``items``, counting each one the consumer has finished with.

    A step is counted when the next item is asked for (or the loop ends), so that the
    lines follow the work done on the items, not their loading.
    """
    bar = Progress(what, total, unit)
    for item in items:
        yield item
        bar.update()
