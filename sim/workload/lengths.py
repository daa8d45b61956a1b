"""Prompt and output lengths, as SGLang's bench `random` dataset draws them."""

from __future__ import annotations

import math

import numpy as np

from sim.config import LengthCfg


def length_bounds(cfg: LengthCfg) -> tuple[int, int]:
    """Inclusive [low, high] a length can take."""
    if cfg.dist == "fixed":
        return cfg.len, cfg.len
    return max(math.floor(cfg.len * cfg.range_ratio), 1), cfg.len


def sample_lengths(cfg: LengthCfg, n: int, rng: np.random.Generator) -> np.ndarray:
    """int64 lengths: `random` is uniform over [max(floor(L*r), 1), L], `fixed` is L.

    `fixed` draws nothing, so switching one length between fixed and random never shifts
    the other streams (each stream has its own generator anyway, see trace.py).
    """
    lo, hi = length_bounds(cfg)
    if cfg.dist == "fixed":
        return np.full(n, cfg.len, dtype=np.int64)
    return rng.integers(lo, hi + 1, size=n, dtype=np.int64)
