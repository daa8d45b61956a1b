"""Decode-step end times of a run, one float64 each.

A day-long trace has tens of millions of decode steps; kept as a list of Python floats they
cost 32 bytes a step (the float object and its pointer), in a flat `array('d')` 8. Request
records index into it (`RequestState.first_decode_step`), which is how inter-token gaps are
recovered without storing a timestamp per token.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable


class StepLog:
    """Append-only end times of the run's decode steps, in order."""

    __slots__ = ("_ends",)

    def __init__(self, ends: Iterable[float] = ()):
        self._ends = array("d", ends)

    def extend(self, ends: Iterable[float]) -> None:
        self._ends.extend(ends)

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, i):
        return self._ends[i]

    def __iter__(self):
        return iter(self._ends)

    def buffer(self) -> array:
        """The underlying array, for a zero-copy `numpy.frombuffer(..., dtype=float)`."""
        return self._ends
