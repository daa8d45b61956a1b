"""GPU compute cost models: how long one forward (prefill or decode step) takes.

Two implementations behind one protocol:
- RooflineCompute: analytic, from the model shape and a GPU spec. Each part of the
  forward (base linear layers, attention, LoRA, LM head) costs max(FLOPs / attained FLOP/s,
  bytes / attained HBM bandwidth); a fixed per-forward overhead is added.
- ProfileCompute: measured tables from `lorasim calibrate`, interpolated.
`decode_times` returns many consecutive decode steps at once (contexts grow by one token
per step) so the SimPy driver can fast-forward a long decode in one call.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from sim.core.effects import Batch
from sim.core.model import ALL_TARGETS, ModelShape
from sim.hw.interp import bilinear_at, interp_bilinear, interp_linear
from sim.hw.presets import GpuSpec
from sim.hw.profile import ComputeProfile, LoraPrefillTable


class ComputeModel(Protocol):
    def forward_time(self, batch: Batch) -> float:
        """Seconds for one forward of `batch` (for decode: one step)."""
        ...

    def decode_times(self, batch: Batch, steps: int) -> np.ndarray:
        """Durations of `steps` consecutive decode steps of `batch`; step j sees every
        item's context grown by j tokens."""
        ...


# calibration's prefill inputs are requests of this many tokens (gpu.calibrate.compute._prefill_input)
CALIBRATION_ITEM = 512


def attention_cells(batch: Batch, layout: str = "padded") -> float:
    """Query-key cells of a prefill's attention (`ComputeProfile.attention_cells`).
    "padded": the layout of the harness before issue #26, every request padded to the longest
    new part (queries) and the longest context + new part (keys). "causal": a paged varlen
    kernel's work, each request's new tokens over its own context and the new tokens before
    them, sum of n x context + n x (n + 1) / 2."""
    if layout == "causal":
        return float(sum(n * c + n * (n + 1) / 2 for n, c in ((i.new_tokens, i.context) for i in batch.items)))
    lq = max(i.new_tokens for i in batch.items)
    lk = max(i.context + i.new_tokens for i in batch.items)
    return float(len(batch.items) * lq * lk)


