"""SGMV shrink: h = x @ A^T per segment, for up to 3 fused slices in ONE launch.

Two schedules share one tile body (`_shrink_tile`: a tile of one segment's tokens, rows
gathered through `token_order`, times a tile of slice j's A read in place from the slot pool
at `pool[slot] + a_offsets[j]`, its rows past the adapter's rank never read):

- *segments* (decode-sized batches, `meta.max_len <= SEGMENT_LOOP_MAX_LEN`): a fixed grid of
  ~PROGRAMS_PER_SM programs per SM loops over the work units of the REAL segments (count read
  from the meta on the device), a unit being one token tile of one (slice, rank tile). The
  split-K factor is chosen on the device from the real segment count (`sgmv_splits`), so one
  adapter at batch 1 and eight at batch 64 both spread A's bytes over the SMs. A grid over
  (token tiles of the bucket x table segments) instead launched ~30x more programs than had
  work and read A with too few: that was most of the H100's 13.8 ms LoRA step.
- *tiles* (prefill): grid (SPLIT_K x rank tiles, slices, token tiles), the token tiles
  numbered over the real segments one after another (`segment_tile`, from the segment
  lengths on the device), so the grid is sized by the bucket's tokens plus one partial tile
  a segment, not by (longest segment x segment capacity): a one-adapter 512-token prefill in
  a graph with room for 64 segments launched 64x the programs of the real work, which cost
  2x the LoRA time of a 4-segment graph (docs/gpu.md). Tiles past the last one exit at once.

Split k writes its partial product to h[k] and the expand adds the partials as it reads
them, so h needs no zero-fill (one more graph node a projection) and no atomics. Everything
the grid or the split depends on is a host bound fixed for a CUDA-graph bucket, or device
data. Modelled on vLLM's `lora_shrink_op.py` and Punica's SGMV.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from gpu.kernels._common import config, launch_opts, upcast_dots
from gpu.kernels.lora_meta import LoraMeta

MAX_SLICES = 3
# a segment-length bound at or below this (every decode bucket) takes the segment-loop
# schedule and the "*_decode" configs; above it, the tile grid and "*_prefill"
# Above it the loop's 16-token tiles re-read A once per tile on a program or so per SM: on the
# H100 a 128-token prefill of 16 adapters (rank 64) cost 12.7 ms of LoRA on the loop against
# 10.0 ms for 384 tokens on the tile grid (calibrate, 2026-12-06).
SEGMENT_LOOP_MAX_LEN = 64
# the segment-loop shrink keeps its partials under this many bytes (S x T x slices x rank x 4)
_H_BUDGET = 16 << 20


@triton.jit
def sgmv_splits(nseg, per_seg, target, SPLIT_MAX: tl.constexpr):
    """Split-K factor of the segment-loop shrink: enough units for `target` programs, at most
    SPLIT_MAX (the expand recomputes it to know how many partials to sum)."""
    units = tl.maximum(nseg * per_seg, 1)
    return tl.minimum(tl.maximum(target // units, 1), SPLIT_MAX)


@triton.jit
def sgmv_unit(u, splits, M_TILES: tl.constexpr, N_TILES: tl.constexpr, N_SLICES: tl.constexpr):
    """Work unit u of the segment loop -> (split, token tile, rank/output tile, slice,
    segment), split fastest: the shrink's and the expand's (splits 1) one numbering."""
    ks = u % splits
    rest = u // splits
    mt = rest % M_TILES
    item = rest // M_TILES
    return ks, mt, item % N_TILES, (item // N_TILES) % N_SLICES, item // (N_TILES * N_SLICES)


@triton.jit
def adapter_base(pool_ptr, slot, stride_slot, sid, off0, off1, off2, rank, TIGHT: tl.constexpr):
    """Where slice `sid`'s matrix of the adapter in `slot` starts: the slice's offset within
    a slot, or with TIGHT (an adapter at its own rank in the unified arena, `slot` its first
    page) that offset per unit of rank times the adapter's rank. The shrink's A and the
    expand's B^T, both schedules."""
    off = tl.where(sid == 0, off0, tl.where(sid == 1, off1, off2)).to(tl.int64)
    if TIGHT:
        off = tl.multiple_of(off * rank, 16)
    return pool_ptr + slot.to(tl.int64) * stride_slot + off


