"""Piecewise CUDA graphs: a forward split at attention, each piece captured per shape bucket.

Why: eagerly, a forward of the harness's Llama issues ~100 kernels per layer, so a decode
step or a short prefill costs the host CPU's launch time, not the GPU's, and follows
whatever else the shared host does (round 4: one cell's median TPOT 51 / 63 / 51 ms in
three runs; round 5: a 400-token prefill 47 ms, 50-79 ms after 300 ms idle). SGLang and
vLLM replay CUDA graphs; so does this harness.

Everything in a forward except attention has shapes fixed by the padded token count and
the number of adapters, so each layer boundary ("piece" i: the end of layer i-1 after its
attention and the start of layer i up to its queries) is captured once per bucket key.
Attention, whose key length changes with every batch, runs eagerly between pieces (about ten
kernels a layer), as vLLM's piecewise graphs do. Without CUDA (or graphs=False) the same
pieces run eagerly: the CPU tests check them against LlamaModel.forward, and the graphs only
replay what the tests checked. Subclasses (gpu.decode_graphs, gpu.prefill_graphs) say what
a key's static buffers are and what a piece does.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

import torch

from gpu.model import KVPool, LlamaModel


def adapter_buckets(max_adapters: int) -> list[int]:
    """Padded counts of distinct adapters in a batch: 1, 2, 4, 8, ... max. Bucketing by the
    adapters actually used (not all slots) keeps the LoRA cost of a forward what the eager
    path and the simulator's LoRA tables charge: it grows with the adapters in the batch."""
    sizes, n = {max_adapters}, 1
    while n < max_adapters:
        sizes.add(n)
        n *= 2
    return sorted(s for s in sizes if s >= 1)


def bucket(sizes: list[int], n: int) -> int:
    """The smallest size >= n."""
    i = bisect_left(sizes, n)
    if i == len(sizes):
        raise ValueError(f"{n} exceeds the largest bucket {sizes[-1]}")
    return sizes[i]


@dataclass
class Static:
    """The fixed-address inputs and outputs of one key's pieces, for `t` token rows."""

    t: int
    n: int  # adapters (0: no LoRA ops at all)
    rows: torch.Tensor  # [t] KV row of each token (scratch for padding)
    pos: torch.Tensor  # [t] its position
    x: torch.Tensor  # [t, hidden] residual stream
    q: torch.Tensor  # [t, heads, hd] queries handed to the eager attention
    att: torch.Tensor  # [t, heads*hd] its output
    lb: Any  # the LoRA layout the pieces read (None: no LoRA)
    tokens: torch.Tensor | None = None  # [t] token ids, when the input is not in the KV pool
    graphs: list | None = None  # torch.cuda.CUDAGraph per piece, once captured


class PiecewiseGraphs:
    """Static buffers and captured pieces per key, for one model, KV pool and LoRA slots
    (graphs keep the addresses they were captured with). `pool`: a graph memory pool to share
    with another runner on the same stream: pieces never run concurrently, and each piece's
    temporaries die within it (results go to the key's static buffers), so any replay order
    is safe."""

    def __init__(
        self,
        model: LlamaModel,
        kv: KVPool,
        *,
        graphs: bool | None = None,
        pool=None,
        max_adapters: int | None = None,
    ):
        self.model, self.kv = model, kv
        self.lora = model.lora
        self.graphs = model.device.type == "cuda" if graphs is None else graphs
        if self.graphs and model.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        # `max_adapters`: most distinct adapters one batch can hold (max_loras_per_batch);
        # default all slots. Keys beyond it would never be used, only captured.
        self.n_sizes: list[int] = []
        if self.lora is not None:
            top = min(self.lora.n_slots, max_adapters or self.lora.n_slots)
            self.n_sizes = adapter_buckets(max(1, top))
        self._keys: dict[tuple[int, int], Static] = {}
        self.pool = pool
        self.captured_s = 0.0  # seconds spent capturing graphs so far

    @property
    def n_pieces(self) -> int:
        return self.model.shape.layers + 1

    def keys(self) -> list[tuple[int, int]]:
        raise NotImplementedError

    def _make(self, key: tuple[int, int]) -> Static:
        raise NotImplementedError

    def _embed(self, st: Static) -> None:
        """Start of piece 0: the input embeddings into st.x."""
        raise NotImplementedError

    def _last(self, st: Static) -> None:
        """End of the last piece (after the last layer), if anything."""

    def _static(self, t: int, n: int, lb: Any) -> Static:
        m, dev, s = self.model, self.model.device, self.model.shape
        z = dict(device=dev, dtype=m.dtype)
        return Static(
            t=t,
            n=n,
            rows=torch.full((t,), self.kv.scratch, dtype=torch.long, device=dev),
            pos=torch.zeros(t, dtype=torch.long, device=dev),
            x=torch.zeros(t, s.hidden, **z),
            q=torch.zeros(t, s.heads, s.head_dim, **z),
            att=torch.zeros(t, s.heads * s.head_dim, **z),
            lb=lb,
        )

    def _piece(self, st: Static, i: int) -> None:
        """Piece i: the end of layer i-1 (after attention) and the start of layer i."""
        m = self.model
        if i == 0:
            self._embed(st)
        else:
            m.post_attention(i - 1, st.x, st.att, st.lb)
        if i < m.shape.layers:
            st.q.copy_(m.pre_attention(i, st.x, st.pos, st.rows, self.kv, st.lb))
        else:
            self._last(st)

    def adapter_key(self, tok_slots: list[int]) -> int | None:
        """The adapter bucket of a batch: 0 when no token uses an adapter, None when it uses
        more than the largest bucket (no graph for it)."""
        n = len({s for s in tok_slots if s >= 0}) if self.lora is not None else 0
        if n == 0:
            return 0
        return bucket(self.n_sizes, n) if n <= self.n_sizes[-1] else None

    def _get(self, key: tuple[int, int]) -> Static:
        st = self._keys.get(key)
        if st is None:
            st = self._keys[key] = self._make(key)
        if self.graphs and st.graphs is None:
            self._capture(st)
        return st

    def prewarm(self, keys: list[tuple[int, int]] | None = None) -> None:
        """Capture the graphs of these keys (default: all) now, not during a run."""
        for key in keys if keys is not None else self.keys():
            self._get(key)

    def run_piece(self, st: Static, i: int) -> None:
        if st.graphs is not None:
            st.graphs[i].replay()
        else:
            self._piece(st, i)

    def _capture(self, st: Static) -> None:
        t0 = time.perf_counter()
        dev = self.model.device
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):  # warm-up: cuBLAS handles, workspaces, allocator
            for i in range(self.n_pieces):
                self._piece(st, i)
        torch.cuda.current_stream(dev).wait_stream(side)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graphs = []
        for i in range(self.n_pieces):
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=self.pool):
                self._piece(st, i)
            graphs.append(g)
        st.graphs = graphs
        self.captured_s += time.perf_counter() - t0
