"""Production-class kernels of the GPU harness (issue #26), each with a plain-torch twin.

Ops (layouts in each function's docstring):
- `LoraMeta.build` (per batch, host) + `lora_shrink` / `lora_expand`: multi-adapter LoRA as
  SGMV, weights read in place from `gpu.lora.LoraSlots.pool`, one launch per fused
  projection (`LoraSlices.of(slots, layer, "qkv" | "gate_up" | "o" | "down")`).
- `paged_decode_attention`, `paged_prefill_attention`, `write_kv`: paged KV attention over
  per-layer caches [num_pages, page_size, kv_heads, head_dim] and an int32 block table.
- `rms_norm`, `fused_add_rms_norm`, `rope_write_kv`, `silu_and_mul`: the per-layer
  elementwise work as one launch each (torch: ~35 kernels a layer). Residual convention of
  the fused norm (vLLM/SGLang): `h = fused_add_rms_norm(delta, x, w)` does `x += delta` in
  place and returns `rms_norm(x, w)`, so a layer can leave its last residual add (the MLP's
  down projection) pending and the next norm applies it:
      h = rms_norm(x, attn_norm) if delta is None else fused_add_rms_norm(delta, x, attn_norm)
      q = rope_write_kv(qkv(h), pos, cos, sin, k_cache, v_cache, kv_slot, H, KVH, D)
      h = fused_add_rms_norm(o_proj(attention(q)), x, mlp_norm)
      delta = down(silu_and_mul(gate_up(h)))
  and the final norm is `fused_add_rms_norm(delta, x, norm)` (x is complete only then).

Which implementation runs (decided per call from the op's first tensor):
1. env LORASIM_KERNELS=torch forces the reference, =triton forces Triton;
2. else Triton when it is installed and the tensor is on CUDA, or on CPU while
   TRITON_INTERPRET=1 (Triton's interpreter; the variable must be set before triton is
   first imported, which is why nothing here imports triton until an op runs);
3. else the reference (`gpu.kernels.reference`), so CPU runs need no Triton.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType

import torch

from gpu.kernels import reference
from gpu.kernels._common import HAS_TRITON, interpreting
from gpu.kernels.lora_meta import FUSED, LoraMeta, LoraSlices
from gpu.kernels.reference import write_kv

__all__ = [
    "FUSED",
    "LoraMeta",
    "LoraSlices",
    "backend",
    "fused_add_rms_norm",
    "lora_apply",
    "lora_expand",
    "lora_shrink",
    "paged_decode_attention",
    "paged_prefill_attention",
    "rms_norm",
    "rope_write_kv",
    "silu_and_mul",
    "write_kv",
]


def backend(t: torch.Tensor) -> str:
    """"triton" or "torch": the implementation an op on tensor `t` runs (module docstring)."""
    forced = os.environ.get("LORASIM_KERNELS", "").lower()
    if forced in ("torch", "reference"):
        return "torch"
    if forced == "triton":
        if not HAS_TRITON:
            raise RuntimeError("LORASIM_KERNELS=triton but triton is not installed")
        return "triton"
    if HAS_TRITON and (t.is_cuda or (t.device.type == "cpu" and interpreting())):
        return "triton"
    return "torch"


def _impl(t: torch.Tensor, module: str) -> ModuleType:
    if backend(t) == "torch":
        return reference
    import importlib

    return importlib.import_module(f"gpu.kernels.{module}")


def lora_shrink(
    x: torch.Tensor, pool: torch.Tensor, a_offsets: Sequence[int], max_rank: int, meta: LoraMeta,
    tight: bool = False,
) -> torch.Tensor:
    return _impl(x, "lora_shrink_op").lora_shrink(x, pool, a_offsets, max_rank, meta, tight)


def lora_expand(
    h: torch.Tensor,
    pool: torch.Tensor,
    bt_offsets: Sequence[int],
    widths: Sequence[int],
    y: torch.Tensor,
    meta: LoraMeta,
    max_rank: int,
    out_offsets: Sequence[int] | None = None,
    tight: bool = False,
) -> torch.Tensor:
    return _impl(h, "lora_expand_op").lora_expand(
        h, pool, bt_offsets, widths, y, meta, max_rank, out_offsets, tight
    )


def paged_decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    scale: float,
    num_splits: int | None = None,
) -> torch.Tensor:
    return _impl(q, "decode_attention").paged_decode_attention(
        q, k_cache, v_cache, block_table, seq_lens, scale, num_splits
    )


def paged_prefill_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    ctx_lens: torch.Tensor,
    scale: float,
    max_q_len: int | None = None,
) -> torch.Tensor:
    return _impl(q, "prefill_attention").paged_prefill_attention(
        q, k_cache, v_cache, block_table, cu_seqlens_q, ctx_lens, scale, max_q_len
    )


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """x [..., hidden], w [hidden] -> (x * rsqrt(mean(x^2) + eps)).to(x.dtype) * w, a new
    tensor in x's dtype (fp32 statistics; `LlamaModel._rms`)."""
    return _impl(x, "norm").rms_norm(x, w, eps)


