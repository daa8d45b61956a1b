"""Interpolation helpers: exact at points, linear between and beyond, never negative."""

from __future__ import annotations

import numpy as np
import pytest

from sim.hw.interp import interp_bilinear, interp_copy_time, interp_linear


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
