"""Decode steps replayed as CUDA graphs, attention run eagerly between them ("piecewise").

Why: eagerly, a decode step issues ~100 kernels per layer, so on the device host it costs
the CPU's launch time (~40 ms for Llama-3.1-8B) instead of the GPU's (a few ms), and its
timings follow whatever else the shared host CPU does (round 4: one cell's median TPOT was
51 / 63 / 51 ms in three runs). SGLang decodes with CUDA graphs; so does this harness now.

Everything in a step except attention has shapes fixed by the padded batch size and the
number of adapters in it, so each layer boundary ("piece": the end of layer l and the start
of layer l+1) is captured once per (batch bucket, adapter bucket). Attention, whose key
length grows every step, runs eagerly between pieces (about ten kernels a layer), as vLLM's
piecewise graphs do. Padding entries of a bucket use the KV pool's scratch row and LoRA
scale 0, so they change nothing a real request reads.

Without CUDA (or with graphs=False) the same pieces run eagerly: the CPU tests check them
against LlamaModel.forward, and the graphs only replay what the tests checked.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from dataclasses import dataclass

import torch

from gpu.lora import LoraBatch
from gpu.model import KVPool, LlamaModel, _attention


def batch_buckets(max_batch: int) -> list[int]:
    """Padded decode batch sizes, as SGLang's cuda_graph_bs: 1, 2, 4, 8, 16, 24, ... max."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    sizes = {1, 2, 4, max_batch} | set(range(8, max_batch, 8))
    return sorted(s for s in sizes if s <= max_batch)


def adapter_buckets(max_adapters: int) -> list[int]:
    """Padded counts of distinct adapters in a decode batch: 1, 2, 4, 8, ... max. Bucketing
    by the adapters actually used (not all slots) keeps the LoRA cost of a step what the
    eager path and the simulator's LoRA table charge: it grows with the adapters in the batch."""
    sizes, n = {max_adapters}, 1
    while n < max_adapters:
        sizes.add(n)
        n *= 2
    return sorted(s for s in sizes if s >= 1)


def _bucket(sizes: list[int], n: int) -> int:
    i = bisect_left(sizes, n)
    if i == len(sizes):
        raise ValueError(f"{n} exceeds the largest bucket {sizes[-1]}")
    return sizes[i]


@dataclass
class _Static:
    """The fixed-address inputs and outputs of one bucket's pieces."""

    b: int
    n: int  # adapters (0: no LoRA ops at all)
    rows: torch.Tensor  # [b] KV row per entry (scratch for padding)
    pos: torch.Tensor  # [b] position of the token being decoded
    x: torch.Tensor  # [b, hidden] residual stream
    q: torch.Tensor  # [b, heads, hd] queries handed to the eager attention
    att: torch.Tensor  # [b, heads*hd] its output
    lb: LoraBatch | None
    graphs: list | None = None  # torch.cuda.CUDAGraph per piece, once captured


