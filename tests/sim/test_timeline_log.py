"""TimelineLog: rows stored by column read back as the tuples and frame a list would give."""

from __future__ import annotations

import pandas as pd

from sim.runner import TIMELINE_COLUMNS
from sim.timeline_log import TimelineLog

ROWS = [
    ("pcie", 0.0, 0.5, "blocking", "a1"),
    ("compute", 0.5, 1.25, "prefill", "prefill x1"),
    ("compute", 1.25, 2.0, "decode", "decode x3"),
    ("pcie", 1.0, 1.5, "overlap", "a1"),
    ("host", 1.0, 1.1, "pin", "a2"),
]


def test_rows_read_back_in_order():
    log = TimelineLog()
    for r in ROWS:
        log.append(r)
    assert len(log) == len(ROWS) and list(log) == ROWS
    assert log[1] == ROWS[1] and log[-1] == ROWS[-1]
    assert log == ROWS and log != ROWS[:-1]


def test_frame_equals_the_frame_of_the_tuples():
    log = TimelineLog()
    for r in ROWS:
        log.append(r)
    pd.testing.assert_frame_equal(log.frame(), pd.DataFrame(ROWS, columns=TIMELINE_COLUMNS))


def test_empty_log_gives_an_empty_frame_with_the_columns():
    f = TimelineLog().frame()
    assert list(f.columns) == TIMELINE_COLUMNS and len(f) == 0