@triton.jit
def segment_tile(i, seg_len, seg_count, BLOCK_M: tl.constexpr, SEGS: tl.constexpr):
    """Token tile i of the real segments, numbered segment after segment -> (segment, first
    row of the tile in it); segment -1 past the last tile. SEGS: a power of two >= the
    table's segment capacity (one vector load of the lengths, a prefix sum, no loop)."""
    s = tl.arange(0, SEGS)
    nseg = tl.load(seg_count)
    tiles = (tl.load(seg_len + s, mask=s < nseg, other=0) + BLOCK_M - 1) // BLOCK_M
    end = tl.cumsum(tiles, 0)
    seg = tl.sum((end <= i).to(tl.int32), 0)
    first = tl.sum(tl.where(s == seg, end - tiles, 0), 0)
    return tl.where(seg < nseg, seg, -1), (i - first) * BLOCK_M


def splits_host(nseg: int, per_seg: int, target: int, split_max: int) -> int:
    """`sgmv_splits` on the host (tests: how many of h's partials a shrink defined)."""
    return min(max(target // max(nseg * per_seg, 1), 1), split_max)


def sm_count(t: torch.Tensor) -> int:
    """Streaming multiprocessors of t's GPU; 4 elsewhere (the interpreter's small grids)."""
    return torch.cuda.get_device_properties(t.device).multi_processor_count if t.is_cuda else 4


@triton.jit
def _shrink_tile(
    x_ptr, a_base, h_ptr, token_order, start, length, m0, n0, rank, k_lo, k_step, K,
    stride_xm, stride_xk, stride_hm, h_col0,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, UPCAST: tl.constexpr,
):  # fmt: skip
    """h[rows, h_col0 + n] = sum over k in k_lo, k_lo + k_step, ... of x[rows, k] A[n, k]
    for the segment's token tile at m0 and rank tile at n0 (A is [max_rank, K] row-major)."""
    offs_m = m0 + tl.arange(0, BLOCK_M)
    m_mask = offs_m < length
    rows = tl.load(token_order + start + offs_m, mask=m_mask, other=0).to(tl.int64)
    offs_n = n0 + tl.arange(0, BLOCK_N)
    n_mask = offs_n < rank
    x_rows = x_ptr + rows[:, None] * stride_xm
    a_rows = a_base + offs_n[None, :].to(tl.int64) * K
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(k_lo, K, k_step):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_mask = offs_k < K
        xt = tl.load(x_rows + offs_k[None, :] * stride_xk, mask=m_mask[:, None] & k_mask[None, :], other=0.0)
        at = tl.load(a_rows + offs_k[:, None], mask=k_mask[:, None] & n_mask[None, :], other=0.0)
        if UPCAST:
            xt = xt.to(tl.float32)
            at = at.to(tl.float32)
        acc += tl.dot(xt, at)
    h_ptrs = h_ptr + rows[:, None] * stride_hm + (h_col0 + offs_n)[None, :]
    tl.store(h_ptrs, acc, mask=m_mask[:, None] & n_mask[None, :])


# a_off* are specialized on purpose (see lora_expand_op: without the divisible-by-16 flag the
# A rows are read 2 bytes at a time)
@triton.jit
def _shrink_segments_kernel(
    x_ptr, pool_ptr, h_ptr,
    token_order, seg_start, seg_len, seg_slot, seg_rank, seg_count,
    a_off0, a_off1, a_off2, K, stride_xm, stride_xk, stride_slot, stride_hs, stride_hm, target,
    N_SLICES: tl.constexpr, MAX_RANK: tl.constexpr, N_TILES: tl.constexpr, M_TILES: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    SPLIT_MAX: tl.constexpr, UPCAST: tl.constexpr, TIGHT: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    progs = tl.num_programs(0)
    nseg = tl.load(seg_count)
    per_seg = N_SLICES * N_TILES
    splits = sgmv_splits(nseg, per_seg, target, SPLIT_MAX)
    # a unit: (segment, slice, rank tile, token tile, split); a segment's token tiles are
    # units of their own, so one adapter with a whole batch's tokens is not one long loop
    for u in range(pid, nseg * per_seg * M_TILES * splits, progs):
        ks, mt, nt, sid, seg = sgmv_unit(u, splits, M_TILES, N_TILES, N_SLICES)
        rank = tl.load(seg_rank + seg)
        length = tl.load(seg_len + seg)
        if (nt * BLOCK_N < rank) & (mt * BLOCK_M < length):
            slot = tl.load(seg_slot + seg)
            start = tl.load(seg_start + seg)
            a_base = adapter_base(pool_ptr, slot, stride_slot, sid, a_off0, a_off1, a_off2, rank, TIGHT)
            _shrink_tile(
                x_ptr, a_base, h_ptr + ks * stride_hs, token_order, start, length, mt * BLOCK_M,
                nt * BLOCK_N, rank, ks * BLOCK_K, splits * BLOCK_K, K,
                stride_xm, stride_xk, stride_hm, sid * MAX_RANK,
                BLOCK_M, BLOCK_N, BLOCK_K, UPCAST,
            )  # fmt: skip


@triton.jit
def _shrink_tiles_kernel(
    x_ptr, pool_ptr, h_ptr,
    token_order, seg_start, seg_len, seg_slot, seg_rank, seg_count,
    a_off0, a_off1, a_off2, K, stride_xm, stride_xk, stride_slot, stride_hs, stride_hm,
    MAX_RANK: tl.constexpr, SEGS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr, UPCAST: tl.constexpr, TIGHT: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    sid = tl.program_id(1)
    seg, m0 = segment_tile(tl.program_id(2), seg_len, seg_count, BLOCK_M, SEGS)
    if seg < 0:
        return
    rank = tl.load(seg_rank + seg)
    pid_k = pid % SPLIT_K
    n0 = (pid // SPLIT_K) * BLOCK_N
    if n0 >= rank:
        return
    slot = tl.load(seg_slot + seg)
    start = tl.load(seg_start + seg)
    a_base = adapter_base(pool_ptr, slot, stride_slot, sid, a_off0, a_off1, a_off2, rank, TIGHT)
    _shrink_tile(
        x_ptr, a_base, h_ptr + pid_k * stride_hs, token_order, start, tl.load(seg_len + seg), m0, n0,
        rank, pid_k * BLOCK_K, SPLIT_K * BLOCK_K, K, stride_xm, stride_xk, stride_hm, sid * MAX_RANK,
        BLOCK_M, BLOCK_N, BLOCK_K, UPCAST,
    )  # fmt: skip


def segment_loop(meta: LoraMeta) -> bool:
    """Whether a launch over `meta` takes the segment-loop schedule (host bound only, so a
    captured graph keeps its choice)."""
    return meta.max_len <= SEGMENT_LOOP_MAX_LEN


def shrink_plan(x: torch.Tensor, n_slices: int, max_rank: int) -> dict[str, int]:
    """Host-side shape of a segment-loop shrink, shared with the expand (which must sum the
    same number of partials): rank tile, rank tiles, units per segment, program target."""
    cfg = config("shrink_decode", x)
    bn = max(16, min(cfg["BLOCK_N"], triton.next_power_of_2(max_rank)))
    n_tiles = triton.cdiv(max_rank, bn)
    target = cfg.get("PROGRAMS_PER_SM", 2) * sm_count(x)
    return {"block_n": bn, "n_tiles": n_tiles, "per_seg": n_slices * n_tiles, "target": target}


def partials_defined(h: torch.Tensor, x: torch.Tensor, n_slices: int, max_rank: int, meta: LoraMeta) -> int:
    """How many of lora_shrink's partials h (of x over `meta`) hold data: all of them on the
    tile grid, the device's `sgmv_splits` on the segment loop (mirrored here from the host
    segment count, so for tests and eager use, not for a replayed graph)."""
    if not segment_loop(meta):
        return h.shape[0]
    plan = shrink_plan(x, n_slices, max_rank)
    return splits_host(meta.num_segments, plan["per_seg"], plan["target"], h.shape[0])


def prefill_work_tiles(meta: LoraMeta, block_m: int, by_tokens: bool = False) -> int:
    """Token tiles the tile grid launches (`segment_tile`'s numbering): at most the tokens'
    tiles plus one partial tile a segment of the table's capacity (the default), or,
    `by_tokens`, the tokens' tiles alone, which is what the split-K choice counts with config
    key `SPLIT_BY_TOKENS` (on an H100 it changed the split's time by at most 4 %)."""
    by_tok = triton.cdiv(meta.max_tokens, block_m)
    if by_tokens:
        return max(1, by_tok)
    return min(triton.cdiv(max(meta.max_len, 1), block_m) * meta.max_segments, by_tok + meta.max_segments)


def _split_k_tiles(x: torch.Tensor, cfg: dict, programs: int, k: int) -> int:
    """Split-K factor of the tile grid: about PROGRAMS_PER_SM (default 2) working programs
    per SM on a GPU (at most the config's SPLIT_K, at least one BLOCK_K step per split); the
    config's value elsewhere. A rank-wide shrink has few output tiles, so its programs' K
    loops are long and latency-bound unless the split spreads them."""
    if not x.is_cuda:
        return cfg["SPLIT_K"]
    want = triton.next_power_of_2(triton.cdiv(cfg.get("PROGRAMS_PER_SM", 2) * sm_count(x), max(programs, 1)))
    return max(1, min(cfg["SPLIT_K"], want, triton.cdiv(k, cfg["BLOCK_K"])))


def lora_shrink(
    x: torch.Tensor,
    pool: torch.Tensor,
    a_offsets: Sequence[int],
    max_rank: int,
    meta: LoraMeta,
    tight: bool = False,
) -> torch.Tensor:
    """x [T, in] (any row stride), pool [n_slots, slot_numel] (row stride = slot stride,
    unit column stride), a_offsets: element offset of each slice's A [max_rank, in] within a
    slot (1 to 3 slices); `tight`: offsets per unit of rank, A [rank, in] at rank x
    a_offsets[j] (an adapter laid out at its own rank in the unified arena, where a "slot"
    is its first page). Returns fp32 split-K partials h [S, T, n_slices * max_rank]: the
    sum of the first `splits` of them (all S on the tile grid; `sgmv_splits` of the real
    segment count on the segment loop) is x A^T on slice j's columns j*max_rank .. + rank - 1
    of every token with an adapter; every other entry is undefined (never read by
    lora_expand)."""
    n = len(a_offsets)
    if not 1 <= n <= MAX_SLICES:
        raise ValueError(f"1..{MAX_SLICES} slices per launch, got {n}")
    if pool.stride(1) != 1:
        raise ValueError("pool rows must be contiguous")
    t, k = x.shape
    offs = list(a_offsets) + [0] * (MAX_SLICES - n)
    common = (meta.token_order, meta.seg_start, meta.seg_len, meta.seg_slot, meta.seg_rank)
    if segment_loop(meta):
        cfg, opts = launch_opts(config("shrink_decode", x))
        plan = shrink_plan(x, n, max_rank)
        budget = max(1, _H_BUDGET // max(1, 4 * t * n * max_rank))
        split_max = max(1, min(cfg["SPLIT_K"], triton.cdiv(k, cfg["BLOCK_K"]), budget))
        h = torch.empty(split_max, t, n * max_rank, dtype=torch.float32, device=x.device)
        if meta.max_len == 0 or t == 0:
            return h
        m_tiles = triton.cdiv(meta.max_len, cfg["BLOCK_M"])
        units = meta.max_segments * plan["per_seg"] * m_tiles * split_max
        _shrink_segments_kernel[(max(1, min(plan["target"], units)),)](
            x, pool, h, *common, meta.seg_count,
            offs[0], offs[1], offs[2],
            k, x.stride(0), x.stride(1), pool.stride(0), h.stride(0), h.stride(1), plan["target"],
            N_SLICES=n, MAX_RANK=max_rank, N_TILES=plan["n_tiles"], M_TILES=m_tiles,
            BLOCK_M=cfg["BLOCK_M"], BLOCK_N=plan["block_n"], BLOCK_K=cfg["BLOCK_K"],
            SPLIT_MAX=split_max, UPCAST=upcast_dots(x), TIGHT=tight, **opts,
        )  # fmt: skip
        return h
    cfg, opts = launch_opts(config("shrink_prefill", x))
    bn = max(16, min(cfg["BLOCK_N"], triton.next_power_of_2(max_rank)))
    n_tiles = triton.cdiv(max_rank, bn)
    tiles = prefill_work_tiles(meta, cfg["BLOCK_M"])
    counted = prefill_work_tiles(meta, cfg["BLOCK_M"], cfg.get("SPLIT_BY_TOKENS", False))
    split_k = _split_k_tiles(x, cfg, counted * n_tiles * n, k)
    h = torch.empty(split_k, t, n * max_rank, dtype=torch.float32, device=x.device)
    if meta.max_len == 0 or t == 0:
        return h
    _shrink_tiles_kernel[(split_k * n_tiles, n, tiles)](
        x, pool, h, *common, meta.seg_count,
        offs[0], offs[1], offs[2],
        k, x.stride(0), x.stride(1), pool.stride(0), h.stride(0), h.stride(1),
        MAX_RANK=max_rank, SEGS=triton.next_power_of_2(meta.max_segments),
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=bn, BLOCK_K=cfg["BLOCK_K"], SPLIT_K=split_k,
        UPCAST=upcast_dots(x), TIGHT=tight, **opts,
    )  # fmt: skip
    return h
