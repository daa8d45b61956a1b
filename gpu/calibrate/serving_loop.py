"""Host timings of the serving loop itself, from short runs through the CUDA driver.

The gap between back-to-back forwards, the wake-up of an idle scheduler and the copy issue
time are the scheduler thread's own costs: they only show when the engine serves a trace,
so they are measured by serving one (gpu.validate.run_gpu), not by timing pieces alone."""

from __future__ import annotations

from typing import NamedTuple

import torch

from gpu.prefill_graphs import DEFAULT_MAX_TOKENS
from sim.core.model import ALL_TARGETS, ModelShape


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
    # both runs have 16 adapters, so they share one GPU core (`reuse`): its graphs are captured
    # once, not once a run
    if gap_and_wake:
        sc = scenario(16, 4)
        res = run_gpu(sc, "resident", generate_trace(sc), opts, reuse=True)
        gaps = host_gaps(res.timeline)
        wakes = wake_latencies(res.records, res.timeline)
    # 16 adapters in 2 slots: most requests load (round 12: 4 adapters in 2 slots loaded 4 times)
    sc = scenario(16, 2)
    issue = issue_times(run_gpu(sc, "overlap", generate_trace(sc), opts, reuse=True).timeline)
    copies = 2 * len(ALL_TARGETS) * shape.layers
    return HostTiming(
        float(np.median(gaps)) if len(gaps) else 0.0, len(gaps), n,
        float(np.median(wakes)) if len(wakes) else 0.0, len(wakes),
        float(np.median(issue)) / copies if len(issue) else 0.0, len(issue),
    )
