"""RoPE of q and k plus the paged KV write, from the fused qkv row, in one launch (torch:
split, ~10 ops per rotary, index_copy_ twice).

Grid (tokens, kv_heads): the program of KV head g reads token t's cos/sin row at pos[t]
once, rotates the GROUP = heads / kv_heads query heads that attend to g (written to a
contiguous q [T, heads, D]) and k head g, and writes rotated k and raw v head g to the
caches at flat slot kv_slot[t] = page * page_size + offset. Rotate-half (HF Llama): with x1,
x2 the halves of a head, out = (x1*cos - x2*sin, x2*cos + x1*sin), in fp32, rounded once to
the destination dtype. Every read and write is a contiguous half-head run. The grid comes
from shapes only and pos/kv_slot are read on the device: CUDA-graph safe. Padding tokens
must carry a valid (scratch) slot; several may share it (last write wins, unread).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gpu.kernels._common import config, launch_opts
from gpu.kernels.extra import check_extra, load_sum


@triton.jit
def _rotate(src, ext, dst, cos, sin, mask, HALF: tl.constexpr, EXTRA: tl.constexpr):
    x1 = load_sum(src, ext, mask, EXTRA)
    x2 = load_sum(src + HALF, ext + HALF, mask, EXTRA)
    ty = dst.dtype.element_ty
    tl.store(dst, (x1 * cos - x2 * sin).to(ty), mask=mask)
    tl.store(dst + HALF, (x2 * cos + x1 * sin).to(ty), mask=mask)


@triton.jit
def _rope_write_kv_kernel(
    qkv_ptr,
    e_ptr,
    pos_ptr,
    cos_ptr,
    sin_ptr,
    slot_ptr,
    q_ptr,
    k_ptr,
    v_ptr,
    stride_qkv,
    stride_e,
    stride_cos,
    stride_sin,
    stride_qt,
    stride_qh,
    stride_kp,
    stride_kt,
    stride_kh,
    stride_vp,
    stride_vt,
    stride_vh,
    HEADS: tl.constexpr,
    KV_HEADS: tl.constexpr,
    GROUP: tl.constexpr,
    BLOCK_G: tl.constexpr,
    HALF: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
    PAGE_SIZE: tl.constexpr,
    EXTRA: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    g = tl.program_id(1)
    offs = tl.arange(0, BLOCK_HALF)
    d_mask = offs < HALF
    p = tl.load(pos_ptr + t).to(tl.int64)
    cos = tl.load(cos_ptr + p * stride_cos + offs, mask=d_mask, other=0.0).to(tl.float32)
    sin = tl.load(sin_ptr + p * stride_sin + offs, mask=d_mask, other=0.0).to(tl.float32)
    row = qkv_ptr + t * stride_qkv
    erow = e_ptr + t * stride_e  # the LoRA delta's row (unread without EXTRA)

    # q heads g*GROUP .. g*GROUP + GROUP-1 as a [BLOCK_G, BLOCK_HALF] tile
    hq = g * GROUP + tl.arange(0, BLOCK_G)
    q_mask = (tl.arange(0, BLOCK_G) < GROUP)[:, None] & d_mask[None, :]
    q_col = hq[:, None] * (2 * HALF) + offs[None, :]
    _rotate(
        row + q_col, erow + q_col,
        q_ptr + t * stride_qt + hq[:, None] * stride_qh + offs[None, :],
        cos[None, :], sin[None, :], q_mask, HALF, EXTRA,
    )  # fmt: skip

    slot = tl.load(slot_ptr + t).to(tl.int64)
    page = slot // PAGE_SIZE
    off = slot % PAGE_SIZE
    k_col = (HEADS + g) * (2 * HALF) + offs
    _rotate(
        row + k_col, erow + k_col,
        k_ptr + page * stride_kp + off * stride_kt + g * stride_kh + offs,
        cos, sin, d_mask, HALF, EXTRA,
    )  # fmt: skip
    v_col = k_col + KV_HEADS * (2 * HALF)
    v_dst = v_ptr + page * stride_vp + off * stride_vt + g * stride_vh + offs
    ty = v_ptr.dtype.element_ty
    tl.store(v_dst, load_sum(row + v_col, erow + v_col, d_mask, EXTRA).to(ty), mask=d_mask)
    tl.store(
        v_dst + HALF, load_sum(row + v_col + HALF, erow + v_col + HALF, d_mask, EXTRA).to(ty), mask=d_mask
    )


def rope_write_kv(
    qkv: torch.Tensor,
    pos: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    kv_slot: torch.Tensor,
    heads: int,
    kv_heads: int,
    head_dim: int,
    extra: torch.Tensor | None = None,
) -> torch.Tensor:
    """qkv [T, (heads + 2*kv_heads) * head_dim] (q | k | v, head-major; plus `extra` of its
    shape and dtype, rounded to it, when given: a LoRA delta), pos [T] and kv_slot
    [T] integer tensors, cos/sin [max_pos, head_dim / 2], caches [num_pages, page_size,
    kv_heads, head_dim] (any page/token/head strides, unit dim stride). Writes RoPE'd k and
    v at each token's slot. -> RoPE'd q [T, heads, head_dim], contiguous, in qkv's dtype."""
    t = qkv.shape[0]
    _, page_size, kvh, d = k_cache.shape
    if qkv.shape[1] != (heads + 2 * kv_heads) * head_dim or qkv.stride(1) != 1:
        raise ValueError(f"qkv {tuple(qkv.shape)} is not [T, (heads + 2*kv_heads) * head_dim]")
    if heads % kv_heads or head_dim % 2 or (kvh, d) != (kv_heads, head_dim):
        raise ValueError("need heads % kv_heads == 0, an even head_dim and matching caches")
    if v_cache.shape != k_cache.shape or k_cache.stride(3) != 1 or v_cache.stride(3) != 1:
        raise ValueError("need k/v caches of one shape with unit head_dim strides")
    half = head_dim // 2
    if cos.shape[1] != half or sin.shape[1] != half or cos.stride(1) != 1 or sin.stride(1) != 1:
        raise ValueError(f"cos/sin must be [max_pos, {half}] with unit column stride")
    check_extra(extra, qkv, "qkv", unit_stride=True)
    q = torch.empty(t, heads, head_dim, dtype=qkv.dtype, device=qkv.device)
    if t == 0:
        return q
    group = heads // kv_heads
    e = qkv if extra is None else extra  # unread without EXTRA
    _, opts = launch_opts(config("rope_kv", qkv))
    _rope_write_kv_kernel[(t, kv_heads)](
        qkv, e, pos.contiguous(), cos, sin, kv_slot.contiguous(), q, k_cache, v_cache,
        qkv.stride(0), e.stride(0), cos.stride(0), sin.stride(0), q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        HEADS=heads, KV_HEADS=kv_heads, GROUP=group, BLOCK_G=triton.next_power_of_2(group),
        HALF=half, BLOCK_HALF=triton.next_power_of_2(half), PAGE_SIZE=page_size,
        EXTRA=extra is not None, **opts,
    )  # fmt: skip
    return q
