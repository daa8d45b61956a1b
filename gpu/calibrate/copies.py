"""Host-to-device copies and the host's pinning: the `pcie` section of a profile.

- H2D copy time of ONE copy over sizes (pinned and pageable source), median of reps timed
  with CUDA events; a larger copy never takes less time, so noise is removed with the lower
  envelope (`fit.lower_envelope`). Per-copy overhead: back-to-back 4 KB copies (as per-module
  loads issue them).
- Pin cost: `pin_memory()` of a fresh size (cold: new pinned allocations) and of the same
  size again after freeing it (warm: torch's caching host allocator reuses the blocks); then
  a whole adapter pinned module by module, as a per-module pin-per-load does: its time beyond
  bytes / warm bandwidth, per tensor, is `pin_per_tensor_us`. Unpinning: freeing those
  copies after the copies ran.
- Disk: reading an adapter-sized file with the page cache dropped (best effort), and the
  host-tier reload the CUDA driver does (a PEFT folder read into a host buffer, `HostPool`):
  what a reload costs the harness, and what a profile prices (`disk_gbps`).
- Contention: a GEMM loop's time with and without a side-stream copy in flight.
- One adapter copied flat and per module (the back-to-back copy gap) and the host time that
  issuing its per-module copies takes.
On CPU (no CUDA) host copies stand in for H2D, for tests."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from gpu.adapters import HostPool, flat_layout, module_views, ordered_targets, write_peft_adapter
from gpu.calibrate.fit import copy_gap_us, lower_envelope
from gpu.calibrate.grids import GB, KB, MB
from gpu.calibrate.timer import Timer
from gpu.lora import LoraSlots
from gpu.model import default_dtype
from sim.core.model import ALL_TARGETS, ModelShape


def _host_buffer(nbytes: int, pinned: bool, cuda: bool) -> torch.Tensor:
    t = torch.empty(nbytes, dtype=torch.uint8)
    t.fill_(1)  # touch the pages: first-touch faults are not copy cost
    return t.pin_memory() if pinned and cuda else t


def measure_copies(device: torch.device, sizes: list[int], pinned: bool, reps: int) -> list[float]:
    timer = Timer(device)
    src = _host_buffer(max(sizes), pinned, timer.cuda)
    dst = torch.empty(max(sizes), dtype=torch.uint8, device=device)
    out = []
    for n in sizes:
        r = max(2, min(reps * 4, (4 * GB) // (n * 8) + 2)) if n < 64 * MB else reps
        out.append(timer.events(lambda n=n: dst[:n].copy_(src[:n], non_blocking=True), r))
    return lower_envelope(out)


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


def measure_reload(shape: ModelShape, rank: int, reps: int = 3) -> float:
    """GB/s of the CUDA driver's host-tier reload: a rank-`rank` all-projection PEFT folder read
    into a pageable host buffer (`HostPool.get`: safetensors read, then laid out flat), as a
    request naming an unregistered adapter makes it happen; median of `reps` after one untimed
    read (the first pays page faults the serving loop's reloads do not: on an H100 host it
    read at 0.78 GB/s where later ones took 1.06-1.58). The file was just written, so it is
    read from the page cache, as the harness's shared adapter files are."""
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "adapter"
        write_peft_adapter(folder, shape, rank, ALL_TARGETS)
        pool = HostPool(shape, {"a": folder}, mode="pageable")
        pool.get("a")
        times = []
        for _ in range(reps):
            pool.evict("a")
            t0 = time.perf_counter()
            ad = pool.get("a")
            times.append(time.perf_counter() - t0)
        return ad.nbytes / max(statistics.median(times), 1e-9) / 1e9


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
