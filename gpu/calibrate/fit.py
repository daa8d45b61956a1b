"""The fitting rules that turn raw medians into profile tables.

Kept apart from the measuring so that a calibration and a refit from its log
(gpu.calibrate.refit) apply the same rules: a fix to a rule reaches an old measurement
without a GPU. Pure Python, no torch."""

from __future__ import annotations

from collections.abc import Callable


def lower_envelope(xs: list[float]) -> list[float]:
    """Lower envelope that never decreases: each value becomes the minimum of itself and
    everything measured at larger sizes. More work never takes less time, and timing noise
    only ever adds time (a clock ramp, a stray launch delay), so where a smaller size reads
    slower than a larger one, the smaller reading is the noisy one. (A running maximum would
    instead spread one slow first measurement over the whole table.)"""
    out = list(xs)
    for i in range(len(out) - 2, -1, -1):
        out[i] = min(out[i], out[i + 1])
    return out


def despike(xs: list[float]) -> list[float]:
    """Raise each reading below half of its neighbours (both, or the one at an end) to the
    smaller of them. For *differences* of paired timings (the LoRA extras) only: one slow
    base reading makes an extra read far too low, and `lower_envelope` would spread it over
    every smaller size (round 5: one 3.95 ms among 19-20 ms readings set the 256-token
    prefill extra to 3.95 ms). Readings that are merely noisy stay as they are."""
    out = list(xs)
    for i, x in enumerate(xs):
        near = [xs[j] for j in (i - 1, i + 1) if 0 <= j < len(xs)]
        if near and x < 0.5 * min(near):
            out[i] = min(near)
    return out


def _down_columns(rows: list[list[float]], fit: Callable[[list[float]], list[float]]) -> list[list[float]]:
    """`fit` applied to each column of a grid (rows copied, not changed in place)."""
    out = [list(r) for r in rows]
    for j in range(len(out[0]) if out else 0):
        for i, v in enumerate(fit([r[j] for r in out])):
            out[i][j] = v
    return out


def monotone_grid(rows: list[list[float]]) -> list[list[float]]:
    """`lower_envelope` along each row, then down each column: the largest grid at or below the
    measurement that never decreases in either axis (decode time vs context and batch)."""
    return _down_columns([lower_envelope(r) for r in rows], lower_envelope)


def isotonic(xs: list[float]) -> list[float]:
    """Least-squares non-decreasing fit (pool adjacent violators): a reading below its
    left neighbour is averaged with it instead of pulling everything left of it down, as the
    lower envelope does. For paired differences (LoRA extras), whose noise is as large as
    the steps between neighbours, the envelope is biased low (round 6: 1 adapter at 256
    tokens read 6.15 ms, 2 adapters 4.92; the envelope charged 4.92 for both, the harness
    measured 6.2)."""
    blocks: list[list[float]] = []  # [sum, count]
    for x in xs:
        blocks.append([x, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, n = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
    return [b[0] / b[1] for b in blocks for _ in range(int(b[1]))]


def isotonic_columns(rows: list[list[float]]) -> list[list[float]]:
    """`isotonic` down each column only: LoRA prefill extras never fall with more tokens, but
    need not rise with more adapters. Round 7 measured, at every token count and both ranks,
    one adapter (one request) costing ~1.5 ms more than two (6.0 vs 4.6 ms at 128 tokens,
    rank 64): the harness's real behaviour (cuBLAS picks its kernels by shape), which a
    fit monotone in adapters averaged away for the light-load case."""
    return _down_columns(rows, isotonic)


def fit_lora_prefill(plane: list[list[float]]) -> list[list[float]]:
    """The LoRA-prefill plane (rows: tokens, columns: adapters) as calibration writes it and
    `refit_from_log` re-derives it: each row despiked, then non-decreasing in tokens."""
    return isotonic_columns([despike(r) for r in plane])


def copy_gap_us(flat_s: float, per_module_s: float, copies: int) -> float:
    """Microseconds each further copy adds when `copies` copies of one adapter run back to
    back, from the same bytes copied flat and per module (sim.hw.pcie.CopyModel). Isolated
    single-copy times overstate it: an isolated copy pays its launch-to-completion latency
    (~15 us on an H200), a pipelined one does not (round 6: 448 copies took 7.46 ms on the
    GPU, 11.07 ms as 448 isolated copies)."""
    return max(0.0, (per_module_s - flat_s) / max(copies - 1, 1) * 1e6)
