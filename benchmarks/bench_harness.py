"""The GPU harness against the rooflines a production engine runs at (issue #26 targets).

Prints, for Llama-3.1-8B in bf16 on this GPU (GPU times from CUDA events, medians):
- the device's rates, measured as calibrate measures them (gpu.calibrate.rates): HBM read
  bandwidth and dense bf16 matmul FLOP/s;
- the decode step (one CUDA-graph replay, gpu.decode_graphs) per batch x context, against
  its HBM floor = (weight bytes + KV bytes the step reads) / HBM read bandwidth; target
  <= 1.3x; cells whose KV does not fit in memory are skipped and say so;
- per batch, the step's weight matmuls alone (cuBLAS, the model's own weights, one graph)
  against the weights' HBM floor: how much of a step's excess is the GEMMs' and so not the
  harness's kernels or graphs;
- LoRA at rank 64 (all seven projections): the extra decode time of 1 adapter at batch 1
  (target <= 1.0 ms) and of 8 distinct adapters at batch 64, context 512 (target <= 20 % of
  the base step), for each part of the LoRA the side stream can run (gpu.lora `side`: the
  shrink, shrink and expand, none), the device's default first;
- a prefill of 16 x 512 tokens (eager, as the driver runs prefills above the graph limit)
  against 2 x decoder parameters x tokens / matmul rate; target <= 1.3x (the LM head and
  the embedding are left out of the bound: they run on 16 rows, not 8,192);
- how long capturing the decode graphs took.
Run on the device:

    python benchmarks/bench_harness.py [--batches 1,16,64,128] [--contexts 128,512,2048,4096]
On CPU it runs the tiny model without graphs, a smoke run of the same code (no rates).
"""

from __future__ import annotations

import argparse

import torch

from gpu.calibrate.rates import measure_hbm_read, measure_matmul_rate
from gpu.calibrate.timer import Timer
from gpu.decode_graphs import DecodeRunner
from gpu.kv_cache import PagedKV
from gpu.lora import LoraSlots
from gpu.model import LlamaModel, StepInput, default_device, default_dtype
from gpu.prefill_graphs import PrefillRunner
from sim.config import MODEL_PRESETS


