"""A Llama-shaped decoder with random weights: real GEMMs, attention and KV cache.

Only timing matters (weights are random), but the computation is a faithful Llama forward
so that forward times match a real server's: RMSNorm, RoPE, GQA attention (torch SDPA),
SwiGLU MLP, LM head on each item's last position, and batched multi-adapter LoRA on every
targeted projection.

Batches are packed: all new tokens of all items in one `[T, hidden]` tensor for the linear
layers; attention pads items to the longest (queries) and reads each item's cached keys from
a per-request KV slab. Prefill and decode are the same call (decode = one new token each).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gpu.lora import DenseLoraBatch, LoraBatch, LoraSlots
from gpu.staging import to_device
from sim.core.model import ModelShape

Lora = LoraBatch | DenseLoraBatch | None  # how a forward's tokens read their adapters


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Masked GQA attention as plain batched matmuls: q [B, H, lq, hd], k/v [B, KVH, lk, hd],
    mask [B, 1, lq, lk] (True = visible) -> [B, H, lq, hd].

    Not torch SDPA: with a boolean mask SDPA picks cuDNN on Hopper, which builds an execution
    plan for every new (lq, lk); decode grows lk by one every step, so each step paid a plan
    build per layer (~2 ms of CPU per call, most of a decode step on an H200). Two matmuls and
    a softmax cost the same every step, which is also what makes calibration transfer."""
    b, h, lq, hd = q.shape
    kvh, lk = k.shape[1], k.shape[2]
    rep = h // kvh
    qg = q.reshape(b, kvh, rep * lq, hd)  # head i reads KV head i // rep (HF repeat_interleave)
    s = torch.matmul(qg, k.transpose(-1, -2)).view(b, kvh, rep, lq, lk)
    s = s.float().mul_(hd**-0.5).masked_fill_(~mask.view(b, 1, 1, lq, lk), float("-inf"))
    p = torch.softmax(s, dim=-1).to(q.dtype).view(b, kvh, rep * lq, lk)
    return torch.matmul(p, v).view(b, h, lq, hd)


class KVPool:
    """KV cache: one row (slab of `max_ctx` positions) per running request, all layers.

    Rows go to the lowest free index so a decode batch covers a near-contiguous row range,
    which attention reads as a view instead of a gathered copy.
    """

    def __init__(self, shape: ModelShape, rows: int, max_ctx: int, device, dtype):
        kvh, hd = shape.kv_heads, shape.head_dim
        self.rows, self.max_ctx = rows, max_ctx
        # one extra row (`scratch`) that no request gets: padding entries of a fixed-size
        # decode batch (gpu.decode_graphs) write their keys and tokens there
        self.scratch = rows
        self.k = [
            torch.zeros(rows + 1, max_ctx, kvh, hd, device=device, dtype=dtype)
            for _ in range(shape.layers)
        ]
        self.v = [
            torch.zeros(rows + 1, max_ctx, kvh, hd, device=device, dtype=dtype)
            for _ in range(shape.layers)
        ]
        self.last_tok = torch.zeros(rows + 1, dtype=torch.long, device=device)  # next token
        self.row_of: dict[int, int] = {}
        self._free = list(range(rows))

    @staticmethod
    def bytes_per_token(shape: ModelShape) -> int:
        return 2 * shape.layers * shape.kv_heads * shape.head_dim * shape.dtype_bytes

    def row(self, rid: int) -> int:
        if rid not in self.row_of:
            if not self._free:
                raise RuntimeError(f"KV pool full ({self.rows} rows): cannot place request {rid}")
            self._free.sort()
            self.row_of[rid] = self._free.pop(0)
        return self.row_of[rid]

    def reset(self) -> None:
        """Every row free (a new run on the same pool; contents are overwritten before use)."""
        self.row_of.clear()
        self._free = list(range(self.rows))

    def release(self, rid: int) -> None:
        r = self.row_of.pop(rid, None)
        if r is not None:
            self._free.append(r)


