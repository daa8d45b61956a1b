"""Shared fixtures: hand-made traces and a fixed-cost hardware model for exact timings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from sim.config import AdaptersCfg, Scenario, ServingCfg
from sim.core.model import AdapterSpec, Request, Trace
from sim.hw.pcie import LoadCost as Cost  # what a copy model returns


class FixedCopy:
    """Every load costs `load_s` of PCIe time (plus optional pin/disk, and `issue_s` of host
    time issuing its copies, within the PCIe time; a pinned copy takes `release_s` to free)."""

    def __init__(
        self, load_s: float, pin_s: float = 0.0, disk_s: float = 0.0, issue_s: float = 0.0,
        release_s: float = 0.0,
    ):
        self.load_s, self.pin_s, self.disk_s, self.issue_s = load_s, pin_s, disk_s, issue_s
        self.release_s = release_s

    def read_time(self, nbytes: int, pinned: bool) -> float:
        return self.disk_s

    def load_time(self, job) -> Cost:
        return Cost(
            self.pin_s if job.host_mode == "pin_per_load" else 0.0,
            self.disk_s if job.from_disk else 0.0,
            max(self.load_s, self.issue_s),
            self.issue_s,
            self.release_s if job.host_mode == "pin_per_load" else 0.0,
        )


class FixedCompute:
    """A prefill forward costs `prefill_s` (+ `prefill_token_s` a new token: 0, batching is free);
    a decode step `decode_s`."""

    def __init__(self, prefill_s: float, decode_s: float = 0.001, prefill_token_s: float = 0.0):
        self.prefill_s, self.decode_s, self.prefill_token_s = prefill_s, decode_s, prefill_token_s

    def forward_time(self, batch) -> float:
        if batch.kind != "prefill":
            return self.decode_s
        return self.prefill_s + self.prefill_token_s * sum(it.new_tokens for it in batch.items)

    def decode_times(self, batch, steps: int) -> np.ndarray:
        return np.full(steps, self.decode_s)


@dataclass
class FixedHardware:
    copy: FixedCopy
    compute: FixedCompute
    contention: float = 0.0
    host_work: str = "scheduler"
    wake_s: float = 0.0
    launch_fraction: float = 0.0
    forward_overhead_s: float = 0.0
    pin_tail: Any = None  # sim.hw.pcie.PinTail


def fixed_hw(load_s=0.002, prefill_s=0.020, decode_s=0.001, pin_s=0.0, disk_s=0.0,
             prefill_token_s=0.0) -> FixedHardware:
    return FixedHardware(FixedCopy(load_s, pin_s, disk_s), FixedCompute(prefill_s, decode_s, prefill_token_s))


def make_trace(
    reqs: list[tuple[float, str | None, int, int]], n_adapters: int, nbytes: int = 1 << 20, layers: int = 1
) -> Trace:
    """Adapters a0.. of `layers` layers (one target, so 2 tensors a layer)."""
    adapters = tuple(
        AdapterSpec(f"a{i}", rank=8, targets=("q_proj",), nbytes=nbytes, n_tensors=2 * layers)
        for i in range(n_adapters)
    )
    requests = tuple(Request(i, t, a, inp, out) for i, (t, a, inp, out) in enumerate(reqs))
    return Trace(adapters, requests)


def scenario(**serving) -> Scenario:
    return Scenario(adapters=AdaptersCfg(count=1), serving=ServingCfg(**serving))


@pytest.fixture
def hw():
    return fixed_hw()
