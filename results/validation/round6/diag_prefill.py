"""Round 6 diagnostic: prefills in validation runs take ~3 ms more than calibration's table
for the same token bucket. Times one 414-token (bucket 448) single-adapter prefill on one
CudaDriver (Llama-3.1-8B, 4 resident rank-64 adapters), 25 reps each:
  A calibrate's way: Timer.median(prefiller.run) on the default stream
  B the same inside the driver's compute-stream context
  C the CudaDriver's own path: handle(Forward(prefill)) with its markers, GPU-event duration;
    also how long handle() took to return (host)
  D as C, right after a queued 4-step decode (the GPU busy when the prefill is issued)
  E as C, after 300 ms of idle sleep
Run on the device: python results/validation/round6/diag_prefill.py"""

import time

import torch

from gpu.adapters import HostPool, write_population
from gpu.calibrate import Timer
from gpu.driver import CudaDriver
from gpu.model import StepInput
from sim.config import MODEL_PRESETS
from sim.core.effects import Batch, BatchItem, Forward
from sim.core.model import ALL_TARGETS, AdapterSpec, Request, Trace

cuda = torch.cuda.is_available()
shape = MODEL_PRESETS["llama-3.1-8b" if cuda else "tiny"]  # CPU: smoke run
T = 414 if cuda else 14
ads = tuple(AdapterSpec.from_shape(f"a{i}", 64, ALL_TARGETS, shape) for i in range(4))
N = 25
reqs = tuple(Request(i, 0.0, f"a{i % 4}", T, 64) for i in range(5 * N + 16))
trace = Trace(ads, reqs)
paths = write_population("/tmp/diag-adapters", ads, shape, seed=0)
host = HostPool(shape, paths, mode="pinned")
drv = CudaDriver(trace, shape, host, n_slots=4, kv_rows=64)
drv.make_resident([a.name for a in ads])
drv.warmup()
drv.start()
timer = Timer(drv.device)
rid = iter(range(len(reqs)))
live: list[int] = []


def batch():
    r = next(rid)
    while len(live) > 40:
        drv.kv.release(live.pop(0))
    live.append(r)
    return Batch("prefill", (BatchItem(r, f"a{r % 4}", r % 4, ads[0].rank, T, 0),))


toks = torch.randint(0, shape.vocab, (T,), device=drv.device)


def direct():
    return drv.prefiller.run(StepInput(toks, [63], [0], [T]), [0] * T).argmax(-1)


def in_stream():
    with drv.clock.stream("compute"):
        direct()


host_s: list[float] = []


def via_driver():
    t0 = time.perf_counter()
    tk = drv.handle(Forward(batch(), wait=False))
    host_s.append(time.perf_counter() - t0)
    res = drv._result(tk)
    return res.end - res.start


def after_decode():
    dec = Batch("decode", tuple(BatchItem(r, f"a{r % 4}", r % 4, 64, 1, T) for r in live[-8:]))
    drv.handle(Forward(dec, wait=False, max_steps=4))
    return via_driver()


a = timer.median(direct, N, warmup=3)
b = timer.median(in_stream, N, warmup=3)
c = sorted(via_driver() for _ in range(N))[N // 2]
hc = sorted(host_s)[N // 2]
d = sorted(after_decode() for _ in range(N))[N // 2]
e = []
for _ in range(8):
    time.sleep(0.3)
    e.append(via_driver())
print(f"A calibrate-style median {a * 1e3:.2f} ms")
print(f"B in compute stream     {b * 1e3:.2f} ms")
print(f"C driver Forward (GPU events) median {c * 1e3:.2f} ms; handle() returned after {hc * 1e3:.2f} ms")
print(f"D after a queued decode (GPU events) median {d * 1e3:.2f} ms")
print("E after 300 ms idle: " + " ".join(f"{x * 1e3:.1f}" for x in e) + " ms")
