"""Measure this machine and write a HardwareProfile (docs/hardware_profile.md).

What is measured, and how it maps onto the simulator's tables:
- H2D copy time of ONE copy over sizes (pinned and pageable source), median of reps timed
  with CUDA events; a larger copy never takes less time, so noise is removed with a running
  maximum. Per-copy overhead: back-to-back 4 KB copies (as per-module loads issue them).
- Pin cost: `pin_memory()` of a fresh size (cold: new pinned allocations) and of the same
  size again after freeing it (warm: torch's caching host allocator reuses the blocks); then
  a whole adapter pinned module by module, as a per-module pin-per-load does: its time beyond
  bytes / warm bandwidth, per tensor, is `pin_per_tensor_us`.
- Disk: reading an adapter-sized file with the page cache dropped (best effort).
- Contention: a GEMM loop's time with and without a side-stream copy in flight.
- Launch fraction: how long `forward()` takes to return (the CPU launching its kernels)
  over how long the forward takes to finish, for prefills; near 1 when the harness is
  launch-bound, and then a prefill launched ahead holds the scheduler for all of it.
- Forward times of the harness's own model (gpu.model), each forward timed alone with a
  synchronize on both sides, as the CudaDriver runs them: prefill over total tokens (items
  of at most 512 tokens, context 0) and decode step over batch x context (median of `reps`;
  written non-decreasing in tokens, batch and context as their lower envelope: timing noise
  only adds time, see `_monotone`). LoRA extra time at several ranks: over the
  number of distinct adapters for a decode step of 32 requests, and over total tokens x
  distinct adapters for a prefill; each measured as interleaved pairs (step without LoRA,
  same step with LoRA) so drift cancels, extra = median(with) - median(without).
On CPU (no CUDA) the same code runs with host copies standing in for H2D, for tests.
"""

from __future__ import annotations

import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from gpu.adapters import flat_layout, module_views, ordered_targets
from gpu.decode_graphs import DecodeRunner, batch_buckets
from gpu.lora import LoraSlots
from gpu.model import KVPool, LlamaModel, StepInput, default_dtype
from gpu.piecewise import adapter_buckets
from gpu.prefill_graphs import DEFAULT_MAX_TOKENS, PrefillRunner, token_buckets
from sim.core.model import ALL_TARGETS, ModelShape
from sim.hw.profile import (
    ComputeProfile,
    Grid,
    HardwareProfile,
    LoraPrefillTable,
    LoraTable,
    PcieProfile,
    Table,
)

KB, MB, GB = 1 << 10, 1 << 20, 1 << 30

GRIDS = {
    "full": {
        "sizes": [4 * KB * 4**i for i in range(10)],  # 4 KB .. 1 GB
        # prefill sizes are token buckets of gpu.prefill_graphs (every one up to 512: the
        # cost between two buckets is not linear), then eager sizes
        "prefill": [16, 32, 64, 96, 128, 192, 256, 320, 384, 448, 512, 640, 768, 896, 1024,
                    1280, 1536, 1792, 2048, 4096, 8192],
        "batch": [1, 2, 4, 8, 16, 32, 64, 128],
        "context": [128, 512, 1024, 2048],
        "adapters": [0, 1, 2, 4, 8, 16],
        "lora_ranks": [16, 64, 256],
        # decode LoRA extra at every graph batch bucket up to 64 (n > batch: at n): the extra
        # is not linear in batch between buckets (H200, rank 64, 4 adapters: 8.4 ms at 4, 6.5
        # at 8, 7.4 at 16; round 9's 1/4/16/64 grid priced batch 8 +1 ms per step)
        "lora_batch": batch_buckets(64),
        "prefill_lora_ranks": [64, 256],
        # every bucket a single light-load request pads to, then larger (4096: the eager path)
        "prefill_lora_tokens": [128, 256, 384, 512, 1024, 2048, 4096],
        "prefill_lora_adapters": [1, 2, 4, 8, 16],
        "pin_bytes": 256 * MB,
        "reps": 5,  # copies
        "compute_reps": 9,
        "lora_reps": 7,
        "lora_passes": 3,  # the decode LoRA plane, measured 3 times apart: median per cell
        "prefill_lora_reps": 11,
    },
    "quick": {
        "sizes": [4 * KB, 64 * KB, 1 * MB, 4 * MB],
        "prefill": [4, 8, 16],
        "batch": [1, 2, 4],
        "context": [4, 8, 16],
        "adapters": [0, 1, 2],
        "lora_ranks": [4, 8],
        "lora_batch": [1, 2],
        "prefill_lora_ranks": [4, 8],
        "prefill_lora_tokens": [8, 16],
        "prefill_lora_adapters": [1, 2],
        "pin_bytes": 4 * MB,
        "reps": 3,
        "compute_reps": 3,
        "lora_reps": 3,
        "prefill_lora_reps": 3,
    },
}


class Timer:
    """Wall time of one piece of work, with the device synchronized on both sides."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def once(self, fn: Callable[[], object]) -> float:
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
            fa()
            fb()
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
            fn()
        out = []
        for _ in range(reps):
            if between is not None:
                between()
            self.sync()
            t0 = time.perf_counter()
            fn()
            self.sync()
            out.append(time.perf_counter() - t0)
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


def _monotone(xs: list[float]) -> list[float]:
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
    base reading makes an extra read far too low, and the lower envelope of `_monotone`
    would spread it over every smaller size (round 5: one 3.95 ms among 19-20 ms readings set
    the 256-token prefill extra to 3.95 ms). Readings that are merely noisy stay as they are."""
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
    """`_monotone` along each row, then down each column: the largest grid at or below the
    measurement that never decreases in either axis (decode time vs context and batch)."""
    return _down_columns([_monotone(r) for r in rows], _monotone)


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


def _host_buffer(nbytes: int, pinned: bool, cuda: bool) -> torch.Tensor:
    t = torch.empty(nbytes, dtype=torch.uint8)
    t.fill_(1)  # touch the pages: first-touch faults are not copy cost
    return t.pin_memory() if pinned and cuda else t


# ---- PCIe ------------------------------------------------------------------------------------


