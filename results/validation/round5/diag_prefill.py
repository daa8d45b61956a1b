"""Round 5 diagnostic: why do prefills take ~10 % longer in validation runs than calibration
measures? Times one 400-token single-adapter prefill on one model four ways, 25 reps each:
  A calibrate's way: Timer.median(model.forward) on the default stream
  B the same inside the driver's compute-stream context
  C the CudaDriver's own path: handle(Forward(prefill)) with its markers, GPU-event duration
  D as C, after 300 ms of idle poll-sleeping (the driver between arrivals)
Run on the device: python results/validation/round5/diag_prefill.py"""

import time

import torch

from gpu.adapters import HostPool, write_population
from gpu.calibrate import Timer
from gpu.driver import CudaDriver
from gpu.model import StepInput
from sim.config import MODEL_PRESETS
from sim.core.effects import Batch, BatchItem, Forward
from sim.core.model import ALL_TARGETS, AdapterSpec, Request, Trace

shape = MODEL_PRESETS["llama-3.1-8b" if torch.cuda.is_available() else "tiny"]  # CPU: smoke run
ads = tuple(AdapterSpec.from_shape(f"a{i}", 64, ALL_TARGETS, shape) for i in range(4))
N = 25
reqs = tuple(Request(i, 0.0, f"a{i % 4}", 400, 2) for i in range(4 * N + 8))
trace = Trace(ads, reqs)
paths = write_population("/tmp/diag-adapters", ads, shape, seed=0)
host = HostPool(shape, paths, mode="pinned")
drv = CudaDriver(trace, shape, host, n_slots=4, kv_rows=64)
drv.make_resident([a.name for a in ads])
drv.warmup()
drv.start()
timer = Timer(drv.device)
rid = iter(range(len(reqs)))


def batch():
    r = next(rid)
    drv.kv.release(r - 1) if r else None
    return Batch("prefill", (BatchItem(r, f"a{r % 4}", r % 4, ads[0].rank, 400, 0),))


toks = torch.randint(0, shape.vocab, (400,), device=drv.device)


def direct():
    lb = drv.slots.batch([0] * 400)
    return drv.model.forward(StepInput(toks, [60], [0], [400], lb), drv.kv).argmax(-1)


def in_stream():
    with drv.clock.stream("compute"):
        direct()


def via_driver():
    res = drv.handle(Forward(batch()))
    return res.end - res.start


a = timer.median(direct, N, warmup=3)
b = timer.median(in_stream, N, warmup=3)
c = sorted(via_driver() for _ in range(N))[N // 2]
d = []
for _ in range(8):
    time.sleep(0.3)
    d.append(via_driver())
print(f"A calibrate-style median {a * 1e3:.2f} ms")
print(f"B in compute stream     {b * 1e3:.2f} ms")
print(f"C driver Forward (GPU events) median {c * 1e3:.2f} ms")
print("D after 300 ms idle: " + " ".join(f"{x * 1e3:.1f}" for x in d) + " ms")
