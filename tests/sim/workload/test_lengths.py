"""Lengths as SGLang's bench `random` dataset draws them."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import LengthCfg
from sim.workload.lengths import length_bounds, sample_lengths


def test_random_lengths_stay_in_bounds_and_hit_both_ends():
    cfg = LengthCfg(dist="random", len=100, range_ratio=0.5)
    x = sample_lengths(cfg, 20_000, np.random.default_rng(0))
    assert x.dtype == np.int64
    assert x.min() == 50 and x.max() == 100
    assert x.mean() == pytest.approx(75, abs=0.5)
    counts = np.bincount(x - 50)
    assert len(counts) == 51 and counts.min() > 0.7 * counts.mean()


@pytest.mark.parametrize(
    ("length", "ratio", "bounds"),
    [
        (100, 0.5, (50, 100)),
        (512, 1.0, (512, 512)),
        (3, 0.1, (1, 3)),
        (10, 0.25, (2, 10)),
        (7, 0.999, (6, 7)),
    ],
)
def test_random_bounds_are_floor_of_len_times_ratio_at_least_one(length, ratio, bounds):
    assert length_bounds(LengthCfg(dist="random", len=length, range_ratio=ratio)) == bounds


def test_fixed_is_always_len_and_draws_nothing():
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    x = sample_lengths(LengthCfg(dist="fixed", len=256), 1000, rng)
    assert set(x.tolist()) == {256}
    assert rng.bit_generator.state == state


def test_random_lengths_are_deterministic_per_seed():
    cfg = LengthCfg(dist="random", len=1024, range_ratio=0.1)
    a = sample_lengths(cfg, 500, np.random.default_rng(5))
    b = sample_lengths(cfg, 500, np.random.default_rng(5))
    c = sample_lengths(cfg, 500, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
