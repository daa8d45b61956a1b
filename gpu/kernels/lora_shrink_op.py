"""SGMV shrink: h = x @ A^T per segment, for up to 3 fused slices in ONE launch.

Grid (SPLIT_K x token tiles x rank tiles, slices, segments): program (., j, s) multiplies
a tile of segment s's tokens (rows gathered through `token_order`, nothing copied) by a tile
of slice j's A read in place from the slot pool at `pool[slot] + a_offsets[j]`. Rank tiles
past the segment's own rank exit at once, so a rank-16 adapter in a max-rank-64 pool reads
16 rows of A, not 64. The grid depends only on host bounds (meta.max_len, max_segments,
max_rank), so it is fixed for a CUDA-graph bucket. Decode-sized segments use split-K (few
tokens, long `in`): split k writes its partial product to h[k], and the expand adds the
partials as it reads them. So h needs no zero-fill and no atomics: the zero-fill alone was
one more graph node per projection (128 a decode step), each costing a launch.
Modelled on vLLM's `lora_shrink_op.py` and Punica's SGMV.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from gpu.kernels._common import config, launch_opts, upcast_dots
from gpu.kernels.configs import DECODE_MAX_LEN
from gpu.kernels.lora_meta import LoraMeta

MAX_SLICES = 3


# a_off* are specialized on purpose (see lora_expand_op: without the divisible-by-16 flag the
# A rows are read 2 bytes at a time)
@triton.jit
def _shrink_kernel(
    x_ptr,
    pool_ptr,
    h_ptr,
    token_order,
    seg_start,
    seg_len,
    seg_slot,
    seg_rank,
    a_off0,
    a_off1,
    a_off2,
    K,
    stride_xm,
    stride_xk,
    stride_slot,
    stride_hs,
    stride_hm,
    MAX_RANK: tl.constexpr,
    N_TILES: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr,
    UPCAST: tl.constexpr,
):
    pid = tl.program_id(0)
    sid = tl.program_id(1)
    seg = tl.program_id(2)
    slot = tl.load(seg_slot + seg)
    length = tl.load(seg_len + seg)
    rank = tl.load(seg_rank + seg)
    pid_k = pid % SPLIT_K
    pid_n = (pid // SPLIT_K) % N_TILES
    pid_m = pid // (SPLIT_K * N_TILES)
    m0 = pid_m * BLOCK_M
    n0 = pid_n * BLOCK_N
    if (slot < 0) | (m0 >= length) | (n0 >= rank):
        return
    start = tl.load(seg_start + seg)
    offs_m = m0 + tl.arange(0, BLOCK_M)
    m_mask = offs_m < length
    rows = tl.load(token_order + start + offs_m, mask=m_mask, other=0).to(tl.int64)
    offs_n = n0 + tl.arange(0, BLOCK_N)
    n_mask = offs_n < rank
    a_off = tl.where(sid == 0, a_off0, tl.where(sid == 1, a_off1, a_off2)).to(tl.int64)
    a_base = pool_ptr + slot.to(tl.int64) * stride_slot + a_off
    x_rows = x_ptr + rows[:, None] * stride_xm
    a_rows = a_base + offs_n[None, :].to(tl.int64) * K  # A is [max_rank, K], row-major
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(pid_k * BLOCK_K, K, BLOCK_K * SPLIT_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_mask = offs_k < K
        xt = tl.load(x_rows + offs_k[None, :] * stride_xk, mask=m_mask[:, None] & k_mask[None, :], other=0.0)
        at = tl.load(a_rows + offs_k[:, None], mask=k_mask[:, None] & n_mask[None, :], other=0.0)
        if UPCAST:
            xt = xt.to(tl.float32)
            at = at.to(tl.float32)
        acc += tl.dot(xt, at)
    h_ptrs = h_ptr + pid_k * stride_hs + rows[:, None] * stride_hm + (sid * MAX_RANK + offs_n)[None, :]
    tl.store(h_ptrs, acc, mask=m_mask[:, None] & n_mask[None, :])


def _split_k(x: torch.Tensor, cfg: dict, programs: int, k: int) -> int:
    """Split-K factor: on a GPU, enough to give the working programs ~2 per SM (at most the
    config's SPLIT_K, at least one BLOCK_K step per split); it depends only on bucket-fixed sizes, so a
    captured graph keeps it. Elsewhere the config's value (the interpreter tests both paths)."""
    if not x.is_cuda:
        return cfg["SPLIT_K"]
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    want = triton.next_power_of_2(triton.cdiv(2 * sms, max(programs, 1)))
    return max(1, min(cfg["SPLIT_K"], want, triton.cdiv(k, cfg["BLOCK_K"])))


def lora_shrink(
    x: torch.Tensor,
    pool: torch.Tensor,
    a_offsets: Sequence[int],
    max_rank: int,
    meta: LoraMeta,
) -> torch.Tensor:
    """x [T, in] (any row stride), pool [n_slots, slot_numel] (row stride = slot stride,
    unit column stride), a_offsets: element offset of each slice's A [max_rank, in] within a
    slot (1 to 3 slices). Returns fp32 split-K partials h [S, T, n_slices * max_rank] whose
    sum over S is x A^T on slice j's columns j*max_rank .. j*max_rank + rank - 1 of every
    token with an adapter; every other entry is undefined (never read by lora_expand)."""
    n = len(a_offsets)
    if not 1 <= n <= MAX_SLICES:
        raise ValueError(f"1..{MAX_SLICES} slices per launch, got {n}")
    if pool.stride(1) != 1:
        raise ValueError("pool rows must be contiguous")
    t, k = x.shape
    op = "shrink_decode" if meta.max_len <= DECODE_MAX_LEN else "shrink_prefill"
    cfg, opts = launch_opts(config(op, x))
    bn = max(16, min(cfg["BLOCK_N"], triton.next_power_of_2(max_rank)))
    n_tiles = triton.cdiv(max_rank, bn)
    m_tiles = triton.cdiv(max(meta.max_len, 1), cfg["BLOCK_M"])
    # programs that can have work: a segment's tiles past its length exit at once, and all
    # segments together hold at most max_tokens rows
    tiles = min(m_tiles * meta.max_segments, triton.cdiv(meta.max_tokens, cfg["BLOCK_M"]) + meta.max_segments)
    split_k = _split_k(x, cfg, tiles * n_tiles * n, k)
    h = torch.empty(split_k, t, n * max_rank, dtype=torch.float32, device=x.device)
    if meta.max_len == 0 or t == 0:
        return h
    offs = list(a_offsets) + [0] * (MAX_SLICES - n)
    grid = (split_k * m_tiles * n_tiles, n, meta.max_segments)
    _shrink_kernel[grid](
        x, pool, h,
        meta.token_order, meta.seg_start, meta.seg_len, meta.seg_slot, meta.seg_rank,
        offs[0], offs[1], offs[2],
        k, x.stride(0), x.stride(1), pool.stride(0), h.stride(0), h.stride(1),
        MAX_RANK=max_rank, N_TILES=n_tiles,
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=bn, BLOCK_K=cfg["BLOCK_K"], SPLIT_K=split_k,
        UPCAST=upcast_dots(x),
        **opts,
    )  # fmt: skip
    return h
