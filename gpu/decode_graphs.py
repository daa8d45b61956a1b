"""Decode steps as piecewise CUDA graphs (gpu.piecewise), keyed by (padded batch, adapters).

A decode step's pieces have shapes fixed by the padded batch size and the number of adapters
in it, so each is captured once per (batch bucket, adapter bucket); attention, whose key
length grows every step, runs eagerly between them. Padding entries of a bucket use the KV
pool's scratch row and LoRA scale 0, so they change nothing a real request reads.
"""

from __future__ import annotations

import torch

from gpu.lora import LoraBatch
from gpu.model import KVPool, LlamaModel, _attention
from gpu.piecewise import PiecewiseGraphs, Static, adapter_buckets, bucket
from gpu.staging import copy_into

__all__ = ["DecodeRunner", "adapter_buckets", "batch_buckets"]


def batch_buckets(max_batch: int) -> list[int]:
    """Padded decode batch sizes, as SGLang's cuda_graph_bs: 1, 2, 4, 8, 16, 24, ... max."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    sizes = {1, 2, 4, max_batch} | set(range(8, max_batch, 8))
    return sorted(s for s in sizes if s <= max_batch)


class DecodeRunner(PiecewiseGraphs):
    """Runs decode steps for a model, KV pool and its LoRA slots."""

    def __init__(
        self,
        model: LlamaModel,
        kv: KVPool,
        *,
        max_batch: int,
        graphs: bool | None = None,
        pool=None,
        max_adapters: int | None = None,
    ):
        super().__init__(model, kv, graphs=graphs, pool=pool, max_adapters=max_adapters)
        self.b_sizes = batch_buckets(max_batch)
        self._cur: Static | None = None
        self._lk = 0

    def keys(self) -> list[tuple[int, int]]:
        """Every (batch, adapters) bucket a decode can use."""
        return [(b, n) for b in self.b_sizes for n in [0, *self.n_sizes] if n <= b]

    def _make(self, key: tuple[int, int]) -> Static:
        b, n = key
        dev = self.model.device
        lb = None
        if n:
            lb = LoraBatch(
                slots=torch.zeros(n, dtype=torch.long, device=dev),
                gather=torch.zeros(n * b, dtype=torch.long, device=dev),
                tok_scale=torch.zeros(n * b, 1, device=dev, dtype=self.model.dtype),
                n=n,
                seg_len=b,
                all_slots=False,
            )
        return self._static(b, n, lb)

    # ---- one decode ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the prepared batch (a new run on the same runner)."""
        self._cur, self._lk = None, 0

    def prepare(self, rows: list[int], ctx: list[int], tok_slots: list[int]) -> None:
        """Set up the next steps for these items: KV rows, cached context, slot (-1: none)."""
        b = len(rows)
        if b == 0:
            raise ValueError("empty decode batch")
        n_key = self.adapter_key(tok_slots)
        if n_key is None:
            raise ValueError(f"a decode batch with more adapters than the largest bucket {self.n_sizes}")
        st = self._get((bucket(self.b_sizes, b), n_key))
        pad = st.t - b
        copy_into(st.rows, list(rows) + [self.kv.scratch] * pad)
        copy_into(st.pos, list(ctx) + [0] * pad)
        if st.lb is not None:
            slots, gather, scale, _ = self.lora.segments(tok_slots, st.n, st.t)
            copy_into(st.lb.slots, slots)
            copy_into(st.lb.gather, gather)
            copy_into(st.lb.tok_scale, scale)
        self._cur, self._lk = st, max(ctx) + 1

    def step(self) -> None:
        """One step: each item's next token goes to kv.last_tok, its position moves on."""
        st, kv, lk = self._cur, self.kv, self._lk
        if st is None:
            raise RuntimeError("prepare() a decode before stepping it")
        if lk > kv.max_ctx:
            raise RuntimeError(f"context {lk} exceeds the KV pool's {kv.max_ctx} positions")
        mask = (
            torch.arange(lk, device=self.model.device)[None, :] <= st.pos[:, None]
        ).view(st.t, 1, 1, lk)
        for i in range(self.n_pieces):
            self.run_piece(st, i)
            if i < self.model.shape.layers:
                self._attend(st, i, lk, mask)
        self._lk += 1

    # ---- pieces ----------------------------------------------------------------------------

    def _embed(self, st: Static) -> None:
        st.x.copy_(self.model.embed[self.kv.last_tok[st.rows]])

    def _last(self, st: Static) -> None:
        self.kv.last_tok[st.rows] = self.model.logits(st.x).argmax(-1)
        st.pos.add_(1)

    def _attend(self, st: Static, li: int, lk: int, mask: torch.Tensor) -> None:
        kk = self.kv.k[li][st.rows, :lk].transpose(1, 2)  # [b, kvh, lk, hd]
        vv = self.kv.v[li][st.rows, :lk].transpose(1, 2)
        att = _attention(st.q.unsqueeze(2), kk, vv, mask)  # [b, heads, 1, hd]
        st.att.copy_(att.reshape(st.t, -1))
