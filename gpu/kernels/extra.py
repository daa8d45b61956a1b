"""The `extra` addend of the elementwise ops: a projection's LoRA delta, computed on the side
stream (gpu.lora, part "lora"), that RoPE+KV write, the fused norm and SiLU*mul add to their
input as they load it, so the delta needs no launch of its own."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


def check_extra(extra: torch.Tensor | None, t: torch.Tensor, name: str, unit_stride: bool = False) -> None:
    """An op's `extra` must match its input `t` (named `name` in the error) in shape and dtype
    (and, with `unit_stride`, have a unit column stride)."""
    if extra is None:
        return
    if extra.shape != t.shape or extra.dtype != t.dtype or (unit_stride and extra.stride(1) != 1):
        tail = " and a unit column stride" if unit_stride else ""
        raise ValueError(f"extra must have {name}'s shape and dtype{tail}")


@triton.jit
def load_sum(src, extra, mask, EXTRA: tl.constexpr):
    """src's values in fp32; with EXTRA, of src + extra rounded to src's dtype first (as
    torch's `src + extra`), so the op sees what it would after a separate add."""
    v = tl.load(src, mask=mask, other=0.0)
    if EXTRA:
        e = tl.load(extra, mask=mask, other=0.0)
        v = (v.to(tl.float32) + e.to(tl.float32)).to(src.dtype.element_ty)
    return v.to(tl.float32)
