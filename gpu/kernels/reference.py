"""Plain-torch references of every kernel op: loops over segments and requests, fp32 math,
written to be obviously right. The tests compare the Triton kernels against these, and
`gpu.kernels` falls back to them where Triton cannot run (CPU without the interpreter)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from gpu.kernels.lora_meta import LoraMeta


def _out_offsets(widths: Sequence[int], out_offsets: Sequence[int] | None) -> list[int]:
    if out_offsets is not None:
        return list(out_offsets)
    offs, col = [], 0
    for w in widths:
        offs.append(col)
        col += w
    return offs


def lora_shrink(
    x: torch.Tensor,
    pool: torch.Tensor,
    a_offsets: Sequence[int],
    max_rank: int,
    meta: LoraMeta,
    tight: bool = False,
) -> torch.Tensor:
    """h[t, j*R : j*R + r] = x[t] @ A_j^T for each token t of a segment with rank r, where
    A_j = pool[slot, a_offsets[j] :][: r * in].view(r, in) (`tight`: at offset r *
    a_offsets[j], an adapter laid out at its own rank). Returns fp32 h
    [1, T, n_slices * max_rank] (one split-K partial, as the kernel's layout); columns past a
    segment's rank and rows without adapter are 0."""
    t, d_in = x.shape
    h = torch.zeros(t, len(a_offsets) * max_rank, dtype=torch.float32, device=x.device)
    flat = pool.reshape(-1)  # an arena adapter's run crosses pool rows (its pages)
    for rows, slot, r, _ in meta.segments():
        xs = x[rows].float()
        for j, off in enumerate(a_offsets):
            off = slot * pool.stride(0) + (off * r if tight else off)
            a = flat[off : off + r * d_in].view(r, d_in).float()
            h[rows, j * max_rank : j * max_rank + r] = xs @ a.t()
    return h.unsqueeze(0)


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
    """y[t, o_j : o_j + w_j] += scale * h[t, j*R : j*R + r] @ Bt_j for each token t of a
    segment (rank r, scaling scale), Bt_j = pool[slot, bt_offsets[j] :][: r * w_j].view(r,
    w_j) (`tight`: at offset r * bt_offsets[j]); h [S, T, n_slices * max_rank] split-K
    partials (or [T, ...]), summed. In place; returns y."""
    outs = _out_offsets(widths, out_offsets)
    if h.dim() == 3:
        h = h.sum(0)
    flat = pool.reshape(-1)
    for rows, slot, r, scale in meta.segments():
        for j, (off, w, o) in enumerate(zip(bt_offsets, widths, outs, strict=True)):
            off = slot * pool.stride(0) + (off * r if tight else off)
            bt = flat[off : off + r * w].view(r, w).float()
            delta = scale * (h[rows, j * max_rank : j * max_rank + r].float() @ bt)
            y[rows, o : o + w] = (y[rows, o : o + w].float() + delta).to(y.dtype)
    return y


def _gather_kv(
    cache: torch.Tensor, block_table: torch.Tensor, b: int, n: int
) -> torch.Tensor:
    """Positions 0..n-1 of request b: [n, kv_heads, head_dim] (cache [pages, page, kvh, hd])."""
    ps = cache.shape[1]
    pos = torch.arange(n, device=cache.device)
    pages = block_table[b, pos // ps].long()
    return cache[pages, pos % ps]


def paged_decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    num_splits: int | None = None,
) -> torch.Tensor:
    """out[b, h] = softmax(scale * q[b, h] . K_b^T) V_b over the request's seq_lens[b] cached
    positions, K_b/V_b of KV head h // (H / kv_heads). seq_len 0 gives zeros.
    (`num_splits` is accepted for signature parity and ignored.)"""
    b_sz, heads, d = q.shape
    group = heads // k_cache.shape[2]
    out = torch.zeros_like(q)
    for b, n in enumerate(seq_lens.tolist()):
        if n <= 0:
            continue
        k = _gather_kv(k_cache, block_table, b, n).float().repeat_interleave(group, dim=1)
        v = _gather_kv(v_cache, block_table, b, n).float().repeat_interleave(group, dim=1)
        s = torch.einsum("hd,nhd->hn", q[b].float(), k) * scale
        out[b] = torch.einsum("hn,nhd->hd", torch.softmax(s, dim=-1), v).to(q.dtype)
    return out


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
    """Causal attention of packed chunks: query i of item b (row cu_seqlens_q[b] + i) sits at
    position ctx_lens[b] + i and sees cached positions 0..ctx_lens[b] + i, which must already
    hold this chunk's K/V. (`max_q_len` is accepted for signature parity and ignored.)"""
    heads = q.shape[1]
    group = heads // k_cache.shape[2]
    out = torch.zeros_like(q)
    cu = cu_seqlens_q.tolist()
    for b, ctx in enumerate(ctx_lens.tolist()):
        n = cu[b + 1] - cu[b]
        if n <= 0:
            continue
        kv_len = ctx + n
        k = _gather_kv(k_cache, block_table, b, kv_len).float().repeat_interleave(group, dim=1)
        v = _gather_kv(v_cache, block_table, b, kv_len).float().repeat_interleave(group, dim=1)
        qb = q[cu[b] : cu[b + 1]].float()
        s = torch.einsum("ihd,jhd->hij", qb, k) * scale
        qpos = ctx + torch.arange(n, device=q.device)
        visible = torch.arange(kv_len, device=q.device)[None, :] <= qpos[:, None]
        s = s.masked_fill(~visible, float("-inf"))
        o = torch.einsum("hij,jhd->ihd", torch.softmax(s, dim=-1), v)
        out[cu[b] : cu[b + 1]] = o.to(q.dtype)
    return out


def write_kv(
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """k_cache[slot // page, slot % page] = k[t] (same for v), slot = slot_mapping[t] =
    page * page_size + offset. Padding tokens must map to a scratch slot, not -1."""
    ps = k_cache.shape[1]
    sm = slot_mapping.long()
    # indexed by (page, offset): the unified arena's caches are strided views (gpu.unified)
    k_cache[sm // ps, sm % ps] = k.to(k_cache.dtype)
    v_cache[sm // ps, sm % ps] = v.to(v_cache.dtype)


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(x * rsqrt(mean(x^2) + eps)).to(x.dtype) * w in x's dtype: `LlamaModel._rms`."""
    xf = x.float()
    normed = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
    return (normed * w).to(x.dtype)


def fused_add_rms_norm(
    x: torch.Tensor,
    residual: torch.Tensor,
    w: torch.Tensor,
    eps: float = 1e-5,
    extra: torch.Tensor | None = None,
) -> torch.Tensor:
    """residual += x (x + extra, rounded, when given) in place, then -> rms_norm(residual, w,
    eps)."""
    residual.add_(x if extra is None else x + extra)
    return rms_norm(residual, w, eps)


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
    """(qkv + extra, rounded, when given.) Split qkv [T, (heads + 2*kv_heads) * head_dim] into q | k | v heads, rotate q and k at
    pos (rotate-half: halves x1, x2 -> (x1*cos - x2*sin, x2*cos + x1*sin), fp32 math), write
    k and v at the flat slots kv_slot (`write_kv`). -> q [T, heads, head_dim] in qkv's dtype."""
    if extra is not None:
        qkv = qkv + extra
    q, k, v = qkv.split([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim], dim=-1)
    c = cos[pos.long()].float().unsqueeze(1)
    s = sin[pos.long()].float().unsqueeze(1)

    def rope(t: torch.Tensor, n: int) -> torch.Tensor:
        x1, x2 = t.reshape(-1, n, head_dim).float().chunk(2, dim=-1)
        return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)

    kr = rope(k, kv_heads).to(k_cache.dtype)
    write_kv(kr, v.reshape(-1, kv_heads, head_dim).to(v_cache.dtype), k_cache, v_cache, kv_slot)
    return rope(q, heads).to(qkv.dtype)


def silu_and_mul(gu: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
    """gu [..., 2*I] = gate | up (gu + extra, rounded, when given) -> silu(gate) * up [..., I],
    fp32 math, in gu's dtype."""
    if extra is not None:
        gu = gu + extra
    gate, up = gu.float().chunk(2, dim=-1)
    return (torch.nn.functional.silu(gate) * up).to(gu.dtype)
