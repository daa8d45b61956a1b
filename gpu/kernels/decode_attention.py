"""Paged decode attention: flash-decoding with a FIXED number of KV splits, then a reduce.

Cache layout (per layer): k_cache, v_cache [num_pages, page_size, kv_heads, head_dim] (any
page/token/head strides, unit dim stride: a layer's slice of one [layers, ...] tensor works);
block_table [B, max_pages] int32 maps request b's page i (positions i*page_size ..) to a page.

Stage 1, grid (B, kv_heads, SPLITS): a program takes one KV head of one request and one
contiguous key range; it loads each K/V row ONCE for all `group` query heads of that KV head
(GQA: the heads are the rows of a [BLOCK_H, D] tile, BLOCK_H >= 16 for tensor-core dots)
and keeps an online softmax. It writes its partial output and log-sum-exp (base 2).
Stage 2, grid (B, H): merges the splits. The split count depends only on the batch size
(`configs.decode_splits`), never on sequence lengths, so one CUDA graph per batch bucket
captures both launches. Empty splits (and padded requests with seq_len 0) write lse = -inf
and the merge turns an all-empty row into zeros, never NaN. Modelled on SGLang's
`decode_attention.py` (grouped stage 1) with pages in place of its token table.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gpu.kernels._common import config, device_name, launch_opts, upcast_dots
from gpu.kernels.configs import decode_splits

LOG2E = 1.4426950408889634


@triton.jit
def _softmax_step(acc, l_i, m_i, q, k, v, valid, qk_scale, MASKED: tl.constexpr, UPCAST: tl.constexpr):
    """One key tile of an online softmax (base 2); if MASKED, `valid` [rows or 1, keys]
    masks scores out (every tile has at least one valid key per row, so no row is NaN)."""
    if UPCAST:
        q = q.to(tl.float32)
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    s = tl.dot(q, tl.trans(k)) * qk_scale
    if MASKED:
        s = tl.where(valid, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return acc, l_i, m_new


@triton.jit
def _decode_split_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    block_table,
    seq_lens,
    mid_o,
    mid_lse,
    qk_scale,
    stride_qb,
    stride_qh,
    stride_kp,
    stride_kt,
    stride_kh,
    stride_vp,
    stride_vt,
    stride_vh,
    stride_bt,
    stride_ob,
    stride_oh,
    stride_os,
    stride_lb,
    stride_lh,
    GROUP: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PAGE_SIZE: tl.constexpr,
    SPLITS: tl.constexpr,
    UPCAST: tl.constexpr,
):
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    seq = tl.load(seq_lens + b)
    per = tl.cdiv(tl.cdiv(seq, SPLITS), BLOCK_N) * BLOCK_N
    start = split * per
    end = tl.minimum(start + per, seq)

    offs_h = tl.arange(0, BLOCK_H)
    h_mask = offs_h < GROUP
    heads = kvh * GROUP + offs_h
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < HEAD_DIM
    q = tl.load(
        q_ptr + b.to(tl.int64) * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
        mask=h_mask[:, None] & d_mask[None, :],
        other=0.0,
    )
    m_i = tl.full((BLOCK_H,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_H,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_H, BLOCK_D), dtype=tl.float32)
    bt_row = block_table + b.to(tl.int64) * stride_bt
    k_head = k_ptr + kvh.to(tl.int64) * stride_kh
    v_head = v_ptr + kvh.to(tl.int64) * stride_vh
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < end
        page = tl.load(bt_row + offs_n // PAGE_SIZE, mask=n_mask, other=0).to(tl.int64)
        tok = offs_n % PAGE_SIZE
        kv_mask = n_mask[:, None] & d_mask[None, :]
        k = tl.load(
            k_head + page[:, None] * stride_kp + tok[:, None] * stride_kt + offs_d[None, :],
            mask=kv_mask,
            other=0.0,
        )
        v = tl.load(
            v_head + page[:, None] * stride_vp + tok[:, None] * stride_vt + offs_d[None, :],
            mask=kv_mask,
            other=0.0,
        )
        acc, l_i, m_i = _softmax_step(
            acc, l_i, m_i, q, k, v, n_mask[None, :], qk_scale, True, UPCAST
        )

    has = l_i > 0
    lse = tl.where(has, m_i + tl.log2(tl.where(has, l_i, 1.0)), float("-inf"))
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    o_ptrs = mid_o + b.to(tl.int64) * stride_ob + heads[:, None] * stride_oh + split * stride_os
    tl.store(o_ptrs + offs_d[None, :], out, mask=h_mask[:, None] & d_mask[None, :])
    tl.store(mid_lse + b.to(tl.int64) * stride_lb + heads * stride_lh + split, lse, mask=h_mask)


@triton.jit
def _decode_reduce_kernel(
    mid_o,
    mid_lse,
    out_ptr,
    stride_ob,
    stride_oh,
    stride_os,
    stride_lb,
    stride_lh,
    stride_outb,
    stride_outh,
    SPLITS: tl.constexpr,
    BLOCK_S: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    s_mask = offs_s < SPLITS
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < HEAD_DIM
    lse = tl.load(mid_lse + b * stride_lb + h * stride_lh + offs_s, mask=s_mask, other=float("-inf"))
    m = tl.max(lse, 0)
    m = tl.where(m == float("-inf"), 0.0, m)
    w = tl.exp2(lse - m)
    o = tl.load(
        mid_o + b * stride_ob + h * stride_oh + offs_s[:, None] * stride_os + offs_d[None, :],
        mask=s_mask[:, None] & d_mask[None, :],
        other=0.0,
    )
    total = tl.sum(w, 0)
    res = tl.sum(w[:, None] * o, 0) / tl.where(total > 0, total, 1.0)
    tl.store(
        out_ptr + b * stride_outb + h * stride_outh + offs_d,
        res.to(out_ptr.dtype.element_ty),
        mask=d_mask,
    )


def paged_decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    num_splits: int | None = None,
) -> torch.Tensor:
    """q [B, H, D] (one new token per request, its K/V already in the cache), caches
    [num_pages, page_size, kv_heads, D], block_table [B, max_pages] int32, seq_lens [B] int32
    (positions to attend, this token's included; 0 for padding). -> [B, H, D] in q's dtype.
    `num_splits` (default: by batch size from the config) must stay fixed within a graph."""
    b_sz, heads, d = q.shape
    _, page_size, kv_heads, d_k = k_cache.shape
    if heads % kv_heads or d_k != d or q.stride(2) != 1 or k_cache.stride(3) != 1:
        raise ValueError("need H % kv_heads == 0, matching head_dim, unit head_dim strides")
    if v_cache.stride(3) != 1 or block_table.dtype != torch.int32:
        raise ValueError("need unit v head_dim stride and an int32 block_table")
    group = heads // kv_heads
    splits = num_splits or decode_splits(b_sz, device_name(q))
    out = torch.empty_like(q)
    if b_sz == 0:
        return out
    mid_o = torch.empty(b_sz, heads, splits, d, dtype=torch.float32, device=q.device)
    mid_lse = torch.empty(b_sz, heads, splits, dtype=torch.float32, device=q.device)
    cfg, opts = launch_opts(config("decode_attn", q))
    block_d = triton.next_power_of_2(d)
    _decode_split_kernel[(b_sz, kv_heads, splits)](
        q, k_cache, v_cache, block_table, seq_lens, mid_o, mid_lse, scale * LOG2E,
        q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        block_table.stride(0),
        mid_o.stride(0), mid_o.stride(1), mid_o.stride(2),
        mid_lse.stride(0), mid_lse.stride(1),
        GROUP=group, BLOCK_H=max(16, triton.next_power_of_2(group)), BLOCK_N=cfg["BLOCK_N"],
        HEAD_DIM=d, BLOCK_D=block_d, PAGE_SIZE=page_size, SPLITS=splits,
        UPCAST=upcast_dots(q),
        **opts,
    )  # fmt: skip
    _, ropts = launch_opts(config("decode_reduce", q))
    _decode_reduce_kernel[(b_sz, heads)](
        mid_o, mid_lse, out,
        mid_o.stride(0), mid_o.stride(1), mid_o.stride(2),
        mid_lse.stride(0), mid_lse.stride(1),
        out.stride(0), out.stride(1),
        SPLITS=splits, BLOCK_S=triton.next_power_of_2(splits), HEAD_DIM=d, BLOCK_D=block_d,
        **ropts,
    )  # fmt: skip
    return out
