"""What every kernel wrapper needs: is Triton importable, is it the CPU interpreter, which
config table applies. No Triton import happens here unless Triton is installed."""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

from gpu.kernels.configs import Config, get_config

HAS_TRITON = importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """True when Triton runs kernels on CPU tensors (TRITON_INTERPRET=1 before import)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=8)
def _device_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


def device_name_of(device: torch.device) -> str | None:
    """The CUDA device's name, the key of the config tables; None off CUDA."""
    return _device_name(device.index or 0) if device.type == "cuda" else None


def device_name(t: torch.Tensor) -> str | None:
    return device_name_of(t.device)


def config(op: str, t: torch.Tensor) -> Config:
    """The launch config of `op` for the device holding `t`, split into (constexprs, launch)
    by the caller via `launch_opts`."""
    return get_config(op, device_name(t))


def launch_opts(cfg: Config) -> tuple[Config, Config]:
    """Split a config into kernel meta-parameters and launch options (warps, stages)."""
    opts = {k: cfg.pop(k) for k in ("num_warps", "num_stages") if k in cfg}
    return cfg, opts


def upcast_dots(t: torch.Tensor) -> bool:
    """Whether `tl.dot` operands must be cast to fp32 first: the interpreter stores bf16 as
    uint16 and multiplies the raw integers in tl.dot (wrong results), while fp32/fp16 are
    right. On a GPU bf16 dots run on tensor cores and are never upcast."""
    return interpreting() and t.dtype == torch.bfloat16
