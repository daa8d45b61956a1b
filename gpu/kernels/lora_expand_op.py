"""SGMV expand: y[:, cols_j] += scale * h_j @ B^T_j per segment, up to 3 fused slices in ONE
launch (QKV writes q | k | v column ranges of one y).

The tile body (`_expand_tile`) runs the K loop over the segment's own rank only (padded rows
of B^T are never read), reads B^T [max_rank, width] in place from `pool[slot] +
bt_offsets[j]`, sums the shrink's split-K partials as it reads h (a few KiB per tile, from
L2), and updates y with a plain read-add-store (rows of a segment are distinct tokens: no
atomics). Its two schedules follow the shrink's (lora_shrink_op): a fixed grid looping over
the real segments' (slice, output tile, token tile) units for decode-sized batches, which sums exactly
the partials the shrink defined (`sgmv_splits` of the same device count), and a grid of
(output tiles, slices, token tiles of the real segments: `segment_tile`) for prefill. Modelled on vLLM's
`lora_expand_op.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from gpu.kernels._common import config, launch_opts, upcast_dots
from gpu.kernels.lora_meta import LoraMeta
from gpu.kernels.lora_shrink_op import (
    adapter_base,
    prefill_work_tiles,
    segment_loop,
    segment_tile,
    sgmv_splits,
    sgmv_unit,
    shrink_plan,
    sm_count,
)

MAX_SLICES = 3


@triton.jit
def _expand_tile(
    h_ptr, bt_base, y_ptr, token_order, start, length, m0, n0, width, rank, scale, splits, col0,
    stride_hs, stride_hm, stride_ym,
    SPLIT_MAX: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr, UPCAST: tl.constexpr,
):  # fmt: skip
    """y[rows, col0 + n] += scale * (sum of the first `splits` partials of h[rows, :rank]) @
    B^T[:rank, n] for the segment's token tile at m0 and output tile at n0. The partial
    loop is unrolled to SPLIT_MAX with masks, so its loads are all in flight at once."""
    offs_m = m0 + tl.arange(0, BLOCK_M)
    m_mask = offs_m < length
    rows = tl.load(token_order + start + offs_m, mask=m_mask, other=0).to(tl.int64)
    offs_n = n0 + tl.arange(0, BLOCK_N)
    n_mask = offs_n < width
    h_rows = h_ptr + rows[:, None] * stride_hm
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, rank, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_mask = offs_k < rank
        h_mask = m_mask[:, None] & k_mask[None, :]
        ht = tl.load(h_rows + offs_k[None, :], mask=h_mask, other=0.0)
        for s in tl.static_range(1, SPLIT_MAX):
            s_mask = h_mask & (tl.zeros_like(offs_k)[None, :] + s < splits)  # full-shape bool
            ht += tl.load(h_rows + s * stride_hs + offs_k[None, :], mask=s_mask, other=0.0)
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


@triton.jit
def _expand_row(
    h_ptr, bt_base, y_ptr, token_order, start, length, m0, n0, width, rank, scale, splits, col0,
    stride_hs, stride_hm, stride_ym,
    SPLIT_MAX: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr, UPCAST: tl.constexpr, N_PER_UNIT: tl.constexpr,
):  # fmt: skip
    """`_expand_tile` over N_PER_UNIT consecutive output tiles from n0, with h's partials
    summed once (the caller guarantees rank <= BLOCK_K: one K step) instead of once a tile:
    a unit of one tile reads as many bytes of partials (from L2) as of B^T, and a loop of
    independent B^T tiles gives the compiler loads to keep in flight."""
    offs_m = m0 + tl.arange(0, BLOCK_M)
    m_mask = offs_m < length
    rows = tl.load(token_order + start + offs_m, mask=m_mask, other=0).to(tl.int64)
    offs_k = tl.arange(0, BLOCK_K)
    k_mask = offs_k < rank
    h_rows = h_ptr + rows[:, None] * stride_hm + offs_k[None, :]
    h_mask = m_mask[:, None] & k_mask[None, :]
    ht = tl.load(h_rows, mask=h_mask, other=0.0)
    for s in tl.static_range(1, SPLIT_MAX):
        s_mask = h_mask & (tl.zeros_like(offs_k)[None, :] + s < splits)  # full-shape bool
        ht += tl.load(h_rows + s * stride_hs, mask=s_mask, other=0.0)
    bt_rows = bt_base + offs_k[:, None].to(tl.int64) * width
    y_rows = y_ptr + rows[:, None] * stride_ym + col0
    for j in range(N_PER_UNIT):
        offs_n = n0 + j * BLOCK_N + tl.arange(0, BLOCK_N)
        n_mask = offs_n < width
        bt = tl.load(bt_rows + offs_n[None, :], mask=k_mask[:, None] & n_mask[None, :], other=0.0)
        if UPCAST:
            bt = bt.to(tl.float32)
        acc = tl.dot(ht.to(bt.dtype), bt)
        mask = m_mask[:, None] & n_mask[None, :]
        y = tl.load(y_rows + offs_n[None, :], mask=mask, other=0.0).to(tl.float32)
        tl.store(y_rows + offs_n[None, :], (y + scale * acc).to(y_ptr.dtype.element_ty), mask=mask)


# Offsets and widths are specialized (Triton's divisible-by-16 flag on integer arguments):
# without it Triton cannot prove B^T rows and y columns 16-byte aligned and falls back to
# 2-byte loads, which made the H100 decode expand run at ~150 GB/s. Llama's widths and the
# pool's offsets are all multiples of 16, so every layer and slice shares one compile.
@triton.jit
def _expand_segments_kernel(
    h_ptr, pool_ptr, y_ptr,
    token_order, seg_start, seg_len, seg_slot, seg_rank, seg_scale, seg_count,
    bt_off0, bt_off1, bt_off2, w0, w1, w2, o0, o1, o2,
    stride_hs, stride_hm, stride_slot, stride_ym, shrink_per_seg, shrink_target,
    N_SLICES: tl.constexpr, MAX_RANK: tl.constexpr, N_TILES: tl.constexpr, M_TILES: tl.constexpr,
    SPLIT_MAX: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr, UPCAST: tl.constexpr, N_PER_UNIT: tl.constexpr, TIGHT: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    progs = tl.num_programs(0)
    nseg = tl.load(seg_count)
    splits = sgmv_splits(nseg, shrink_per_seg, shrink_target, SPLIT_MAX)
    per_seg = N_SLICES * N_TILES  # N_TILES counts groups of N_PER_UNIT output tiles
    # a unit: (segment, slice, output tile group, token tile), as the shrink's
    for u in range(pid, nseg * per_seg * M_TILES, progs):
        _, mt, nt, sid, seg = sgmv_unit(u, 1, M_TILES, N_TILES, N_SLICES)
        width = tl.where(sid == 0, w0, tl.where(sid == 1, w1, w2))
        length = tl.load(seg_len + seg)
        if (nt * N_PER_UNIT * BLOCK_N < width) & (mt * BLOCK_M < length):
            slot = tl.load(seg_slot + seg)
            start = tl.load(seg_start + seg)
            rank = tl.load(seg_rank + seg)
            scale = tl.load(seg_scale + seg)
            col0 = tl.where(sid == 0, o0, tl.where(sid == 1, o1, o2))
            bt_base = adapter_base(pool_ptr, slot, stride_slot, sid, bt_off0, bt_off1, bt_off2, rank, TIGHT)
            if N_PER_UNIT == 1:
                _expand_tile(
                    h_ptr + sid * MAX_RANK, bt_base, y_ptr, token_order, start, length, mt * BLOCK_M,
                    nt * BLOCK_N, width, rank, scale, splits, col0, stride_hs, stride_hm,
                    stride_ym, SPLIT_MAX, BLOCK_M, BLOCK_N, BLOCK_K, UPCAST,
                )  # fmt: skip
            else:
                _expand_row(
                    h_ptr + sid * MAX_RANK, bt_base, y_ptr, token_order, start, length, mt * BLOCK_M,
                    nt * N_PER_UNIT * BLOCK_N, width, rank, scale, splits, col0, stride_hs,
                    stride_hm, stride_ym, SPLIT_MAX, BLOCK_M, BLOCK_N, BLOCK_K, UPCAST, N_PER_UNIT,
                )  # fmt: skip


@triton.jit
def _expand_tiles_kernel(
    h_ptr, pool_ptr, y_ptr,
    token_order, seg_start, seg_len, seg_slot, seg_rank, seg_scale, seg_count,
    bt_off0, bt_off1, bt_off2, w0, w1, w2, o0, o1, o2,
    stride_hs, stride_hm, stride_slot, stride_ym,
    MAX_RANK: tl.constexpr, SPLITS: tl.constexpr, SEGS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, UPCAST: tl.constexpr,
    TIGHT: tl.constexpr,
):  # fmt: skip
    n0 = tl.program_id(0) * BLOCK_N
    sid = tl.program_id(1)
    seg, m0 = segment_tile(tl.program_id(2), seg_len, seg_count, BLOCK_M, SEGS)
    width = tl.where(sid == 0, w0, tl.where(sid == 1, w1, w2))
    if (seg < 0) | (n0 >= width):
        return
    slot = tl.load(seg_slot + seg)
    rank = tl.load(seg_rank + seg)
    bt_base = adapter_base(pool_ptr, slot, stride_slot, sid, bt_off0, bt_off1, bt_off2, rank, TIGHT)
    _expand_tile(
        h_ptr + sid * MAX_RANK, bt_base, y_ptr,
        token_order, tl.load(seg_start + seg), tl.load(seg_len + seg), m0, n0, width, rank,
        tl.load(seg_scale + seg), SPLITS, tl.where(sid == 0, o0, tl.where(sid == 1, o1, o2)),
        stride_hs, stride_hm, stride_ym, SPLITS, BLOCK_M, BLOCK_N, BLOCK_K, UPCAST,
    )  # fmt: skip


def lora_expand(
    h: torch.Tensor,
    pool: torch.Tensor,
    bt_offsets: Sequence[int],
    widths: Sequence[int],
    y: torch.Tensor,
    meta: LoraMeta,
    max_rank: int,
    out_offsets: Sequence[int] | None = None,
    tight: bool = False,
) -> torch.Tensor:
    """h [S, T, n_slices * max_rank] (lora_shrink's split-K partials over the same meta and
    slices; a 2-D h is one partial), pool as in lora_shrink,
    bt_offsets: element offset of each slice's B^T [max_rank, width_j] within a slot (`tight`:
    per unit of rank, as lora_shrink's),
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
    pad = [0] * (MAX_SLICES - n)
    bts, ws, os_ = list(bt_offsets) + pad, list(widths) + pad, outs + pad
    common = (h, pool, y, meta.token_order, meta.seg_start, meta.seg_len, meta.seg_slot,
              meta.seg_rank, meta.seg_scale)  # fmt: skip
    loop = segment_loop(meta)
    cfg, opts = launch_opts(config("expand_decode" if loop else "expand_prefill", y))
    bn = max(16, min(cfg["BLOCK_N"], triton.next_power_of_2(max(widths))))
    n_tiles = triton.cdiv(max(widths), bn)
    bk = min(cfg["BLOCK_K"], max(16, triton.next_power_of_2(max_rank)))
    if loop:
        plan = shrink_plan(y, n, max_rank)
        m_tiles = triton.cdiv(meta.max_len, cfg["BLOCK_M"])
        # N_PER_UNIT output tiles a unit, h summed once: only where the rank is one K step
        per_unit = cfg.get("N_PER_UNIT", 1) if max_rank <= bk else 1
        n_tiles = triton.cdiv(n_tiles, per_unit)
        units = meta.max_segments * n * n_tiles * m_tiles
        progs = min(cfg.get("PROGRAMS_PER_SM", 4) * sm_count(y), units)
        _expand_segments_kernel[(max(1, progs),)](
            *common, meta.seg_count, bts[0], bts[1], bts[2], ws[0], ws[1], ws[2],
            os_[0], os_[1], os_[2],
            h.stride(0), h.stride(1), pool.stride(0), y.stride(0), plan["per_seg"], plan["target"],
            N_SLICES=n, MAX_RANK=max_rank, N_TILES=n_tiles, M_TILES=m_tiles, SPLIT_MAX=h.shape[0],
            BLOCK_M=cfg["BLOCK_M"], BLOCK_N=bn, BLOCK_K=bk, UPCAST=upcast_dots(y), N_PER_UNIT=per_unit,
            TIGHT=tight, **opts,
        )  # fmt: skip
        return y
    _expand_tiles_kernel[(n_tiles, n, prefill_work_tiles(meta, cfg["BLOCK_M"]))](
        *common, meta.seg_count, bts[0], bts[1], bts[2], ws[0], ws[1], ws[2], os_[0], os_[1], os_[2],
        h.stride(0), h.stride(1), pool.stride(0), y.stride(0),
        MAX_RANK=max_rank, SPLITS=h.shape[0], SEGS=triton.next_power_of_2(meta.max_segments),
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=bn, BLOCK_K=bk, UPCAST=upcast_dots(y), TIGHT=tight, **opts,
    )  # fmt: skip
    return y