@dataclass
class StepInput:
    """One packed forward. Per item: its KV row, cached context and new-token count."""

    tokens: torch.Tensor  # [T] long
    rows: list[int]
    ctx: list[int]
    new: list[int]
    lora: Lora = None


@dataclass
class AttnMeta:
    """Index tensors of one packed forward's attention, built once and used by every layer."""

    pos: torch.Tensor  # [T] position of each new token
    tok_rows: torch.Tensor  # [T] its KV row
    pad_idx: torch.Tensor  # [T] its place in the [items * lq] padded query layout
    last: torch.Tensor  # [items] packed index of each item's last new token
    rows: torch.Tensor  # [items] KV rows
    mask: torch.Tensor  # [items, 1, lq, lk] True = visible
    n_items: int
    lq: int
    lk: int


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
        self.layers = []
        for _ in range(shape.layers):
            self.layers.append(
                {
                    "attn_norm": torch.ones(h, device=self.device, dtype=self.dtype),
                    "q_proj": w(h, h),
                    "k_proj": w(kv, h),
                    "v_proj": w(kv, h),
                    "o_proj": w(h, h),
                    "mlp_norm": torch.ones(h, device=self.device, dtype=self.dtype),
                    "gate_proj": w(shape.intermediate, h),
                    "up_proj": w(shape.intermediate, h),
                    "down_proj": w(h, shape.intermediate),
                }
            )
        self.norm = torch.ones(h, device=self.device, dtype=self.dtype)
        self.lm_head = w(shape.vocab, h)
        inv = 1.0 / (
            rope_theta ** (torch.arange(0, hd, 2, device=self.device, dtype=torch.float32) / hd)
        )
        freqs = torch.outer(torch.arange(max_pos, device=self.device, dtype=torch.float32), inv)
        self.cos, self.sin = freqs.cos().to(self.dtype), freqs.sin().to(self.dtype)

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

    def _proj(self, x, xs, lw, layer: int, module: str, lb: Lora) -> torch.Tensor:
        y = x @ lw[module].t()
        if lb is None or self.lora is None or not self.lora.has(module):
            return y
        if isinstance(lb, DenseLoraBatch):
            return self.lora.apply_dense(y, x, layer, module, lb)
        return self.lora.apply(y, xs, layer, module, lb)

    def _shrink(self, x, lb: Lora):
        if not isinstance(lb, LoraBatch) or self.lora is None:
            return None
        return self.lora.shrink_input(x, lb)

    # ---- forward ----------------------------------------------------------------------------

    def attn_meta(self, inp: StepInput, kv: KVPool) -> AttnMeta:
        """Host-built index tensors of a packed batch (one small H2D copy each)."""
        dev = self.device
        lq = max(inp.new)
        lk = max(c + n for c, n in zip(inp.ctx, inp.new, strict=True))
        if lk > kv.max_ctx:
            raise RuntimeError(f"context {lk} exceeds the KV pool's {kv.max_ctx} positions")
        pos_l, row_l, pad_l, last_l = [], [], [], []
        t = 0
        for i, (r, c, n) in enumerate(zip(inp.rows, inp.ctx, inp.new, strict=True)):
            pos_l.extend(range(c, c + n))
            row_l.extend([r] * n)
            pad_l.extend(range(i * lq, i * lq + n))
            t += n
            last_l.append(t - 1)
        ctx = to_device(inp.ctx, dev)
        new = to_device(inp.new, dev)
        # key j visible to query q iff j <= ctx + min(q, new-1)
        qpos = ctx[:, None] + torch.minimum(torch.arange(lq, device=dev)[None, :], new[:, None] - 1)
        mask = (torch.arange(lk, device=dev)[None, None, :] <= qpos[:, :, None]).unsqueeze(1)
        return AttnMeta(
            pos=to_device(pos_l, dev),
            tok_rows=to_device(row_l, dev),
            pad_idx=to_device(pad_l, dev),
            last=to_device(last_l, dev),
            rows=to_device(inp.rows, dev),
            mask=mask,
            n_items=len(inp.rows),
            lq=lq,
            lk=lk,
        )

    def attend(self, li: int, q: torch.Tensor, kv: KVPool, am: AttnMeta) -> torch.Tensor:
        """Attention of layer li for packed queries q [T, heads, hd] over each item's cached
        keys (this forward's already written by pre_attention). -> [T, heads*hd]."""
        nh, hd = self.shape.heads, self.shape.head_dim
        qp = torch.zeros(am.n_items * am.lq, nh, hd, device=self.device, dtype=self.dtype)
        qp[am.pad_idx] = q
        qp = qp.view(am.n_items, am.lq, nh, hd).transpose(1, 2)
        kk = kv.k[li][am.rows, : am.lk].transpose(1, 2)  # [items, kvh, lk, hd]
        vv = kv.v[li][am.rows, : am.lk].transpose(1, 2)
        att = _attention(qp, kk, vv, am.mask)
        return att.transpose(1, 2).reshape(am.n_items * am.lq, nh * hd)[am.pad_idx]

    def forward(
        self, inp: StepInput, kv: KVPool, before_layer: Callable[[int], None] | None = None
    ) -> torch.Tensor:
        """Run the packed batch, writing its keys/values into `kv`. -> logits [items, vocab].
        `before_layer(li)` is called before layer li's work is issued (layer-by-layer waits)."""
        am = self.attn_meta(inp, kv)
        x = self.embed[inp.tokens]
        for li in range(self.shape.layers):
            if before_layer is not None:
                before_layer(li)
            q = self.pre_attention(li, x, am.pos, am.tok_rows, kv, inp.lora)
            x = self.post_attention(li, x, self.attend(li, q, kv, am), inp.lora)
        return self.logits(x[am.last])

    # ---- the two halves of a layer (shared with gpu.decode_graphs) -------------------------

    def pre_attention(
        self, li: int, x: torch.Tensor, pos: torch.Tensor, tok_rows: torch.Tensor,
        kv: KVPool, lb: Lora,
    ) -> torch.Tensor:
        """Norm, q/k/v with LoRA, RoPE; writes k/v at (tok_rows, pos). -> q [T, heads, hd]."""
        s, lw = self.shape, self.layers[li]
        nh, kvh, hd = s.heads, s.kv_heads, s.head_dim
        hn = self._rms(x, lw["attn_norm"])
        xs = self._shrink(hn, lb)
        q = self._proj(hn, xs, lw, li, "q_proj", lb).view(-1, nh, hd)
        k = self._proj(hn, xs, lw, li, "k_proj", lb).view(-1, kvh, hd)
        v = self._proj(hn, xs, lw, li, "v_proj", lb).view(-1, kvh, hd)
        q, k = self._rope(q, pos), self._rope(k, pos)
        kv.k[li][tok_rows, pos] = k
        kv.v[li][tok_rows, pos] = v
        return q

    def post_attention(
        self, li: int, x: torch.Tensor, att: torch.Tensor, lb: Lora
    ) -> torch.Tensor:
        """o_proj and the MLP with LoRA, residuals added to `x` in place. -> x."""
        lw = self.layers[li]
        xs = self._shrink(att, lb)
        x.add_(self._proj(att, xs, lw, li, "o_proj", lb))
        hn = self._rms(x, lw["mlp_norm"])
        xs = self._shrink(hn, lb)
        gate = self._proj(hn, xs, lw, li, "gate_proj", lb)
        up = self._proj(hn, xs, lw, li, "up_proj", lb)
        act = F.silu(gate) * up
        xs = self._shrink(act, lb)
        return x.add_(self._proj(act, xs, lw, li, "down_proj", lb))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._rms(x, self.norm) @ self.lm_head.t()
