"""SGMV expand: y[:, cols_j] += scale * h_j @ B^T_j per segment, up to 3 fused slices in ONE
launch (QKV writes q | k | v column ranges of one y).

Grid (token tiles x output tiles, slices, segments). The K loop runs over the segment's own
rank only (padded rows of B^T are never read); B^T [max_rank, width] is read in place from
`pool[slot] + bt_offsets[j]`. h holds the shrink's split-K partials, summed here as they are
read (a few KiB per tile, from L2). Rows of a segment are distinct tokens, so y is updated
with a plain read-add-store (no atomics). Modelled on vLLM's `lora_expand_op.py`.
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


# Offsets and widths are specialized (Triton's divisible-by-16 flag on integer arguments):
# without it Triton cannot prove B^T rows and y columns 16-byte aligned and falls back to
# 2-byte loads, which made the H100 decode expand run at ~150 GB/s. Llama's widths and the
# pool's offsets are all multiples of 16, so every layer and slice shares one compile.
@triton.jit
def _expand_kernel(
    h_ptr,
    pool_ptr,
    y_ptr,
    token_order,
    seg_start,
    seg_len,
    seg_slot,
    seg_rank,
    seg_scale,
    bt_off0,
    bt_off1,
    bt_off2,
    w0,
    w1,
    w2,
    o0,
    o1,
    o2,
    stride_hs,
    stride_hm,
    stride_slot,
    stride_ym,
    MAX_RANK: tl.constexpr,
    SPLITS: tl.constexpr,
    N_TILES: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    UPCAST: tl.constexpr,
):
    pid = tl.program_id(0)
    sid = tl.program_id(1)
    seg = tl.program_id(2)
    slot = tl.load(seg_slot + seg)
    length = tl.load(seg_len + seg)
    pid_n = pid % N_TILES
    pid_m = pid // N_TILES
    m0 = pid_m * BLOCK_M
    n0 = pid_n * BLOCK_N
    width = tl.where(sid == 0, w0, tl.where(sid == 1, w1, w2))
    if (slot < 0) | (m0 >= length) | (n0 >= width):
        return
    rank = tl.load(seg_rank + seg)
    scale = tl.load(seg_scale + seg)
    start = tl.load(seg_start + seg)
    bt_off = tl.where(sid == 0, bt_off0, tl.where(sid == 1, bt_off1, bt_off2)).to(tl.int64)
    col0 = tl.where(sid == 0, o0, tl.where(sid == 1, o1, o2))
    offs_m = m0 + tl.arange(0, BLOCK_M)
    m_mask = offs_m < length
    rows = tl.load(token_order + start + offs_m, mask=m_mask, other=0).to(tl.int64)
    offs_n = n0 + tl.arange(0, BLOCK_N)
    n_mask = offs_n < width
    bt_base = pool_ptr + slot.to(tl.int64) * stride_slot + bt_off
    h_rows = h_ptr + rows[:, None] * stride_hm + sid * MAX_RANK
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, rank, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_mask = offs_k < rank
        h_mask = m_mask[:, None] & k_mask[None, :]
        ht = tl.load(h_rows + offs_k[None, :], mask=h_mask, other=0.0)
        for s in tl.static_range(1, SPLITS):
            ht += tl.load(h_rows + s * stride_hs + offs_k[None, :], mask=h_mask, other=0.0)
        bt = tl.load(
            bt_base + offs_k[:, None].to(tl.int64) * width + offs_n[None, :],
            mask=k_mask[:, None] & n_mask[None, :],
            other=0.0,
        )
        if UPCAST:
            bt = bt.to(tl.float32)
        acc += tl.dot(ht.to(bt.dtype), bt)
    y_ptrs = y_ptr + rows[:, None] * stride_ym + (col0 + offs_n)[None, :]
    mask = m_mask[:, None] & n_mask[None, :]
    y = tl.load(y_ptrs, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptrs, (y + scale * acc).to(y_ptr.dtype.element_ty), mask=mask)


def lora_expand(
    h: torch.Tensor,
    pool: torch.Tensor,
    bt_offsets: Sequence[int],
    widths: Sequence[int],
    y: torch.Tensor,
    meta: LoraMeta,
    max_rank: int,
    out_offsets: Sequence[int] | None = None,
) -> torch.Tensor:
    """h [S, T, n_slices * max_rank] (lora_shrink's split-K partials; a 2-D h is one
    partial), pool as in lora_shrink,
    bt_offsets: element offset of each slice's B^T [max_rank, width_j] within a slot,
    y [T, >= sum(widths)] with unit column stride (row stride free: y may be a column view).
    Slice j adds into y[:, out_offsets[j] : + widths[j]] (default: consecutive columns from
    0). In place; returns y."""
    n = len(bt_offsets)
    if not 1 <= n <= MAX_SLICES or len(widths) != n:
        raise ValueError(f"1..{MAX_SLICES} slices with one width each, got {n}, {len(widths)}")
    if pool.stride(1) != 1 or y.stride(1) != 1:
        raise ValueError("pool rows and y rows must be contiguous")
    outs = list(out_offsets) if out_offsets is not None else [sum(widths[:j]) for j in range(n)]
    if h.dim() == 2:
        h = h.unsqueeze(0)
    if meta.max_len == 0 or y.shape[0] == 0:
        return y
    op = "expand_decode" if meta.max_len <= DECODE_MAX_LEN else "expand_prefill"
    cfg, opts = launch_opts(config(op, y))
    bn = max(16, min(cfg["BLOCK_N"], triton.next_power_of_2(max(widths))))
    n_tiles = triton.cdiv(max(widths), bn)
    m_tiles = triton.cdiv(meta.max_len, cfg["BLOCK_M"])
    pad = [0] * (MAX_SLICES - n)
    bts, ws, os_ = list(bt_offsets) + pad, list(widths) + pad, outs + pad
    grid = (m_tiles * n_tiles, n, meta.max_segments)
    _expand_kernel[grid](
        h, pool, y,
        meta.token_order, meta.seg_start, meta.seg_len, meta.seg_slot, meta.seg_rank,
        meta.seg_scale,
        bts[0], bts[1], bts[2], ws[0], ws[1], ws[2], os_[0], os_[1], os_[2],
        h.stride(0), h.stride(1), pool.stride(0), y.stride(0),
        MAX_RANK=max_rank, SPLITS=h.shape[0], N_TILES=n_tiles,
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=bn, BLOCK_K=min(cfg["BLOCK_K"], max(16, triton.next_power_of_2(max_rank))),
        UPCAST=upcast_dots(y),
        **opts,
    )  # fmt: skip
    return y
