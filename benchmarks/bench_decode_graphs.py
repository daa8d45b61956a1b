"""Decode step time of the GPU harness: eager model.forward vs gpu.decode_graphs.

Prints, per batch size and adapters in the batch, the wall time of one step (device
synchronized around it, median of --reps) both ways, the GPU-only time of the graph step
(CUDA events), and how long capturing every bucket of a driver takes. Run on the device:

    python benchmarks/bench_decode_graphs.py --model llama-3.1-8b --slots 4 --rank 64
On CPU it runs the tiny model without graphs (a smoke run of the same code).
"""

from __future__ import annotations

import argparse
import time

from gpu.calibrate import Timer
from gpu.decode_graphs import DecodeRunner
from gpu.lora import LoraSlots
from gpu.model import KVPool, LlamaModel, StepInput, default_device, default_dtype
from sim.config import MODEL_PRESETS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="preset (default: llama-3.1-8b on GPU, tiny on CPU)")
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--reps", type=int, default=15)
    a = ap.parse_args()
    dev = default_device()
    shape = MODEL_PRESETS[a.model or ("llama-3.1-8b" if dev.type == "cuda" else "tiny")]
    dtype = default_dtype(dev)
    batches = [int(x) for x in a.batches.split(",")]
    slots = LoraSlots.random(shape, a.slots, a.rank, dev, dtype)
    model = LlamaModel(shape, device=dev, dtype=dtype, lora=slots)
    kv = KVPool(shape, max(batches), a.ctx + a.reps * 4 + 64, dev, dtype)
    timer = Timer(dev)
    t0 = time.perf_counter()
    run = DecodeRunner(model, kv, max_batch=max(batches))
    run.prewarm()
    print(
        f"{shape.name} on {dev} ({'graphs' if run.graphs else 'no graphs'}): "
        f"{len(run.keys())} buckets x {shape.layers + 1} pieces captured in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    print(f"{'batch':>5} {'adapters':>8} {'eager ms':>9} {'graph ms':>9} {'graph GPU ms':>12}")
    for b in batches:
        for n in (0, min(a.slots, b)):
            tok = [i % n if n else -1 for i in range(b)]
            rows = list(range(b))

            def eager(b=b, tok=tok, rows=rows):
                inp = StepInput(kv.last_tok[:b], rows, [a.ctx] * b, [1] * b, slots.batch(tok))
                kv.last_tok[:b] = model.forward(inp, kv).argmax(-1)

            def graph(tok=tok, rows=rows):
                run.prepare(rows, [a.ctx] * len(rows), tok)
                run.step()

            e = timer.median(eager, a.reps, warmup=2)
            g = timer.median(graph, a.reps, warmup=2)
            ge = timer.events(graph, a.reps, warmup=1)
            print(f"{b:>5} {n:>8} {e * 1e3:9.2f} {g * 1e3:9.2f} {ge * 1e3:12.2f}")


if __name__ == "__main__":
    main()
