"""RMSNorm and residual-add + RMSNorm, one launch per call (torch issues 6-7 kernels for the
norm alone, each ~2 us at decode sizes, twice a layer).

One program per row with the whole hidden dim in one block (BLOCK = next power of two,
masked), so each element is read once and written once: `rms_norm` reads x and writes out;
`fused_add_rms_norm` reads x (and a LoRA delta `extra` to add to it, if given) and residual, writes residual (= residual + x, rounded to its
dtype, as `x.add_(delta)` rounds) and out. Numerics follow `LlamaModel._rms` exactly: fp32
sum of squares, the normed value cast to the output dtype BEFORE the product with w (that
product in fp32, rounded once, as torch's bf16 * bf16 does).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from gpu.kernels._common import config, launch_opts
from gpu.kernels.extra import check_extra, load_sum


@triton.jit
def _rms_norm_kernel(
    x_ptr,
    e_ptr,
    res_ptr,
    w_ptr,
    out_ptr,
    stride_x,
    stride_e,
    stride_r,
    stride_o,
    n_cols,
    eps,
    BLOCK: tl.constexpr,
    ADD: tl.constexpr,
    EXTRA: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < n_cols
    x = load_sum(x_ptr + row * stride_x + offs, e_ptr + row * stride_e + offs, mask, EXTRA)
    if ADD:
        r_ptrs = res_ptr + row * stride_r + offs
        r = tl.load(r_ptrs, mask=mask, other=0.0)
        x = (r.to(tl.float32) + x.to(tl.float32)).to(res_ptr.dtype.element_ty)
        tl.store(r_ptrs, x, mask=mask)
    xf = x.to(tl.float32)
    rstd = tl.math.rsqrt(tl.sum(xf * xf, 0) / n_cols + eps)
    normed = (xf * rstd).to(out_ptr.dtype.element_ty).to(tl.float32)
    w = tl.load(w_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_o + offs, (normed * w).to(out_ptr.dtype.element_ty), mask=mask)


def _rows(t: torch.Tensor, n: int, inplace: bool) -> torch.Tensor:
    """t [..., n] as [rows, n] with a unit column stride: a view where the kernel writes into
    t (in place), else a copy if need be."""
    v = t.view(-1, n) if inplace else t.reshape(-1, n)
    if v.stride(1) != 1 and n > 1:
        if inplace:
            raise ValueError("the residual needs a unit stride along the hidden dim")
        v = v.contiguous()
    return v


def _launch(
    x: torch.Tensor, res: torch.Tensor | None, w: torch.Tensor, eps: float, extra: torch.Tensor | None = None
) -> torch.Tensor:
    n = x.shape[-1]
    if w.shape != (n,) or w.stride(0) != 1:
        raise ValueError(f"weight must be a contiguous [{n}] vector, got {tuple(w.shape)}")
    check_extra(extra, x, "x")
    x2 = _rows(x, n, inplace=False)
    e2 = _rows(extra, n, inplace=False) if extra is not None else x2
    r2 = _rows(res, n, inplace=True) if res is not None else x2
    out = torch.empty(x2.shape, dtype=x.dtype, device=x.device)
    if x2.shape[0] == 0:
        return out.view(x.shape)
    _, opts = launch_opts(config("rms_norm", x))
    _rms_norm_kernel[(x2.shape[0],)](
        x2, e2, r2, w, out, x2.stride(0), e2.stride(0), r2.stride(0), out.stride(0), n, eps,
        BLOCK=triton.next_power_of_2(n), ADD=res is not None, EXTRA=extra is not None, **opts,
    )  # fmt: skip
    return out.view(x.shape)


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """x [..., hidden], w [hidden] -> (x * rsqrt(mean(x^2) + eps)).to(x.dtype) * w, a new
    contiguous tensor in x's dtype."""
    return _launch(x, None, w, eps)


def fused_add_rms_norm(
    x: torch.Tensor,
    residual: torch.Tensor,
    w: torch.Tensor,
    eps: float = 1e-5,
    extra: torch.Tensor | None = None,
) -> torch.Tensor:
    """residual += x in place (x is only read; x + extra, rounded, when `extra` is given),
    then -> rms_norm(residual, w, eps) as a new tensor. x, residual and extra [..., hidden]
    of one dtype."""
    if x.shape != residual.shape or x.dtype != residual.dtype:
        raise ValueError("x and residual must have the same shape and dtype")
    return _launch(x, residual, w, eps, extra)
