"""Progress lines of long loops: k/N, rate and time left, as plain log lines."""

from __future__ import annotations

import logging

from bgs_app.utils.progress import Progress, duration, tracked


def _records(monkeypatch) -> list[str]:
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("bgs_app")
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.INFO)
    return lines


def test_lines_count_and_estimate(monkeypatch):
    lines = _records(monkeypatch)
    try:
        bar = Progress("scoring", 4, "image", interval=0)
        for _ in range(4):
            bar.update()
    finally:
        logging.getLogger("bgs_app").handlers.pop()
    assert lines[0].startswith("scoring: 1/4 image(s), ") and "left" in lines[0]
    assert lines[-1].startswith("scoring: 4/4 image(s)") and "done in" in lines[-1]
    assert not any("\r" in line for line in lines)


def test_short_loops_stay_quiet_and_tracked_counts_finished_items(monkeypatch):
    monkeypatch.setenv("BGS_APP_PROGRESS_SECONDS", "3600")
    lines = _records(monkeypatch)
    try:
        assert list(tracked(range(5), "hashing", 5, "image")) == [0, 1, 2, 3, 4]
    finally:
        logging.getLogger("bgs_app").handlers.pop()
    assert lines == []  # an hour between lines: nothing for a loop of microseconds
    monkeypatch.setenv("BGS_APP_PROGRESS_SECONDS", "0")
    lines = _records(monkeypatch)
    try:
        items = tracked(range(3), "hashing", 3, "image")
        next(items)
        assert lines == []  # the first item is not finished until the next is asked for
        list(items)
    finally:
        logging.getLogger("bgs_app").handlers.pop()
    assert [line.split(",")[0] for line in lines] == [
        "hashing: 1/3 image(s)", "hashing: 2/3 image(s)", "hashing: 3/3 image(s)"]


def test_durations_read_well():
    assert duration(42) == "42 s" and duration(210) == "3.5 min" and duration(7560) == "2.1 h"
