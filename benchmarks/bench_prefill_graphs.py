"""Prefill time of the GPU harness: eager model.forward vs gpu.prefill_graphs.

Both run the same paged varlen attention and SGMV LoRA (gpu.kernels); the graphs replay
everything else. Prints, per packed prefill size and adapters in it, the wall time of one
prefill (device synchronized around it, median of --reps) both ways, also right after
--idle-ms of host sleep (the light validation scenarios idle between arrivals), the GPU-only
time of the graph prefill (CUDA events), and how long capturing every bucket takes. Run on
the device:

    python benchmarks/bench_prefill_graphs.py --model llama-3.1-8b --slots 4 --rank 64
On CPU it runs the tiny model without graphs (a smoke run of the same code).
"""

from __future__ import annotations

import argparse
import time

from gpu.calibrate import Timer
from gpu.kv_cache import PagedKV
from gpu.lora import LoraSlots
from gpu.model import LlamaModel, StepInput, default_device, default_dtype
from gpu.prefill_graphs import PrefillRunner
from sim.config import MODEL_PRESETS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="preset (default: llama-3.1-8b on GPU, tiny on CPU)")
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--tokens", default="128,400,1024,2048", help="packed prefill sizes")
    ap.add_argument("--item", type=int, default=512, help="tokens per request in a prefill")
    ap.add_argument("--max-tokens", type=int, default=2048, help="largest graphed prefill")
    ap.add_argument("--idle-ms", type=float, default=300.0)
    ap.add_argument("--reps", type=int, default=9)
    a = ap.parse_args()
    dev = default_device()
    shape = MODEL_PRESETS[a.model or ("llama-3.1-8b" if dev.type == "cuda" else "tiny")]
    dtype = default_dtype(dev)
    sizes = [int(x) for x in a.tokens.split(",")]
    slots = LoraSlots.random(shape, a.slots, a.rank, dev, dtype)
    model = LlamaModel(shape, device=dev, dtype=dtype, lora=slots)
    rows = max(-(-t // a.item) for t in sizes)
    kv = PagedKV(shape, rows, a.item, dev, dtype)
    kv.take_all_rows()  # the inputs address rows 0.. directly
    timer = Timer(dev)
    run = PrefillRunner(model, kv, max_tokens=a.max_tokens)
    t0 = time.perf_counter()
    run.prewarm()
    print(
        f"{shape.name} on {dev} ({'graphs' if run.graphs else 'no graphs'}): "
        f"{len(run.keys())} buckets x {shape.layers + 1} pieces captured in "
        f"{time.perf_counter() - t0:.1f} s"
    )

    def idle() -> None:
        time.sleep(a.idle_ms / 1e3)

    print(f"{'tokens':>6} {'adapters':>8} {'eager ms':>9} {'graph ms':>9} {'graph GPU ms':>12} "
          f"{'eager idle':>10} {'graph idle':>10}")
    for t in sizes:
        lens = [a.item] * (t // a.item) + ([t % a.item] if t % a.item else [])
        toks = StepInput(
            model.embed.new_zeros(t, dtype=kv.last_tok.dtype), list(range(len(lens))),
            [0] * len(lens), lens,
        )
        for n in sorted({0, 1, min(a.slots, len(lens))}):
            tok = [(i % n if n else -1) for i, k in enumerate(lens) for _ in range(k)]
            lb = slots.meta(tok)  # the SGMV table (None without adapters)

            def eager(tok=tok, lb=lb, toks=toks):
                inp = StepInput(toks.tokens, toks.rows, toks.ctx, toks.new, lb)
                return model.forward(inp, kv).argmax(-1)

            def graph(tok=tok, toks=toks):
                return run.run(toks, tok).argmax(-1)

            e = timer.median(eager, a.reps, warmup=2)
            g = timer.median(graph, a.reps, warmup=2)
            ge = timer.events(graph, a.reps, warmup=1)
            ei = timer.median(eager, max(3, a.reps // 3), warmup=0, between=idle)
            gi = timer.median(graph, max(3, a.reps // 3), warmup=0, between=idle)
            print(f"{t:>6} {n:>8} {e * 1e3:9.2f} {g * 1e3:9.2f} {ge * 1e3:12.2f} "
                  f"{ei * 1e3:10.2f} {gi * 1e3:10.2f}")


if __name__ == "__main__":
    main()
