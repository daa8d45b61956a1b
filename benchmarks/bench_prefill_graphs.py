"""Prefill time of the GPU harness: eager model.forward vs gpu.prefill_graphs.

Both run the same paged varlen attention and SGMV LoRA (gpu.kernels); the graphs replay
everything else. Prints, per packed prefill size and adapters in it, the wall time of one
prefill (device synchronized around it, median of --reps) both ways, also right after
--idle-ms of host sleep (the light validation scenarios idle between arrivals), the GPU-only
time of the graph prefill (CUDA events), and how long capturing every bucket takes. Run on
the device:

    python benchmarks/bench_prefill_graphs.py --model llama-3.1-8b --slots 4 --rank 64
On CPU it runs the tiny model without graphs (a smoke run of the same code).

`--gemms` also times one layer's four weight matmuls (qkv, o, gate_up, down, as the model
runs them) at every prefill token bucket and marks a bucket that a larger one beats: the four
calibrations of this harness logged the 448-token prefill 23-33 % slower than the 512-token
one, and this found cuBLAS's GEMMs at 448 rows a third slower than at 512 on an H100: a GPU's
config table lists such buckets in `prefill_pad_past` (gpu/kernels/configs.py), and the
prefill graphs pad past them.
"""

from __future__ import annotations

import argparse
import time

from gpu.calibrate import Timer
from gpu.calibrate.rates import graph_seconds, weight_matmuls
from gpu.kv_cache import PagedKV
from gpu.lora import LoraSlots
from gpu.model import LlamaModel, StepInput, default_device, default_dtype
from gpu.prefill_graphs import PrefillRunner, token_buckets
from sim.config import MODEL_PRESETS


def beaten_by(seconds: dict[int, float]) -> dict[int, int]:
    """Each bucket that a larger bucket runs in less time -> the smallest such bucket (what a
    prefill of that size would rather be padded to)."""
    out = {}
    for m, t in seconds.items():
        faster = [n for n, u in seconds.items() if n > m and u < t]
        if faster:
            out[m] = min(faster)
    return out


def bench_gemms(model: LlamaModel, buckets: list[int], reps: int, timer: Timer) -> None:
    """One layer's weight matmuls at every bucket's row count: ms for all layers, TFLOP/s."""
    layer = model.layers[0]
    names = ("qkv", "o", "gate_up", "down")
    cuda = model.embed.is_cuda
    seconds = {}
    for m in buckets:
        t = 0.0
        for name in names:  # each projection on its own, in the first layer
            fn = weight_matmuls(model, m, names=(name,), all_layers=False)
            t += graph_seconds(fn, reps) if cuda else timer.median(fn, reps, warmup=1)
        seconds[m] = t * len(model.layers)
    per_row = 2 * sum(layer[n].numel() for n in names) * len(model.layers)
    beaten = beaten_by(seconds)
    print(f"\nweight matmuls of a prefill ({', '.join(names)}; {len(model.layers)} layers)")
    print(f"{'tokens':>6} {'ms':>8} {'TFLOP/s':>8}  slower than")
    for m, t in seconds.items():
        note = f"  {beaten[m]} tokens ({seconds[beaten[m]] * 1e3:.2f} ms)" if m in beaten else ""
        print(f"{m:>6} {t * 1e3:8.2f} {per_row * m / t / 1e12:8.1f}{note}")


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
    ap.add_argument("--gemms", action="store_true",
                    help="also time the weight matmuls at every token bucket up to --max-tokens")
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
    if a.gemms:
        bench_gemms(model, token_buckets(a.max_tokens), a.reps, timer)


if __name__ == "__main__":
    main()
