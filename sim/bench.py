"""Simulator speed benchmarks (`lorasim bench`, `make bench`): figures are printed, not asserted.

Targets (issue #3): the SGLang overlap benchmark for all policies in < 1 s total, and a
10,000-request Poisson trace with 512-token outputs in < 30 s per policy on a 2-core machine.
"""

from __future__ import annotations

import time
from pathlib import Path

from sim.hw import load_hardware
from sim.runner import load_scenario, parse_scenario, simulate
from sim.workload import generate_trace

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ["lru", "fifo", "slora", "overlap", "history", "lookahead", "zero_load", "resident"]


def large_scenario(requests: int):
    return parse_scenario(
        {
            "name": f"poisson-{requests}",
            "seed": 3,
            "adapters": {"count": 64, "rank": 16},
            "workload": {
                "num_requests": requests,
                "arrival": {"process": "poisson", "rate": 10},
                "adapter_choice": {"dist": "zipf", "s": 1.1},
                "input_len": {"dist": "random", "len": 512, "range_ratio": 0.5},
                "output_len": {"dist": "fixed", "len": 512},
            },
            "serving": {"max_loras_per_batch": 8, "max_loras_prefetch": 8},
        },
        "<bench>",
    )


def _time_policies(sc, policies) -> list[tuple[str, float, int]]:
    trace = generate_trace(sc)
    hw = load_hardware(sc.hardware, sc.model.shape())
    out = []
    for p in policies:
        t0 = time.perf_counter()
        res = simulate(sc, p, trace=trace, hardware=hw)
        out.append((p, time.perf_counter() - t0, int(res.summary["completed"])))
    return out


def estimator_price_us(reps: int = 2000) -> float:
    """Microseconds to price one decode step of 24 requests over 4 rank-64 adapters with the
    committed H200 profile (round 11: 126 us before the tables were cached, ~10 us after)."""
    from sim.core.effects import Batch, BatchItem
    from sim.hw.compute import ProfileCompute
    from sim.hw.profile import HardwareProfile

    model = ProfileCompute(HardwareProfile.from_yaml(ROOT / "configs/hardware/h200-measured.yaml").compute)
    batch = Batch("decode", tuple(BatchItem(i, f"a{i % 4}", i % 4, 64, 1, 500 + i) for i in range(24)))
    model.forward_time(batch)
    t0 = time.perf_counter()
    for _ in range(reps):
        model.forward_time(batch)
    return (time.perf_counter() - t0) / reps * 1e6


def run_bench(requests: int = 10_000) -> dict[str, float]:
    figures: dict[str, float] = {}
    sc = load_scenario(ROOT / "configs/scenarios/sglang_overlap_bench.yaml")
    rows = _time_policies(sc, POLICIES)
    total = sum(t for _, t, _ in rows)
    print(f"SGLang overlap benchmark ({len(POLICIES)} policies x 100 requests): {total:.3f} s total (target < 1 s)")
    for p, t, n in rows:
        print(f"  {p:9s} {t * 1000:8.1f} ms  {n / t:10.0f} simulated requests/s")
    figures["overlap_bench_total_s"] = total
    price_us = estimator_price_us()
    print(f"A decode step priced by the measured H200 profile: {price_us:.1f} us "
          "(the estimator lookahead asks at scheduling points; on a GPU run the GPU waits for it)")
    figures["estimator_decode_price_us"] = price_us
    big = large_scenario(requests)
    print(f"Poisson trace, {requests} requests, 512-token outputs (target < 30 s per policy):")
    for p, t, n in _time_policies(big, POLICIES):
        print(f"  {p:9s} {t:8.2f} s  {n / t:10.0f} simulated requests/s")
        figures[f"large_{p}_s"] = t
    return figures


if __name__ == "__main__":
    run_bench()