def measure_copies(device: torch.device, sizes: list[int], pinned: bool, reps: int) -> list[float]:
    timer = Timer(device)
    src = _host_buffer(max(sizes), pinned, timer.cuda)
    dst = torch.empty(max(sizes), dtype=torch.uint8, device=device)
    out = []
    for n in sizes:
        r = max(2, min(reps * 4, (4 * GB) // (n * 8) + 2)) if n < 64 * MB else reps
        out.append(timer.events(lambda n=n: dst[:n].copy_(src[:n], non_blocking=True), r))
    return _monotone(out)


def measure_copy_overhead(device: torch.device, n: int = 200) -> float:
    """Microseconds per back-to-back 4 KB copy."""
    timer = Timer(device)
    src = _host_buffer(4 * KB * n, True, timer.cuda)
    dst = torch.empty(4 * KB * n, dtype=torch.uint8, device=device)

    def many() -> None:
        for i in range(n):
            dst[i * 4 * KB : (i + 1) * 4 * KB].copy_(
                src[i * 4 * KB : (i + 1) * 4 * KB], non_blocking=True
            )

    return timer.events(many, 3) / n * 1e6


def measure_pin(device: torch.device, nbytes: int) -> tuple[float, float]:
    """(warm, cold) pinning bandwidth in GB/s. Cold uses a size no earlier step pinned."""
    if device.type != "cuda":
        src = _host_buffer(nbytes, False, False)
        t0 = time.perf_counter()
        src.clone()
        gbps = nbytes / max(time.perf_counter() - t0, 1e-9) / 1e9
        return gbps, gbps
    odd = nbytes + 3 * MB + 4096  # a size the caching host allocator has not seen
    src = _host_buffer(odd, False, False)
    t0 = time.perf_counter()
    p = src.pin_memory()
    cold = odd / (time.perf_counter() - t0) / 1e9
    del p
    warm_t = []
    for _ in range(3):
        t0 = time.perf_counter()
        p = src.pin_memory()
        warm_t.append(time.perf_counter() - t0)
        del p
    return odd / statistics.median(warm_t) / 1e9, cold


def measure_pin_per_tensor(
    shape: ModelShape, device: torch.device, rank: int, warm_gbps: float, reps: int = 5
) -> float:
    """Microseconds per tensor of pinning an adapter's A and B tensors one by one (warm
    allocator), beyond what its bytes cost at `warm_gbps`. 0 on CPU (nothing to pin)."""
    if device.type != "cuda":
        return 0.0
    dtype = default_dtype(device)
    segs, numel = flat_layout(shape, rank, ordered_targets(ALL_TARGETS))
    tensors = [t for _, a, bt in module_views(torch.ones(numel, dtype=dtype), segs) for t in (a, bt)]
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    times = []
    for _ in range(reps + 1):  # the first pass fills the caching host allocator
        t0 = time.perf_counter()
        pinned = [t.pin_memory() for t in tensors]
        times.append(time.perf_counter() - t0)
        del pinned
    extra = statistics.median(times[1:]) - nbytes / (warm_gbps * 1e9)
    return max(0.0, extra / len(tensors) * 1e6)


class PinCost(NamedTuple):
    """A host's cost of pinning (`pcie.pin_warm_gbps`, `pin_cold_gbps`, `pin_per_tensor_us`)."""

    warm_gbps: float
    cold_gbps: float
    per_tensor_us: float


def measure_pin_cost(shape: ModelShape, device: torch.device, rank: int, nbytes: int) -> PinCost:
    """Pinning bandwidth (warm, cold) over `nbytes` and the per-tensor cost of pinning one
    all-module adapter of `rank` module by module. Calibrate measures it with the rest; alone
    (`calibrate --measure-only pins`) it prices the pins of the host a validation runs on,
    which differ by host far more than anything else in the profile (lent H200s: 15-51 ms
    for one rank-64 Llama-3.1-8B adapter)."""
    warm, cold = measure_pin(device, nbytes)
    return PinCost(warm, cold, measure_pin_per_tensor(shape, device, rank, warm))


def measure_unpin_per_tensor(shape: ModelShape, device: torch.device, rank: int, reps: int = 5) -> float:
    """Microseconds per tensor of freeing a per-module pin_per_load's temporary pinned copies
    after their copies ran (`pcie.unpin_per_tensor_us`). Why it costs: torch's caching host
    allocator records a CUDA event on every stream a freed block was copied on, so that the
    block is not reused before the copy has read it; the CUDA driver frees them when it
    collects the finished load, on the scheduler's thread. 0 on CPU (nothing pinned)."""
    if device.type != "cuda":
        return 0.0
    dtype = default_dtype(device)
    segs, numel = flat_layout(shape, rank, ordered_targets(ALL_TARGETS))
    src = [t for _, a, bt in module_views(torch.ones(numel, dtype=dtype), segs) for t in (a, bt)]
    dst = [t for _, a, bt in module_views(torch.empty(numel, dtype=dtype, device=device), segs) for t in (a, bt)]
    stream = torch.cuda.Stream(device)
    times = []
    for _ in range(reps + 1):  # the first pass fills the caching host allocator
        pinned = [t.pin_memory() for t in src]
        with torch.cuda.stream(stream):
            for d, t in zip(dst, pinned, strict=True):
                d.copy_(t, non_blocking=True)
        stream.synchronize()
        t0 = time.perf_counter()
        del pinned
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]) / len(src) * 1e6


