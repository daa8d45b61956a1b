"""A run's timeline rows (lane, start, end, kind, label), stored by column.

A day-long trace's SimPy run has millions of forwards, one row each. As tuples of Python
objects a row costs ~200 bytes (the tuple, two floats, a fresh label string); here it costs
two float64 and three small codes into a table of the distinct strings.
"""

from __future__ import annotations

from array import array

import numpy as np
import pandas as pd

COLUMNS = ["lane", "start", "end", "kind", "label"]
Row = tuple[str, float, float, str, str]  # one interval of a lane, as both drivers record it


class _Codes:
    """Distinct strings of one column and, per row, the index of its string."""

    __slots__ = ("index", "values", "codes")

    def __init__(self):
        self.index: dict[str, int] = {}
        self.values: list[str] = []
        self.codes = array("i")

    def add(self, s: str) -> None:
        c = self.index.get(s)
        if c is None:
            c = self.index[s] = len(self.values)
            self.values.append(s)
        self.codes.append(c)

    def column(self) -> np.ndarray:
        """One reference per row to the shared string objects (what a frame built from the
        row tuples holds, without a string per row)."""
        return np.array(self.values + [""], dtype=object)[:-1][np.frombuffer(self.codes, dtype=np.int32)]


class TimelineLog:
    """Append-only rows; `append((lane, start, end, kind, label))` as on a list."""

    def __init__(self):
        self._start, self._end = array("d"), array("d")
        self._lane, self._kind, self._label = _Codes(), _Codes(), _Codes()

    def append(self, row: Row) -> None:
        lane, start, end, kind, label = row
        self._lane.add(lane)
        self._start.append(start)
        self._end.append(end)
        self._kind.add(kind)
        self._label.add(label)

    def __len__(self) -> int:
        return len(self._start)

    def __iter__(self):
        lanes, kinds, labels = self._lane.values, self._kind.values, self._label.values
        for i in range(len(self)):
            yield (lanes[self._lane.codes[i]], self._start[i], self._end[i], kinds[self._kind.codes[i]],
                   labels[self._label.codes[i]])

    def __getitem__(self, i: int) -> Row:
        i = range(len(self))[i]
        return (self._lane.values[self._lane.codes[i]], self._start[i], self._end[i],
                self._kind.values[self._kind.codes[i]], self._label.values[self._label.codes[i]])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (TimelineLog, list, tuple)):
            return len(self) == len(other) and all(a == tuple(b) for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by rows

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "lane": self._lane.column(),
                "start": np.frombuffer(self._start, dtype=float).copy(),
                "end": np.frombuffer(self._end, dtype=float).copy(),
                "kind": self._kind.column(),
                "label": self._label.column(),
            },
            columns=COLUMNS,
        )
