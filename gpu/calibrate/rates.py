"""The device's two roofline rates: HBM read bandwidth and dense bf16 matmul throughput.

Why: the harness must cost what a production engine costs, and "production" is judged
against these rates (issue #26): a decode step against its HBM floor (weight bytes + KV
bytes read, over the read bandwidth), a long prefill against 2 x parameters x tokens over
the matmul rate. Calibrate records both in the profile so that the floors of every table
can be recomputed from the profile alone, and `benchmarks/bench_harness.py` prints the
ratios.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch


def graph_seconds(fn: Callable[[], object], reps: int, inner: int = 1) -> float:
    """Median GPU seconds of one `fn` call: `inner` calls captured in one CUDA graph,
    replayed `reps` times between CUDA events (no launch cost in the figure)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):  # compile and warm up outside the capture
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(inner):
            fn()
    g.replay()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3 / inner)
    return statistics.median(times)


def weight_matmuls(
    model, rows: int, *, names: tuple[str, ...] | None = None, all_layers: bool = True, lm_head: bool = False
) -> Callable[[], None]:
    """A call running `model`'s weight matmuls at `rows` rows, `x @ W.t()` as the model runs
    them: a layer's 2-D weights (or only `names`), in every layer or the first alone, then
    the LM head if asked; random inputs made once. What the benchmarks time against the
    weights' HBM floor (bench_harness) and by prefill bucket (bench_prefill_graphs --gemms)."""
    dev, dt = model.device, model.dtype
    ins = {n: torch.randn(rows, w.shape[1], device=dev, dtype=dt)
           for n, w in model.layers[0].items() if w.dim() == 2 and (names is None or n in names)}
    layers = model.layers if all_layers else model.layers[:1]
    head = torch.randn(rows, model.lm_head.shape[1], device=dev, dtype=dt) if lm_head else None

    def run() -> None:
        for layer in layers:
            for n, x in ins.items():
                x @ layer[n].t()
        if head is not None:
            head @ model.lm_head.t()

    return run


def measure_hbm_read(device: torch.device, reps: int = 20, gib: float = 4.0) -> float:
    """HBM read bandwidth in bytes/s: the best of a reduction over a `gib` GiB bf16 buffer
    (reads it once) and a copy of it (reads and writes it, counted both ways), far beyond
    L2. -> bytes/s."""
    n = int(gib * 2**30) // 2
    x = torch.randn(n, device=device, dtype=torch.bfloat16)
    out = torch.empty((), device=device, dtype=torch.float32)
    t_sum = graph_seconds(lambda: torch.sum(x, dim=0, dtype=torch.float32, out=out), reps)
    nbytes = x.numel() * x.element_size()
    dst = torch.empty(n // 2, device=device, dtype=torch.bfloat16)
    t_copy = graph_seconds(lambda: dst.copy_(x[: n // 2]), reps)
    return max(nbytes / t_sum, 2 * dst.numel() * dst.element_size() / t_copy)


def measure_matmul_rate(device: torch.device, reps: int = 20, n: int = 8192) -> float:
    """Dense bf16 matmul throughput in FLOP/s: an n x n x n GEMM (cuBLAS at its best shape).
    -> FLOP/s."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    c = torch.empty(n, n, device=device, dtype=torch.bfloat16)
    return 2 * n**3 / graph_seconds(lambda: torch.matmul(a, b, out=c), reps, inner=4)


def report_rates(device: torch.device, progress: Callable[[str], None]) -> tuple[float, float]:
    """Both rates, logged as calibration's "HBM read" and "matmul" lines (gpu.calibrate.refit
    reads them back) and returned as the log rounds them, so a refit of the log gives the
    profile's own figures: (GB/s, TFLOP/s), (0, 0) without CUDA. About a second; the buffers
    (6 GiB, 384 MiB) are freed before the forward timings."""
    if device.type != "cuda":
        progress("  rates: not measured without CUDA (HBM read bandwidth, bf16 matmul)")
        return 0.0, 0.0
    gbps = round(measure_hbm_read(device) / 1e9)
    tflops = round(measure_matmul_rate(device) / 1e12, 1)
    torch.cuda.empty_cache()
    progress(f"  HBM read {gbps:.0f} GB/s (best of a sum over and a copy of a 4 GiB bf16 buffer)")
    progress(f"  matmul {tflops:.1f} TFLOP/s (dense bf16 8192 x 8192 x 8192 GEMM)")
    return float(gbps), tflops