def measure_disk(nbytes: int, folder: str | None = None) -> float:
    """GB/s reading a file of `nbytes` (page cache dropped where the OS allows)."""
    with tempfile.TemporaryDirectory(dir=folder) as d:
        path = Path(d) / "blob.bin"
        path.write_bytes(os.urandom(min(nbytes, 16 * MB)) * max(1, nbytes // (16 * MB)))
        size = path.stat().st_size
        with open(path, "rb") as f:
            os.fsync(f.fileno())  # dirty pages cannot be dropped
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        buf = bytearray(size)
        t0 = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            f.readinto(buf)
        return size / max(time.perf_counter() - t0, 1e-9) / 1e9


def measure_contention(device: torch.device, quick: bool) -> float:
    """Fractional GEMM slowdown while a side-stream H2D copy runs (0 on CPU: no streams)."""
    if device.type != "cuda":
        return 0.0
    timer = Timer(device)
    m, k, n = (512, 1024, 1024) if quick else (2048, 4096, 14336)
    a = torch.randn(m, k, device=device, dtype=torch.bfloat16)
    b = torch.randn(k, n, device=device, dtype=torch.bfloat16)
    iters = 5 if quick else 20

    def gemms() -> None:
        for _ in range(iters):
            a @ b

    nbytes = (64 if quick else 1024) * MB  # the copy outlasts the GEMM loop
    src = _host_buffer(nbytes, True, True)
    dst = torch.empty(nbytes, dtype=torch.uint8, device=device)
    side = torch.cuda.Stream(device)

    def gemm_time(with_copy: bool) -> float:
        """GEMM loop time on the compute stream alone (events), copy or not beside it."""
        out = []
        for _ in range(4):
            timer.sync()
            if with_copy:
                with torch.cuda.stream(side):
                    dst.copy_(src, non_blocking=True)
            a0, a1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a0.record()
            gemms()
            a1.record()
            timer.sync()
            out.append(a0.elapsed_time(a1))
        return statistics.median(out[1:])

    alone, both = gemm_time(False), gemm_time(True)
    return float(min(1.0, max(0.0, both / alone - 1.0)))


def measure_adapter_copy(
    shape: ModelShape, device: torch.device, rank: int, reps: int = 5
) -> dict[str, float]:
    """One all-module adapter of `rank` from pinned host memory into a GPU slot, as the
    CudaDriver copies it: flat (one copy into the slot) and per module (A and B^T of every
    layer: 2 x 7 x layers copies). Seconds of each (CUDA events, median), the bytes, and the
    host time issuing the per-module copies takes (`issue_s`: the scheduler's thread issues
    them one by one, launching nothing else meanwhile)."""
    timer = Timer(device)
    dtype = default_dtype(device)
    slots = LoraSlots(shape, 1, rank, ALL_TARGETS, device, dtype)
    host = torch.empty(slots.slot_numel, dtype=dtype)
    host.zero_()
    if timer.cuda:
        host = host.pin_memory()
    segs = list(slots.layout.values())
    mods = [
        (s, host[s.a_off : s.b_off].view(s.rank, s.d_in),
         host[s.b_off : s.b_off + s.rank * s.d_out].view(s.rank, s.d_out))
        for s in segs
    ]

    def flat() -> None:
        slots.pool[0].copy_(host, non_blocking=True)

    def per_module() -> None:  # the driver's own loop (its issue time is what is priced)
        slots.copy_modules(0, mods)

    return {
        "bytes": float(slots.slot_bytes),
        "copies": float(2 * len(segs)),
        "flat_s": timer.events(flat, reps),
        "per_module_s": timer.events(per_module, reps),
        "issue_s": timer.host(per_module, reps),
    }


def report_adapter_copy(
    shape: ModelShape, device: torch.device, rank: int, reps: int, peak_bps: float,
    progress: Callable[[str], None] = print,
) -> dict[str, float]:
    """`measure_adapter_copy` with the log lines calibration writes for it (the adapter copy
    against the pinned peak, the back-to-back copy gap and the copy issue time), which
    `refit_from_log` reads back; adds `gap_us` and `issue_us` (per copy)."""
    ad = measure_adapter_copy(shape, device, rank, reps)
    flat_bw = ad["bytes"] / ad["flat_s"]
    gap = copy_gap_us(ad["flat_s"], ad["per_module_s"], int(ad["copies"]))
    progress(
        f"  adapter copy (rank {rank}, {ad['bytes'] / 1e6:.0f} MB): flat {ad['flat_s'] * 1e3:.2f} ms"
        f" = {flat_bw / 1e9:.2f} GB/s = {100 * flat_bw / peak_bps:.1f}% of the pinned peak"
        f" {peak_bps / 1e9:.2f} GB/s; per module ({int(ad['copies'])} copies)"
        f" {ad['per_module_s'] * 1e3:.2f} ms"
    )
    progress(f"  back-to-back copy gap {gap:.2f} us/copy (per module - flat, over copies - 1)")
    issue = ad["issue_s"] / ad["copies"] * 1e6
    progress(
        f"  copy issue {issue:.2f} us/copy on the host ({int(ad['copies'])} per-module copies"
        f" issued in {ad['issue_s'] * 1e3:.2f} ms)"
    )
    return {**ad, "gap_us": gap, "issue_us": issue}


def report_unpin(
    shape: ModelShape, device: torch.device, rank: int, progress: Callable[[str], None] = print
) -> float:
    """`measure_unpin_per_tensor` with the log line `refit_from_log` reads back (part `unpin`)."""
    us = measure_unpin_per_tensor(shape, device, rank)
    n = 2 * len(flat_layout(shape, rank, ordered_targets(ALL_TARGETS))[0])
    progress(
        f"  unpin {us:.2f} us/tensor freeing a per-module load's pinned copies after its copies ran"
        f" ({n} tensors: {us * n / 1e3:.2f} ms)"
    )
    return us


def copy_gap_us(flat_s: float, per_module_s: float, copies: int) -> float:
    """Microseconds each further copy adds when `copies` copies of one adapter run back to
    back, from the same bytes copied flat and per module (sim.hw.pcie.CopyModel). Isolated
    single-copy times overstate it: an isolated copy pays its launch-to-completion latency
    (~15 us on an H200), a pipelined one does not (round 6: 448 copies took 7.46 ms on the
    GPU, 11.07 ms as 448 isolated copies)."""
    return max(0.0, (per_module_s - flat_s) / max(copies - 1, 1) * 1e6)


# ---- compute ---------------------------------------------------------------------------------


def _prefill_input(
    tokens: int, vocab: int, device, row0: int = 0, item: int = 512, lora=None
) -> StepInput:
    lens = [item] * (tokens // item) + ([tokens % item] if tokens % item else [])
    toks = torch.randint(0, vocab, (tokens,), device=device)
    return StepInput(toks, list(range(row0, row0 + len(lens))), [0] * len(lens), lens, lora)


@dataclass
class ComputeTables:
    prefill_tokens: list[int]  # the grid's sizes and the first eager one (with_eager_edge)
    prefill: list[float]
    decode: list[list[float]]
    lora: LoraPrefillTable  # decode: (rank, batch, adapters)
    lora_prefill: LoraPrefillTable | None
    raw: dict = field(default_factory=dict)  # before the monotone fit (for the log)
    launch_fraction: float = 0.0
    attention_ms_per_mcell: float = 0.0


def with_eager_edge(tokens: list[int], graph_tokens: int) -> list[int]:
    """`tokens` plus the first eager size (graph_tokens + 1) when the grid spans the graph
    limit: above it a prefill runs eagerly and costs more at the same size, and a table
    interpolated from the last graphed size to the next eager one underrates every prefill
    between them (round 8, H200: 2049 tokens eager 80.1 ms, 2048 graphed 73.6 ms)."""
    edge = graph_tokens + 1
    if graph_tokens <= 0 or edge in tokens or not any(t > edge for t in tokens):
        return list(tokens)
    return sorted([*tokens, edge])


def measure_compute(
    shape: ModelShape,
    device: torch.device,
    grid: dict,
    *,
    progress=print,
    eager_decode: bool = False,
    prefill_graph_tokens: int = DEFAULT_MAX_TOKENS,
) -> ComputeTables:
    dtype = default_dtype(device)
    timer = Timer(device)
    reps = grid.get("compute_reps", grid["reps"])
    grid = {  # on CPU too: the same pieces, padded to buckets up to the limit
        **grid,
        "prefill": with_eager_edge(grid["prefill"], prefill_graph_tokens),
        "prefill_lora_tokens": with_eager_edge(grid["prefill_lora_tokens"], prefill_graph_tokens),
    }
    model = LlamaModel(shape, device=device, dtype=dtype, lora=None)
    p_items = max(grid["prefill_lora_adapters"])
    max_ctx = max(
        max(grid["context"]) + 2,
        min(max(grid["prefill"]), 512),
        min(max(grid["prefill_lora_tokens"]), 512),  # LoRA prefill requests: <= 512 tokens
    )
    rows = max(
        max(grid["batch"]), -(-max(grid["prefill"]) // 512), 32, p_items,
        -(-max(grid["prefill_lora_tokens"]) // 512), max(grid["lora_batch"]),
    )
    kv = KVPool(shape, rows, max_ctx, device, dtype)

    def decode_input(b: int, c: int, lora=None) -> StepInput:
        return StepInput(
            torch.randint(0, shape.vocab, (b,), device=device),
            list(range(b)),
            [c] * b,
            [1] * b,
            lora,
        )

    max_b = max(max(grid["batch"]), max(grid["lora_batch"]), max(grid["adapters"]), min(32, rows))

    def runners():
        """Decode and prefill runners for the model's current LoRA slots (graphs keep the
        buffers they were captured with), as the CudaDriver's gpu.core builds them. A new
        graph pool each time: a pool whose graphs were all freed cannot be captured into."""
        pool = torch.cuda.graph_pool_handle() if timer.cuda else None
        dec = None if eager_decode else DecodeRunner(model, kv, max_batch=max_b, pool=pool)
        return dec, PrefillRunner(model, kv, max_tokens=prefill_graph_tokens, pool=pool)

    runner, prefiller = runners()

    def run_prefill(inp: StepInput, tok_slots: list[int] | None = None):
        """One prefill the driver's way (PrefillRunner: graphs up to prefill_graph_tokens)."""
        return prefiller.run(inp, tok_slots or [-1] * len(inp.tokens)).argmax(-1)

    def stepping(b: int, c: int, tok_slots: list[int] | None = None):
        """Consecutive decode steps whose context grows by one, as the driver runs them (a
        shape-keyed cache that only ever sees one context would hide per-shape costs). Through
        the driver's decode path: gpu.decode_graphs (prepare + one step), or with
        eager_decode one model.forward with its LoRA batch built per step. `tok_slots`: the
        slot of each request's adapter in model.lora (None: no LoRA)."""
        k = iter(range(1 << 30))
        slots_of = tok_slots if tok_slots is not None else [-1] * b
        if runner is not None:

            def graph_step():
                runner.prepare(list(range(b)), [c + next(k) % 2] * b, slots_of)
                runner.step()

            return graph_step
        return lambda: model.forward(
            decode_input(b, c + next(k) % 2, model.lora.batch(slots_of) if model.lora else None),
            kv,
        ).argmax(-1)

    b_int, c_int = min(8, max_b), min(512, max(grid["context"]))

    def between() -> None:
        """One untimed decode step of a few requests before each timed prefill (Timer.median)."""
        stepping(b_int, c_int)()

    prefill_raw = []
    for t in grid["prefill"]:
        inp = _prefill_input(t, shape.vocab, device)
        prefill_raw.append(
            timer.median(lambda inp=inp: run_prefill(inp), reps, warmup=2, between=between)
        )
        progress(f"  prefill {t:>6} tokens: {prefill_raw[-1] * 1e3:8.2f} ms")
    prefill = isotonic(prefill_raw)
    # at the sizes prefills usually have (the share falls with size: round 6 read 0.99 over
    # 64-192 tokens); the quick grid has none there and uses its own
    sizes = [t for t in grid["prefill"] if 256 <= t <= 1024] or grid["prefill"][:4]
    launch = measure_launch_fraction(
        timer, run_prefill, [_prefill_input(t, shape.vocab, device) for t in sizes], reps,
    )
    progress(f"  launch fraction {launch:.3f} (CPU launch / GPU time of a prefill)")
    attention = measure_attention(
        timer, run_prefill, grid["prefill"], prefill_graph_tokens, shape.vocab, device, reps, between
    )
    progress(f"  prefill attention {attention:.2f} ms per million query-key cells (eager prefills)")

    decode_raw = []
    for b in grid["batch"]:
        row = []
        for c in grid["context"]:
            row.append(timer.median(stepping(b, c), reps, warmup=2))
        decode_raw.append(row)
        progress(f"  decode batch {b:>4}: " + " ".join(f"{x * 1e3:7.2f}" for x in row) + " ms")
    decode = monotone_grid(decode_raw)
    if decode != decode_raw:
        progress("  decode (monotone lower envelope over context and batch):")
        for b, row in zip(grid["batch"], decode, strict=True):
            progress(f"    batch {b:>4}: " + " ".join(f"{x * 1e3:7.2f}" for x in row) + " ms")

    # LoRA extra, per rank: slots of that rank on the same model
    c = min(256, max(grid["context"]))
    n_slots = max(max(grid["adapters"]), p_items, 1)
    lreps, preps = grid.get("lora_reps", reps), grid.get("prefill_lora_reps", reps)
    dec_planes, pre_planes, raw_lora = [], [], {}
    ranks = sorted(set(grid["lora_ranks"]) | set(grid["prefill_lora_ranks"]))
    for rank in ranks:
        model.lora = None
        if timer.cuda:
            torch.cuda.empty_cache()
        slots = LoraSlots.random(shape, n_slots, rank, device, dtype)
        model.lora = slots
        runner, prefiller = runners()
        if rank in grid["lora_ranks"]:

            def cell(b: int, n: int) -> float:
                if n == 0:
                    return 0.0
                bb = max(b, n)  # n adapters need n requests: that cell is measured at n
                return max(0.0, timer.paired_extra(
                    stepping(bb, c), stepping(bb, c, [i % n for i in range(bb)]), lreps, warmup=2,
                ))

            dplane, spread = lora_passes(cell, grid["lora_batch"], grid["adapters"], grid.get("lora_passes", 1))
            # not forced monotone in adapters: with every slot in use LoraSlots.batch
            # takes a cheaper path (no gather), so 16 adapters can cost less than 8
            for b, row in zip(grid["lora_batch"], dplane, strict=True):
                progress(
                    f"  lora decode extra, rank {rank:>3}, batch {b:>3}, vs adapters: "
                    + " ".join(f"{n}:{x * 1e3:.2f}ms" for n, x in zip(grid["adapters"], row, strict=True))
                )
            if spread is not None:
                progress(f"  lora decode rank {rank:>3}: passes differ by up to {spread[0] * 1e3:.2f} ms "
                         f"(batch {spread[1]}, {spread[2]} adapters); the table holds their median")
            raw_lora[rank] = dplane
            dec_planes.append(dplane)
        if rank in grid["prefill_lora_ranks"]:
            plane = []
            for t in grid["prefill_lora_tokens"]:
                prow = []
                for n in grid["prefill_lora_adapters"]:
                    # n requests for n adapters (one for one: the light-load prefill), none
                    # longer than 512 tokens, as the base prefill table's inputs
                    item = -(-t // max(n, -(-t // 512)))
                    n_items = -(-t // item)
                    tok_slots = [i % n for i in range(n_items) for _ in range(item)][:t]
                    base_in = _prefill_input(t, shape.vocab, device, item=item)
                    prow.append(max(0.0, timer.paired_extra(
                        lambda base_in=base_in: run_prefill(base_in),
                        lambda base_in=base_in, tok_slots=tok_slots: run_prefill(base_in, tok_slots),
                        preps,
                        between=between,
                    )))
                plane.append(prow)
                progress(
                    f"  lora prefill extra, rank {rank:>3}, {t:>5} tokens, vs adapters: "
                    + " ".join(
                        f"{n}:{x * 1e3:.2f}ms"
                        for n, x in zip(grid["prefill_lora_adapters"], prow, strict=True)
                    )
                )
            pre_planes.append(fit_lora_prefill(plane))
        model.lora = None
        runner = prefiller = None
    if timer.cuda:
        torch.cuda.empty_cache()
    lora = LoraPrefillTable(
        tuple(float(r) for r in grid["lora_ranks"]),
        tuple(float(b) for b in grid["lora_batch"]),
        tuple(float(n) for n in grid["adapters"]),
        tuple(tuple(tuple(r) for r in plane) for plane in dec_planes),
    )
    lora_prefill = LoraPrefillTable(
        tuple(float(r) for r in grid["prefill_lora_ranks"]),
        tuple(grid["prefill_lora_tokens"]),
        tuple(grid["prefill_lora_adapters"]),
        tuple(tuple(tuple(r) for r in plane) for plane in pre_planes),
    )
    raw = {"prefill": prefill_raw, "decode": decode_raw, "lora": raw_lora}
    return ComputeTables(grid["prefill"], prefill, decode, lora, lora_prefill, raw, launch, attention)


def lora_passes(
    cell: Callable[[int, int], float], batches: list[int], adapters: list[int], passes: int
) -> tuple[list[list[float]], tuple[float, int, int] | None]:
    """A (batch x adapters) plane measured `passes` times, batches ascending then descending
    by turns, each cell the median over passes, and the largest spread between passes (value,
    batch, adapters; None for one pass). Why: a LoRA decode step is ~1,100 tiny kernels whose
    extra over the base step hides partly under the host's launches, so a slow spell of the
    host lowers a whole row of cells (round 10: rank 64, batch 1 read 3.8 ms in one
    calibration, 6.1 in another and 5.3-6.0 in gpu.diag_lora; the runs pay ~6.2)."""
    runs: dict[tuple[int, int], list[float]] = {}
    for k in range(passes):
        for b in batches if k % 2 == 0 else batches[::-1]:
            for n in adapters:
                runs.setdefault((b, n), []).append(cell(b, n))
    plane = [[statistics.median(runs[b, n]) for n in adapters] for b in batches]
    if passes < 2:
        return plane, None
    (b, n), v = max(runs.items(), key=lambda kv: max(kv[1]) - min(kv[1]))
    return plane, (max(v) - min(v), b, n)


def measure_attention(
    timer: Timer, run_prefill: Callable[[StepInput], object], sizes: list[int], graph_tokens: int,
    vocab: int, device: torch.device, reps: int, between: Callable[[], object],
) -> float:
    """ms per million query-key cells of an eager prefill's padded attention
    (`compute.attention_ms_per_mcell`): the largest eager size of the grid up to 4096 tokens
    (0 when the grid has none) as calibration's requests of 512 tokens vs requests of half that,
    the same tokens with half the cells or fewer. Clipped at 0 (noise)."""
    from sim.core.effects import Batch, BatchItem
    from sim.hw.compute import attention_cells, reference_cells

    eager = [t for t in sizes if graph_tokens < t <= 4096] if graph_tokens else []
    if not eager:
        return 0.0
    t = max(eager)
    half = max(1, min(t, 512) // 2)
    small, big = _prefill_input(t, vocab, device, item=half), _prefill_input(t, vocab, device)
    d = timer.paired_extra(lambda: run_prefill(small), lambda: run_prefill(big), reps, between=between)
    cells = attention_cells(Batch("prefill", tuple(
        BatchItem(i, None, -1, 0, n, 0) for i, n in enumerate(small.new)
    )))
    return max(0.0, d * 1e3 / ((reference_cells(t) - cells) * 1e-6))


class HostTiming(NamedTuple):
    gap_s: float  # median host gap between back-to-back forwards
    gaps: int
    requests: int
    wake_s: float  # median time from an idle arrival to its admission
    wakes: int
    issue_s: float = 0.0  # median host time issuing one per-module copy, in the serving loop
    issues: int = 0  # loads it is the median of


def measure_host_gap(
    shape: ModelShape, device: torch.device, rank: int, quick: bool,
    prefill_graph_tokens: int = DEFAULT_MAX_TOKENS, eager_decode: bool = False,
    gap_and_wake: bool = True,
) -> HostTiming:
    """The serving loop's own host timings when the engine serves a short light-load trace
    (`resident`: no loads) through the CUDA driver, measured here rather than from validation
    runs: the median gap between back-to-back forwards (noticing a forward's end, scheduling,
    launching the next: `compute.forward_overhead_us`) and the median time from an arrival
    that finds the GPU idle to its admission (`compute.wake_us`). The same kind of trace over 16
    adapters, served by `overlap` in two slots, gives the copy issue time in the serving loop
    (`pcie.issue_us`: the median `issue` row over the copies of a per-module load): round 12 found it 1.6x the
    isolated loop's (`measure_adapter_copy`) on one host, and the isolated one moving by 1.7x
    between hosts whose serving loops issued alike. Zeros for a shape that is not a preset
    (the trace needs a scenario). `gap_and_wake=False` skips the resident run (zeros): the
    issue time alone (`gpu.diag_copy`)."""
    import numpy as np

    from gpu.run_health import issue_times
    from gpu.validate import GpuOptions, run_gpu
    from sim.config import MODEL_PRESETS, parse_scenario
    from sim.metrics import host_gaps, wake_latencies
    from sim.workload import generate_trace

    preset = next((k for k, v in MODEL_PRESETS.items() if v == shape), None)
    n = 6 if quick else 24
    if preset is None:
        return HostTiming(0.0, 0, n, 0.0, 0)

    def scenario(adapters: int, slots: int):
        return parse_scenario({
            "name": "calibrate-host-gap",
            "seed": 3,
            "model": {"preset": preset},
            "adapters": {"count": adapters, "rank": rank, "targets": "all"},
            "workload": {
                "num_requests": n,
                # 2 req/s: about a third of arrivals find the GPU idle (the wake-up readings); at
                # 8 req/s one of 24 did (round 9)
                "arrival": {"process": "poisson", "rate": 2},
                "adapter_choice": {"dist": "uniform"},
                "input_len": {"dist": "random", "len": 8 if quick else 512, "range_ratio": 0.25},
                "output_len": {"dist": "random", "len": 4 if quick else 32, "range_ratio": 0.5},
            },
            "serving": {"max_loras_per_batch": min(4, slots), "max_loaded_loras": slots,
                        "max_running_requests": 32,
                        "copy_mode": "per_module"},
        }, source="<calibrate: host gap>")

    opts = GpuOptions(
        device=str(device), eager_decode=eager_decode, prefill_graph_tokens=prefill_graph_tokens,
    )
    gaps = wakes = np.array([])
    if gap_and_wake:
        sc = scenario(4, 4)
        res = run_gpu(sc, "resident", generate_trace(sc), opts)
        gaps = host_gaps(res.timeline)
        wakes = wake_latencies(res.records, res.timeline)
    # 16 adapters in 2 slots: most requests load (round 12: 4 adapters in 2 slots loaded 4 times)
    sc = scenario(16, 2)
    issue = issue_times(run_gpu(sc, "overlap", generate_trace(sc), opts).timeline)
    copies = 2 * len(ALL_TARGETS) * shape.layers
    return HostTiming(
        float(np.median(gaps)) if len(gaps) else 0.0, len(gaps), n,
        float(np.median(wakes)) if len(wakes) else 0.0, len(wakes),
        float(np.median(issue)) / copies if len(issue) else 0.0, len(issue),
    )


def measure_launch_fraction(
    timer: Timer, fwd: Callable[[StepInput], object], inputs: list[StepInput], reps: int
) -> float:
    """Median over `inputs` x `reps` of (time for `fwd` to return) / (time until the device
    is done), in [0, 1]. On CPU a forward returns when it is done: 1."""
    ratios = []
    for inp in inputs:
        fwd(inp)  # warm-up
        for _ in range(reps):
            timer.sync()
            t0 = time.perf_counter()
            fwd(inp)
            t1 = time.perf_counter()
            timer.sync()
            t2 = time.perf_counter()
            ratios.append((t1 - t0) / (t2 - t0) if t2 > t0 else 1.0)
    return min(1.0, max(0.0, statistics.median(ratios))) if ratios else 0.0


# ---- all -------------------------------------------------------------------------------------


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU {platform.processor() or platform.machine()}"


def calibrate(
    shape: ModelShape,
    *,
    quick: bool = False,
    device: str | torch.device | None = None,
    name: str = "measured",
    command: str = "lorasim calibrate",
    rank: int = 64,
    progress: Callable[[str], None] = print,
    eager_decode: bool = False,
    prefill_graph_tokens: int = DEFAULT_MAX_TOKENS,
) -> HardwareProfile:
    dev = (
        torch.device(device)
        if device
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    grid = GRIDS["quick" if quick else "full"]
    sizes, reps = grid["sizes"], grid["reps"]
    progress(f"calibrating {device_name(dev)} for {shape.name} ({'quick' if quick else 'full'})")
    pinned = measure_copies(dev, sizes, True, reps)
    pageable = measure_copies(dev, sizes, False, reps)
    for n, a, b in zip(sizes, pinned, pageable, strict=True):
        progress(
            f"  copy {n:>11} B: pinned {n / a / 1e9:6.2f} GB/s  pageable {n / b / 1e9:6.2f} GB/s"
        )
    overhead = measure_copy_overhead(dev)
    rank = min(rank, 8) if quick else rank
    warm, cold, pin_tensor = measure_pin_cost(shape, dev, rank, grid["pin_bytes"])
    disk = measure_disk(grid["pin_bytes"])
    contention = measure_contention(dev, quick)
    progress(
        f"  overhead {overhead:.2f} us/copy, pin warm {warm:.2f} cold {cold:.2f} GB/s"
        f" + {pin_tensor:.1f} us/tensor, disk {disk:.2f} GB/s, contention {contention:.3f}"
    )
    unpin = report_unpin(shape, dev, rank, progress)
    peak = max(n / t for n, t in zip(sizes, pinned, strict=True))
    ad = report_adapter_copy(shape, dev, rank, reps, peak, progress)
    gap, issue = ad["gap_us"], ad["issue_us"]
    mode = "eager (one model.forward a step)" if eager_decode else "gpu.decode_graphs"
    progress(f"  decode path: {mode}" + ("" if eager_decode or dev.type == "cuda" else ", no graphs on CPU"))
    cuda = dev.type == "cuda"
    progress(
        "  prefill path: "
        + (f"gpu.prefill_graphs up to {prefill_graph_tokens} tokens, eager above"
           if prefill_graph_tokens else "eager (model.forward)")
        + ("" if cuda or not prefill_graph_tokens else ", no graphs on CPU")
    )
    ct = measure_compute(
        shape, dev, grid, progress=progress, eager_decode=eager_decode,
        prefill_graph_tokens=prefill_graph_tokens,
    )
    ht = measure_host_gap(
        shape, dev, rank, quick, prefill_graph_tokens=prefill_graph_tokens, eager_decode=eager_decode,
    )
    host_gap = ht.gap_s
    progress(
        f"  host gap {host_gap * 1e6:.1f} us between forwards (median of {ht.gaps}; a resident run"
        f" of {ht.requests} requests through the CUDA driver)"
    )
    progress(f"  wake-up {ht.wake_s * 1e6:.1f} us from an idle arrival to its admission (median of {ht.wakes})")
    if ht.issues:  # the serving loop's issue time is what the simulator prices (the last line wins)
        issue = ht.issue_s * 1e6
        progress(
            f"  copy issue {issue:.2f} us/copy on the host in the serving loop (median of {ht.issues}"
            f" `overlap` loads through the CUDA driver)"
        )
    return HardwareProfile(
        name=name,
        device=device_name(dev),
        model=shape.name,
        command=command,
        pcie=PcieProfile(
            pinned=Table(tuple(sizes), tuple(pinned)),
            pageable=Table(tuple(sizes), tuple(pageable)),
            copy_overhead_us=overhead,
            pin_warm_gbps=warm,
            pin_cold_gbps=cold,
            disk_gbps=disk,
            contention=contention,
            pin_per_tensor_us=pin_tensor,
            unpin_per_tensor_us=unpin,
            copy_gap_us=gap,
            issue_us=issue,
        ),
        compute=ComputeProfile(
            prefill=Table(tuple(ct.prefill_tokens), tuple(ct.prefill)),
            decode=Grid(
                tuple(grid["batch"]), tuple(grid["context"]), tuple(tuple(r) for r in ct.decode)
            ),
            lora_decode=ct.lora,
            lora_prefill=ct.lora_prefill,
            launch_fraction=ct.launch_fraction,
            # the harness pads graphed prefills to these sizes (on CPU too: same pieces)
            prefill_buckets=tuple(token_buckets(prefill_graph_tokens)) if prefill_graph_tokens else (),
            attention_ms_per_mcell=ct.attention_ms_per_mcell,
            forward_overhead_us=host_gap * 1e6,
            wake_us=ht.wake_s * 1e6,
            # graphed decode and prefill pad the adapters of a batch to these counts (the
            # LoRA tables above were measured at them)
            adapter_buckets=(
                tuple(adapter_buckets(max(grid["adapters"])))
                if prefill_graph_tokens and not eager_decode else ()
            ),
            # a graphed decode pads its batch to these sizes (the decode grid's batches are some)
            batch_buckets=() if eager_decode else tuple(batch_buckets(max(grid["batch"]))),
            # the harness's decode attention (graphed or eager) reads every row up to the
            # batch's longest context; the grid above has equal contexts, so max = mean there
            decode_context="max",
        ),
    )


# ---- refit from a calibration log ---------------------------------------------------------

_LOG_PATTERNS = {
    "decode_path": re.compile(r"^  decode path: (gpu\.decode_graphs|eager)"),
    "prefill_path": re.compile(r"^  prefill path: (?:gpu\.prefill_graphs up to (\d+) tokens|eager)"),
    "prefill": re.compile(r"^  prefill\s+(\d+) tokens:\s+([\d.]+) ms$"),
    "decode": re.compile(r"^  decode batch\s+(\d+):((?:\s+[\d.]+)+) ms$"),
    "lora": re.compile(r"^  lora decode extra, rank\s+(\d+), vs adapters: (.*)$"),  # before round 7
    "lora_decode": re.compile(r"^  lora decode extra, rank\s+(\d+), batch\s+(\d+), vs adapters: (.*)$"),
    "lora_prefill": re.compile(
        r"^  lora prefill extra, rank\s+(\d+),\s+(\d+) tokens, vs adapters: (.*)$"
    ),
    "launch": re.compile(r"^  launch fraction ([\d.]+) "),
    "attention": re.compile(r"^  prefill attention ([\d.]+) ms per million"),
    "host_gap": re.compile(r"^  host gap ([\d.]+) us between forwards"),
    "issue": re.compile(r"^  copy issue ([\d.]+) us/copy on the host"),
    "unpin": re.compile(r"^  unpin ([\d.]+) us/tensor"),
    "wake": re.compile(r"^  wake-up ([\d.]+) us from an idle arrival"),
    "adapter_copy": re.compile(
        r"^  adapter copy .*: flat ([\d.]+) ms .* per module \((\d+) copies\) ([\d.]+) ms$"
    ),
}


def _pairs(text: str) -> tuple[list[int], list[float]]:
    keys, vals = [], []
    for item in text.split():
        k, v = item.split(":")
        keys.append(int(k))
        vals.append(float(v.removesuffix("ms")) / 1e3)
    return keys, vals


def _plane_table(
    planes: dict[int, dict[int, tuple[list[int], list[float]]]],
    fit: Callable[[list[list[float]]], list[list[float]]] = lambda rows: rows,
) -> LoraPrefillTable:
    """A (rank, tokens or batch, adapters) table from log rows {rank: {x: (adapters, values)}},
    each rank's plane through `fit`."""
    ranks = sorted(planes)
    xs = sorted(planes[ranks[0]])
    return LoraPrefillTable(
        tuple(float(r) for r in ranks),
        tuple(float(x) for x in xs),
        tuple(float(a) for a in planes[ranks[0]][xs[0]][0]),
        tuple(tuple(tuple(row) for row in fit([planes[r][x][1] for x in xs])) for r in ranks),
    )


# what `refit_from_log(only=...)` can take from a log alone: compute fields, with the fields
# that are read with them (a LoRA plane's adapter buckets)
REFIT_PARTS: dict[str, tuple[str, ...]] = {
    "prefill": ("prefill", "prefill_buckets"),
    "decode": ("decode", "batch_buckets", "decode_context"),
    "lora_decode": ("lora", "lora_ranks", "lora_decode", "adapter_buckets"),
    "lora_prefill": ("lora_prefill",),
    "launch_fraction": ("launch_fraction",),
    "attention": ("attention_ms_per_mcell",),
    "host_gap": ("forward_overhead_us",),
    "wake": ("wake_us",),
}
# ...and PCIe fields read from the adapter copy and copy issue lines (`python -m gpu.diag_copy`
# prints just those: a host's copy issuing re-measured without a whole calibration)
PCIE_REFIT_PARTS: dict[str, tuple[str, ...]] = {
    "copy_issue": ("issue_us",),
    "copy_gap": ("copy_gap_us",),
    "unpin": ("unpin_per_tensor_us",),
}


class UnknownRefitPart(ValueError):
    """`refit_from_log(only=...)` named a part that is not in REFIT_PARTS."""


def refit_from_log(
    profile: HardwareProfile, log_text: str, only: Collection[str] | None = None
) -> HardwareProfile:
    """The profile with its compute tables re-derived from the raw medians a calibration
    printed (its log), by the current fitting rules: lets a fix to the fitting reach an
    existing measurement without a GPU. The grids are the log's (adapter buckets too: the
    LoRA grid's counts when both paths are graphed); PCIe is kept as it is but for the
    back-to-back copy gap, derived from the adapter copy line, and the copy issue time. The
    log is this harness's, so decode is priced at the longest context (`decode_context`).

    `only` (names of REFIT_PARTS) takes just those parts from the log and keeps the rest of
    the profile, PCIe included: a re-measured table (say the decode LoRA plane on a finer
    grid) joins a profile whose other tables came from another calibration."""
    from dataclasses import replace

    if only is not None:
        parts = {**REFIT_PARTS, **PCIE_REFIT_PARTS}
        unknown = sorted(set(only) - set(parts))
        if unknown:
            raise UnknownRefitPart(f"unknown part(s) {', '.join(unknown)}; expected some of {', '.join(parts)}")
        comp_fields = {f for part in only if part in REFIT_PARTS for f in REFIT_PARTS[part]}
        pcie_fields = {f for part in only if part in PCIE_REFIT_PARTS for f in PCIE_REFIT_PARTS[part]}
        # a log of copy lines only (gpu.diag_copy) has no compute tables to refit
        full = refit_from_log(profile, log_text) if comp_fields else replace(
            profile, pcie=_pcie_from_log(profile.pcie, log_text))
        return replace(
            profile,
            compute=replace(profile.compute, **{f: getattr(full.compute, f) for f in comp_fields}),
            pcie=replace(profile.pcie, **{f: getattr(full.pcie, f) for f in pcie_fields}),
        )

    prefill: dict[int, float] = {}
    decode: dict[int, list[float]] = {}
    lora: dict[int, tuple[list[int], list[float]]] = {}
    planes: dict[int, dict[int, tuple[list[int], list[float]]]] = {}
    dplanes: dict[int, dict[int, tuple[list[int], list[float]]]] = {}
    launch: float | None = None
    attention: float | None = None  # logs before round 8 do not have it: keep the profile's
    host_gap: float | None = None  # likewise (us)
    buckets: tuple[int, ...] | None = None  # None: the log does not say; keep the profile's
    wake: float | None = None  # likewise (us)
    graphed_decode: bool | None = None
    for line in log_text.splitlines():
        if m := _LOG_PATTERNS["prefill"].match(line):
            prefill[int(m[1])] = float(m[2]) / 1e3
        elif m := _LOG_PATTERNS["decode"].match(line):
            decode[int(m[1])] = [float(x) / 1e3 for x in m[2].split()]
        elif m := _LOG_PATTERNS["lora"].match(line):
            lora[int(m[1])] = _pairs(m[2])
        elif m := _LOG_PATTERNS["lora_decode"].match(line):
            dplanes.setdefault(int(m[1]), {})[int(m[2])] = _pairs(m[3])
        elif m := _LOG_PATTERNS["lora_prefill"].match(line):
            planes.setdefault(int(m[1]), {})[int(m[2])] = _pairs(m[3])
        elif m := _LOG_PATTERNS["launch"].match(line):
            launch = float(m[1])
        elif m := _LOG_PATTERNS["attention"].match(line):
            attention = float(m[1])
        elif m := _LOG_PATTERNS["host_gap"].match(line):
            host_gap = float(m[1])
        elif m := _LOG_PATTERNS["wake"].match(line):
            wake = float(m[1])
        elif m := _LOG_PATTERNS["prefill_path"].match(line):
            buckets = tuple(token_buckets(int(m[1]))) if m[1] else ()
        elif m := _LOG_PATTERNS["decode_path"].match(line):
            graphed_decode = m[1] != "eager"
    if not prefill or not decode:
        raise ValueError("no prefill/decode rows found: is this the log of `lorasim calibrate`?")
    old = profile.compute
    toks = sorted(prefill)
    batch = sorted(decode)
    comp = replace(
        old,
        decode_context="max",
        prefill=Table(tuple(float(t) for t in toks), tuple(isotonic([prefill[t] for t in toks]))),
        decode=Grid(
            tuple(float(b) for b in batch),
            old.decode.context,
            tuple(tuple(r) for r in monotone_grid([decode[b] for b in batch])),
        ),
    )
    if lora:
        ranks = sorted(lora)
        comp = replace(
            comp,
            lora=None,
            lora_ranks=LoraTable(
                tuple(float(r) for r in ranks),
                tuple(float(a) for a in lora[ranks[0]][0]),
                tuple(tuple(lora[r][1]) for r in ranks),
            ),
        )
    if dplanes:
        comp = replace(comp, lora=None, lora_ranks=None, lora_decode=_plane_table(dplanes))
    if planes:
        comp = replace(comp, lora_prefill=_plane_table(planes, fit_lora_prefill))
    if launch is not None:
        comp = replace(comp, launch_fraction=launch)
    if attention is not None:
        comp = replace(comp, attention_ms_per_mcell=attention)
    if host_gap is not None:
        comp = replace(comp, forward_overhead_us=host_gap)
    if wake is not None:
        comp = replace(comp, wake_us=wake)
    if buckets is not None:
        comp = replace(comp, prefill_buckets=buckets)
    if graphed_decode is not None and buckets is not None and dplanes:
        # as calibration writes it: graphed forwards pad adapters to the measured counts
        most = int(max(comp.lora_decode.adapters))
        comp = replace(comp, adapter_buckets=tuple(adapter_buckets(most)) if graphed_decode and buckets else ())
    if graphed_decode is not None:
        comp = replace(comp, batch_buckets=tuple(batch_buckets(batch[-1])) if graphed_decode else ())
    return replace(profile, pcie=_pcie_from_log(profile.pcie, log_text), compute=comp)


def _pcie_from_log(pcie: PcieProfile, log_text: str) -> PcieProfile:
    """`pcie` with the back-to-back copy gap (from the adapter copy line) and the copy issue
    time a log states; what it does not state is kept (logs before round 9 have no issue
    line). The last line of each kind wins."""
    from dataclasses import replace

    for line in log_text.splitlines():
        if m := _LOG_PATTERNS["adapter_copy"].match(line):
            pcie = replace(pcie, copy_gap_us=copy_gap_us(float(m[1]) / 1e3, float(m[3]) / 1e3, int(m[2])))
        elif m := _LOG_PATTERNS["issue"].match(line):
            pcie = replace(pcie, issue_us=float(m[1]))
        elif m := _LOG_PATTERNS["unpin"].match(line):
            pcie = replace(pcie, unpin_per_tensor_us=float(m[1]))
    return pcie
