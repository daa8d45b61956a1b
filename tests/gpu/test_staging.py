"""gpu.staging: small host-to-device copies that do not make the host wait for the GPU."""

import time

import pytest

torch = pytest.importorskip("torch")

from gpu.driver import CudaDriver  # noqa: E402
from gpu.staging import copy_into, to_device  # noqa: E402
from sim.config import MODEL_PRESETS  # noqa: E402
from sim.core.effects import Batch, BatchItem, Forward  # noqa: E402

TINY = MODEL_PRESETS["tiny"]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_to_device_and_copy_into_keep_values_and_cast_on_cpu():
    cpu = torch.device("cpu")
    t = to_device([1, 2, 3], cpu)
    assert t.dtype == torch.long and t.tolist() == [1, 2, 3]
    assert to_device([0.5, 1.5], cpu, torch.bfloat16).dtype == torch.bfloat16
    src = torch.arange(6, dtype=torch.float32).view(2, 3)
    assert torch.equal(to_device(src, cpu, torch.long), src.long())
    dst = torch.zeros(6, 1, dtype=torch.bfloat16)
    copy_into(dst, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert dst.view(-1).tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    with pytest.raises(RuntimeError):
        copy_into(torch.zeros(4), [1.0, 2.0])  # element counts must match


def _busy(ms: float) -> None:
    """Queue `ms` of GPU spinning on the current stream (returns at once)."""
    torch.cuda._sleep(int(ms * 1e-3 * torch.cuda.get_device_properties(0).clock_rate * 1e3))


@pytest.mark.cuda
@needs_cuda
def test_staged_copies_queue_behind_busy_stream_without_blocking_host():
    dev = torch.device("cuda")
    dst = torch.zeros(5, dtype=torch.long, device=dev)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    _busy(300)
    a = to_device([7, 8, 9], dev)
    copy_into(dst, [1, 2, 3, 4, 5])
    host_s = time.perf_counter() - t0
    done = torch.cuda.current_stream().query()
    torch.cuda.synchronize()
    assert not done and host_s < 0.1, f"host waited {host_s * 1e3:.0f} ms"
    assert a.tolist() == [7, 8, 9] and dst.tolist() == [1, 2, 3, 4, 5]


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("kind", ["prefill", "decode"])
def test_driver_launch_returns_while_gpu_is_busy(tiny_trace, tiny_host, kind):
    """A forward launched without waiting is only queued: the host is back before the GPU has
    finished the work ahead of it (the harness used to wait for it, a prefill for itself)."""
    d = CudaDriver(tiny_trace, TINY, tiny_host, n_slots=3, device="cuda", dtype=torch.float32)
    d.warmup()
    d.start()
    items = (BatchItem(0, "a0", -1, 0, 6, 0), BatchItem(2, None, -1, 0, 5, 0))
    d.handle(Forward(Batch("prefill", items)))  # rows and context for the decode
    if kind == "decode":
        items = (BatchItem(0, "a0", -1, 0, 1, 6), BatchItem(2, None, -1, 0, 1, 5))
    else:
        items = (BatchItem(1, "a1", -1, 0, 3, 0),)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with d.clock.stream("compute"):
        _busy(300)
    ticket = d.handle(Forward(Batch(kind, items), wait=False))
    host_s = time.perf_counter() - t0
    done = d.launches[ticket].steps[-1].done()
    d.finish()
    assert not done and host_s < 0.1, f"launch held the host {host_s * 1e3:.0f} ms"
