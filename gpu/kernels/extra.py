"""The `extra` addend of the elementwise ops: a projection's LoRA delta, computed on the side
stream (gpu.lora, part "lora"), that RoPE+KV write, the fused norm and SiLU*mul add to their
input as they load it, so the delta needs no launch of its own."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def load_sum(src, extra, mask, EXTRA: tl.constexpr):
    """src's values in fp32; with EXTRA, of src + extra rounded to src's dtype first (as
    torch's `src + extra`), so the op sees what it would after a separate add."""
    v = tl.load(src, mask=mask, other=0.0)
    if EXTRA:
        e = tl.load(extra, mask=mask, other=0.0)
        v = (v.to(tl.float32) + e.to(tl.float32)).to(src.dtype.element_ty)
    return v.to(tl.float32)
