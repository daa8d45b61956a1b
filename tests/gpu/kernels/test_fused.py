"""Fused elementwise ops (RMSNorm, add + RMSNorm, RoPE + KV write, SiLU * mul): the references
against the model's current formulas, and the Triton kernels against the references."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import gpu.kernels as K  # noqa: E402
from gpu.kernels import reference  # noqa: E402
from gpu.model import LlamaModel  # noqa: E402
from sim.config import MODEL_PRESETS  # noqa: E402

TOL = {torch.float32: 1e-5, torch.bfloat16: 1.6e-2}


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    tol = TOL[b.dtype]
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


@pytest.fixture(scope="module")
def tiny() -> LlamaModel:
    return LlamaModel(MODEL_PRESETS["tiny"], device="cpu", dtype=torch.float32)


def _qkv_case(t, heads, kv_heads, d, page_size, dtype, device, seed=0):
    """Random qkv/pos, cos/sin tables, caches as one layer of a [2, ...] tensor (strided), and
    slots on shuffled pages; the last 2 tokens of a batch of >= 3 are padding at the scratch
    slot (offset 0 of the last page). -> (qkv, pos, cos, sin, k_cache, v_cache, slot)."""
    g = torch.Generator().manual_seed(seed)
    n_pages = -(-t // page_size) + 3
    perm = torch.randperm(n_pages - 1, generator=g)
    slot = perm[torch.arange(t) // page_size] * page_size + torch.arange(t) % page_size
    if t >= 3:
        slot[-2:] = (n_pages - 1) * page_size
    max_pos = 64
    freqs = torch.outer(torch.arange(max_pos).float(), 1.0 / 1e4 ** (torch.arange(0, d, 2) / d))
    qkv = torch.randn(t, (heads + 2 * kv_heads) * d, generator=g)
    pos = torch.randint(0, max_pos, (t,), generator=g)
    caches = torch.randn(2, 2, n_pages, page_size, kv_heads, d, generator=g)
    return (
        qkv.to(device, dtype),
        pos.to(device),
        freqs.cos().to(device, dtype),
        freqs.sin().to(device, dtype),
        caches[0, 1].to(device, dtype),
        caches[1, 0].to(device, dtype),
        slot.to(device),
    )


# ---- references against the model's formulas ------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reference_norms_are_the_models_rms(dtype):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(5, 96, generator=g) * 3).to(dtype)
    delta = torch.randn(5, 96, generator=g).to(dtype)
    w = torch.rand(96, generator=g).to(dtype)
    assert torch.equal(reference.rms_norm(x, w), LlamaModel._rms(x, w))
    res = x.clone()
    out = reference.fused_add_rms_norm(delta, res, w, 1e-6)
    assert torch.equal(res, x + delta)
    assert torch.equal(out, LlamaModel._rms(x + delta, w, 1e-6))


def test_reference_rope_write_kv_is_the_models_rope(tiny):
    s = tiny.shape
    nh, kvh, hd = s.heads, s.kv_heads, s.head_dim
    g = torch.Generator().manual_seed(2)
    t, ps = 6, 4
    qkv = torch.randn(t, (nh + 2 * kvh) * hd, generator=g)
    pos = torch.tensor([0, 1, 7, 300, 8191, 5])
    slot = torch.tensor([9, 10, 11, 0, 3, 3])  # the last two share a scratch slot
    k_cache, v_cache = torch.zeros(2, 3, ps, kvh, hd).unbind(0)
    q = reference.rope_write_kv(qkv, pos, tiny.cos, tiny.sin, k_cache, v_cache, slot, nh, kvh, hd)
    q0, k0, v0 = qkv.split([nh * hd, kvh * hd, kvh * hd], dim=-1)
    assert torch.equal(q, tiny._rope(q0.reshape(t, nh, hd), pos))
    k_want, v_want = torch.zeros(2, 3, ps, kvh, hd).unbind(0)
    reference.write_kv(
        tiny._rope(k0.reshape(t, kvh, hd), pos), v0.reshape(t, kvh, hd), k_want, v_want, slot
    )
    assert torch.equal(k_cache, k_want) and torch.equal(v_cache, v_want)
    assert torch.equal(v_cache[2, 3], v0[2].reshape(kvh, hd))  # slot 11 = page 2, offset 3


def test_reference_silu_and_mul():
    gu = torch.randn(3, 2 * 40)
    gate, up = gu.chunk(2, dim=-1)
    torch.testing.assert_close(reference.silu_and_mul(gu), torch.nn.functional.silu(gate) * up)


# ---- Triton kernels against the references ---------------------------------------------------

DTYPES = [torch.float32, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t,hidden", [(1, 128), (4, 96), (37, 64)])
def test_rms_norm(triton_device, dtype, t, hidden):
    from gpu.kernels.norm import rms_norm

    g = torch.Generator().manual_seed(t)
    x = (torch.randn(t, hidden + 8, generator=g) * 2).to(triton_device, dtype)[:, :hidden]
    w = torch.rand(hidden, generator=g).to(triton_device, dtype)
    out = rms_norm(x, w)  # rows with a padded stride
    assert out.dtype == dtype and out.shape == (t, hidden)
    _close(out, reference.rms_norm(x, w))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t,hidden", [(1, 128), (37, 96)])
def test_fused_add_rms_norm(triton_device, dtype, t, hidden):
    from gpu.kernels.norm import fused_add_rms_norm

    g = torch.Generator().manual_seed(t)
    x = torch.randn(t, hidden, generator=g).to(triton_device, dtype)
    res = (torch.randn(t, hidden, generator=g) * 4).to(triton_device, dtype)
    w = torch.rand(hidden, generator=g).to(triton_device, dtype)
    res_want = res.clone()
    want = reference.fused_add_rms_norm(x, res_want, w, 1e-6)
    x0 = x.clone()
    out = fused_add_rms_norm(x, res, w, 1e-6)
    assert torch.equal(x, x0)
    if dtype == torch.float32 or res.is_cuda:
        assert torch.equal(res, res_want)  # rounded (RTNE) as add_ rounds
    else:
        _close(res, res_want)  # the interpreter truncates fp32 -> bf16: 1 ulp apart
    _close(out, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t,inter", [(1, 96), (5, 300)])  # 300: two column blocks, masked
def test_silu_and_mul(triton_device, dtype, t, inter):
    from gpu.kernels.activation import silu_and_mul

    gu = (torch.randn(t, 2 * inter) * 3).to(triton_device, dtype)
    out = silu_and_mul(gu)
    assert out.shape == (t, inter) and out.dtype == dtype
    _close(out, reference.silu_and_mul(gu))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "t,heads,kv_heads,d",
    [(1, 4, 1, 16), (5, 4, 2, 16), (37, 8, 2, 24), (6, 3, 3, 8)],  # d 24: masked half-dim
)
def test_rope_write_kv(triton_device, dtype, t, heads, kv_heads, d):
    from gpu.kernels.rope_kv import rope_write_kv

    qkv, pos, cos, sin, k_cache, v_cache, slot = _qkv_case(
        t, heads, kv_heads, d, 4, dtype, triton_device, seed=t
    )
    k_want, v_want = k_cache.clone(), v_cache.clone()
    want = reference.rope_write_kv(qkv, pos, cos, sin, k_want, v_want, slot, heads, kv_heads, d)
    q = rope_write_kv(qkv, pos, cos, sin, k_cache, v_cache, slot, heads, kv_heads, d)
    assert q.shape == (t, heads, d) and q.is_contiguous() and q.dtype == dtype
    _close(q, want)
    real = slice(0, -1) if t >= 3 else slice(None)  # the scratch page's content is unspecified
    _close(k_cache[real], k_want[real])
    assert torch.equal(v_cache[real], v_want[real])  # v is copied, every other slot untouched


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_extra_addend_is_the_rounded_sum_first(triton_device, dtype):
    """Each consumer of a projection takes the side stream's LoRA delta as `extra`: the
    result is the op applied to `y + extra` (rounded to the dtype, as torch adds), so the
    step can skip that add's launch."""
    from gpu.kernels.activation import silu_and_mul
    from gpu.kernels.norm import fused_add_rms_norm
    from gpu.kernels.rope_kv import rope_write_kv

    g = torch.Generator().manual_seed(3)
    # the interpreter truncates the rounded sum where a GPU rounds to nearest: in bf16 a
    # value can land an ulp or two away before silu * up multiplies it
    loose = dtype == torch.bfloat16 and triton_device == "cpu"

    def close(a, b):
        if loose:
            torch.testing.assert_close(a, b, atol=0.05, rtol=0.05)
        else:
            _close(a, b)

    def rand(*shape, s=1.0):
        return (torch.randn(*shape, generator=g) * s).to(triton_device, dtype)

    gu, e = rand(5, 600, s=3), rand(5, 600)
    close(silu_and_mul(gu, e), reference.silu_and_mul(gu + e))
    x, e, res, w = rand(4, 96), rand(4, 96), rand(4, 96, s=4), rand(96).abs()
    r1, r2 = res.clone(), res.clone()
    out = fused_add_rms_norm(x, r1, w, 1e-6, e)
    want = reference.fused_add_rms_norm(x + e, r2, w, 1e-6)
    close(r1, r2)
    close(out, want)
    heads, kv_heads, d = 4, 2, 16
    qkv, pos, cos, sin, k_cache, v_cache, slot = _qkv_case(6, heads, kv_heads, d, 4, dtype, triton_device, seed=6)
    e = rand(*qkv.shape)
    k_want, v_want = k_cache.clone(), v_cache.clone()
    want = reference.rope_write_kv(qkv + e, pos, cos, sin, k_want, v_want, slot, heads, kv_heads, d)
    q = rope_write_kv(qkv, pos, cos, sin, k_cache, v_cache, slot, heads, kv_heads, d, e)
    close(q, want)
    close(k_cache[:-1], k_want[:-1])  # the scratch page's content is unspecified
    close(v_cache[:-1], v_want[:-1])
    # the references take the same argument, with the same meaning
    torch.testing.assert_close(reference.silu_and_mul(gu, gu), reference.silu_and_mul(gu + gu))
    r3, r4 = res.clone(), res.clone()
    torch.testing.assert_close(
        reference.fused_add_rms_norm(x, r3, w, 1e-6, x), reference.fused_add_rms_norm(x + x, r4, w, 1e-6)
    )
    assert torch.equal(r3, r4)


