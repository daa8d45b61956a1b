"""gpu.kernels picks Triton only where it can run, else the references (module docstring)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import gpu.kernels as K  # noqa: E402
from gpu.kernels import _common  # noqa: E402
from tests.gpu.kernels.helpers import SMALL, make_slots  # noqa: E402


def test_cpu_without_interpreter_uses_the_reference(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.delenv("LORASIM_KERNELS", raising=False)
    assert K.backend(torch.zeros(1)) == "torch"


def test_forcing_the_reference(monkeypatch):
    monkeypatch.setenv("LORASIM_KERNELS", "torch")
    assert K.backend(torch.zeros(1)) == "torch"


def test_interpreter_on_cpu_uses_triton_when_installed(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("LORASIM_KERNELS", raising=False)
    assert K.backend(torch.zeros(1)) == ("triton" if _common.HAS_TRITON else "torch")


def test_lora_apply_through_the_reference(monkeypatch):
    monkeypatch.setenv("LORASIM_KERNELS", "torch")
    slots = make_slots(SMALL, [8, 64], 64, "cpu", torch.float32)
    tok = [1, 1, -1, 0]
    meta = K.LoraMeta.build(tok, [8, 64], [2.0, 1.0])
    sl = K.LoraSlices.of(slots, 0, "gate_up")
    x = torch.randn(4, sl.in_dim)
    y = torch.zeros(4, sum(sl.widths))
    K.lora_apply(y, x, slots.pool, sl, 64, meta)
    a, bt = slots.A(0, "up_proj")[0, :8], slots.Bt(0, "up_proj")[0, :8]
    torch.testing.assert_close(y[3, sl.out_offsets[1] :], 2.0 * (x[3] @ a.t()) @ bt)
    assert torch.equal(y[2], torch.zeros_like(y[2]))


def test_kernel_modules_do_not_shadow_the_ops():
    """Importing a kernel module binds it as an attribute of gpu.kernels: no module may be
    named like an op (lora_shrink_op, not lora_shrink)."""
    pytest.importorskip("triton")
    import gpu.kernels.decode_attention  # noqa: F401
    import gpu.kernels.lora_expand_op  # noqa: F401
    import gpu.kernels.lora_shrink_op  # noqa: F401
    import gpu.kernels.prefill_attention  # noqa: F401

    for op in ("lora_shrink", "lora_expand", "paged_decode_attention", "paged_prefill_attention"):
        assert callable(getattr(K, op)), op
