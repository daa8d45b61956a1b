"""Table interpolation for measured profiles: exact at table points, linear beyond them.

Inside a table we interpolate (linearly, or log-log for copy curves that span decades);
outside it we extend the nearest segment linearly, because a measured table is only
trusted where it was measured and a straight line is the least surprising continuation.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np


def interp_linear(x: np.ndarray | float, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
    """Piecewise-linear through (xs, ys), extended linearly past both ends; clipped at 0
    (a time can never be negative)."""
    xa = np.asarray(xs, dtype=float)
    ya = np.asarray(ys, dtype=float)
    x = np.asarray(x, dtype=float)
    # segment index per query: 0..len-2, using the end segments outside the table
    i = np.clip(np.searchsorted(xa, x, side="right") - 1, 0, len(xa) - 2)
    x0, x1, y0, y1 = xa[i], xa[i + 1], ya[i], ya[i + 1]
    return np.maximum(y0 + (x - x0) * (y1 - y0) / (x1 - x0), 0.0)


def interp_copy_time(size: np.ndarray | float, sizes: Sequence[float], seconds: Sequence[float]) -> np.ndarray:
    """Time of one copy of `size` bytes from a measured size->seconds curve.

    Inside the table: log-log interpolation (copy curves run from overhead-bound to
    bandwidth-bound over decades of size; linear-in-seconds would overestimate mid sizes).
    Beyond the largest size: marginal bandwidth of the last segment. Below the smallest:
    the smallest copy's time (copies that small are all overhead).
    """
    xa = np.asarray(sizes, dtype=float)
    ya = np.maximum(np.asarray(seconds, dtype=float), 1e-15)
    s = np.asarray(size, dtype=float)
    inside = np.exp(np.interp(np.log(np.clip(s, xa[0], xa[-1])), np.log(xa), np.log(ya)))
    slope = (ya[-1] - ya[-2]) / (xa[-1] - xa[-2])
    if slope <= 0:  # noisy table: fall back to the last point's average bandwidth
        slope = ya[-1] / xa[-1]
    above = ya[-1] + (s - xa[-1]) * slope
    return np.where(s > xa[-1], above, inside)


def interp_bilinear(
    x: np.ndarray | float,
    y: np.ndarray | float,
    xs: Sequence[float],
    ys: Sequence[float],
    grid: Sequence[Sequence[float]],
) -> np.ndarray:
    """grid[i][j] at (xs[i], ys[j]); bilinear inside, linear extension outside, clipped at 0."""
    xa = np.asarray(xs, dtype=float)
    ya = np.asarray(ys, dtype=float)
    g = np.asarray(grid, dtype=float)
    x, y = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    i = np.clip(np.searchsorted(xa, x, side="right") - 1, 0, len(xa) - 2)
    j = np.clip(np.searchsorted(ya, y, side="right") - 1, 0, len(ya) - 2)
    tx = (x - xa[i]) / (xa[i + 1] - xa[i])
    ty = (y - ya[j]) / (ya[j + 1] - ya[j])
    v = (
        g[i, j] * (1 - tx) * (1 - ty)
        + g[i + 1, j] * tx * (1 - ty)
        + g[i, j + 1] * (1 - tx) * ty
        + g[i + 1, j + 1] * tx * ty
    )
    return np.maximum(v, 0.0)


def bilinear_at(x: float, y: float, xs: Sequence[float], ys: Sequence[float], grid: Sequence[Sequence[float]]) -> float:
    """`interp_bilinear` at one point, in plain Python: ~20x faster than numpy on scalars,
    which is what the engine's estimator asks for at every scheduling point."""
    i = min(max(bisect.bisect_right(xs, x) - 1, 0), len(xs) - 2)
    j = min(max(bisect.bisect_right(ys, y) - 1, 0), len(ys) - 2)
    tx = (x - xs[i]) / (xs[i + 1] - xs[i])
    ty = (y - ys[j]) / (ys[j + 1] - ys[j])
    v = (grid[i][j] * (1 - tx) * (1 - ty) + grid[i + 1][j] * tx * (1 - ty)
         + grid[i][j + 1] * (1 - tx) * ty + grid[i + 1][j + 1] * tx * ty)
    return max(v, 0.0)