def test_dispatch_and_empty_batches(triton_device):
    """The public ops route here (Triton on this device) and accept zero tokens."""
    qkv, pos, cos, sin, k_cache, v_cache, slot = _qkv_case(
        3, 4, 2, 8, 4, torch.float32, triton_device
    )
    k0 = k_cache.clone()
    q = K.rope_write_kv(qkv[:0], pos[:0], cos, sin, k_cache, v_cache, slot[:0], 4, 2, 8)
    assert q.shape == (0, 4, 8) and torch.equal(k_cache, k0)
    w = torch.ones(8, device=triton_device)
    assert K.rms_norm(torch.zeros(0, 8, device=triton_device), w).shape == (0, 8)
    assert K.silu_and_mul(torch.zeros(0, 16, device=triton_device)).shape == (0, 8)
    x = torch.randn(2, 3, 8, device=triton_device)  # [..., hidden] inputs keep their shape
    res = torch.randn(2, 3, 8, device=triton_device)
    res_want = res.clone()
    want = reference.fused_add_rms_norm(x, res_want, w)
    _close(K.fused_add_rms_norm(x, res, w), want)
    _close(res, res_want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Llama-8B shapes: CUDA only")
def test_llama_8b_shapes_bf16_cuda():
    """hidden 4096, 32/8 heads of 128, intermediate 14336, a prefill-sized batch."""
    from gpu.kernels import activation, norm, rope_kv

    t, bf = 300, torch.bfloat16
    x = torch.randn(t, 4096, device="cuda", dtype=bf)
    res = torch.randn(t, 4096, device="cuda", dtype=bf)
    w = torch.rand(4096, device="cuda", dtype=bf)
    _close(norm.rms_norm(x, w), LlamaModel._rms(x, w))
    res_want = res.clone()
    want = reference.fused_add_rms_norm(x, res_want, w)
    _close(norm.fused_add_rms_norm(x, res, w), want)
    assert torch.equal(res, res_want)
    gu = torch.randn(t, 2 * 14336, device="cuda", dtype=bf)
    _close(activation.silu_and_mul(gu), reference.silu_and_mul(gu))
    qkv, pos, cos, sin, k_cache, v_cache, slot = _qkv_case(t, 32, 8, 128, 16, bf, "cuda")
    k_want, v_want = k_cache.clone(), v_cache.clone()
    want = reference.rope_write_kv(qkv, pos, cos, sin, k_want, v_want, slot, 32, 8, 128)
    _close(rope_kv.rope_write_kv(qkv, pos, cos, sin, k_cache, v_cache, slot, 32, 8, 128), want)
    _close(k_cache[:-1], k_want[:-1])
    assert torch.equal(v_cache[:-1], v_want[:-1])


def test_an_extra_addend_of_the_wrong_shape_or_dtype_is_refused_naming_the_input():
    from gpu.kernels.extra import check_extra

    x = torch.zeros(4, 8, dtype=torch.float32)
    check_extra(None, x, "x")
    check_extra(torch.zeros(4, 8), x, "x", unit_stride=True)
    with pytest.raises(ValueError, match="extra must have x's shape and dtype$"):
        check_extra(torch.zeros(4, 9), x, "x")
    with pytest.raises(ValueError, match="extra must have gu's shape and dtype$"):
        check_extra(torch.zeros(4, 8, dtype=torch.float64), x, "gu")
    with pytest.raises(ValueError, match="and a unit column stride"):
        check_extra(torch.zeros(8, 4).t(), x, "qkv", unit_stride=True)

