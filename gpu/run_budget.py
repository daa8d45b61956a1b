"""A validation's wall-clock budget. A lent GPU's call is killed at its time limit, and the GPU
run in flight then is lost with the device time it took; so `lorasim validate --stop-after S`
starts a run only if, timed as the slowest run so far, it would end within S seconds, and
`--resume` goes on from there in the next call."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RunBudget:
    seconds: float | None = None  # None: no limit
    clock: Callable[[], float] = time.monotonic
    start: float = field(default=0.0, init=False)
    slowest: float = field(default=0.0, init=False)
    stopped: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.start = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def allows_another(self) -> bool:
        """Whether a run timed as the slowest so far ends inside the budget; once it does not,
        `stopped` stays set so that later passes start nothing either."""
        if self.seconds is None:
            return True
        if self.stopped or self.elapsed() + self.slowest > self.seconds:
            self.stopped = True
        return not self.stopped

    def took(self, seconds: float) -> None:
        self.slowest = max(self.slowest, seconds)
