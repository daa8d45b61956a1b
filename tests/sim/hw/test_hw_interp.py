"""Interpolation helpers: exact at points, linear between and beyond, never negative."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.hw.interp import bilinear_at, interp_bilinear, interp_copy_time, interp_linear


def test_linear_points_between_beyond_and_clipped():
    xs, ys = (1.0, 2.0, 4.0), (10.0, 20.0, 24.0)
    got = interp_linear(np.array([1, 2, 4, 3, 6, 0, -100]), xs, ys)
    np.testing.assert_allclose(got, [10, 20, 24, 22, 28, 0, 0])


def test_bilinear_is_exact_for_bilinear_functions_everywhere():
    f = lambda x, y: 1 + 2 * x + 3 * y + 0.5 * x * y  # noqa: E731
    xs, ys = (1.0, 3.0, 10.0), (0.0, 5.0)
    grid = [[f(x, y) for y in ys] for x in xs]
    qx = np.array([1, 2, 3, 7, 12, 20.0])
    qy = np.array([0, 2.5, 5, 1, 7, 9.0])
    np.testing.assert_allclose(interp_bilinear(qx, qy, xs, ys, grid), f(qx, qy))


def test_copy_time_is_monotone_on_a_realistic_curve():
    sizes = (4096, 2**20, 2**24, 2**30)
    secs = (4e-6, 2.2e-5, 3.1e-4, 1.95e-2)
    q = np.geomspace(1, 2**32, 200)
    t = interp_copy_time(q, sizes, secs)
    assert np.all(np.diff(t) >= 0)
    assert interp_copy_time(2**24, sizes, secs) == pytest.approx(3.1e-4)


@settings(max_examples=300, deadline=None)
@given(
    x=st.floats(-50, 200, allow_nan=False),
    y=st.floats(-500, 5000, allow_nan=False),
    seed=st.integers(0, 2**16),
)
def test_scalar_bilinear_is_the_numpy_one(x, y, seed):
    """`bilinear_at` (the estimator's fast path) must price exactly as `interp_bilinear`,
    inside the table and on its linear extensions, clipped at 0 alike."""
    g = np.random.default_rng(seed).normal(0.01, 0.02, (5, 3)).tolist()  # some cells negative
    xs, ys = [1.0, 2.0, 4.0, 8.0, 16.0], [10.0, 100.0, 1000.0]
    assert bilinear_at(x, y, xs, ys, g) == pytest.approx(float(interp_bilinear(x, y, xs, ys, g)), abs=1e-15)

