"""Paged decode and prefill attention (Triton) against the plain-torch references, and the
references against dense causal attention on a contiguous cache."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from gpu.kernels import reference  # noqa: E402
from tests.gpu.kernels.helpers import make_paged_kv  # noqa: E402

TOL = {torch.float32: 2e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}


def _dense_causal(q, k, v, ctx, scale):
    """Contiguous-cache attention of one item: q [n, H, D], k/v [ctx + n, kvh, D]."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, 1).transpose(0, 1).float()
    v = v.repeat_interleave(group, 1).transpose(0, 1).float()
    n, kv_len = q.shape[0], k.shape[1]
    mask = torch.arange(kv_len)[None, :] <= (ctx + torch.arange(n))[:, None]
    o = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(0, 1).float(), k, v, attn_mask=mask, scale=scale
    )
    return o.transpose(0, 1)


def _kv_of(cache, table, b, n):
    ps = cache.shape[1]
    pos = torch.arange(n)
    return cache[table[b, pos // ps].long(), pos % ps]


# ---- references (pure torch) ------------------------------------------------------------------


def test_reference_prefill_and_decode_match_dense_attention():
    torch.manual_seed(0)
    ctx, n, ps = [0, 5, 16, 33], [7, 1, 4, 16], 4
    k, v, table = make_paged_kv([c + m for c, m in zip(ctx, n, strict=True)], ps, 2, 8, "cpu", torch.float32)
    cu = torch.tensor([0, *torch.tensor(n).cumsum(0).tolist()], dtype=torch.int32)
    q = torch.randn(int(cu[-1]), 8, 8)
    out = reference.paged_prefill_attention(q, k, v, table, cu, torch.tensor(ctx, dtype=torch.int32), 0.3)
    for b in range(4):
        kb, vb = _kv_of(k, table, b, ctx[b] + n[b]), _kv_of(v, table, b, ctx[b] + n[b])
        want = _dense_causal(q[cu[b] : cu[b + 1]], kb, vb, ctx[b], 0.3)
        torch.testing.assert_close(out[cu[b] : cu[b + 1]], want, atol=1e-5, rtol=1e-5)
    # decode of the last query of each item == the prefill row of that query
    last = cu[1:] - 1
    lens = torch.tensor([c + m for c, m in zip(ctx, n, strict=True)], dtype=torch.int32)
    dec = reference.paged_decode_attention(q[last.long()], k, v, table, lens, 0.3)
    torch.testing.assert_close(dec, out[last.long()], atol=1e-5, rtol=1e-5)


def test_write_kv_places_tokens_in_their_pages():
    k_cache = torch.zeros(4, 4, 2, 8)
    v_cache = torch.zeros(4, 4, 2, 8)
    k, v = torch.randn(3, 2, 8), torch.randn(3, 2, 8)
    reference.write_kv(k, v, k_cache, v_cache, torch.tensor([2 * 4 + 3, 0, 1 * 4 + 1]))
    assert torch.equal(k_cache[2, 3], k[0]) and torch.equal(v_cache[1, 1], v[2])
    assert (k_cache != 0).sum() == (k != 0).sum()  # nothing else written


# ---- Triton kernels vs references -------------------------------------------------------------

# seq lens at page boundaries (page 16): 1, page, page+1, a padded entry (0), multi-page
DECODE_LENS = [1, 16, 17, 0, 70]


@pytest.mark.parametrize("group", [1, 4])
@pytest.mark.parametrize("splits", [1, 8])
def test_decode_matches_reference(triton_device, group, splits):
    from gpu.kernels.decode_attention import paged_decode_attention

    torch.manual_seed(group)
    kvh, d = 2, 32
    k, v, table = make_paged_kv(DECODE_LENS, 16, kvh, d, triton_device, torch.float32, seed=group)
    q = torch.randn(len(DECODE_LENS), kvh * group, d).to(triton_device)
    lens = torch.tensor(DECODE_LENS, dtype=torch.int32, device=triton_device)
    out = paged_decode_attention(q, k, v, table, lens, d**-0.5, num_splits=splits)
    want = reference.paged_decode_attention(q, k, v, table, lens, d**-0.5)
    assert torch.isfinite(out).all()
    assert torch.equal(out[3], torch.zeros_like(out[3]))  # seq_len 0: zeros, not NaN
    torch.testing.assert_close(out, want, atol=TOL[torch.float32], rtol=TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_decode_half_precision_small_pages(triton_device, dtype):
    """page_size 4 with BLOCK_N spanning several pages; GQA group 2."""
    from gpu.kernels.decode_attention import paged_decode_attention

    lens_l = [3, 4, 5, 33]
    k, v, table = make_paged_kv(lens_l, 4, 2, 16, triton_device, dtype, seed=3)
    q = torch.randn(4, 4, 16).to(triton_device, dtype)
    lens = torch.tensor(lens_l, dtype=torch.int32, device=triton_device)
    out = paged_decode_attention(q, k, v, table, lens, 0.25, num_splits=4)
    want = reference.paged_decode_attention(q, k, v, table, lens, 0.25)
    torch.testing.assert_close(out.float(), want.float(), atol=TOL[dtype], rtol=TOL[dtype])


def test_decode_bucket_of_128(triton_device):
    from gpu.kernels.decode_attention import paged_decode_attention

    lens_l = [(i * 5) % 19 for i in range(128)]  # includes 0-length padding entries
    k, v, table = make_paged_kv(lens_l, 16, 1, 16, triton_device, torch.float32, seed=4)
    q = torch.randn(128, 1, 16).to(triton_device)
    lens = torch.tensor(lens_l, dtype=torch.int32, device=triton_device)
    out = paged_decode_attention(q, k, v, table, lens, 0.25, num_splits=1)
    want = reference.paged_decode_attention(q, k, v, table, lens, 0.25)
    torch.testing.assert_close(out, want, atol=TOL[torch.float32], rtol=TOL[torch.float32])


# (ctx, chunk) per item: fresh prefill, single-token chunk, chunk crossing pages after a
# cached prefix, chunk of exactly one page, a 0-token item
PREFILL = [(0, 19), (16, 1), (5, 16), (17, 3), (9, 0)]


@pytest.mark.parametrize("group", [1, 4])
@pytest.mark.parametrize("page_size", [4, 16])
def test_prefill_matches_reference(triton_device, group, page_size):
    from gpu.kernels.prefill_attention import paged_prefill_attention

    kvh, d = 2, 32
    ctx = [c for c, _ in PREFILL]
    n = [m for _, m in PREFILL]
    k, v, table = make_paged_kv([c + m for c, m in PREFILL], page_size, kvh, d, triton_device,
                                torch.float32, seed=page_size + group)  # fmt: skip
    cu_l = [0]
    for m in n:
        cu_l.append(cu_l[-1] + m)
    q = torch.randn(cu_l[-1], kvh * group, d).to(triton_device)
    cu = torch.tensor(cu_l, dtype=torch.int32, device=triton_device)
    ctx_t = torch.tensor(ctx, dtype=torch.int32, device=triton_device)
    out = paged_prefill_attention(q, k, v, table, cu, ctx_t, d**-0.5)
    want = reference.paged_prefill_attention(q, k, v, table, cu, ctx_t, d**-0.5)
    torch.testing.assert_close(out, want, atol=TOL[torch.float32], rtol=TOL[torch.float32])


def test_prefill_bf16(triton_device):
    from gpu.kernels.prefill_attention import paged_prefill_attention

    k, v, table = make_paged_kv([21, 6], 8, 1, 16, triton_device, torch.bfloat16, seed=7)
    q = torch.randn(21, 2, 16).to(triton_device, torch.bfloat16)  # 20 + 1 new tokens
    cu = torch.tensor([0, 20, 21], dtype=torch.int32, device=triton_device)
    ctx = torch.tensor([1, 5], dtype=torch.int32, device=triton_device)
    out = paged_prefill_attention(q, k, v, table, cu, ctx, 0.25, max_q_len=20)
    want = reference.paged_prefill_attention(q, k, v, table, cu, ctx, 0.25)
    torch.testing.assert_close(out.float(), want.float(), atol=TOL[torch.bfloat16], rtol=TOL[torch.bfloat16])


# ---- realistic dims on a GPU (Llama-3.1-8B: 32 heads, 8 KV heads, head_dim 128, bf16) ---------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_decode_llama8b_batch64():
    from gpu.kernels.decode_attention import paged_decode_attention

    g = torch.Generator().manual_seed(0)
    lens_l = torch.randint(1, 2049, (64,), generator=g).tolist()
    lens_l[:4] = [1, 16, 17, 2048]
    lens_l[-1] = 0  # a padded entry
    k, v, table = make_paged_kv(lens_l, 16, 8, 128, "cuda", torch.bfloat16)
    q = torch.randn(64, 32, 128, device="cuda", dtype=torch.bfloat16)
    lens = torch.tensor(lens_l, dtype=torch.int32, device="cuda")
    out = paged_decode_attention(q, k, v, table, lens, 128**-0.5)
    want = reference.paged_decode_attention(q, k, v, table, lens, 128**-0.5)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), want.float(), atol=2e-2, rtol=2e-2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_prefill_llama8b_chunks():
    from gpu.kernels.prefill_attention import paged_prefill_attention

    items = [(0, 512), (100, 300), (1000, 64), (17, 1), (2048, 129)]
    k, v, table = make_paged_kv([c + m for c, m in items], 16, 8, 128, "cuda", torch.bfloat16)
    cu_l = [0]
    for _, m in items:
        cu_l.append(cu_l[-1] + m)
    q = torch.randn(cu_l[-1], 32, 128, device="cuda", dtype=torch.bfloat16)
    cu = torch.tensor(cu_l, dtype=torch.int32, device="cuda")
    ctx = torch.tensor([c for c, _ in items], dtype=torch.int32, device="cuda")
    out = paged_prefill_attention(q, k, v, table, cu, ctx, 128**-0.5)
    want = reference.paged_prefill_attention(q, k, v, table, cu, ctx, 128**-0.5)
    torch.testing.assert_close(out.float(), want.float(), atol=2e-2, rtol=2e-2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_decode_replays_in_a_cuda_graph_with_new_lengths():
    from gpu.kernels.decode_attention import paged_decode_attention

    k, v, table = make_paged_kv([300] * 16, 16, 8, 128, "cuda", torch.bfloat16)
    q = torch.randn(16, 32, 128, device="cuda", dtype=torch.bfloat16)
    lens = torch.full((16,), 300, dtype=torch.int32, device="cuda")
    paged_decode_attention(q, k, v, table, lens, 128**-0.5)  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = paged_decode_attention(q, k, v, table, lens, 128**-0.5)
    for new in ([1] * 16, [0] * 8 + [300] * 8, list(range(1, 300, 19))[:16]):
        lens.copy_(torch.tensor(new, dtype=torch.int32))
        graph.replay()
        want = reference.paged_decode_attention(q, k, v, table, lens, 128**-0.5)
        torch.testing.assert_close(out.float(), want.float(), atol=2e-2, rtol=2e-2)
