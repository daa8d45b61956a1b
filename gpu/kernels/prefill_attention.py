"""Paged prefill (extend) attention: FlashAttention-2 over packed variable-length chunks.

Item b's queries are rows cu_seqlens_q[b] .. cu_seqlens_q[b+1]-1 of q [T, H, D]; query i
sits at position ctx_lens[b] + i and sees cached positions 0..ctx_lens[b] + i, all read
from the pages (this chunk's K/V were written there first, e.g. by write_kv). No padding:
grid (query tiles of the longest chunk, B, kv_heads); tiles past an item's chunk exit.

GQA is packed into the rows of a tile (row r = query m0 + r // group, head r % group), so a
K/V tile loaded once serves the whole group, as in the decode kernel. Key tiles that every
row of the tile sees in full run without the causal mask; only the tiles on the diagonal
pay for it. Same cache layout as decode_attention.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gpu.kernels._common import config, launch_opts, upcast_dots
from gpu.kernels.decode_attention import LOG2E, _softmax_step


@triton.jit
def _load_kv(head_ptr, bt_row, offs_n, n_mask, offs_d, d_mask, stride_p, stride_t, PAGE_SIZE: tl.constexpr):
    """A [keys, D] tile of one KV head: key n lives in page block_table[n // PAGE_SIZE]."""
    page = tl.load(bt_row + offs_n // PAGE_SIZE, mask=n_mask, other=0).to(tl.int64)
    ptrs = head_ptr + page[:, None] * stride_p + (offs_n % PAGE_SIZE)[:, None] * stride_t
    return tl.load(ptrs + offs_d[None, :], mask=n_mask[:, None] & d_mask[None, :], other=0.0)


@triton.jit
def _prefill_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    o_ptr,
    block_table,
    cu_seqlens,
    ctx_lens,
    qk_scale,
    stride_qt,
    stride_qh,
    stride_kp,
    stride_kt,
    stride_kh,
    stride_vp,
    stride_vt,
    stride_vh,
    stride_ot,
    stride_oh,
    stride_bt,
    GROUP: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PAGE_SIZE: tl.constexpr,
    UPCAST: tl.constexpr,
):
    pid_m = tl.program_id(0)
    b = tl.program_id(1)
    kvh = tl.program_id(2)
    q_start = tl.load(cu_seqlens + b)
    q_len = tl.load(cu_seqlens + b + 1) - q_start
    m0 = pid_m * BLOCK_Q
    if m0 >= q_len:
        return
    ctx = tl.load(ctx_lens + b)

    offs_r = tl.arange(0, BLOCK_M)
    qi = m0 + offs_r // GROUP
    heads = kvh * GROUP + offs_r % GROUP
    r_mask = (offs_r < BLOCK_Q * GROUP) & (qi < q_len)
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < HEAD_DIM
    tok = (q_start + qi).to(tl.int64)
    q = tl.load(
        q_ptr + tok[:, None] * stride_qt + heads[:, None] * stride_qh + offs_d[None, :],
        mask=r_mask[:, None] & d_mask[None, :],
        other=0.0,
    )
    qpos = ctx + qi
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    bt_row = block_table + b.to(tl.int64) * stride_bt
    k_head = k_ptr + kvh.to(tl.int64) * stride_kh
    v_head = v_ptr + kvh.to(tl.int64) * stride_vh

    # keys 0 .. ctx + m0 are visible to every row of the tile: no causal mask there
    full_end = ((ctx + m0 + 1) // BLOCK_N) * BLOCK_N
    for n0 in range(0, full_end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < full_end
        k = _load_kv(k_head, bt_row, offs_n, n_mask, offs_d, d_mask, stride_kp, stride_kt, PAGE_SIZE)
        v = _load_kv(v_head, bt_row, offs_n, n_mask, offs_d, d_mask, stride_vp, stride_vt, PAGE_SIZE)
        acc, l_i, m_i = _softmax_step(acc, l_i, m_i, q, k, v, n_mask[None, :], qk_scale, False, UPCAST)
    # the diagonal: keys up to the tile's last query, causally masked per row
    end = ctx + tl.minimum(m0 + BLOCK_Q, q_len)
    for n0 in range(full_end, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        n_mask = offs_n < end
        k = _load_kv(k_head, bt_row, offs_n, n_mask, offs_d, d_mask, stride_kp, stride_kt, PAGE_SIZE)
        v = _load_kv(v_head, bt_row, offs_n, n_mask, offs_d, d_mask, stride_vp, stride_vt, PAGE_SIZE)
        valid = (offs_n[None, :] <= qpos[:, None]) & n_mask[None, :]
        acc, l_i, m_i = _softmax_step(acc, l_i, m_i, q, k, v, valid, qk_scale, True, UPCAST)

    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(
        o_ptr + tok[:, None] * stride_ot + heads[:, None] * stride_oh + offs_d[None, :],
        out.to(o_ptr.dtype.element_ty),
        mask=r_mask[:, None] & d_mask[None, :],
    )


def paged_prefill_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    ctx_lens: torch.Tensor,
    scale: float,
    max_q_len: int | None = None,
) -> torch.Tensor:
    """q [T, H, D] packed, caches [num_pages, page_size, kv_heads, D], block_table [B,
    max_pages] int32, cu_seqlens_q [B+1] int32, ctx_lens [B] int32 (cached tokens before this
    chunk). -> [T, H, D] in q's dtype. `max_q_len` bounds the chunk lengths (sizes the grid;
    pass it to avoid a device sync, and keep it fixed within a CUDA graph)."""
    t, heads, d = q.shape
    _, page_size, kv_heads, d_k = k_cache.shape
    if heads % kv_heads or d_k != d or q.stride(2) != 1 or k_cache.stride(3) != 1:
        raise ValueError("need H % kv_heads == 0, matching head_dim, unit head_dim strides")
    if v_cache.stride(3) != 1 or block_table.dtype != torch.int32:
        raise ValueError("need unit v head_dim stride and an int32 block_table")
    out = torch.empty_like(q)
    b_sz = ctx_lens.numel()
    if t == 0 or b_sz == 0:
        return out
    if max_q_len is None:
        max_q_len = int((cu_seqlens_q[1:] - cu_seqlens_q[:-1]).max())
    group = heads // kv_heads
    cfg, opts = launch_opts(config("prefill_attn", q))
    block_m = max(cfg["BLOCK_M"], triton.next_power_of_2(group))
    block_q = block_m // group
    grid = (triton.cdiv(max_q_len, block_q), b_sz, kv_heads)
    _prefill_kernel[grid](
        q, k_cache, v_cache, out, block_table, cu_seqlens_q, ctx_lens, scale * LOG2E,
        q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        out.stride(0), out.stride(1), block_table.stride(0),
        GROUP=group, BLOCK_M=block_m, BLOCK_Q=block_q, BLOCK_N=cfg["BLOCK_N"],
        HEAD_DIM=d, BLOCK_D=triton.next_power_of_2(d), PAGE_SIZE=page_size,
        UPCAST=upcast_dots(q),
        **opts,
    )  # fmt: skip
    return out
