"""Run-to-run variation of a real serving host, for simulator ensembles.

Why: a GPU run is one draw from a noisy machine. Over the seven saturated H200 passes of
validation rounds 10-12, each run's forwards took 0.98-1.03x what the profile prices (sd 1.0 %
between runs, the same at light load), and the host issued a load's copies in times spread
with a log-sd of 0.17 (853 loads). Most metrics do not care, but a median that sits on a cliff
does: a whole-run speed factor of 0.995 vs 1.000 moves the simulator's bursty `overlap` P50 from
736 to 404 ms (round 12), and the GPU's passes land on both sides. One deterministic simulator
run is then a coin flip against the mean of GPU passes; the mean of an ensemble drawn with the
measured spread is the comparable figure (`lorasim validate --sim-repeats N`).

`seed=None` (the default everywhere) turns the noise off: a plain simulation stays
deterministic and byte-identical. The draws are fixed functions of (seed, load id), so an
ensemble member is reproducible. Only the SimPy driver applies them, never the estimator a
policy plans with (noise is not predictable).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RunNoise:
    speed_sd: float = 0.0  # sd of the log of a run's compute speed factor (all its forwards)
    issue_sd: float = 0.0  # sd of the log of a load's copy-issue time factor
    seed: int | None = None  # None: off

    @property
    def active(self) -> bool:
        return self.seed is not None and (self.speed_sd > 0 or self.issue_sd > 0)

    def speed(self) -> float:
        """The run's factor on every forward's time (mean 1)."""
        if not self.active or self.speed_sd <= 0:
            return 1.0
        return _lognormal(np.random.default_rng((self.seed, 0)), self.speed_sd)

    def issue(self, lid: int) -> float:
        """Load `lid`'s factor on its copy-issue time (mean 1)."""
        if not self.active or self.issue_sd <= 0:
            return 1.0
        return _lognormal(np.random.default_rng((self.seed, 1, lid)), self.issue_sd)


def _lognormal(rng: np.random.Generator, sd: float) -> float:
    """A factor with mean 1 whose log has standard deviation `sd`."""
    return math.exp(rng.normal(-sd * sd / 2, sd))
