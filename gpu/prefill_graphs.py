"""Prefills as piecewise CUDA graphs (gpu.piecewise), keyed by (padded tokens, LoRA or not).

Why: an eager prefill of a few hundred tokens is launch-bound on the device host (round 5:
a 400-token rank-64 prefill took 47 ms, of which the GPU needs well under half, and 50-79 ms
after the host idled 300 ms), so the simulator, calibrated on back-to-back prefills, was fast
on every validation cell. Replayed pieces make a prefill cost the GPU's time.

Packed prefill tokens are padded to a token bucket (16-token steps to 64, 32 to 256, 64
beyond: at most a few % of extra rows); padding tokens write keys to the KV cache's scratch
page and have no adapter. A GPU's config table (gpu.kernels.configs `prefill_pad_past`) drops
buckets whose weight GEMMs a larger bucket runs faster (448 on Hopper), so their prefills pad
past them. LoRA reads the SGMV table at the bucket's fixed capacities.
Attention runs eagerly between pieces over the real (unpadded) items, the paged varlen
kernel exactly as LlamaModel.forward runs it, and so do the logits of each item's last
token. Prefills above the largest bucket run eagerly (LlamaModel.forward): long prefills
are GPU-bound anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

import torch

from gpu import PREFILL_GRAPH_TOKENS
from gpu.kernels._common import device_name_of
from gpu.kernels.configs import device_configs
from gpu.kv_cache import PagedKV
from gpu.model import LlamaModel, StepInput
from gpu.piecewise import PiecewiseGraphs, bucket

DEFAULT_MAX_TOKENS = PREFILL_GRAPH_TOKENS


def token_buckets(max_tokens: int, skip: Iterable[int] = ()) -> list[int]:
    """Padded prefill sizes: 16, 32, 48, 64, then +32 to 256, then +64 up to max_tokens,
    less the sizes in `skip` (never max_tokens itself)."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    sizes, t = {max_tokens}, 16
    while t < max_tokens:
        sizes.add(t)
        t += 16 if t < 64 else 32 if t < 256 else 64
    return sorted(sizes - (set(skip) - {max_tokens}))


def pad_past(device_name: str | None) -> tuple[int, ...]:
    """The token buckets the graphed prefill skips on this GPU (its config table's
    `prefill_pad_past`; none on CPU)."""
    return tuple(device_configs(device_name).get("prefill_pad_past", ()))


def device_buckets(max_tokens: int, device: torch.device) -> list[int]:
    """The token buckets a PrefillRunner on `device` graphs, as calibrate records them in the
    profile (`compute.prefill_buckets`) for the simulator to pad the same way."""
    return token_buckets(max_tokens, pad_past(device_name_of(device)))


class PrefillRunner(PiecewiseGraphs):
    """Runs packed prefills (any mix of items, chunked ones included) for a model, KV pool
    and its LoRA slots. `max_tokens`: largest graphed prefill (0: always eager);
    `max_adapters`: most distinct adapters a batch can hold (default: all slots)."""

    def __init__(
        self,
        model: LlamaModel,
        kv: PagedKV,
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        max_adapters: int | None = None,
        graphs: bool | None = None,
        pool=None,
    ):
        super().__init__(model, kv, graphs=graphs, pool=pool, max_adapters=max_adapters)
        self.t_sizes = device_buckets(max_tokens, model.device) if max_tokens > 0 else []

    def keys(self) -> list[tuple[int, bool]]:
        loras = [False, True] if self.lora is not None else [False]
        return [(t, w) for t in self.t_sizes for w in loras]

    def graphed(self, tokens: int) -> bool:
        return bool(self.t_sizes) and tokens <= self.t_sizes[-1]

    def run(
        self, inp: StepInput, tok_slots: list[int], before_layer: Callable[[int], None] | None = None
    ) -> torch.Tensor:
        """One prefill: `inp` without its LoRA (ignored), tok_slots[t] the slot of token t's
        adapter (-1: none). Writes KV like LlamaModel.forward. -> logits [items, vocab].
        `before_layer(j)` is called before the work of layer j is issued (a layer-by-layer
        wait for adapter copies still running)."""
        n_tok = len(tok_slots)
        if n_tok != sum(inp.new):
            raise ValueError(f"{n_tok} token slots for {sum(inp.new)} new tokens")
        m, kv = self.model, self.kv
        with_lora = self.lora is not None and any(s >= 0 for s in tok_slots)
        if not self.graphed(n_tok):
            lora = self.lora.meta(tok_slots) if with_lora else None
            return m.forward(replace(inp, lora=lora), kv, before_layer=before_layer)
        am = m.attn_meta(inp, kv)
        st = self._get((bucket(self.t_sizes, n_tok), with_lora))
        st.tokens[:n_tok].copy_(inp.tokens, non_blocking=True)
        st.pos[:n_tok].copy_(am.pos)
        st.kv_slot[:n_tok].copy_(am.kv_slot)
        if n_tok < st.t:
            st.tokens[n_tok:].zero_()
            st.pos[n_tok:].zero_()
            st.kv_slot[n_tok:].fill_(kv.scratch_page * kv.page_size)
        if st.lora is not None:
            st.lora.copy_from(
                self.lora.meta(
                    list(tok_slots) + [-1] * (st.t - n_tok), max_tokens=st.t,
                    max_segments=st.lora.max_segments, max_len=st.lora.max_len,
                )  # fmt: skip
            )
        for i in range(self.n_pieces):
            if before_layer is not None and i < m.shape.layers:
                before_layer(i)  # piece i runs layer i-1's end (waited for) and layer i's start
            self.run_piece(st, i)
            if i < m.shape.layers:
                st.att[:n_tok].copy_(m.attend(i, st.q[:n_tok], kv, am))
        return m.logits(st.x.index_select(0, am.last))
