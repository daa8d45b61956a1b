"""GpuCore: the GPU state a CudaDriver runs on, built once and handed from run to run.

Why: a validation pass is 15 runs, each of which needed the model's weights, the LoRA slot
buffers, a KV pool and every captured graph (decode and prefill pieces: 10-20 s of capture
for Llama-3.1-8B). Graphs keep the addresses they were captured with, so they can only be
reused together with the very tensors they read; a core bundles them, and `reset()` clears
what one run leaves behind (KV rows and pages, slot owners) without touching weights or graphs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpu.adapters import ordered_targets
from gpu.decode_graphs import DecodeRunner
from gpu.kv_cache import PagedKV
from gpu.lora import LoraSlots, SgmvLora
from gpu.model import LlamaModel, default_device, default_dtype
from gpu.prefill_graphs import DEFAULT_MAX_TOKENS, PrefillRunner
from gpu.unified import UnifiedMemory
from sim.core.model import ALL_TARGETS, ModelShape, Trace


@dataclass(frozen=True)
class CoreSpec:
    """Everything that fixes a core's tensors and graphs; equal specs can share a core."""

    shape: ModelShape
    n_slots: int
    max_rank: int
    targets: tuple[str, ...]
    kv_rows: int
    max_ctx: int
    device: str
    dtype: str
    seed: int = 0
    eager_decode: bool = False  # one model.forward a decode step (validation rounds 1-4)
    prefill_graph_tokens: int = DEFAULT_MAX_TOKENS  # 0: eager prefills
    max_batch_adapters: int | None = None  # distinct adapters a batch can hold (graph keys)
    # > 0: KV and adapters share one arena of this many pages (gpu.unified; issue #28), and
    # n_slots is only the most adapters a batch can hold
    unified_pages: int = 0

    def serves(self, other: CoreSpec) -> bool:
        """A core built for `self` can run what `other` needs: same model and graph
        settings, at least its slots (a run uses the first ones), adapters per batch (graph
        keys), rank, targets, KV rows and context."""
        mine, theirs = self.max_batch_adapters, other.max_batch_adapters
        return (
            (self.shape, self.device, self.dtype, self.seed)
            == (other.shape, other.device, other.dtype, other.seed)
            and (self.eager_decode, self.prefill_graph_tokens)
            == (other.eager_decode, other.prefill_graph_tokens)
            and self.n_slots >= other.n_slots
            and (mine is None or (theirs is not None and mine >= theirs))
            and self.max_rank >= other.max_rank
            and set(other.targets) <= set(self.targets)
            and self.kv_rows >= other.kv_rows
            and self.max_ctx >= other.max_ctx
            and self.unified_pages == other.unified_pages
        )


class GpuCore:
    """Model, slots, KV pool and the graph runners of one CoreSpec."""

    def __init__(self, spec: CoreSpec):
        self.spec = spec
        dev = torch.device(spec.device)
        dtype = getattr(torch, spec.dtype)
        self.device, self.dtype = dev, dtype
        self.unified: UnifiedMemory | None = None
        self.slots: SgmvLora
        if spec.unified_pages:
            self.unified = UnifiedMemory(
                spec.shape, spec.unified_pages, rows=spec.kv_rows, max_ctx=spec.max_ctx,
                max_rank=spec.max_rank, targets=spec.targets, max_adapters=spec.n_slots,
                device=dev, dtype=dtype,
            )  # fmt: skip
            self.slots, self.kv = self.unified.lora, self.unified.kv
        else:
            self.slots = LoraSlots(
                spec.shape, spec.n_slots, spec.max_rank, ordered_targets(spec.targets), dev, dtype
            )
            self.kv = PagedKV(spec.shape, spec.kv_rows, spec.max_ctx, dev, dtype)
        self.model = LlamaModel(spec.shape, device=dev, dtype=dtype, seed=spec.seed, lora=self.slots)
        adapters = spec.max_batch_adapters
        # one graph memory pool for decode and prefill pieces (see gpu.piecewise)
        pool = torch.cuda.graph_pool_handle() if dev.type == "cuda" else None
        self.decoder = None
        if not spec.eager_decode:
            self.decoder = DecodeRunner(
                self.model, self.kv, max_batch=spec.kv_rows, max_adapters=adapters, pool=pool
            )
        self.prefiller = PrefillRunner(
            self.model, self.kv, max_tokens=spec.prefill_graph_tokens, max_adapters=adapters,
            pool=pool,
        )

    @staticmethod
    def spec_for(
        shape: ModelShape,
        *,
        n_slots: int,
        max_rank: int,
        targets,
        kv_rows: int,
        max_ctx: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **options,
    ) -> CoreSpec:
        dev = torch.device(device) if device is not None else default_device()
        dt = dtype or default_dtype(dev)
        return CoreSpec(
            shape, n_slots, max_rank, ordered_targets(targets), kv_rows, max_ctx,
            str(dev), str(dt).removeprefix("torch."), **options,
        )

    @staticmethod
    def spec_for_trace(
        trace: Trace,
        shape: ModelShape,
        *,
        n_slots: int,
        kv_rows: int | None = None,
        max_ctx: int | None = None,
        **kw,
    ) -> CoreSpec:
        """What `trace` needs: its adapters' largest rank and all their targets (rank 1, all
        targets without adapters), a KV row per request and its longest context, unless
        `kv_rows` / `max_ctx` say more (or fewer rows: the scheduler's limit)."""
        ranks = [a.rank for a in trace.adapters] or [1]
        targets = {t for a in trace.adapters for t in a.targets} or set(ALL_TARGETS)
        need_ctx = max((r.input_len + r.output_len for r in trace.requests), default=16)
        return GpuCore.spec_for(
            shape,
            n_slots=n_slots,
            max_rank=max(ranks),
            targets=targets,
            kv_rows=kv_rows or max(1, len(trace.requests)),
            max_ctx=max_ctx or need_ctx,
            **kw,
        )

    def capture(self) -> float:
        """Capture every graph now (no-op for those already captured). -> seconds spent."""
        t0 = self.captured_s
        if self.decoder is not None:
            self.decoder.prewarm()
        if self.prefiller.graphs:
            self.prefiller.prewarm()
        return self.captured_s - t0

    @property
    def captured_s(self) -> float:
        return (self.decoder.captured_s if self.decoder else 0.0) + self.prefiller.captured_s

    def reset(self) -> None:
        """Forget one run: free every KV row, empty the slots' owners and scales (the arena's
        adapters)."""
        self.kv.reset()
        if self.unified is not None:
            for name in list(self.unified.lora.first):
                self.unified.evict(name)
        else:
            n = self.slots.n_slots
            self.slots.owner, self.slots.scaling = [None] * n, [0.0] * n
            self.slots.ranks = [self.slots.max_rank] * n
        if self.decoder is not None:
            self.decoder.reset()
