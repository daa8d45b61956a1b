"""Where does a forward's time go? A diagnostic for calibrate-vs-driver gaps (GPU only).

python -m gpu.diag [scenario.yaml policy]: times decode steps of the driver's shapes with and
without LoRA, prints the torch profiler's top ops for one LoRA decode step, then (optionally)
runs one policy of a scenario through the CudaDriver under cProfile.
"""

from __future__ import annotations

import cProfile
import pstats
import sys

import torch

from gpu.calibrate.timer import Timer
from gpu.lora import LoraSlots
from gpu.model import KVPool, LlamaModel, StepInput
from sim.config import MODEL_PRESETS


def main() -> None:
    dev = torch.device("cuda")
    shape = MODEL_PRESETS["llama-3.1-8b"]
    slots = LoraSlots.random(shape, 16, 64, dev, torch.bfloat16)
    model = LlamaModel(shape, device=dev, dtype=torch.bfloat16, lora=slots)
    kv = KVPool(shape, 64, 600, dev, torch.bfloat16)
    timer = Timer(dev)

    def inp(b, c, lb=None):
        return StepInput(
            torch.randint(0, shape.vocab, (b,), device=dev), list(range(b)), [c] * b, [1] * b, lb
        )

    for b, c, n in [
        (24, 500, 0),
        (24, 500, 4),
        (24, 500, 12),
        (24, 500, 16),
        (1, 500, 0),
        (1, 500, 1),
    ]:
        lb = slots.batch([i % n for i in range(b)]) if n else None
        x = inp(b, c, lb)
        t = timer.median(lambda x=x: model.forward(x, kv).argmax(-1), 7)
        print(f"decode b={b} c={c} adapters={n}: {t * 1e3:.2f} ms", flush=True)
    lb = slots.batch([i % 12 for i in range(24)])
    x = inp(24, 500, lb)
    for _ in range(2):
        model.forward(x, kv)
    torch.cuda.synchronize()
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    ) as prof:
        model.forward(x, kv).argmax(-1)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18), flush=True)
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=12), flush=True)
    torch.cuda.empty_cache()
    if len(sys.argv) > 2:
        from gpu.validate import GpuOptions, run_gpu
        from sim.runner import load_scenario
        from sim.workload import generate_trace

        sc = load_scenario(sys.argv[1])
        tr = generate_trace(sc)
        pr = cProfile.Profile()
        pr.enable()
        r = run_gpu(sc, sys.argv[2], tr, GpuOptions())
        pr.disable()
        print({k: r.summary[k] for k in ("ttft_median_ms", "e2e_mean_ms", "tpot_median_ms")})
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
