"""Per-batch SGMV metadata, built once on the host and shared by every layer and projection.

A *segment* is a set of tokens that use one adapter. Segments are formed over the batch's
tokens sorted by slot (stable), so all tokens of an adapter are one segment and its weights
are read once per launch: a decode batch of 64 requests over 8 adapters is 8 segments, not
64 one-token segments each re-reading A and B (vLLM's `lora_kernel_metadata.py` does the
same). `by_adapter=False` keeps runs of consecutive tokens instead (Punica's SGMV layout).
Tokens with no adapter (slot -1) belong to no segment and are never touched.

The kernels read rows through `token_order` (row i of segment s is token
`token_order[seg_start[s] + i]`), so no activation is gathered or copied either.

For CUDA-graph capture every tensor has a fixed capacity (`max_tokens`, `max_segments`) and
the grid depends only on the host-side `max_len` bound: padding segments have length 0 and
slot -1 and their programs return at once. `copy_from` refreshes a captured meta in place.

Everything lives in ONE int32 device buffer (scales bit-cast), so a batch costs one
host-to-device copy. It also holds the real segment count (`seg_count`): the decode-sized
SGMV kernels loop over the real segments only, so a table sized for 64 adapters costs
nothing when a batch uses 8.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from gpu.staging import copy_into, to_device

if TYPE_CHECKING:
    from gpu.lora import LoraSlots

# fused projections: one launch each (output columns of a slice follow ALL_TARGETS widths)
FUSED = {
    "qkv": ("q_proj", "k_proj", "v_proj"),
    "gate_up": ("gate_proj", "up_proj"),
    "o": ("o_proj",),
    "down": ("down_proj",),
}


_ROWS = 6  # per-segment tables: start, len, rank, slot, scale, and the count (one entry)


def _aligned(n: int) -> int:
    """n rounded up to 4 int32s: every table starts 16-byte aligned, since Triton specializes
    kernels on pointer alignment and a new specialization is a ~1 s compile mid-run."""
    return n + (-n % 4)


@dataclass
class LoraMeta:
    """Segment table of one batch (see module docstring). Views into `buf`."""

    buf: torch.Tensor  # int32 [max_tokens + 6 * max_segments], each table 16-byte aligned
    token_order: torch.Tensor  # [max_tokens] int32: token rows, grouped by segment
    seg_start: torch.Tensor  # [max_segments] int32: first index into token_order
    seg_len: torch.Tensor  # [max_segments] int32: 0 for padding
    seg_slot: torch.Tensor  # [max_segments] int32: pool row, -1 for padding
    seg_rank: torch.Tensor  # [max_segments] int32: the adapter's rank (<= pool max rank)
    seg_scale: torch.Tensor  # [max_segments] float32: the adapter's scaling (alpha / r)
    seg_count: torch.Tensor  # [1] int32: real segments (they come first in every table)
    num_tokens: int  # tokens in the batch (rows of x, h, y)
    max_len: int  # host bound on every seg_len: sizes the grid's token tiles
    num_segments: int  # real segments (host copy; kernels never need it)

    @property
    def max_segments(self) -> int:
        return self.seg_len.numel()

    @property
    def max_tokens(self) -> int:
        return self.token_order.numel()

    @classmethod
    def build(
        cls,
        tok_slots: Sequence[int] | torch.Tensor,
        slot_ranks: Sequence[int],
        slot_scalings: Sequence[float],
        device: torch.device | str = "cpu",
        *,
        by_adapter: bool = True,
        max_tokens: int | None = None,
        max_segments: int | None = None,
        max_len: int | None = None,
    ) -> LoraMeta:
        """Meta of a packed batch: `tok_slots[t]` is token t's pool slot (-1: base model);
        `slot_ranks[s]`, `slot_scalings[s]` describe the adapter held in slot s. The `max_*`
        capacities fix the shapes for a CUDA-graph bucket (default: this batch's sizes)."""
        ts = torch.as_tensor(tok_slots, dtype=torch.int64).flatten().cpu()
        t = ts.numel()
        order = torch.argsort(ts, stable=True) if by_adapter else torch.arange(t)
        order = order[ts[order] >= 0]
        slot, length = torch.unique_consecutive(ts[order], return_counts=True)
        n = slot.numel()
        start = torch.cumsum(length, 0) - length
        cap_t = t if max_tokens is None else max_tokens
        cap_s = max(n, 1) if max_segments is None else max_segments
        longest = int(length.max()) if n else 0
        bound = longest if max_len is None else max_len
        if t > cap_t or n > cap_s or longest > bound:
            raise ValueError(
                f"batch ({t} tokens, {n} segments, longest {longest}) exceeds the meta's "
                f"capacity ({cap_t} tokens, {cap_s} segments, max_len {bound})"
            )
        ranks = torch.as_tensor(list(slot_ranks), dtype=torch.int64)
        scales = torch.as_tensor(list(slot_scalings), dtype=torch.float32)
        off, row = _aligned(cap_t), _aligned(cap_s)
        host = torch.zeros(off + _ROWS * row, dtype=torch.int32)
        host[: order.numel()] = order.to(torch.int32)
        seg = host[off:].view(_ROWS, row)[:, :cap_s]
        seg[3].fill_(-1)  # padding slot: kernels skip it
        seg[0, :n] = start.to(torch.int32)
        seg[1, :n] = length.to(torch.int32)
        seg[2, :n] = ranks[slot].to(torch.int32) if n else seg[2, :0]
        seg[3, :n] = slot.to(torch.int32)
        seg[4, :n] = scales[slot].view(torch.int32) if n else seg[4, :0]
        seg[5, 0] = n
        return cls.from_buffer(to_device(host, torch.device(device)), cap_t, cap_s, t, bound, n)

    @classmethod
    def from_buffer(
        cls, buf: torch.Tensor, cap_t: int, cap_s: int, num_tokens: int, max_len: int, n: int
    ) -> LoraMeta:
        seg = buf[_aligned(cap_t) :].view(_ROWS, _aligned(cap_s))[:, :cap_s]
        return cls(
            buf=buf,
            token_order=buf[:cap_t],
            seg_start=seg[0],
            seg_len=seg[1],
            seg_rank=seg[2],
            seg_slot=seg[3],
            seg_scale=seg[4].view(torch.float32),
            seg_count=seg[5, :1],
            num_tokens=num_tokens,
            max_len=max_len,
            num_segments=n,
        )

    def copy_from(self, other: LoraMeta) -> None:
        """Refresh this (captured) meta with another batch's table of the same capacities,
        queued on the current stream. `num_tokens` must already match the captured shapes."""
        if other.buf.numel() != self.buf.numel() or other.max_len > self.max_len:
            raise ValueError("meta capacities differ: build the new one with this one's max_*")
        if other.buf.device == self.buf.device:
            self.buf.copy_(other.buf, non_blocking=True)
        else:
            copy_into(self.buf, other.buf)
        self.num_segments = other.num_segments

    def segments(self) -> list[tuple[list[int], int, int, float]]:
        """(token rows, slot, rank, scaling) of each real segment, on the host (references
        and tests; synchronizes)."""
        order = self.token_order.tolist()
        out = []
        for st, ln, sl, rk, sc in zip(
            self.seg_start.tolist(),
            self.seg_len.tolist(),
            self.seg_slot.tolist(),
            self.seg_rank.tolist(),
            self.seg_scale.tolist(),
            strict=True,
        ):
            if ln > 0 and sl >= 0:
                out.append((order[st : st + ln], sl, rk, sc))
        return out


@dataclass(frozen=True)
class LoraSlices:
    """Where a fused projection's adapter weights sit in every slot of the pool, and where
    each slice's output goes in y (element offsets within one slot row / y row)."""

    a_offsets: tuple[int, ...]  # A [max_rank, in_dim], row-major, per slice
    bt_offsets: tuple[int, ...]  # B^T [max_rank, width], row-major, per slice
    widths: tuple[int, ...]  # output columns of each slice
    out_offsets: tuple[int, ...]  # first column of each slice in y
    in_dim: int

    @classmethod
    def of(cls, slots: LoraSlots, layer: int, fused: str) -> LoraSlices | None:
        """Slices of `FUSED[fused]` that the pool holds, for one layer; columns in y follow
        the full fused projection (q | k | v, gate | up) even when a module is absent.
        None when the pool holds none of them."""
        a, bt, w, o = [], [], [], []
        col, in_dim = 0, 0
        for m in FUSED[fused]:
            d_in, d_out = slots.shape.proj_dims(m)
            seg = slots.layout.get((layer, m))
            if seg is not None:
                a.append(seg.a_off)
                bt.append(seg.b_off)
                w.append(d_out)
                o.append(col)
                in_dim = d_in
            col += d_out
        if not a:
            return None
        return cls(tuple(a), tuple(bt), tuple(w), tuple(o), in_dim)
