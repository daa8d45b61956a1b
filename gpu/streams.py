"""Streams and time markers, real on CUDA and synchronous stand-ins on CPU.

A Marker is a point in a stream's work: on CUDA a timing event whose wall time is derived
from a reference event recorded at start (one `elapsed_time` per marker, no extra sync);
on CPU the work is already done when the marker is taken, so it is just the clock.
"""

from __future__ import annotations

import contextlib
import time

import torch


class Marker:
    def __init__(self, clock: Clock, event=None, t: float | None = None):
        self._clock, self._event, self._t = clock, event, t

    def done(self) -> bool:
        return self._event is None or self._event.query()

    def wait(self) -> None:
        if self._event is not None:
            self._event.synchronize()

    def time(self) -> float:
        """Seconds since the clock's start when the stream reached this marker (waits)."""
        if self._t is None:
            self.wait()
            self._t = self._clock.event_time(self._event)
        return self._t


class Clock:
    """Wall clock from the run's start, and the streams work is issued on."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        if self.cuda:
            self.compute = torch.cuda.current_stream(device)
            self.load = torch.cuda.Stream(device)
        else:
            self.compute = self.load = None
        self.reset()

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self._ref = torch.cuda.Event(enable_timing=True)
            self._ref.record(self.compute)
            self._ref.synchronize()
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def event_time(self, ev) -> float:
        return self._ref.elapsed_time(ev) / 1e3

    def stream(self, which: str):
        if not self.cuda:
            return contextlib.nullcontext()
        return torch.cuda.stream(self.compute if which == "compute" else self.load)

    def mark(self, which: str) -> Marker:
        if not self.cuda:
            return Marker(self, t=self.now())
        ev = torch.cuda.Event(enable_timing=True)
        ev.record(self.compute if which == "compute" else self.load)
        return Marker(self, event=ev)

    def compute_waits_for(self, m: Marker) -> None:
        """Order later compute-stream work after a load-stream marker."""
        if self.cuda and m._event is not None:
            self.compute.wait_event(m._event)

    def load_waits_for(self, m: Marker) -> None:
        """Order later load-stream work after a compute-stream marker."""
        if self.cuda and m._event is not None:
            self.load.wait_event(m._event)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
