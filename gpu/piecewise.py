"""Capturing CUDA graphs, and piecewise graphs: a forward split at attention.

Why graphs: eagerly, a forward of the harness's Llama issues tens of kernels per layer, so a
decode step or a short prefill costs the host CPU's launch time, not the GPU's, and follows
whatever else the shared host does (round 4: one cell's median TPOT 51 / 63 / 51 ms in three
runs). SGLang and vLLM replay CUDA graphs; so does this harness. Decode steps are whole
graphs (gpu.decode_graphs).

Prefills are piecewise, as vLLM's are: everything but attention has shapes fixed by the
padded token count, so each layer boundary ("piece" i: the end of layer i-1 after its
attention and the start of layer i up to its queries, K/V written) is captured once per
token bucket; the paged varlen attention, whose grid follows the batch's items, runs
eagerly between pieces (one kernel a layer). Without CUDA (or graphs=False) the same pieces
run eagerly: the CPU tests check them against LlamaModel.forward.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gpu.kernels import LoraMeta
from gpu.kv_cache import PagedKV
from gpu.model import LlamaModel


def bucket(sizes: list[int], n: int) -> int:
    """The smallest size >= n."""
    i = bisect_left(sizes, n)
    if i == len(sizes):
        raise ValueError(f"{n} exceeds the largest bucket {sizes[-1]}")
    return sizes[i]


def capture_graphs(
    fns: list[Callable[[], None]], device: torch.device, pool
) -> list[torch.cuda.CUDAGraph]:
    """One CUDA graph per function, after one warm-up run of all of them on a side stream
    (cuBLAS handles, Triton compiles, allocator). Graphs sharing `pool` must never replay
    concurrently; each function's temporaries die within it."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for fn in fns:
            fn()
    torch.cuda.current_stream(device).wait_stream(side)
    graphs = []
    for fn in fns:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, pool=pool):
            fn()
        graphs.append(g)
    return graphs


@dataclass
class Static:
    """The fixed-address inputs and outputs of one key's pieces, for `t` token rows."""

    t: int
    pos: torch.Tensor  # [t] position of each token
    kv_slot: torch.Tensor  # [t] its flat cache slot (the scratch page for padding)
    x: torch.Tensor  # [t, hidden] residual stream
    q: torch.Tensor  # [t, heads, hd] queries handed to the eager attention
    att: torch.Tensor  # [t, heads*hd] its output
    lora: LoraMeta | None  # the SGMV table the pieces read (None: no LoRA)
    tokens: torch.Tensor  # [t] token ids
    graphs: list | None = None  # torch.cuda.CUDAGraph per piece, once captured


class PiecewiseGraphs:
    """Static buffers and captured pieces per key (t, with LoRA), for one model and KV cache
    (graphs keep the addresses they were captured with). `pool`: a graph memory pool to share
    with another runner on the same stream: pieces never run concurrently, and each piece's
    temporaries die within it, so any replay order is safe. `max_adapters`: most distinct
    adapters a batch can hold (the SGMV table's segments)."""

    def __init__(
        self,
        model: LlamaModel,
        kv: PagedKV,
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
        self.max_adapters = max_adapters
        self._keys: dict[tuple[int, bool], Static] = {}
        self.pool = pool
        self.captured_s = 0.0  # seconds spent capturing graphs so far

    @property
    def n_pieces(self) -> int:
        return self.model.shape.layers + 1

    def keys(self) -> list[tuple[int, bool]]:
        raise NotImplementedError

    def _static(self, t: int, with_lora: bool) -> Static:
        m, dev, s = self.model, self.model.device, self.model.shape
        z = dict(device=dev, dtype=m.dtype)
        lora = None
        if with_lora:
            segs = min(t, self.lora.n_slots, self.max_adapters or t)
            lora = self.lora.meta([-1] * t, max_tokens=t, max_segments=segs, max_len=t)
        return Static(
            t=t,
            pos=torch.zeros(t, dtype=torch.long, device=dev),
            kv_slot=torch.full((t,), self.kv.scratch_page * self.kv.page_size, dtype=torch.long, device=dev),
            x=torch.zeros(t, s.hidden, **z),
            q=torch.zeros(t, s.heads, s.head_dim, **z),
            att=torch.zeros(t, s.heads * s.head_dim, **z),
            lora=lora,
            tokens=torch.zeros(t, dtype=torch.long, device=dev),
        )

    def _piece(self, st: Static, i: int) -> None:
        """Piece i: the end of layer i-1 (after attention) and the start of layer i, whose
        norm adds layer i-1's pending MLP output (the last piece adds it to x itself)."""
        m = self.model
        delta = None
        if i == 0:
            st.x.copy_(m.embed[st.tokens])
        else:
            delta = m.post_attention(i - 1, st.x, st.att, st.lora)
        if i < m.shape.layers:
            st.q.copy_(m.pre_attention(i, st.x, self.kv, st.pos, st.kv_slot, st.lora, delta))
        else:
            m.settle(st.x, delta)

    def _get(self, key: tuple[int, bool]) -> Static:
        st = self._keys.get(key)
        if st is None:
            st = self._keys[key] = self._static(*key)
        if self.graphs and st.graphs is None:
            t0 = time.perf_counter()
            self.pool = self.pool or torch.cuda.graph_pool_handle()
            fns = [lambda i=i: self._piece(st, i) for i in range(self.n_pieces)]
            st.graphs = capture_graphs(fns, self.model.device, self.pool)
            self.captured_s += time.perf_counter() - t0
        return st

    def prewarm(self, keys: list[tuple[int, bool]] | None = None) -> None:
        """Capture the graphs of these keys (default: all) now, not during a run."""
        for key in keys if keys is not None else self.keys():
            self._get(key)

    def run_piece(self, st: Static, i: int) -> None:
        if st.graphs is not None:
            st.graphs[i].replay()
        else:
            self._piece(st, i)
