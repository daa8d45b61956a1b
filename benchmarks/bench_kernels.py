"""Kernel throughput of gpu.kernels: paged decode attention against HBM bandwidth, and SGMV
LoRA (shrink + expand) of a whole decode step.

Every figure is the GPU time of the op replayed from a CUDA graph (as the harness runs a
decode step), from CUDA events, median of --reps replays. Prints:
- the HBM read bandwidth as calibrate measures it (gpu.calibrate.rates: the best of a `sum`
  over a 4 GiB bf16 buffer and a copy of it), the yardstick of the attention rows;
- paged decode attention, one layer of Llama-3.1-8B (32 heads, 8 KV heads, head_dim 128,
  bf16, pages of 16 in shuffled order), per batch x context: time, GB/s of KV read (4 KiB per
  token) and its fraction of the measured read bandwidth; rows whose KV fits in L2 are
  marked, their GB/s is not an HBM figure;
- SGMV LoRA at rank 64 over all four fused projections of 32 layers of distinct weights (so
  they come from HBM, not L2), as one CUDA graph: 1 adapter / batch 1, 8 adapters / batch
  64 (the issue #26 decode targets) and 8 adapters x 128-token prefill: time per step and
  per launch, and bytes of adapter weights read / time.
Run on the device:

    python benchmarks/bench_kernels.py [--tune]
    python benchmarks/bench_kernels.py --tune-sgmv [--write tuned.json]
    python benchmarks/bench_kernels.py --tune-sgmv-prefill [--write tuned.json]
    python benchmarks/bench_kernels.py --profile-sgmv   # per-kernel time of the LoRA steps (decode, prefill)
    python benchmarks/bench_kernels.py --sgmv-capacity  # prefill LoRA by graph segment capacity
(--tune adds a sweep of decode-attention launch configs at batch 64 x context 2048;
--tune-sgmv sweeps only the decode SGMV configs and can save the winner for
LORASIM_KERNEL_CONFIGS=tuned.json, which any later run then uses.)
Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import argparse
import os

import torch

from gpu.calibrate.rates import graph_seconds as graph_time
from gpu.calibrate.rates import measure_hbm_read

KV_HEADS, HEADS, HEAD_DIM, PAGE = 8, 32, 128, 16


def bench_decode_attention(batches: list[int], contexts: list[int], reps: int, hbm: float) -> None:
    from gpu.kernels.configs import decode_splits
    from gpu.kernels.decode_attention import paged_decode_attention

    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 * 2**20)
    max_tokens = max(batches) * max(contexts)
    num_pages = max_tokens // PAGE
    k = torch.randn(num_pages, PAGE, KV_HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    print(f"\npaged decode attention, one Llama-3.1-8B layer ({HEADS} heads, {KV_HEADS} KV "
          f"heads, hd {HEAD_DIM}, page {PAGE}, bf16); HBM read yardstick {hbm:.0f} GB/s")
    print(f"{'batch':>5} {'context':>7} {'splits':>6} {'us':>8} {'KV MB':>8} {'GB/s':>7} "
          f"{'of HBM':>6}")
    for b in batches:
        for ctx in contexts:
            pages = ctx // PAGE
            perm = torch.randperm(num_pages, device="cuda")[: b * pages]
            table = perm.view(b, pages).to(torch.int32)
            lens = torch.full((b,), ctx, dtype=torch.int32, device="cuda")
            q = torch.randn(b, HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
            splits = decode_splits(b, torch.cuda.get_device_name())
            t = graph_time(
                lambda q=q, table=table, lens=lens: paged_decode_attention(
                    q, k, v, table, lens, HEAD_DIM**-0.5
                ),
                reps,
                inner=10,
            )
            nbytes = b * ctx * KV_HEADS * HEAD_DIM * 2 * 2
            note = "  (fits L2)" if nbytes < l2 else ""
            print(f"{b:>5} {ctx:>7} {splits:>6} {t * 1e6:8.1f} {nbytes / 1e6:8.1f} "
                  f"{nbytes / t / 1e9:7.0f} {nbytes / t / 1e9 / hbm:6.0%}{note}")


def tune_decode_attention(reps: int, hbm: float, batch: int = 64, ctx: int = 2048) -> None:
    """GB/s of a few decode-attention launch configs at one size (edit configs.py with the
    winner): the device's config table entry is swapped in place for each run."""
    from gpu.kernels.configs import device_configs
    from gpu.kernels.decode_attention import paged_decode_attention

    table = device_configs(torch.cuda.get_device_name())
    saved = dict(table["decode_attn"])
    pages = ctx // PAGE
    k = torch.randn(batch * pages, PAGE, KV_HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    bt = torch.randperm(batch * pages, device="cuda").view(batch, pages).to(torch.int32)
    lens = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    q = torch.randn(batch, HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    nbytes = batch * ctx * KV_HEADS * HEAD_DIM * 4
    print(f"\ndecode attention configs at batch {batch} x context {ctx}")
    print(f"{'BLOCK_N':>7} {'warps':>5} {'stages':>6} {'splits':>6} {'us':>8} {'GB/s':>7} {'of HBM':>6}")
    try:
        for bn, warps, stages in [(32, 4, 2), (32, 4, 3), (64, 4, 2), (64, 8, 2), (32, 8, 2), (16, 4, 3)]:
            table["decode_attn"] = {"BLOCK_N": bn, "num_warps": warps, "num_stages": stages}
            for splits in (2, 4, 8):
                t = graph_time(
                    lambda s=splits: paged_decode_attention(q, k, v, bt, lens, HEAD_DIM**-0.5, s),
                    reps,
                    inner=10,
                )
                print(f"{bn:>7} {warps:>5} {stages:>6} {splits:>6} {t * 1e6:8.1f} "
                      f"{nbytes / t / 1e9:7.0f} {nbytes / t / 1e9 / hbm:6.0%}")
    finally:
        table["decode_attn"] = saved


def _sgmv_setup(rank: int, layers: int = 32, n_slots: int = 8):
    """LoRA slots of Llama-3.1-8B at `rank` (all seven modules, `n_slots` slots, `layers`
    layers of distinct weights) and the decode cases of the issue #26 targets."""
    import gpu.kernels as K
    from gpu.lora import LoraSlots
    from sim.core.model import ModelShape

    shape = ModelShape(layers=layers)
    slots = LoraSlots.random(shape, n_slots, rank, "cuda", torch.bfloat16)
    fused = [(layer, f, K.LoraSlices.of(slots, layer, f)) for layer in range(layers) for f in K.FUSED]
    cases = {
        "1 adapter, batch 1": [0],
        "1 adapter, batch 64": [0] * 64,
        "8 adapters, batch 64": [i % 8 for i in range(64)],
        "8 adapters, prefill 8x128": _packed(8, 128),
    }
    return shape, slots, fused, cases


def _sgmv_step(shape, slots, fused, tok: list[int], rank: int, decode: bool, capacity: int | None = None):
    """A closure running shrink + expand of every fused projection of every layer (a decode
    step's LoRA work, without the base model), with bucket-sized metadata as the decode
    graphs build it (`capacity`: that many segments, as a graph for that many adapters)."""
    import gpu.kernels as K

    n = slots.n_slots
    if capacity is None and decode:
        capacity = min(len(tok), 8)
    caps = {"max_tokens": len(tok), "max_segments": capacity, "max_len": len(tok)} if capacity else {}
    meta = K.LoraMeta.build(tok, [rank] * n, [1.0] * n, "cuda", **caps)
    xs = {n: torch.randn(len(tok), n, device="cuda", dtype=torch.bfloat16)
          for n in {sl.in_dim for _, _, sl in fused}}
    ys = {n: torch.zeros(len(tok), n, device="cuda", dtype=torch.bfloat16)
          for n in {sl.out_offsets[-1] + sl.widths[-1] for _, _, sl in fused}}

    def step() -> None:
        for _, _, sl in fused:
            K.lora_apply(ys[sl.out_offsets[-1] + sl.widths[-1]], xs[sl.in_dim], slots.pool, sl, rank, meta)

    return step


def bench_sgmv(reps: int, rank: int, layers: int = 32) -> None:
    """SGMV LoRA of a whole decode step: 4 fused projections x `layers`, 2 launches each."""
    shape, slots, fused, cases = _sgmv_setup(rank, layers)
    per_adapter = slots.slot_bytes
    print(f"\nSGMV LoRA, rank {rank}, all 7 modules (qkv, o, gate_up, down: shrink + expand, "
          f"one launch each), {layers} layers of distinct weights, bf16, one CUDA graph")
    print(f"{'case':<26} {'tokens':>6} {'adapters':>8} {'us/step':>8} {'us/launch':>9} "
          f"{'MB read':>8} {'GB/s':>7}")
    for name, tok in cases.items():
        step = _sgmv_step(shape, slots, fused, tok, rank, decode=len(tok) <= 128)
        t = graph_time(step, reps)
        n = len(set(tok))
        nbytes = n * per_adapter
        print(f"{name:<26} {len(tok):>6} {n:>8} {t * 1e6:8.1f} {t * 1e6 / (2 * len(fused)):9.2f} "
              f"{nbytes / 1e6:8.1f} {nbytes / t / 1e9:7.0f}")


def lora_flops(fused, tokens: int, rank: int) -> float:
    """Multiply-add FLOPs of shrink + expand for `tokens` tokens at `rank` over `fused`'s
    projections: 2 x tokens x rank x (in + out) a module (fused slices share their input)."""
    return sum(2.0 * tokens * rank * (sl.in_dim + w) for _, _, sl in fused for w in sl.widths)


def _packed(adapters: int, each: int) -> list[int]:
    """Token adapters of a prefill batch of `adapters` requests of `each` tokens, one adapter
    a request, packed."""
    return [s for s in range(adapters) for _ in range(each)]


# prefill batches timed by --sgmv-capacity
PREFILL_BATCHES = {
    "1 adapter x 512": _packed(1, 512),
    "4 adapters x 512": _packed(4, 512),
    "1 adapter x 2048": _packed(1, 2048),
    "16 adapters x 128": _packed(16, 128),
}


def bench_sgmv_capacity(reps: int, rank: int, layers: int = 32) -> None:
    """Prefill-sized SGMV steps under graph metadata for 4, 16 and 64 segments, with the tile
    grid's split-K counted from its bound (default) and from tokens (`SPLIT_BY_TOKENS`): what a
    graph's segment capacity costs a prefill (calibration sized its prefill graphs for 64
    adapters until 820be59, the driver for max_loras_per_batch; docs/gpu.md)."""
    from gpu.kernels.configs import OVERRIDE_ENV, device_configs

    shape, slots, fused, _ = _sgmv_setup(rank, layers, n_slots=16)
    os.environ.pop(OVERRIDE_ENV, None)
    table = device_configs(torch.cuda.get_device_name())
    saved = dict(table["shrink_prefill"])
    print(f"\nSGMV prefill LoRA, rank {rank}, {layers} layers, us per step by graph segment capacity; "
          "TFLOP/s of the fastest (2 x tokens x rank x (in + out) per module)")
    print(f"{'case':<20} {'split from':<10} " + " ".join(f"{f'cap {c}':>8}" for c in (4, 16, 64))
          + f" {'TFLOP/s':>8}")
    try:
        for name, tok in PREFILL_BATCHES.items():
            for by_tokens in (False, True):
                table["shrink_prefill"] = {**saved, "SPLIT_BY_TOKENS": by_tokens}
                row, best = [], float("inf")
                for cap in (4, 16, 64):
                    if cap < len(set(tok)):
                        row.append(f"{'-':>8}")
                        continue
                    step = _sgmv_step(shape, slots, fused, tok, rank, decode=False, capacity=cap)
                    t = graph_time(step, reps)
                    best = min(best, t)
                    row.append(f"{t * 1e6:8.0f}")
                rate = lora_flops(fused, len(tok), rank) / best / 1e12
                print(f"{name:<20} {'tokens' if by_tokens else 'bound':<10} " + " ".join(row) + f" {rate:8.1f}")
    finally:
        table["shrink_prefill"] = saved


def profile_sgmv(rank: int, layers: int = 32) -> None:
    """Per-kernel GPU time of the LoRA step of each case, decode and prefill (eager, under
    torch.profiler): which launch the step's time goes to. Kernel durations are the same as
    inside a graph; the gaps are not."""
    from torch.profiler import ProfilerActivity, profile

    shape, slots, fused, cases = _sgmv_setup(rank, layers)
    for name, tok in cases.items():
        # decode cases as the decode graphs build them; the prefill case on the tile grid
        step = _sgmv_step(shape, slots, fused, tok, rank, decode=len(tok) <= 64)
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                step()
            torch.cuda.synchronize()
        print(f"\nprofile of 5 eager LoRA steps, {name} ({len(fused) * 2} SGMV launches a step):")
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=8, max_name_column_width=60))