class DecodeRunner:
    """Runs decode steps for a model, KV pool and its LoRA slots (fixed at construction:
    graphs keep the addresses of the slots, weights and KV they were captured with)."""

    def __init__(
        self, model: LlamaModel, kv: KVPool, *, max_batch: int, graphs: bool | None = None
    ):
        self.model, self.kv = model, kv
        self.lora = model.lora
        self.graphs = model.device.type == "cuda" if graphs is None else graphs
        if self.graphs and model.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.b_sizes = batch_buckets(max_batch)
        self.n_sizes = adapter_buckets(self.lora.n_slots) if self.lora is not None else []
        self._static: dict[tuple[int, int], _Static] = {}
        self._pool = None
        self._cur: _Static | None = None
        self._lk = 0
        self.captured_s = 0.0  # seconds spent capturing graphs so far

    # ---- buckets ---------------------------------------------------------------------------

    def keys(self) -> list[tuple[int, int]]:
        """Every (batch, adapters) bucket a decode can use."""
        return [(b, n) for b in self.b_sizes for n in [0, *self.n_sizes] if n <= b]

    def _get(self, key: tuple[int, int]) -> _Static:
        st = self._static.get(key)
        if st is None:
            st = self._static[key] = self._make(*key)
        if self.graphs and st.graphs is None:
            self._capture(st)
        return st

    def _make(self, b: int, n: int) -> _Static:
        m, dev, s = self.model, self.model.device, self.model.shape
        z = dict(device=dev, dtype=m.dtype)
        lb = None
        if n:
            lb = LoraBatch(
                slots=torch.zeros(n, dtype=torch.long, device=dev),
                gather=torch.zeros(n * b, dtype=torch.long, device=dev),
                tok_scale=torch.zeros(n * b, 1, **z),
                n=n,
                seg_len=b,
                all_slots=False,
            )
        return _Static(
            b=b,
            n=n,
            rows=torch.full((b,), self.kv.scratch, dtype=torch.long, device=dev),
            pos=torch.zeros(b, dtype=torch.long, device=dev),
            x=torch.zeros(b, s.hidden, **z),
            q=torch.zeros(b, s.heads, s.head_dim, **z),
            att=torch.zeros(b, s.heads * s.head_dim, **z),
            lb=lb,
        )

    def prewarm(self, keys: list[tuple[int, int]] | None = None) -> None:
        """Capture the graphs of these buckets (default: all) now, not during a run."""
        for key in keys if keys is not None else self.keys():
            self._get(key)

    # ---- one decode ------------------------------------------------------------------------

    def prepare(self, rows: list[int], ctx: list[int], tok_slots: list[int]) -> None:
        """Set up the next steps for these items: KV rows, cached context, slot (-1: none)."""
        b = len(rows)
        if b == 0:
            raise ValueError("empty decode batch")
        used = sorted({s for s in tok_slots if s >= 0}) if self.lora is not None else []
        key = (_bucket(self.b_sizes, b), _bucket(self.n_sizes, len(used)) if used else 0)
        st = self._get(key)
        pad = st.b - b
        st.rows.copy_(torch.tensor(list(rows) + [self.kv.scratch] * pad), non_blocking=True)
        st.pos.copy_(torch.tensor(list(ctx) + [0] * pad), non_blocking=True)
        if st.lb is not None:
            slots, gather, scale, _ = self.lora.segments(tok_slots, st.n, st.b)
            st.lb.slots.copy_(torch.tensor(slots), non_blocking=True)
            st.lb.gather.copy_(torch.tensor(gather), non_blocking=True)
            st.lb.tok_scale.copy_(torch.tensor(scale).view(-1, 1), non_blocking=True)
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
        ).view(st.b, 1, 1, lk)
        for i in range(self.model.shape.layers + 1):
            if st.graphs is not None:
                st.graphs[i].replay()
            else:
                self._piece(st, i)
            if i < self.model.shape.layers:
                self._attend(st, i, lk, mask)
        self._lk += 1

    # ---- pieces ----------------------------------------------------------------------------

    def _piece(self, st: _Static, i: int) -> None:
        """Piece i: the end of layer i-1 (after attention) and the start of layer i."""
        m, kv = self.model, self.kv
        if i == 0:
            st.x.copy_(m.embed[kv.last_tok[st.rows]])
        else:
            m.post_attention(i - 1, st.x, st.att, st.lb)
        if i < m.shape.layers:
            st.q.copy_(m.pre_attention(i, st.x, st.pos, st.rows, kv, st.lb))
        else:
            kv.last_tok[st.rows] = m.logits(st.x).argmax(-1)
            st.pos.add_(1)

    def _attend(self, st: _Static, li: int, lk: int, mask: torch.Tensor) -> None:
        kk = self.kv.k[li][st.rows, :lk].transpose(1, 2)  # [b, kvh, lk, hd]
        vv = self.kv.v[li][st.rows, :lk].transpose(1, 2)
        att = _attention(st.q.unsqueeze(2), kk, vv, mask)  # [b, heads, 1, hd]
        st.att.copy_(att.reshape(st.b, -1))

    def _capture(self, st: _Static) -> None:
        t0 = time.perf_counter()
        n = self.model.shape.layers + 1
        side = torch.cuda.Stream(self.model.device)
        side.wait_stream(torch.cuda.current_stream(self.model.device))
        with torch.cuda.stream(side):  # warm-up: cuBLAS handles, workspaces, allocator
            for i in range(n):
                self._piece(st, i)
        torch.cuda.current_stream(self.model.device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graphs = []
        for i in range(n):
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=self._pool):  # pieces never run concurrently
                self._piece(st, i)
            graphs.append(g)
        st.graphs = graphs
        self.captured_s += time.perf_counter() - t0
