"""SiLU(gate) * up of the fused gate|up projection in one launch (torch: chunk, silu, mul, a
kernel each plus a temporary), fp32 math, one rounding to the input dtype.

Grid (rows, column blocks of the intermediate dim): each program reads BLOCK gate and BLOCK
up values of one row and writes BLOCK outputs; wide blocks keep the loads coalesced and
the column split gives a decode step (1 row, I = 14336) enough programs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gpu.kernels._common import config, launch_opts


@triton.jit
def _silu_and_mul_kernel(gu_ptr, out_ptr, stride_gu, stride_o, inter, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < inter
    src = gu_ptr + row * stride_gu + offs
    g = tl.load(src, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(src + inter, mask=mask, other=0.0).to(tl.float32)
    y = g / (1.0 + tl.exp(-g)) * u
    tl.store(out_ptr + row * stride_o + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


def silu_and_mul(gu: torch.Tensor) -> torch.Tensor:
    """gu [..., 2*I] = gate | up halves -> silu(gate) * up [..., I] in gu's dtype."""
    two_i = gu.shape[-1]
    if two_i % 2:
        raise ValueError(f"last dim {two_i} is not gate|up halves")
    inter = two_i // 2
    gu2 = gu.reshape(-1, two_i)
    if gu2.stride(1) != 1:
        gu2 = gu2.contiguous()
    out = torch.empty(gu2.shape[0], inter, dtype=gu.dtype, device=gu.device)
    if out.numel() == 0:
        return out.view(*gu.shape[:-1], inter)
    cfg, opts = launch_opts(config("silu_mul", gu))
    block = min(cfg["BLOCK"], triton.next_power_of_2(inter))
    _silu_and_mul_kernel[(gu2.shape[0], triton.cdiv(inter, block))](
        gu2, out, gu2.stride(0), out.stride(0), inter, BLOCK=block, **opts
    )
    return out.view(*gu.shape[:-1], inter)
