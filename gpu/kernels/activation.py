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
from gpu.kernels.extra import check_extra, load_sum


@triton.jit
def _silu_and_mul_kernel(
    gu_ptr, e_ptr, out_ptr, stride_gu, stride_e, stride_o, inter, BLOCK: tl.constexpr, EXTRA: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < inter
    src = gu_ptr + row * stride_gu + offs
    ext = e_ptr + row * stride_e + offs
    g = load_sum(src, ext, mask, EXTRA)
    u = load_sum(src + inter, ext + inter, mask, EXTRA)
    y = g / (1.0 + tl.exp(-g)) * u
    tl.store(out_ptr + row * stride_o + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


def silu_and_mul(gu: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
    """gu [..., 2*I] = gate | up halves -> silu(gate) * up [..., I] in gu's dtype; with
    `extra` (gu's shape and dtype), of gu + extra rounded to that dtype."""
    two_i = gu.shape[-1]
    if two_i % 2:
        raise ValueError(f"last dim {two_i} is not gate|up halves")
    check_extra(extra, gu, "gu")
    inter = two_i // 2
    gu2 = gu.reshape(-1, two_i)
    if gu2.stride(1) != 1:
        gu2 = gu2.contiguous()
    e2 = gu2 if extra is None else extra.reshape(-1, two_i)
    if e2.stride(1) != 1:
        e2 = e2.contiguous()
    out = torch.empty(gu2.shape[0], inter, dtype=gu.dtype, device=gu.device)
    if out.numel() == 0:
        return out.view(*gu.shape[:-1], inter)
    cfg, opts = launch_opts(config("silu_mul", gu))
    block = min(cfg["BLOCK"], triton.next_power_of_2(inter))
    _silu_and_mul_kernel[(gu2.shape[0], triton.cdiv(inter, block))](
        gu2, e2, out, gu2.stride(0), e2.stride(0), out.stride(0), inter, BLOCK=block,
        EXTRA=extra is not None, **opts,
    )  # fmt: skip
    return out.view(*gu.shape[:-1], inter)
