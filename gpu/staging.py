"""Small host-to-device copies (token ids, KV rows, positions, LoRA maps) that never make the
host wait for the GPU.

Both usual ways of sending a Python list to the GPU block the host until the stream has
finished its queued work: `torch.tensor(xs, device="cuda")` is a synchronous copy, and
`dst.copy_(cpu_tensor, non_blocking=True)` from pageable memory makes CUDA synchronise the
stream before the DMA starts. In the CUDA driver that held every launch until the forward
before it had ended (and a prefill until itself had ended), so the host could never queue
work ahead: a harness effect real servers avoid, and one the simulator does not model.

Here the source is a pinned block of torch's caching host allocator: the copy is queued on
the current stream and returns at once, and the allocator keeps the block until the copy's
event has passed. On CPU these are plain tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _pinned(values: Sequence | torch.Tensor, dtype: torch.dtype | None, pin: bool) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        t = values if dtype is None else values.to(dtype)
        return t.pin_memory() if pin and not t.is_pinned() else t
    return torch.tensor(values, dtype=dtype, pin_memory=pin)


def to_device(
    values: Sequence | torch.Tensor, device: torch.device, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """`values` (a list or a CPU tensor) as a new tensor on `device`, queued on the current
    stream without waiting for it."""
    cuda = device.type == "cuda"
    src = _pinned(values, dtype, cuda)
    return src.to(device, non_blocking=True) if cuda else src.to(device)


def copy_into(dst: torch.Tensor, values: Sequence | torch.Tensor) -> None:
    """dst[:] = values (same number of elements), queued on the current stream without
    waiting for it. `values` is cast to dst's dtype on the host."""
    cuda = dst.device.type == "cuda"
    src = _pinned(values, dst.dtype, cuda)
    dst.copy_(src.view(dst.shape), non_blocking=cuda)
