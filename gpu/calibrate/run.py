"""A whole calibration: every measurement in turn and the profile they make.

What it and the measuring modules print is the calibration log that gpu.calibrate.refit
reads back: keep those lines in step with refit's patterns."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from gpu.calibrate.compute import measure_compute
from gpu.calibrate.copies import (
    measure_contention,
    measure_copies,
    measure_copy_overhead,
    measure_disk,
    measure_pin_cost,
    measure_reload,
    report_adapter_copy,
    report_unpin,
)
from gpu.calibrate.grids import GRIDS
from gpu.calibrate.rates import report_rates
from gpu.calibrate.serving_loop import measure_host_gap
from gpu.decode_graphs import batch_buckets
from gpu.lora import side_part
from gpu.prefill_graphs import DEFAULT_MAX_TOKENS, device_buckets, token_buckets
from sim.core.model import ModelShape
from sim.hw.profile import ComputeProfile, Grid, HardwareProfile, PcieProfile, Table


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
    t0 = time.perf_counter()

    def elapsed(done: str) -> None:  # where the minutes go (the target is 5 for a full run)
        progress(f"  elapsed {time.perf_counter() - t0:.0f} s: {done}")

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
    cold_read = measure_disk(grid["pin_bytes"])
    # what a profile prices a host-tier reload at: the driver's own reload path, on an adapter
    # of the copy check's rank
    disk = measure_reload(shape, rank)
    contention = measure_contention(dev, quick)
    progress(
        f"  overhead {overhead:.2f} us/copy, pin warm {warm:.2f} cold {cold:.2f} GB/s"
        f" + {pin_tensor:.1f} us/tensor, host-tier reload {disk:.2f} GB/s (cold file read "
        f"{cold_read:.2f} GB/s), contention {contention:.3f}"
    )
    unpin = report_unpin(shape, dev, rank, progress)
    peak = max(n / t for n, t in zip(sizes, pinned, strict=True))
    ad = report_adapter_copy(shape, dev, rank, reps, peak, progress)
    gap, issue = ad["gap_us"], ad["issue_us"]
    hbm_gbps, matmul_tflops = report_rates(dev, progress)
    elapsed("copies and rates")
    cuda = dev.type == "cuda"
    # "paged KV" tells gpu.calibrate.refit this log is the paged harness's (its pricing rules)
    mode = "eager (one model.forward a step, paged KV)" if eager_decode else "gpu.decode_graphs (whole step, paged KV)"
    progress(f"  decode path: {mode}" + ("" if eager_decode or cuda else ", no graphs on CPU"))
    p_buckets = tuple(device_buckets(prefill_graph_tokens, dev)) if prefill_graph_tokens else ()
    skipped = sorted(set(token_buckets(prefill_graph_tokens)) - set(p_buckets)) if p_buckets else []
    progress(
        "  prefill path: "
        + (f"gpu.prefill_graphs up to {prefill_graph_tokens} tokens, eager above"
           if prefill_graph_tokens else "eager (model.forward)")
        + (f", padded past {','.join(map(str, skipped))} tokens" if skipped else "")
        + ("" if cuda or not prefill_graph_tokens else ", no graphs on CPU")
    )
    if cuda:  # which part of each projection's LoRA the side stream runs (gpu.lora `side`)
        part, max_rows = side_part(dev)
        rows = f" up to {max_rows} rows" if part == "lora" else ""
        progress(f"  lora path: SGMV, the side stream runs {part}{rows}")
    ct = measure_compute(
        shape, dev, grid, progress=progress, eager_decode=eager_decode,
        prefill_graph_tokens=prefill_graph_tokens,
    )
    elapsed("forwards and LoRA")
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
    elapsed("serving loop; calibration done")
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
            prefill_buckets=p_buckets,
            attention_ms_per_mcell=ct.attention_ms_per_mcell,
            # measured per causal cell: the paged varlen kernel's work (measure_attention)
            attention_cells="causal",
            forward_overhead_us=host_gap * 1e6,
            wake_us=ht.wake_s * 1e6,
            # SGMV LoRA reads each adapter's segment as it is: no adapter counts are padded
            adapter_buckets=(),
            # a graphed decode pads its batch to these sizes (the decode grid's batches are some)
            batch_buckets=() if eager_decode else tuple(batch_buckets(max(grid["batch"]))),
            # paged decode attention (graphed or eager) reads each request's own context, so a
            # step costs the batch's mean context; the grid has equal contexts, mean = max there
            decode_context="mean",
            hbm_read_gbps=hbm_gbps,
            matmul_tflops=matmul_tflops,
        ),
    )
