"""Kernel throughput of gpu.kernels: paged decode attention against HBM bandwidth, and SGMV
LoRA (shrink + expand) for the fused QKV projection.

Every figure is the GPU time of the op replayed from a CUDA graph (as the harness runs a
decode step), from CUDA events, median of --reps replays. Prints:
- the HBM read bandwidth as calibrate measures it (gpu.calibrate.rates: the best of a `sum`
  over a 4 GiB bf16 buffer and a copy of it), the yardstick of the attention rows;
- paged decode attention, one layer of Llama-3.1-8B (32 heads, 8 KV heads, head_dim 128,
  bf16, pages of 16 in shuffled order), per batch x context: time, GB/s of KV read (4 KiB per
  token) and its fraction of the measured read bandwidth; rows whose KV fits in L2 are
  marked, their GB/s is not an HBM figure;
- SGMV for QKV at rank 64 (1 adapter / batch 1; 8 adapters / batch 64 decode; 8 adapters x
  128-token prefill): time per layer over 32 layers of distinct weights (so they come from
  HBM, not L2) and bytes of adapter weights read / time.
Run on the device:

    python benchmarks/bench_kernels.py [--tune]
(--tune adds a sweep of decode-attention launch configs at batch 64 x context 2048.)
Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import argparse

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


def bench_sgmv(reps: int, rank: int, layers: int = 32) -> None:
    import gpu.kernels as K
    from gpu.lora import LoraSlots
    from sim.core.model import ModelShape

    shape = ModelShape(layers=layers)
    n_slots = 8
    slots = LoraSlots(shape, n_slots, rank, ("q_proj", "k_proj", "v_proj"), "cuda", torch.bfloat16)
    slots.pool.normal_(0, 0.01)
    slots.scaling = [1.0] * n_slots
    slices = [K.LoraSlices.of(slots, layer, "qkv") for layer in range(layers)]
    width = sum(slices[0].widths)
    per_adapter = rank * (3 * shape.hidden + width) * 2  # A of q, k, v + B^T, bytes per layer
    print(f"\nSGMV QKV (shrink + expand, one launch each) at rank {rank}, bf16; per layer, "
          f"averaged over {layers} layers of distinct weights")
    print(f"{'case':<22} {'tokens':>6} {'adapters':>8} {'us':>8} {'MB read':>8} {'GB/s':>7}")
    cases = [
        ("1 adapter, batch 1", [0]),
        ("8 adapters, decode 64", [i % 8 for i in range(64)]),
        ("8 adapters, prefill", [s for s in range(8) for _ in range(128)]),
    ]
    for name, tok in cases:
        t_n = len(tok)
        meta = K.LoraMeta.build(tok, [rank] * n_slots, [1.0] * n_slots, "cuda")
        x = torch.randn(t_n, shape.hidden, device="cuda", dtype=torch.bfloat16)
        y = torch.zeros(t_n, width, device="cuda", dtype=torch.bfloat16)

        def sgmv(x=x, y=y, meta=meta) -> None:
            for sl in slices:
                K.lora_apply(y, x, slots.pool, sl, rank, meta)

        t = graph_time(sgmv, reps) / layers
        nbytes = len(set(tok)) * per_adapter
        print(f"{name:<22} {t_n:>6} {len(set(tok)):>8} {t * 1e6:8.1f} {nbytes / 1e6:8.2f} "
              f"{nbytes / t / 1e9:7.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,16,64,128")
    ap.add_argument("--contexts", default="128,512,2048,4096")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--tune", action="store_true", help="also sweep decode-attention configs")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_kernels needs a CUDA GPU (the Triton kernels are timed on the device); "
              "nothing to measure here.")
        return
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
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
