"""Cost of one adapter load (LoadJob) host->device, split into the parts that matter.

pin_s:  host CPU time pinning a temporary copy before the DMA (host_mode "pin_per_load",
        SGLang's blocking path): bytes / pin bandwidth, warm or cold allocator, plus a fixed
        cost per tensor pinned (per-module loads pin every A and B separately).
disk_s: reading the adapter from disk when it is not in the host tier.
dma_s:  the copies themselves: n_copies copies of nbytes / n_copies each. Either analytic,
        n * (overhead + size / peak), or from a measured one-copy-time curve: with the
        measured gap between back-to-back copies, one copy of all the bytes plus a gap per
        further copy (the DMA engine pipelines issued copies; an isolated copy's time is
        mostly its launch-to-completion latency, which back-to-back copies do not pay again).
        Never less than issue_s: the last copy cannot start before it is issued.
issue_s: host CPU time issuing the copies, n_copies x issue_us. The DMA starts with the
        first copy, so it overlaps dma_s; but the thread that issues them (the scheduler's)
        launches nothing else meanwhile.
The driver decides which parts occupy the PCIe channel (dma_s) and which only delay it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from sim.core.effects import HostMode, LoadJob
from sim.hw.interp import interp_copy_time
from sim.hw.presets import GpuSpec
from sim.hw.profile import Table


@dataclass(frozen=True)
class LoadCost:
    pin_s: float
    disk_s: float
    dma_s: float
    issue_s: float = 0.0  # overlaps dma_s (dma_s >= issue_s), so not part of total
    # scheduler time freeing a pin_per_load's temporary pinned copies once the copy is done
    # (paid when the scheduler next collects finished loads), so not part of total either
    release_s: float = 0.0

    @property
    def total(self) -> float:
        return self.pin_s + self.disk_s + self.dma_s


@dataclass(frozen=True)
class PinTail:
    """Slow pins: a `fraction` of pin-per-load pins take `extra_s` longer (measured on the
    H200 harness: host noise, not allocator misses; `lorasim calibrate --pin-tail-from`).
    Which pins are slow is a fixed function of the load id, so a run is reproducible; the
    SimPy driver adds it, never the cost estimate a policy plans with (it is not
    predictable)."""

    fraction: float
    extra_s: float
    seed: int = 0

    def extra(self, lid: int) -> float:
        if self.fraction <= 0 or self.extra_s <= 0:
            return 0.0
        u = np.random.default_rng((self.seed, lid)).random()
        return self.extra_s if u < self.fraction else 0.0


@dataclass(frozen=True)
class CopyModel:
    """PCIe + host-side cost model. Tables, when given, replace the analytic DMA formula."""

    pinned_gbps: float
    pageable_gbps: float
    copy_overhead_us: float
    pin_warm_gbps: float
    pin_cold_gbps: float
    disk_gbps: float
    pin_cache: Literal["warm", "cold"] = "warm"
    pinned_table: Table | None = None  # measured seconds of ONE copy vs bytes
    pageable_table: Table | None = None
    pin_per_tensor_us: float = 0.0
    # extra DMA time per further copy when n copies run back to back (measured: per-module
    # minus flat adapter copy, over copies - 1). None: n isolated copies, n * table(size)
    copy_gap_us: float | None = None
    # host CPU time to issue one copy (LoadCost.issue_s); 0: free
    issue_us: float = 0.0
    # host CPU time to free one temporary pinned tensor of a pin_per_load (LoadCost.release_s)
    unpin_per_tensor_us: float = 0.0

    @staticmethod
    def from_spec(spec: GpuSpec, pin_cache: Literal["warm", "cold"] = "warm") -> CopyModel:
        return CopyModel(
            pinned_gbps=spec.pinned_gbps,
            pageable_gbps=spec.pageable_gbps,
            copy_overhead_us=spec.copy_overhead_us,
            pin_warm_gbps=spec.pin_warm_gbps,
            pin_cold_gbps=spec.pin_cold_gbps,
            disk_gbps=spec.disk_gbps,
            pin_cache=pin_cache,
        )

    @property
    def pin_gbps(self) -> float:
        return self.pin_warm_gbps if self.pin_cache == "warm" else self.pin_cold_gbps

    def dma_time(self, nbytes: int, n_copies: int = 1, source: Literal["pinned", "pageable"] = "pinned") -> float:
        """n_copies equal copies that together move nbytes, back to back on one stream."""
        if nbytes <= 0 or n_copies <= 0:
            return 0.0
        size = nbytes / n_copies
        table = self.pinned_table if source == "pinned" else self.pageable_table
        if table is not None:
            if n_copies == 1 or self.copy_gap_us is None:
                return n_copies * float(interp_copy_time(size, table.x, table.y))
            # never faster than issuing the copies (copy_overhead_us each, tiny copies)
            return max(
                n_copies * self.copy_overhead_us * 1e-6,
                float(interp_copy_time(nbytes, table.x, table.y)) + (n_copies - 1) * self.copy_gap_us * 1e-6,
            )
        peak = self.pinned_gbps if source == "pinned" else self.pageable_gbps
        return n_copies * (self.copy_overhead_us * 1e-6 + size / (peak * 1e9))

    def pin_time(self, nbytes: int, n_tensors: int = 1) -> float:
        return nbytes / (self.pin_gbps * 1e9) + n_tensors * self.pin_per_tensor_us * 1e-6

    def disk_time(self, nbytes: int) -> float:
        return nbytes / (self.disk_gbps * 1e9)

    def read_time(self, nbytes: int, pinned: bool) -> float:
        """A host-tier miss read into host memory, then pinned there once if the host copies
        are kept pinned (the overlap path; `host_mode` "pinned"), as the CUDA driver does."""
        return self.disk_time(nbytes) + (self.pin_time(nbytes) if pinned else 0.0)

    def cost(self, nbytes: int, n_copies: int, host_mode: HostMode, from_disk: bool = False) -> LoadCost:
        pin_s = self.pin_time(nbytes, n_copies) if host_mode == "pin_per_load" else 0.0
        release_s = n_copies * self.unpin_per_tensor_us * 1e-6 if host_mode == "pin_per_load" else 0.0
        disk_s = self.read_time(nbytes, host_mode == "pinned") if from_disk else 0.0
        source = "pageable" if host_mode == "pageable" else "pinned"
        issue_s = n_copies * self.issue_us * 1e-6
        dma_s = max(self.dma_time(nbytes, n_copies, source), issue_s)
        return LoadCost(pin_s, disk_s, dma_s, issue_s, release_s)

    def load_time(self, job: LoadJob) -> LoadCost:
        return self.cost(job.adapter.nbytes, job.n_copies, job.host_mode, job.from_disk)
