"""Decode steps as whole CUDA graphs, one per (padded batch, LoRA or not), as SGLang and vLLM
capture them.

Everything in a decode step, attention included, has shapes fixed by the padded batch: the
paged decode kernel's grid depends on the batch and a fixed split count, not on the context,
and the SGMV table has fixed capacities. So each batch bucket is one graph replay a step:
embeddings of each row's last token, every layer, the LM head and argmax into `last_tok`,
positions moved on. The host only refreshes the bucket's rows, positions and LoRA table when
the batch changes (`prepare`). Padding entries use the KV cache's scratch row and page and no
adapter, so they change nothing a real request reads. Without CUDA (or graphs=False) the same
step runs eagerly: the CPU tests check it against LlamaModel.forward.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from gpu.kernels import LoraMeta
from gpu.kv_cache import PagedKV
from gpu.model import AttnMeta, LlamaModel
from gpu.piecewise import bucket, capture_graphs
from gpu.staging import copy_into

__all__ = ["DecodeRunner", "batch_buckets"]


def batch_buckets(max_batch: int) -> list[int]:
    """Padded decode batch sizes, as SGLang's cuda_graph_bs: 1, 2, 4, 8, 16, 24, ... max."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    sizes = {1, 2, 4, max_batch} | set(range(8, max_batch, 8))
    return sorted(s for s in sizes if s <= max_batch)


@dataclass
class DecodeStatic:
    """Fixed-address inputs of one bucket's graph."""

    b: int
    rows: torch.Tensor  # [b] long: KV row of each entry (scratch for padding)
    pos: torch.Tensor  # [b] long: position of its new token
    lora: LoraMeta | None
    graph: torch.cuda.CUDAGraph | None = None


class DecodeRunner:
    """Runs decode steps for a model and its KV cache (and the model's LoRA slots).
    `max_adapters`: most distinct adapters one batch can hold (the SGMV table's segments)."""

    def __init__(
        self,
        model: LlamaModel,
        kv: PagedKV,
        *,
        max_batch: int,
        graphs: bool | None = None,
        pool=None,
        max_adapters: int | None = None,
    ):
        self.model, self.kv, self.lora = model, kv, model.lora
        self.graphs = model.device.type == "cuda" if graphs is None else graphs
        if self.graphs and model.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.b_sizes = batch_buckets(max_batch)
        self.max_adapters = max_adapters
        self.pool = pool
        self.captured_s = 0.0
        self._keys: dict[tuple[int, bool], DecodeStatic] = {}
        self._cur: DecodeStatic | None = None
        self._room = 0  # steps the prepared batch can still take within its rows' pages

    def keys(self) -> list[tuple[int, bool]]:
        """Every (batch bucket, with LoRA) a decode can use."""
        loras = [False, True] if self.lora is not None else [False]
        return [(b, w) for b in self.b_sizes for w in loras]

    def _make(self, key: tuple[int, bool]) -> DecodeStatic:
        b, with_lora = key
        dev = self.model.device
        lora = None
        if with_lora:
            segs = min(b, self.lora.n_slots, self.max_adapters or b)
            lora = self.lora.meta([-1] * b, max_tokens=b, max_segments=segs, max_len=b)
        return DecodeStatic(
            b=b,
            rows=torch.full((b,), self.kv.scratch, dtype=torch.long, device=dev),
            pos=torch.zeros(b, dtype=torch.long, device=dev),
            lora=lora,
        )

    def _get(self, key: tuple[int, bool]) -> DecodeStatic:
        st = self._keys.get(key)
        if st is None:
            st = self._keys[key] = self._make(key)
        if self.graphs and st.graph is None:
            t0 = time.perf_counter()
            self.pool = self.pool or torch.cuda.graph_pool_handle()
            st.graph = capture_graphs([lambda: self._step(st)], self.model.device, self.pool)[0]
            self.captured_s += time.perf_counter() - t0
        return st

    def prewarm(self, keys: list[tuple[int, bool]] | None = None) -> None:
        """Capture the graphs of these keys (default: all) now, not during a run."""
        for key in keys if keys is not None else self.keys():
            self._get(key)

    # ---- one decode ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the prepared batch (a new run on the same runner)."""
        self._cur, self._room = None, 0

    def prepare(self, rows: list[int], ctx: list[int], tok_slots: list[int]) -> None:
        """Set up the next steps for these items: KV rows, cached context, slot (-1: none)."""
        b = len(rows)
        if b == 0:
            raise ValueError("empty decode batch")
        with_lora = self.lora is not None and any(s >= 0 for s in tok_slots)
        st = self._get((bucket(self.b_sizes, b), with_lora))
        pad = st.b - b
        copy_into(st.rows, list(rows) + [self.kv.scratch] * pad)
        copy_into(st.pos, list(ctx) + [0] * pad)
        if st.lora is not None:
            st.lora.copy_from(
                self.lora.meta(
                    list(tok_slots) + [-1] * pad, max_tokens=st.b,
                    max_segments=st.lora.max_segments, max_len=st.lora.max_len,
                )  # fmt: skip
            )
        cap = self.kv.capacity
        self._room = min(cap.get(r, 0) - c for r, c in zip(rows, ctx, strict=True))
        self._cur = st

    def step(self) -> None:
        """One step: each item's next token goes to kv.last_tok, its position moves on."""
        st = self._cur
        if st is None:
            raise RuntimeError("prepare() a decode before stepping it")
        if self._room < 1:
            raise RuntimeError("a decode step past its KV rows' pages")
        if st.graph is not None:
            st.graph.replay()
        else:
            self._step(st)
        self._room -= 1

    def _step(self, st: DecodeStatic) -> None:
        """The captured work: all on the device, from the bucket's static inputs."""
        m, kv = self.model, self.kv
        block_rows = kv.block_table.index_select(0, st.rows)
        seq = (st.pos + 1).int()
        am = AttnMeta(
            pos=st.pos,
            kv_slot=kv.slot_mapping(block_rows, st.pos),
            block_table=block_rows,
            seq_lens=seq,
            ctx_lens=seq - 1,
            cu_q=torch.arange(st.b + 1, device=st.pos.device, dtype=torch.int32),
            last=torch.arange(st.b, device=st.pos.device),
            max_q=1,
            decode=True,
        )
        x = m.embed[kv.last_tok[st.rows]]
        delta = None
        for li in range(m.shape.layers):
            delta = m.layer(li, x, kv, am, st.lora, delta)
        kv.last_tok[st.rows] = m.logits(m.settle(x, delta)).argmax(-1)
        st.pos.add_(1)