def fused_add_rms_norm(
    x: torch.Tensor,
    residual: torch.Tensor,
    w: torch.Tensor,
    eps: float = 1e-5,
    extra: torch.Tensor | None = None,
) -> torch.Tensor:
    """residual += x IN PLACE (rounded to its dtype; x is only read), then -> a new tensor
    rms_norm(residual, w, eps). x and residual [..., hidden] of one dtype. One kernel reads
    x and residual once and writes residual and the output. `extra` (x's shape and dtype):
    x + extra, rounded, is added instead (a LoRA delta the side stream computed)."""
    return _impl(x, "norm").fused_add_rms_norm(x, residual, w, eps, extra)


def rope_write_kv(
    qkv: torch.Tensor,
    pos: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    kv_slot: torch.Tensor,
    heads: int,
    kv_heads: int,
    head_dim: int,
    extra: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fused qkv [T, (heads + 2*kv_heads) * head_dim] (q | k | v; qkv + extra, rounded, when
    `extra` of qkv's shape and dtype is given) -> RoPE'd q [T, heads,
    head_dim] (new, contiguous, qkv's dtype); RoPE'd k and raw v are written to the caches
    [num_pages, page_size, kv_heads, head_dim] at flat slot kv_slot[t] (page * page_size +
    offset; padding tokens at a scratch slot). Rotate-half at pos[t] with cos/sin [max_pos,
    head_dim / 2], fp32 math. One launch, no host sync."""
    return _impl(qkv, "rope_kv").rope_write_kv(
        qkv, pos, cos, sin, k_cache, v_cache, kv_slot, heads, kv_heads, head_dim, extra
    )


def silu_and_mul(gu: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
    """gu [..., 2*I] = gate | up -> silu(gate) * up [..., I] in gu's dtype, fp32 math; with
    `extra` (gu's shape and dtype) of gu + extra, rounded."""
    return _impl(gu, "activation").silu_and_mul(gu, extra)


def lora_apply(
    y: torch.Tensor,
    x: torch.Tensor,
    pool: torch.Tensor,
    slices: LoraSlices,
    max_rank: int,
    meta: LoraMeta,
    tight: bool = False,
) -> torch.Tensor:
    """y[:, fused columns] += scale * (x A^T) B^T for every token with an adapter: shrink then
    expand, two launches per fused projection whatever the number of adapters. `tight`: the
    offsets are per unit of rank, each adapter laid out at its own rank (the unified arena)."""
    h = lora_shrink(x, pool, slices.a_offsets, max_rank, meta, tight)
    return lora_expand(h, pool, slices.bt_offsets, slices.widths, y, meta, max_rank, slices.out_offsets, tight)
