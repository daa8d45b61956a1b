"""Builders shared by the kernel tests: a LoraSlots pool with mixed ranks whose padded rows
are NaN (any read past an adapter's rank poisons the result), and paged KV caches with
shuffled (non-contiguous) block tables."""

from __future__ import annotations

import torch

from gpu.lora import LoraSlots
from sim.core.model import ALL_TARGETS, ModelShape

SMALL = ModelShape(name="small", hidden=64, intermediate=96, layers=2, heads=4, kv_heads=2, vocab=32)
LLAMA_8B_1L = ModelShape(name="llama-3.1-8b-1layer", layers=1)  # real dims, one layer


def make_slots(
    shape: ModelShape,
    ranks: list[int],
    max_rank: int,
    device: str,
    dtype: torch.dtype,
    seed: int = 0,
) -> LoraSlots:
    """One slot per entry of `ranks`: A ~ N(0, 1/in), B^T ~ N(0, 1/r) in each slot's first r
    rows, NaN in the padded rows r..max_rank-1."""
    g = torch.Generator().manual_seed(seed)
    slots = LoraSlots(shape, len(ranks), max_rank, ALL_TARGETS, device, dtype)
    for seg in slots.layout.values():
        a, bt = slots.A(seg.layer, seg.module), slots.Bt(seg.layer, seg.module)
        for s, r in enumerate(ranks):
            a[s, :r] = (torch.randn(r, seg.d_in, generator=g) * seg.d_in**-0.5).to(dtype)
            bt[s, :r] = (torch.randn(r, seg.d_out, generator=g) * r**-0.5).to(dtype)
            a[s, r:] = float("nan")
            bt[s, r:] = float("nan")
    return slots


def tok_slots_of(segments: list[tuple[int, int]]) -> list[int]:
    """Packed batch from (slot, tokens) runs, e.g. [(0, 5), (-1, 2), (2, 1)]."""
    return [s for s, n in segments for _ in range(n)]


def make_paged_kv(
    seq_lens: list[int],
    page_size: int,
    kv_heads: int,
    head_dim: int,
    device: str,
    dtype: torch.dtype,
    seed: int = 0,
    spare_pages: int = 3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(k_cache, v_cache, block_table): each request gets ceil(len / page_size) pages drawn
    from a random permutation (non-contiguous); unused table entries are -1."""
    g = torch.Generator().manual_seed(seed)
    need = [-(-n // page_size) for n in seq_lens]
    num_pages = sum(need) + spare_pages
    perm = torch.randperm(num_pages, generator=g).tolist()
    table = torch.full((len(seq_lens), max(max(need, default=1), 1)), -1, dtype=torch.int32)
    i = 0
    for b, n in enumerate(need):
        table[b, :n] = torch.tensor(perm[i : i + n], dtype=torch.int32)
        i += n
    shape = (num_pages, page_size, kv_heads, head_dim)
    k = torch.randn(shape, generator=g).to(dtype)
    v = torch.randn(shape, generator=g).to(dtype)
    return k.to(device), v.to(device), table.to(device)


def shrink_sum(h: torch.Tensor, x: torch.Tensor, meta, max_rank: int) -> torch.Tensor:
    """lora_shrink's split-K partials [S, T, n*R] of x summed (only those it defined), with
    the entries the kernel leaves undefined (tokens without adapter, columns past a
    segment's rank) set to 0, as the reference has them."""
    from gpu.kernels.lora_shrink_op import partials_defined

    n = h.shape[2] // max_rank
    total = h[: partials_defined(h, x, n, max_rank, meta)].sum(0)
    out = torch.zeros_like(total)
    for rows, _, r, _ in meta.segments():
        for j in range(n):
            cols = slice(j * max_rank, j * max_rank + r)
            out[rows, cols] = total[rows, cols]
    return out