def _kv_pages(shape, dev, reserve_gib: float) -> int | None:
    """Pages that fit in free device memory after `reserve_gib` (None on CPU: no limit)."""
    if dev.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(dev)
    per_page = PagedKV.bytes_per_token(shape) * 16
    return max(64, int((free - reserve_gib * 2**30) // per_page))


def gemm_time(model: LlamaModel, batch: int, reps: int) -> float:
    """GPU seconds of a decode step's weight matmuls alone at `batch` rows (each layer's
    qkv, o, gate_up, down and the LM head, as `x @ W.t()` like the model), from one graph."""
    from gpu.calibrate.rates import graph_seconds, weight_matmuls

    return graph_seconds(weight_matmuls(model, batch, lm_head=True), reps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="preset (default: llama-3.1-8b on GPU, tiny on CPU)")
    ap.add_argument("--batches", default="1,16,64,128")
    ap.add_argument("--contexts", default="128,512,2048,4096")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--prefill", default="16x512", help="ITEMSxTOKENS of the prefill row")
    ap.add_argument("--blas", default="default,cublaslt", help="BLAS libraries to time the "
                    "GEMM-only rows with (torch.backends.cuda.preferred_blas_library)")
    a = ap.parse_args()
    dev = default_device()
    cuda = dev.type == "cuda"
    shape = MODEL_PRESETS[a.model or ("llama-3.1-8b" if cuda else "tiny")]
    dtype = default_dtype(dev)
    batches = [int(x) for x in a.batches.split(",")]
    contexts = [int(x) for x in a.contexts.split(",")]
    if cuda:
        print(f"device: {torch.cuda.get_device_name(dev)}, torch {torch.__version__}")
        hbm = measure_hbm_read(dev)
        flops = measure_matmul_rate(dev)
        print(f"rates: HBM read {hbm / 1e9:.0f} GB/s, dense bf16 matmul {flops / 1e12:.0f} TFLOP/s")
    else:
        hbm = flops = None
        print(f"device: cpu ({shape.name}, no graphs, no rates: a smoke run)")
    slots = LoraSlots.random(shape, 8, a.rank, dev, dtype)
    model = LlamaModel(shape, device=dev, dtype=dtype, lora=slots)
    steps = a.reps + 8
    items, tokens = (int(x) for x in a.prefill.split("x"))
    kv = PagedKV(
        shape, max(*batches, items), max(*contexts, tokens) + steps, dev, dtype,
        pages=_kv_pages(shape, dev, 6.0),
    )
    timer = Timer(dev)
    run = DecodeRunner(model, kv, max_batch=max(batches))
    per_tok = PagedKV.bytes_per_token(shape)

    def step_time(b: int, ctx: int, tok: list[int], runner: DecodeRunner = run) -> float:
        kv.reset()
        rows = [kv.row(i, ctx + steps) for i in range(b)]
        runner.prepare(rows, [ctx] * b, tok)  # the graph's inputs, then steps only
        return timer.events(runner.step, a.reps, warmup=3)

    print(f"\n{'batch':>5} {'ctx':>5} {'step ms':>8} {'floor ms':>8} {'x floor':>7}")
    worst = 0.0
    for b in batches:
        for ctx in contexts:
            need = b * -(-(ctx + steps) // kv.page_size)
            if need > kv.pages:
                print(f"{b:>5} {ctx:>5}  KV of {b * ctx} tokens does not fit in memory: skipped")
                continue
            t = step_time(b, ctx, [-1] * b)
            if hbm is None:
                print(f"{b:>5} {ctx:>5} {t * 1e3:8.2f}")
                continue
            floor = (model.weight_bytes + b * (ctx + 1) * per_tok) / hbm
            worst = max(worst, t / floor)
            print(f"{b:>5} {ctx:>5} {t * 1e3:8.2f} {floor * 1e3:8.2f} {t / floor:7.2f}")
    if hbm is not None:
        print(f"decode: worst {worst:.2f}x the HBM floor (target <= 1.3)")
        wfloor = model.weight_bytes / hbm
        default_blas = torch.backends.cuda.preferred_blas_library()
        for lib in a.blas.split(","):
            torch.backends.cuda.preferred_blas_library(default_blas if lib == "default" else lib)
            print(f"\n{'batch':>5} {'GEMMs ms':>8} {'floor ms':>8} {'x floor':>7}  (weight matmuls "
                  f"only, BLAS {torch.backends.cuda.preferred_blas_library()})")
            for b in batches:
                t = gemm_time(model, b, a.reps)
                print(f"{b:>5} {t * 1e3:8.2f} {wfloor * 1e3:8.2f} {t / wfloor:7.2f}")
        torch.backends.cuda.preferred_blas_library(default_blas)

    print(f"\nLoRA rank {a.rank}, all projections (targets: 1 adapter <= 1.0 ms, 8 adapters <= 20 %):")
    default = slots.side
    labels = {"shrink": "shrink on the side stream", "lora": "shrink and expand on the side stream",
              "none": "all in line"}
    variants = {default: run}
    if slots.side_stream is not None:  # A/B: the same graphs with each part on the side stream
        for mode in labels:
            if mode not in variants:
                slots.side = mode
                variants[mode] = DecodeRunner(model, kv, max_batch=max(batches))
    for b, ctx, n in ((1, 512, 1), (64, 512, 8)):
        if b > max(batches):
            continue
        base = step_time(b, ctx, [-1] * b)
        for mode, runner in variants.items():
            slots.side = mode  # graphs are captured on first use, with this setting
            lora = step_time(b, ctx, [i % n for i in range(b)], runner)
            print(f"  {n} adapter(s), batch {b}, ctx {ctx}, {labels[mode]}"
                  f"{' (default)' if mode == default else ''}: base {base * 1e3:.2f} ms, "
                  f"with LoRA {lora * 1e3:.2f} ms, extra {(lora - base) * 1e3:.2f} ms "
                  f"({(lora / base - 1) * 100:.1f} %)")
    slots.side = default

    kv.reset()
    pre = PrefillRunner(model, kv, max_tokens=0)
    rows = [kv.row(i, tokens + 1) for i in range(items)]
    ids = torch.randint(0, shape.vocab, (items * tokens,), device=dev)
    inp = StepInput(ids, rows, [0] * items, [tokens] * items)
    t = timer.events(lambda: pre.run(inp, [-1] * (items * tokens)), max(3, a.reps // 4), warmup=2)
    line = f"\nprefill {items} x {tokens} tokens: {t * 1e3:.1f} ms"
    if flops is not None:
        layer_params = shape.params() - 2 * shape.vocab * shape.hidden
        bound = 2 * layer_params * items * tokens / flops
        line += f", matmul bound {bound * 1e3:.1f} ms, {t / bound:.2f}x (target <= 1.3)"
    print(line)
    print(f"decode graphs captured in {run.captured_s:.1f} s ({len(run._keys)} buckets)")


if __name__ == "__main__":
    main()