SHRINK_GRID = [
    {"BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": bk, "SPLIT_K": sk, "PROGRAMS_PER_SM": p,
     "num_warps": 4, "num_stages": 3}
    for bk in (128, 256) for sk in (8, 16, 32) for p in (1, 2, 4)
]
EXPAND_GRID = [
    {"BLOCK_M": 16, "BLOCK_N": bn, "BLOCK_K": 64, "PROGRAMS_PER_SM": p, "num_warps": w, "num_stages": 2}
    for bn in (128, 256) for p in (2, 4, 8) for w in (4, 8)
] + [  # units of several output tiles, h summed once a unit (lora_expand_op._expand_row)
    {"BLOCK_M": 16, "BLOCK_N": bn, "BLOCK_K": 64, "N_PER_UNIT": g, "PROGRAMS_PER_SM": p,
     "num_warps": 4, "num_stages": st}
    for bn in (64, 128, 256) for g in (2, 4, 8) for p in (1, 2, 4) for st in (2, 3)
]


PREFILL_SHRINK_GRID = [  # the split is about PROGRAMS_PER_SM working programs an SM, capped by SPLIT_K
    {"BLOCK_M": bm, "BLOCK_N": 64, "BLOCK_K": bk, "SPLIT_K": sk, "PROGRAMS_PER_SM": p,
     "SPLIT_BY_TOKENS": tok, "num_warps": w, "num_stages": 3}
    for bm in (32, 64) for bk in (64, 128) for sk in (8, 32) for p in (2, 8) for tok in (False, True) for w in (4, 8)
]
PREFILL_EXPAND_GRID = [
    {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": 64, "num_warps": w, "num_stages": st}
    for bm in (32, 64, 128) for bn in (64, 128, 256) for w in (4, 8) for st in (2, 3)
]
# the tuner's prefill cases at the segment capacity the driver's graphs give them (4 batch
# slots; 16 for resident or unified memory): (tokens' adapters, capacity)
PREFILL_CASES = {
    f"{name}, cap {cap}": (PREFILL_BATCHES[name], cap)
    for name, cap in (("1 adapter x 512", 4), ("4 adapters x 512", 4), ("16 adapters x 128", 16))
}


def tune_sgmv(reps: int, rank: int, write: str | None, layers: int = 32, prefill: bool = False) -> None:
    """Sweep the SGMV configs (shrink, then expand with the best shrink) of the decode cases,
    or with `prefill` of PREFILL_CASES on the tile grid; the score is the sum of the cases'
    step times. Prints every row and the winner, and with `write` saves it as a
    $LORASIM_KERNEL_CONFIGS JSON file."""
    import json

    from gpu.kernels.configs import OVERRIDE_ENV, device_configs

    os.environ.pop(OVERRIDE_ENV, None)  # tune the table itself
    table = device_configs(torch.cuda.get_device_name())
    if prefill:
        shape, slots, fused, _ = _sgmv_setup(rank, layers, n_slots=16)
        steps = {k: _sgmv_step(shape, slots, fused, tok, rank, decode=False, capacity=cap)
                 for k, (tok, cap) in PREFILL_CASES.items()}
        ops = (("shrink_prefill", PREFILL_SHRINK_GRID), ("expand_prefill", PREFILL_EXPAND_GRID))
    else:
        shape, slots, fused, cases = _sgmv_setup(rank, layers)
        steps = {k: _sgmv_step(shape, slots, fused, tok, rank, decode=True)
                 for k, tok in cases.items() if len(tok) <= 64}
        ops = (("shrink_decode", SHRINK_GRID), ("expand_decode", EXPAND_GRID))

    def score(op: str, cfg: dict) -> float:
        table[op] = cfg
        try:
            times = [graph_time(step, reps) for step in steps.values()]
        except Exception as e:  # noqa: BLE001 - a tile too large for the SM (OutOfResources) is skipped
            print(f"  {op} {cfg}: failed ({type(e).__name__}: {str(e).splitlines()[0][:80]})")
            torch.cuda.synchronize()
            return float("inf")
        print(f"  {op} {cfg}: " + ", ".join(f"{t * 1e6:.0f}" for t in times) + " us")
        return sum(times)

    best = {}
    for op, grid in ops:
        print(f"\ntuning {op} ({' | '.join(steps)}, us per step of {layers} layers)")
        current = dict(table[op])
        results = [(score(op, cfg), cfg) for cfg in [current, *grid]]
        t, cfg = min(results, key=lambda r: r[0])
        table[op] = best[op] = cfg
        print(f"best {op}: {cfg} ({t * 1e6:.0f} us; current {results[0][0] * 1e6:.0f} us)")
        if write:  # after each op, so a call killed mid-sweep keeps the ops already tuned
            with open(write, "w") as f:
                json.dump(best, f, indent=1)
            print(f"wrote {write} (use it with LORASIM_KERNEL_CONFIGS={write})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,16,64,128")
    ap.add_argument("--contexts", default="128,512,2048,4096")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--tune", action="store_true", help="also sweep decode-attention configs")
    ap.add_argument("--tune-sgmv", action="store_true", help="only sweep the decode SGMV configs")
    ap.add_argument("--tune-sgmv-prefill", action="store_true",
                    help="only sweep the prefill SGMV configs (tile grid) on graph-sized prefill cases")
    ap.add_argument("--profile-sgmv", action="store_true", help="only profile the SGMV kernels of the decode and prefill cases")
    ap.add_argument("--sgmv", action="store_true", help="only time a step's SGMV LoRA (no sweep)")
    ap.add_argument("--sgmv-capacity", action="store_true",
                    help="only time prefill SGMV steps by graph segment capacity and split rule")
    ap.add_argument("--write", metavar="JSON", help="with --tune-sgmv[-prefill]: save the winner for "
                    "$LORASIM_KERNEL_CONFIGS")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_kernels needs a CUDA GPU (the Triton kernels are timed on the device); "
              "nothing to measure here.")
        return
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    if a.profile_sgmv:
        profile_sgmv(a.rank)
        return
    if a.sgmv:
        bench_sgmv(a.reps, a.rank)
        return
    if a.sgmv_capacity:
        bench_sgmv_capacity(a.reps, a.rank)
        return
    if a.tune_sgmv_prefill:
        bench_sgmv_capacity(a.reps, a.rank)
        tune_sgmv(a.reps, a.rank, a.write, prefill=True)
        bench_sgmv_capacity(a.reps, a.rank)
        return
    if a.tune_sgmv:
        bench_sgmv(a.reps, a.rank)
        tune_sgmv(a.reps, a.rank, a.write)
        bench_sgmv(a.reps, a.rank)
        return
    hbm = measure_hbm_read(torch.device("cuda"), a.reps) / 1e9
    print(f"HBM read {hbm:.0f} GB/s (gpu.calibrate.rates: best of a sum over and a copy of 4 GiB)")
    torch.cuda.empty_cache()
    bench_decode_attention(
        [int(x) for x in a.batches.split(",")],
        [int(x) for x in a.contexts.split(",")],
        a.reps,
        hbm,
    )
    torch.cuda.empty_cache()
    if a.tune:
        tune_decode_attention(a.reps, hbm)
        torch.cuda.empty_cache()
    bench_sgmv(a.reps, a.rank)


if __name__ == "__main__":
    main()
