"""Kernel tests: Triton kernels against the plain-torch references.

Without CUDA the kernels run under Triton's interpreter on CPU tensors; TRITON_INTERPRET
must be set before triton is imported (gpu.kernels imports it only when an op first runs),
so it is set here, at collection, and only when there is no GPU."""

import os

import pytest

torch = pytest.importorskip("torch")

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# fp32 tensors are compared with fp32 references: on a GPU, tl.dot would otherwise round fp32
# operands to TF32 (10-bit mantissa, ~1e-3 relative). The harness runs bf16, tested apart.
os.environ.setdefault("TRITON_F32_DEFAULT", "ieee")


@pytest.fixture
def triton_device() -> str:
    """Device the Triton kernels run on here ("cuda", or "cpu" under the interpreter);
    skips when triton is missing or cannot run."""
    pytest.importorskip("triton", reason="triton is not installed")
    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no CUDA and TRITON_INTERPRET is not 1")
    return "cpu"
