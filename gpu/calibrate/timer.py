"""Timing of one piece of work on the device, as calibration and the diagnostics take it.

Its own module because the diagnostics (gpu.diag*) and benchmarks time forwards the way
calibration does without measuring anything else of it."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


class Timer:
    """Wall time of one piece of work, with the device synchronized on both sides.

    A timed callable may have a `prepare` attribute: it runs untimed before each timed call
    (warm-ups too). A decode step uses it for what the serving loop does once per run of
    steps, not per step: building the batch's inputs and SGMV table (`DecodeRunner.prepare`)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def once(self, fn: Callable[[], object]) -> float:
        prepare = getattr(fn, "prepare", None)
        if prepare is not None:
            prepare()
        self.sync()
        t0 = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - t0

    def _alternate(
        self,
        fa: Callable[[], object],
        fb: Callable[[], object],
        reps: int,
        warmup: int,
        between: Callable[[], object] | None,
    ) -> tuple[list[float], list[float]]:
        for _ in range(warmup):
            self.once(fa)
            self.once(fb)
        a, b = [], []
        for _ in range(reps):
            if between is not None:
                between()
            a.append(self.once(fa))
            if between is not None:
                between()
            b.append(self.once(fb))
        return a, b

    def paired_extra(
        self,
        fa: Callable[[], object],
        fb: Callable[[], object],
        reps: int,
        warmup: int = 1,
        between: Callable[[], object] | None = None,
    ) -> float:
        """Median of the per-pair differences b - a, `fa` and `fb` timed alternately (a, b, a,
        b, ...): slow drift (clocks, temperature) hits both alike, so their difference is
        steadier than two runs apart; `between` runs untimed before each timed call (see
        `median`). What `fb` adds to `fa`. The difference of two medians can mix a fast `a`
        with a slow `b` from other pairs; round 6's 1-adapter LoRA prefill extra read 2.5 ms that way where the
        validation runs showed ~6.5 ms."""
        a, b = self._alternate(fa, fb, reps, warmup, between)
        return statistics.median(y - x for x, y in zip(a, b, strict=True))

    def median(
        self,
        fn: Callable[[], object],
        reps: int,
        warmup: int = 1,
        between: Callable[[], object] | None = None,
    ) -> float:
        """Median wall time of `fn`. `between` runs untimed before each rep: a server runs a
        prefill between decode steps, not after the same prefill, and a launch-bound forward
        is measurably slower after other work than back to back (cold host caches)."""
        for _ in range(warmup):
            self.once(fn)
        out = []
        for _ in range(reps):
            if between is not None:
                between()
            out.append(self.once(fn))
        return statistics.median(out)

    def host(self, fn: Callable[[], object], reps: int, warmup: int = 1) -> float:
        """Median host time `fn` takes to return, the device idle when it starts and not
        waited for after: what issuing asynchronous work costs the thread that issues it."""
        for _ in range(warmup):
            fn()
        out = []
        for _ in range(reps):
            self.sync()
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        self.sync()
        return statistics.median(out)

    def events(self, fn: Callable[[], object], reps: int, warmup: int = 1) -> float:
        """GPU time of `fn` by CUDA events (falls back to `median` on CPU)."""
        if not self.cuda:
            return self.median(fn, reps, warmup)
        for _ in range(warmup):
            fn()
        out = []
        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            out.append(a.elapsed_time(b) / 1e3)
        return statistics.median(out)