def reference_cells(tokens: int, item: int = CALIBRATION_ITEM, layout: str = "padded") -> float:
    """attention_cells of the input calibration timed at `tokens`: requests of `item` tokens
    (the last one shorter), no context."""
    if layout == "causal":
        full, rest = divmod(tokens, item)
        return float(full * item * (item + 1) / 2 + rest * (rest + 1) / 2)
    lq = min(tokens, item)
    return float(-(-tokens // item) * lq * lq)


def _lora_ranks(batch: Batch) -> dict[str, int]:
    """Distinct adapters of the batch and their ranks (the base model costs nothing)."""
    return {i.adapter: i.rank for i in batch.items if i.adapter is not None and i.rank > 0}


class RooflineCompute:
    """Analytic roofline. LoRA adapters are assumed to target all seven projections
    (BatchItem carries only the rank), which is the common and the costliest case."""

    def __init__(self, shape: ModelShape, spec: GpuSpec, lora_scale: float = 1.0,
                 lora_prefill_scale: float | None = None):
        self.shape, self.spec = shape, spec
        # what-if factors on the LoRA compute (hardware.lora_compute_scale / lora_prefill_scale)
        self.lora_scale = lora_scale
        self.lora_prefill_scale = lora_scale if lora_prefill_scale is None else lora_prefill_scale
        s = shape
        self.F = spec.eff_flops
        self.B = spec.eff_hbm
        self.layer_params = sum(a * b for a, b in (s.proj_dims(t) for t in ALL_TARGETS)) * s.layers
        self.lora_io = sum(a + b for a, b in (s.proj_dims(t) for t in ALL_TARGETS)) * s.layers
        self.kv_bytes_per_token = 2 * s.kv_heads * s.head_dim * s.dtype_bytes * s.layers
        self.attn_flops_per_key = 4 * s.heads * s.head_dim * s.layers  # QK^T and PV, 2 flops/MAC
        self.lm_params = s.vocab * s.hidden
        self.overhead = spec.forward_overhead_us * 1e-6
        self.lora_launch = 2 * len(ALL_TARGETS) * s.layers * spec.lora_kernel_us * 1e-6

    def _roof(self, flops, nbytes):
        return np.maximum(np.asarray(flops, dtype=float) / self.F, np.asarray(nbytes, dtype=float) / self.B)

    def linear_time(self, tokens: int) -> float:
        """Base-model projections of the whole layer stack for `tokens` new tokens
        (the GEMMs-only figure DESIGN §6 quotes)."""
        d = self.shape.dtype_bytes
        return float(self._roof(2 * tokens * self.layer_params, self.layer_params * d))

    def _roof1(self, flops: float, nbytes: float) -> float:
        """`_roof` of one value in plain floats (numpy's per-call cost dominates a scalar)."""
        return max(float(flops) / self.F, float(nbytes) / self.B)

    def _fixed_time(self, batch: Batch) -> float:
        """Everything except attention: independent of context, so constant across steps."""
        d = self.shape.dtype_bytes
        items = batch.items
        tokens = sum(i.new_tokens for i in items)
        t = self._roof1(2 * tokens * self.layer_params, self.layer_params * d) + self.overhead
        n_out = len(items)  # logits for the last token of each item
        t += self._roof1(2 * n_out * self.lm_params, self.lm_params * d)
        ranks = _lora_ranks(batch)
        if ranks:
            flops = sum(2 * i.new_tokens * i.rank * self.lora_io for i in items if i.adapter in ranks)
            nbytes = sum(r * self.lora_io * d for r in ranks.values())
            scale = self.lora_prefill_scale if batch.kind == "prefill" else self.lora_scale
            t += scale * (self._roof1(flops, nbytes) + self.lora_launch)
        return t

    def _attention_sums(self, batch: Batch) -> tuple[float, float, float, int]:
        """(keys attended, KV tokens read, new tokens, items) of the batch as it stands: each new
        token sees the context plus the new tokens before it."""
        keys = kv = n_sum = 0.0
        for i in batch.items:
            n, c = float(i.new_tokens), float(i.context)
            keys += n * c + n * (n + 1) / 2
            kv += c + n
            n_sum += n
        return keys, kv, n_sum, len(batch.items)

    def _attention_time(self, batch: Batch, grow: np.ndarray) -> np.ndarray:
        """Attention with every item's context grown by `grow` tokens (vector)."""
        keys0, kv0, n_sum, items = self._attention_sums(batch)
        keys = keys0 + grow * n_sum
        kv_tokens = kv0 + grow * items
        return self._roof(self.attn_flops_per_key * keys, self.kv_bytes_per_token * kv_tokens)

    def forward_time(self, batch: Batch) -> float:
        if not batch.items:
            return 0.0
        keys, kv, _, _ = self._attention_sums(batch)
        return self._fixed_time(batch) + self._roof1(self.attn_flops_per_key * keys, self.kv_bytes_per_token * kv)

    def decode_times(self, batch: Batch, steps: int) -> np.ndarray:
        if not batch.items or steps <= 0:
            return np.zeros(max(steps, 0))
        return self._fixed_time(batch) + self._attention_time(batch, np.arange(steps, dtype=float))


class ProfileCompute:
    """Measured tables: prefill by total new tokens, decode step by (batch size, context)
    bilinear at the batch's mean context or its longest (`decode_context`), plus a LoRA extra
    by distinct adapters (decode; by batch size x distinct adapters with `lora_decode`) or by
    total tokens x distinct adapters (prefill, when the profile measured it), interpolated in
    the batch's mean rank between the measured ranks (a single-rank table is scaled by rank /
    its rank).
    Prefills are looked up at their padded token count (`prefill_buckets`), graphed forwards'
    LoRA at their padded adapter count (`adapter_buckets`). With `attention_ms_per_mcell`, a
    prefill's attention is priced for its own cells, counted as the profile says
    (`attention_cells`: padded, requests x longest new x longest context; or causal, each
    request's new tokens over its own keys), not calibration's requests of 512 tokens. Linear
    extrapolation beyond the measured range."""

    def __init__(self, profile: ComputeProfile, lora_scale: float = 1.0, lora_prefill_scale: float | None = None):
        self.p = profile
        # what-if factors on the LoRA tables (hardware.lora_compute_scale / lora_prefill_scale)
        self.lora_scale = lora_scale
        self.lora_prefill_scale = lora_scale if lora_prefill_scale is None else lora_prefill_scale
        self._dlora = profile.decode_lora()
        # the tables as arrays once, and the LoRA extra per (kind, size, adapters, rank): the
        # engine's estimator prices forwards at scheduling points (lookahead), so on the GPU a
        # slow lookup is host time the GPU waits through (round 11: ~130 us a decode price)
        d = profile.decode
        self._decode = (np.asarray(d.batch, float), np.asarray(d.context, float), np.asarray(d.seconds, float))
        self._decode_lists = (list(d.batch), list(d.context), [list(r) for r in d.seconds])
        self._lora_cache: dict[tuple, float] = {}

    @staticmethod
    def _in_rank(rank: float, ranks: tuple[float, ...], values: list[float]) -> float:
        if len(ranks) == 1:
            return values[0] * rank / ranks[0]
        return float(interp_linear(rank, ranks, values))

    def _plane(self, t: LoraPrefillTable, x: float, n: int, rank: float) -> float:
        vals = [bilinear_at(x, n, t.tokens, t.adapters, plane) for plane in t.seconds]
        return max(0.0, self._in_rank(rank, t.ranks, vals))

    def _lora_time(self, batch: Batch) -> float:
        ranks = _lora_ranks(batch)
        lp, ld = self.p.lora_prefill, self.p.lora_decode
        if not ranks or (self._dlora is None and ld is None):
            return 0.0
        rank = sum(ranks.values()) / len(ranks)
        n = self.p.padded_adapters(len(ranks), batch.kind, batch.tokens)
        if batch.kind == "prefill" and lp is not None:
            t, x = lp, self.p.padded_tokens(batch.tokens)
        elif ld is not None:
            # decode at its batch size; a prefill without its own table at its request
            # count, within the measured batches
            b = len(batch.items)
            if batch.kind == "prefill":
                b = min(max(b, ld.tokens[0]), ld.tokens[-1])
            else:
                b = self.p.padded_batch(b)
            t, x = ld, b
        else:
            t, x = None, 0
        key = (id(t), x, n, rank)
        v = self._lora_cache.get(key)
        if v is None:
            if len(self._lora_cache) > 65536:  # bounded: (size, adapters, rank) is a small set
                self._lora_cache.clear()
            if t is not None:
                v = self._plane(t, x, n, rank)
            else:
                dl = self._dlora
                vals = [float(interp_linear(n, dl.adapters, row)) for row in dl.seconds]
                v = max(0.0, self._in_rank(rank, dl.ranks, vals))
            self._lora_cache[key] = v
        return (self.lora_prefill_scale if batch.kind == "prefill" else self.lora_scale) * v

    def forward_time(self, batch: Batch) -> float:
        if not batch.items:
            return 0.0
        if batch.kind == "decode":
            return float(self.decode_times(batch, 1)[0])
        tokens = self.p.padded_tokens(batch.tokens)
        base = float(interp_linear(tokens, self.p.prefill.x, self.p.prefill.y))
        coef = self.p.attention_ms_per_mcell
        if coef:
            # the table holds calibration's layout; price this batch's attention cells instead
            # (never below half the table: the coefficient is measured on large prefills).
            # Attention runs eagerly between the graph pieces, so a graphed prefill pays for
            # more cells too; fewer cells than calibration's save little there (launch-bound
            # small kernels), so its price only goes up
            layout = self.p.attention_cells
            cells = attention_cells(batch, layout) - reference_cells(tokens, layout=layout)
            delta = cells * 1e-6 * coef * 1e-3
            if self.p.graphed_prefill(batch.tokens):
                delta = max(0.0, delta)
            base = max(0.5 * base, base + delta)
        return base + self._lora_time(batch)

    def decode_times(self, batch: Batch, steps: int) -> np.ndarray:
        if not batch.items or steps <= 0:
            return np.zeros(max(steps, 0))
        ctxs = [i.context for i in batch.items]
        c0 = max(ctxs) if self.p.decode_context == "max" else sum(ctxs) / len(ctxs)
        b = self.p.padded_batch(len(batch.items))
        lora = self._lora_time(batch)
        if steps <= 32:  # plain Python beats numpy's per-call overhead on short runs
            return np.array([bilinear_at(b, c0 + k, *self._decode_lists) + lora for k in range(steps)])
        return interp_bilinear(b, c0 + np.arange(steps, dtype=float), *self._decode) + lora
