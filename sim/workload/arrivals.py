"""Arrival processes behind a name registry (Vidur-style small generator classes).

Timing convention (SGLang `bench_serving.get_request`): the first request is sent at t=0,
then the client sleeps one sampled gap before each next request. So n requests use n-1
gaps and `times[0] == 0`. That makes a generated trace start exactly at the beginning of
the run instead of an arbitrary first gap, and matches what the GPU harness will replay.
Pass `first_at_zero=False` to shift every arrival by one more gap (a renewal process that
starts at the first gap instead).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sim.config import ArrivalCfg


class ArrivalProcess(Protocol):
    def gaps(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n inter-arrival gaps in seconds."""
        ...


_REGISTRY: dict[str, Callable[[ArrivalCfg], ArrivalProcess]] = {}


def register(name: str):
    def deco(factory: Callable[[ArrivalCfg], ArrivalProcess]):
        _REGISTRY[name] = factory
        return factory

    return deco


def names() -> list[str]:
    return sorted(_REGISTRY)


@dataclass(frozen=True)
class Poisson:
    """Exponential gaps with mean 1/rate."""

    rate: float

    def gaps(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.exponential(1.0 / self.rate, size=n)


@dataclass(frozen=True)
class Gamma:
    """Gamma gaps with mean 1/rate and coefficient of variation cv (cv > 1: bursty)."""

    rate: float
    cv: float

    def gaps(self, n: int, rng: np.random.Generator) -> np.ndarray:
        shape = 1.0 / self.cv**2
        return rng.gamma(shape, 1.0 / (self.rate * shape), size=n)


@dataclass(frozen=True)
class Burst:
    """Everything at once (rate = inf)."""

    def gaps(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(n)


register("poisson")(lambda c: Poisson(c.rate))
register("gamma")(lambda c: Gamma(c.rate, c.cv))
register("burst")(lambda c: Burst())


def make_process(cfg: ArrivalCfg) -> ArrivalProcess:
    """The process a config names; any rate of inf is a burst, as in bench_serving."""
    if math.isinf(cfg.rate):
        return Burst()
    try:
        return _REGISTRY[cfg.process](cfg)
    except KeyError:
        raise ValueError(
            f"no arrival generator for {cfg.process!r}; expected one of {names()}"
        ) from None


def arrival_times(
    proc: ArrivalProcess, n: int, rng: np.random.Generator, first_at_zero: bool = True
) -> np.ndarray:
    """Non-decreasing float64 arrival times of n requests (see module doc for t[0])."""
    if n <= 0:
        return np.zeros(0)
    g = proc.gaps(n, rng)
    if first_at_zero:
        g = np.concatenate(([0.0], g[:-1]))
    return np.cumsum(g, dtype=np.float64)
