"""Arrival processes: distribution shape on large samples, timing convention, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.config import ArrivalCfg
from sim.workload import arrivals
from sim.workload.arrivals import Burst, Gamma, Poisson, arrival_times, make_process

N = 20_000


def cv(x: np.ndarray) -> float:
    return float(x.std() / x.mean())


def test_registry_names_the_generated_processes():
    assert {"poisson", "gamma", "burst"} <= set(arrivals.names())
    assert make_process(ArrivalCfg(process="poisson", rate=3)) == Poisson(3)
    assert make_process(ArrivalCfg(process="gamma", rate=3, cv=2)) == Gamma(3, 2)
    assert make_process(ArrivalCfg(process="burst")) == Burst()


def test_poisson_mean_gap_is_one_over_rate_and_cv_one():
    g = Poisson(4.0).gaps(N, np.random.default_rng(1))
    assert g.mean() == pytest.approx(0.25, rel=0.03)  # standard error 0.7%
    assert cv(g) == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("target_cv", [0.5, 2.0])
def test_gamma_keeps_the_rate_and_has_the_requested_cv(target_cv):
    g = Gamma(4.0, target_cv).gaps(N, np.random.default_rng(2))
    assert g.mean() == pytest.approx(0.25, rel=0.06)
    assert cv(g) == pytest.approx(target_cv, rel=0.08)


def test_gamma_cv_one_is_exponential_like_poisson():
    a = Gamma(2.0, 1.0).gaps(N, np.random.default_rng(3))
    assert cv(a) == pytest.approx(1.0, rel=0.05)
    assert np.median(a) == pytest.approx(math.log(2) / 2.0, rel=0.05)


def test_first_request_at_zero_then_cumulative_gaps_as_in_bench_serving():
    proc = Poisson(10.0)
    gaps = proc.gaps(5, np.random.default_rng(7))
    t = arrival_times(proc, 5, np.random.default_rng(7))
    assert t[0] == 0.0
    np.testing.assert_allclose(np.diff(t), gaps[:4])
    shifted = arrival_times(proc, 5, np.random.default_rng(7), first_at_zero=False)
    np.testing.assert_allclose(shifted, np.cumsum(gaps))


def test_times_are_non_decreasing_and_float():
    t = arrival_times(Gamma(100.0, 3.0), N, np.random.default_rng(0))
    assert t.dtype == np.float64
    assert np.all(np.diff(t) >= 0)
    assert t[-1] / (N - 1) == pytest.approx(0.01, rel=0.1)


@pytest.mark.parametrize(
    "cfg", [ArrivalCfg(process="burst"), ArrivalCfg(process="poisson", rate=math.inf)]
)
def test_burst_and_infinite_rate_put_everything_at_zero(cfg):
    t = arrival_times(make_process(cfg), 50, np.random.default_rng(0))
    assert t.shape == (50,)
    assert not t.any()


def test_same_seed_same_times_other_seed_other_times():
    proc = Gamma(5.0, 2.0)
    a = arrival_times(proc, 100, np.random.default_rng(11))
    b = arrival_times(proc, 100, np.random.default_rng(11))
    c = arrival_times(proc, 100, np.random.default_rng(12))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_zero_requests_give_an_empty_array():
    assert arrival_times(Poisson(1.0), 0, np.random.default_rng(0)).shape == (0,)
