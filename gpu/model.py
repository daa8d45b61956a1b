"""A Llama-shaped decoder with random weights: real GEMMs, attention and KV cache.

Only timing matters (weights are random), but the computation is a faithful Llama forward,
shaped as production engines run it, so that forward times match a real server's: RMSNorm,
RoPE, fused QKV and gate|up projections, GQA attention over a paged KV cache (gpu.kv_cache)
with paged Triton kernels (decode split-K, varlen prefill), SwiGLU MLP, LM head on each
item's last position, and multi-adapter LoRA as SGMV on every fused projection (gpu.lora).

Batches are packed: all new tokens of all items in one `[T, hidden]` tensor. Prefill and
decode are the same call; a batch whose items all have one new token uses the decode
kernel. `layer` is the unit gpu.decode_graphs captures (a whole decode step as one CUDA
graph) and gpu.prefill_graphs splits at attention (`pre_attention` / `post_attention`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from gpu.kernels import (
    LoraMeta,
    fused_add_rms_norm,
    paged_decode_attention,
    paged_prefill_attention,
    rms_norm,
    rope_write_kv,
    silu_and_mul,
)
from gpu.kv_cache import PagedKV
from gpu.lora import LoraSlots
from gpu.staging import to_device
from sim.core.model import ModelShape

# a projection's output and the LoRA delta its consumer still has to add (None: none pending)
Pending = tuple[torch.Tensor, torch.Tensor | None]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


@dataclass
class StepInput:
    """One packed forward. Per item: its KV row, cached context and new-token count; `lora`
    the batch's SGMV table (gpu.lora.LoraSlots.meta; None: no adapter)."""

    tokens: torch.Tensor  # [T] long
    rows: list[int]
    ctx: list[int]
    new: list[int]
    lora: LoraMeta | None = None


@dataclass
class AttnMeta:
    """Where a packed forward's tokens sit in the paged cache, built once for all layers.
    `decode`: every item has one new token, so attention runs the decode kernel."""

    pos: torch.Tensor  # [T] long: position of each new token
    kv_slot: torch.Tensor  # [T] long: its flat cache slot (PagedKV.slot_mapping)
    block_table: torch.Tensor  # [B, max_pages] int32: the items' block-table rows
    seq_lens: torch.Tensor  # [B] int32: positions to attend after this forward
    ctx_lens: torch.Tensor  # [B] int32: cached positions before it
    cu_q: torch.Tensor  # [B + 1] int32: first packed row of each item's new tokens
    last: torch.Tensor  # [B] long: packed row of each item's last new token
    max_q: int
    decode: bool


class LlamaModel:
    """Random-weight Llama decoder; `forward` returns last-position logits per item."""

    def __init__(
        self,
        shape: ModelShape,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        seed: int = 0,
        lora: LoraSlots | None = None,
        rope_theta: float = 500000.0,
        max_pos: int = 8192,
    ):
        self.shape = shape
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype or default_dtype(self.device)
        self.lora = lora
        g = torch.Generator(device=self.device).manual_seed(seed)
        h, hd = shape.hidden, shape.head_dim
        kv = shape.kv_heads * hd

        def w(out: int, inp: int) -> torch.Tensor:
            t = torch.empty(out, inp, device=self.device, dtype=self.dtype)
            return t.normal_(0.0, inp**-0.5, generator=g)

        self.embed = torch.empty(shape.vocab, h, device=self.device, dtype=self.dtype).normal_(
            0, 1, generator=g
        )
        # fused as SGLang and vLLM load them: q|k|v and gate|up are one GEMM each
        self.layers = [
            {
                "attn_norm": torch.ones(h, device=self.device, dtype=self.dtype),
                "qkv": w(h + 2 * kv, h),
                "o": w(h, h),
                "mlp_norm": torch.ones(h, device=self.device, dtype=self.dtype),
                "gate_up": w(2 * shape.intermediate, h),
                "down": w(h, shape.intermediate),
            }
            for _ in range(shape.layers)
        ]
        self.norm = torch.ones(h, device=self.device, dtype=self.dtype)
        self.lm_head = w(shape.vocab, h)
        self.scale = hd**-0.5
        inv = 1.0 / (
            rope_theta ** (torch.arange(0, hd, 2, device=self.device, dtype=torch.float32) / hd)
        )
        freqs = torch.outer(torch.arange(max_pos, device=self.device, dtype=torch.float32), inv)
        self.cos, self.sin = freqs.cos().to(self.dtype), freqs.sin().to(self.dtype)

    @property
    def weight_bytes(self) -> int:
        """Bytes a decode step reads from the weights: every layer, the final norm and the LM
        head (the embedding only at the batch's rows)."""
        per_layer = sum(t.numel() * t.element_size() for t in self.layers[0].values())
        return per_layer * len(self.layers) + self.lm_head.numel() * self.lm_head.element_size()

    # ---- pieces -----------------------------------------------------------------------------

    @staticmethod
    def _rms(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w

    def _rope(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x [T, heads, hd]; rotate-half convention (HF Llama)."""
        cos = self.cos[pos].unsqueeze(1)
        sin = self.sin[pos].unsqueeze(1)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)

    def _proj(self, x: torch.Tensor, li: int, name: str, lora: LoraMeta | None) -> Pending:
        """(x @ W.t() with its LoRA, the LoRA delta the caller's next op must add or None):
        the delta of gpu.lora's "lora" side part is added by the projection's consumer (RoPE,
        the norm, SiLU*mul), not by a launch of its own."""
        w = self.layers[li][name]
        if lora is not None and self.lora is not None:
            return self.lora.project_pending(x, w, li, name, lora)
        return x @ w.t(), None

    @staticmethod
    def settle(x: torch.Tensor, delta: Pending) -> torch.Tensor:
        """x += the last layer's pending MLP output (its LoRA delta first added to it, rounded,
        as the next layer's norm would), in place. -> x."""
        y, extra = delta
        return x.add_(y if extra is None else y.add_(extra))

    # ---- metadata ---------------------------------------------------------------------------

    def attn_meta(self, inp: StepInput, kv: PagedKV) -> AttnMeta:
        """Host-built positions and page tables of a packed batch (one H2D copy)."""
        pos_l, tok_rows, last_l, cu = [], [], [], [0]
        for r, c, n in zip(inp.rows, inp.ctx, inp.new, strict=True):
            if c + n > kv.capacity.get(r, kv.max_ctx if r == kv.scratch else 0):
                raise RuntimeError(f"context {c + n} exceeds KV row {r}'s pages")
            pos_l.extend(range(c, c + n))
            tok_rows.extend([r] * n)
            cu.append(cu[-1] + n)
            last_l.append(cu[-1] - 1)
        b, t = len(inp.rows), len(pos_l)
        # every section starts 16-byte aligned: Triton specializes kernels on pointer
        # alignment, and a new specialization is a ~1 s compile in the middle of a run
        sections = [pos_l, tok_rows, inp.rows, last_l, inp.ctx,
                    [c + n for c, n in zip(inp.ctx, inp.new, strict=True)], cu]  # fmt: skip
        flat, offs = [], []
        for sec in sections:
            offs.append(len(flat))
            flat.extend(sec)
            flat.extend([0] * (-len(flat) % 4))
        host = to_device(flat, self.device)
        small = host.int()
        pos, rows_tok = host[offs[0] : offs[0] + t], host[offs[1] : offs[1] + t]
        rows = host[offs[2] : offs[2] + b]
        return AttnMeta(
            pos=pos,
            kv_slot=kv.slot_mapping(kv.block_table.index_select(0, rows_tok), pos),
            block_table=kv.block_table.index_select(0, rows),
            seq_lens=small[offs[5] : offs[5] + b],
            ctx_lens=small[offs[4] : offs[4] + b],
            cu_q=small[offs[6] : offs[6] + b + 1],
            last=host[offs[3] : offs[3] + b],
            max_q=max(inp.new),
            decode=max(inp.new) == 1,
        )

    # ---- forward ----------------------------------------------------------------------------

    def forward(
        self, inp: StepInput, kv: PagedKV, before_layer: Callable[[int], None] | None = None
    ) -> torch.Tensor:
        """Run the packed batch, writing its keys/values into `kv`. -> logits [items, vocab].
        `before_layer(li)` is called before layer li's work is issued (layer-by-layer waits)."""
        am = self.attn_meta(inp, kv)
        x = self.embed[inp.tokens]
        delta = None
        for li in range(self.shape.layers):
            if before_layer is not None:
                before_layer(li)
            delta = self.layer(li, x, kv, am, inp.lora, delta)
        return self.logits(self.settle(x, delta).index_select(0, am.last))

    def layer(
        self,
        li: int,
        x: torch.Tensor,
        kv: PagedKV,
        am: AttnMeta,
        lora: LoraMeta | None,
        delta: Pending | None = None,
    ) -> Pending:
        """Layer li of the residual stream x [T, hidden], updated in place, given the previous
        layer's pending MLP output `delta` (None for layer 0). -> this layer's pending delta
        (x is complete only after `settle(x, delta)` of the last layer)."""
        q = self.pre_attention(li, x, kv, am.pos, am.kv_slot, lora, delta)
        return self.post_attention(li, x, self.attend(li, q, kv, am), lora)

    def attend(self, li: int, q: torch.Tensor, kv: PagedKV, am: AttnMeta) -> torch.Tensor:
        """Paged attention of layer li for packed queries q [T, heads, hd] over each item's
        cached keys (this forward's already written by pre_attention). -> [T, heads*hd]."""
        if am.decode:
            att = paged_decode_attention(q, kv.k[li], kv.v[li], am.block_table, am.seq_lens, self.scale)
        else:
            att = paged_prefill_attention(
                q, kv.k[li], kv.v[li], am.block_table, am.cu_q, am.ctx_lens, self.scale, am.max_q
            )
        return att.view(q.shape[0], -1)

    def pre_attention(
        self,
        li: int,
        x: torch.Tensor,
        kv: PagedKV,
        pos: torch.Tensor,
        kv_slot: torch.Tensor,
        lora: LoraMeta | None,
        delta: Pending | None = None,
    ) -> torch.Tensor:
        """Norm (adding the previous layer's pending `delta` into x in the same kernel),
        fused q|k|v with LoRA, RoPE at `pos`; writes k/v at the flat cache slots `kv_slot`.
        -> q [T, heads, hd]."""
        s = self.shape
        w = self.layers[li]["attn_norm"]
        h = rms_norm(x, w) if delta is None else fused_add_rms_norm(delta[0], x, w, extra=delta[1])
        qkv, extra = self._proj(h, li, "qkv", lora)
        # one fused kernel: RoPE on q and k at `pos`, k and v written into the paged cache
        return rope_write_kv(
            qkv, pos, self.cos, self.sin, kv.k[li], kv.v[li], kv_slot, s.heads, s.kv_heads, s.head_dim,
            extra,
        )  # fmt: skip

    def post_attention(
        self, li: int, x: torch.Tensor, att: torch.Tensor, lora: LoraMeta | None
    ) -> Pending:
        """o_proj (added to `x` in place) and the MLP with LoRA. -> the MLP's output, the
        residual add left pending: the next layer's norm (or the caller, after the last
        layer) adds it, saving one elementwise launch a layer (as SGLang and vLLM do)."""
        lw = self.layers[li]
        o, extra = self._proj(att, li, "o", lora)
        h = fused_add_rms_norm(o, x, lw["mlp_norm"], extra=extra)  # x += o
        return self._proj(silu_and_mul(*self._proj(h, li, "gate_up", lora)), li, "down", lora)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.norm) @ self.lm_head.t()
