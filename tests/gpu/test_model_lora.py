"""Batched LoRA (SGMV over fused projections) equals the per-request PEFT reference; paged
attention equals dense masked attention; chunked prefill and KV-cached decode equal one full
forward; packed items equal solo runs."""

import sys

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from gpu.adapters import flat_layout, peft_key, read_peft_adapter, to_flat, write_peft_adapter  # noqa: E402
from gpu.kernels import FUSED, backend  # noqa: E402
from gpu.kv_cache import PagedKV  # noqa: E402
from gpu.lora import LoraSlots, reference_lora  # noqa: E402
from gpu.model import LlamaModel, StepInput  # noqa: E402
from sim.config import MODEL_PRESETS  # noqa: E402
from sim.core.model import ALL_TARGETS  # noqa: E402

TINY = MODEL_PRESETS["tiny"]


@pytest.fixture(autouse=True)
def _reference_kernels(monkeypatch):
    """CPU ops run the plain-torch references: tests/gpu/kernels' conftest sets
    TRITON_INTERPRET=1 for the whole session, which would interpret every op here."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def _fill(slots: LoraSlots, slot: int, path, poison: bool = False) -> object:
    """Load a PEFT adapter into a slot the slow, obvious way (per module), as the driver
    records it (scaling, rank). `poison`: NaN in the slot's rows past the adapter's rank, so
    any read of them shows."""
    ad = read_peft_adapter(path)
    slots.pool[slot].zero_()
    segs, _ = flat_layout(TINY, ad.rank, ad.targets)
    flat = to_flat(ad, TINY, torch.float32)
    for s in segs:
        slots.A(s.layer, s.module)[slot, : s.rank].copy_(flat[s.a_off : s.b_off].view(s.rank, s.d_in))
        slots.Bt(s.layer, s.module)[slot, : s.rank].copy_(
            flat[s.b_off : s.b_off + s.rank * s.d_out].view(s.rank, s.d_out)
        )
    if poison:
        for layer, module in slots.layout:
            slots.A(layer, module)[slot, ad.rank :] = float("nan")
            slots.Bt(layer, module)[slot, ad.rank :] = float("nan")
    slots.scaling[slot], slots.ranks[slot] = ad.scaling, ad.rank
    return ad


def _model(lora=None):
    return LlamaModel(TINY, device="cpu", dtype=torch.float32, seed=0, lora=lora)


def _kv(rows=4, max_ctx=32, page_size=4):
    return PagedKV(TINY, rows, max_ctx, "cpu", torch.float32, page_size=page_size)


def test_batched_lora_equals_per_request_reference(tmp_path):
    """Mixed ranks (below the slots' max rank, its padding NaN) and targets, base tokens in
    between, every fused projection: each token gets exactly its adapter's PEFT delta."""
    slots = LoraSlots(TINY, 4, 8, ALL_TARGETS, "cpu", torch.float32)
    specs = [(8, ALL_TARGETS), (4, ("q_proj", "v_proj")), (2, ALL_TARGETS)]
    ads = {}
    for i, (r, tg) in enumerate(specs):
        p = write_peft_adapter(tmp_path / f"a{i}", TINY, r, tg, seed=i, alpha=16)
        ads[i] = _fill(slots, i, p, poison=True)
    assert slots.ranks == [8, 4, 2, 8]
    # tokens of 5 requests: slots 0, 2, base, 1, 0 with different lengths (packed)
    lens, tok_slot_of_req = [3, 1, 2, 4, 2], [0, 2, -1, 1, 0]
    tok_slots = [s for n, s in zip(lens, tok_slot_of_req, strict=True) for _ in range(n)]
    meta = slots.meta(tok_slots)
    assert meta is not None and meta.num_segments == 3  # one segment per adapter
    segs = {slot: (rows, rank, scale) for rows, slot, rank, scale in meta.segments()}
    assert segs[0][0] == [0, 1, 2, 10, 11] and segs[1][1] == 4 and segs[2][1] == 2
    assert segs[1][2] == pytest.approx(ads[1].scaling)
    g = torch.Generator().manual_seed(0)
    layer = 1
    for fused, modules in FUSED.items():
        d_in = TINY.proj_dims(modules[0])[0]
        widths = [TINY.proj_dims(m)[1] for m in modules]
        x = torch.randn(len(tok_slots), d_in, generator=g)
        y = torch.randn(len(tok_slots), sum(widths), generator=g)
        got = y.clone()
        assert slots.apply(got, x, layer, fused, meta) is got  # in place
        want = y.clone()
        for t, s in enumerate(tok_slots):
            col = 0
            for m, w in zip(modules, widths, strict=True):
                if s >= 0 and m in ads[s].targets:
                    a = ads[s].tensors[peft_key(layer, m, "A")]
                    b = ads[s].tensors[peft_key(layer, m, "B")]
                    want[t, col : col + w] += reference_lora(x[t : t + 1], a, b, ads[s].scaling)[0]
                col += w
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=fused)
        base = lens[0] + lens[1]
        assert torch.equal(got[base : base + 2], y[base : base + 2])  # base tokens untouched


def test_no_adapter_tokens_means_no_lora_meta():
    slots = LoraSlots(TINY, 2, 4, ALL_TARGETS, "cpu", torch.float32)
    assert slots.meta([-1, -1]) is None
    fixed = slots.meta([-1, -1], max_tokens=4, max_segments=2, max_len=4)  # a graph's table
    assert fixed is not None and fixed.num_segments == 0 and fixed.max_tokens == 4
    y = torch.randn(2, 2 * TINY.intermediate)
    assert torch.equal(slots.apply(y.clone(), torch.randn(2, TINY.hidden), 0, "gate_up", fixed), y)


def test_slots_without_a_module_leave_its_columns_alone():
    slots = LoraSlots(TINY, 1, 4, ("q_proj", "v_proj"), "cpu", torch.float32)
    slots.pool.normal_(0, 0.1)
    slots.scaling = [1.0]
    meta = slots.meta([0, 0])
    x = torch.randn(2, TINY.hidden)
    y = torch.zeros(2, 2 * TINY.intermediate)
    assert torch.equal(slots.apply(y.clone(), x, 0, "gate_up", meta), y)  # no gate/up buffers
    q, k = TINY.proj_dims("q_proj")[1], TINY.proj_dims("k_proj")[1]
    out = slots.apply(torch.zeros(2, q + 2 * k), x, 0, "qkv", meta)
    assert out[:, q : q + k].abs().max() == 0  # k columns: no k_proj slot buffer
    assert out[:, :q].abs().max() > 0 and out[:, q + k :].abs().max() > 0


def test_prefill_then_decode_matches_full_forward():
    """Chunked prefill (6 then 2 tokens) and a decode step over a paged row whose pages are
    out of order equal one forward of the whole sequence."""
    m = _model()
    kv = _kv()
    seq = torch.randint(0, TINY.vocab, (9,))
    full = m.forward(StepInput(seq, [kv.row(0, 9)], [0], [9]), kv)
    kv.row(1, 4)
    kv.release(0)  # row 2 gets a mix of released and fresh pages
    r = kv.row(2, 16)
    assert kv.block_table[r].tolist() != sorted(kv.block_table[r].tolist())
    m.forward(StepInput(seq[:6], [r], [0], [6]), kv)
    m.forward(StepInput(seq[6:8], [r], [6], [2]), kv)
    step = m.forward(StepInput(seq[8:], [r], [8], [1]), kv)
    torch.testing.assert_close(step, full, rtol=1e-4, atol=1e-4)


def test_batched_variable_length_equals_single():
    m = _model()
    kv = _kv()
    a, b = torch.randint(0, TINY.vocab, (7,)), torch.randint(0, TINY.vocab, (3,))
    ra, rb = kv.row(0, 8), kv.row(1, 4)
    both = m.forward(StepInput(torch.cat([a, b]), [ra, rb], [0, 0], [7, 3]), kv)
    dec = m.forward(StepInput(torch.tensor([5, 6]), [ra, rb], [7, 3], [1, 1]), kv)
    kv2 = _kv()
    solo_b = m.forward(StepInput(b, [kv2.row(0, 3)], [0], [3]), kv2)
    solo_b4 = m.forward(StepInput(torch.cat([b, torch.tensor([6])]), [kv2.row(1, 4)], [0], [4]), kv2)
    torch.testing.assert_close(both[1], solo_b[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dec[1], solo_b4[0], rtol=1e-4, atol=1e-4)


def test_lora_changes_only_its_requests(tmp_path):
    slots = LoraSlots(TINY, 2, 4, ALL_TARGETS, "cpu", torch.float32)
    _fill(slots, 0, write_peft_adapter(tmp_path / "a", TINY, 4, seed=1))
    m = _model(slots)
    kv = _kv()
    seq = torch.randint(0, TINY.vocab, (5,))
    two = torch.cat([seq, seq])
    rows = [kv.row(0, 5), kv.row(1, 5)]
    out = m.forward(StepInput(two, rows, [0, 0], [5, 5], slots.meta([0] * 5 + [-1] * 5)), kv)
    base = m.forward(StepInput(seq, [kv.row(2, 5)], [0], [5]), kv)
    torch.testing.assert_close(out[1], base[0], rtol=1e-4, atol=1e-4)
    assert (out[0] - base[0]).abs().max() > 1e-3


def _dense_attention(q, k_items, v_items, ctx, new, scale):
    """Masked GQA attention with torch's SDPA: per item, queries at positions ctx..ctx+new-1
    see keys 0..their position (k_items[b] [ctx + new, kv_heads, hd])."""
    b_n, lq, lk = len(new), max(new), max(c + n for c, n in zip(ctx, new, strict=True))
    heads, hd = q.shape[1], q.shape[2]
    group = heads // k_items[0].shape[1]
    qd = torch.zeros(b_n, heads, lq, hd)
    kd = torch.zeros(b_n, heads, lk, hd)
    vd = torch.zeros(b_n, heads, lk, hd)
    mask = torch.zeros(b_n, 1, lq, lk, dtype=torch.bool)
    start = 0
    for b, (c, n) in enumerate(zip(ctx, new, strict=True)):
        qd[b, :, :n] = q[start : start + n].transpose(0, 1)
        kd[b, :, : c + n] = k_items[b].repeat_interleave(group, dim=1).transpose(0, 1)
        vd[b, :, : c + n] = v_items[b].repeat_interleave(group, dim=1).transpose(0, 1)
        for i in range(lq):
            mask[b, 0, i, : c + i + 1 if i < n else 1] = True  # padding queries: key 0
        start += n
    out = F.scaled_dot_product_attention(qd, kd, vd, attn_mask=mask, scale=scale)
    return torch.cat([out[b, :, :n].transpose(0, 1) for b, n in enumerate(new)])


@pytest.mark.parametrize("new", [[3, 1, 5], [1, 1, 1]], ids=["prefill", "decode"])
def test_paged_attention_equals_dense_masked_sdpa(new):
    """LlamaModel.attend over paged K/V (pages out of order, chunks continuing a context)
    equals SDPA over the same keys laid out densely, GQA heads expanded, causal mask."""
    m = _model()
    kv = _kv(rows=4, max_ctx=32, page_size=4)
    ctx = [6, 0, 9]
    kv.row(90, 12)
    rows = [kv.row(0, ctx[0] + new[0])]
    kv.release(90)  # the next rows get released pages first: out of order
    rows += [kv.row(i, c + n) for i, c, n in zip((1, 2), ctx[1:], new[1:], strict=True)]
    pages = [p for r in rows for p in kv.block_table[r].tolist() if p != kv.scratch_page]
    assert pages != sorted(pages)
    g = torch.Generator().manual_seed(0)
    kvh, hd, li = TINY.kv_heads, TINY.head_dim, 1
    k_items, v_items = [], []
    for r, c, n in zip(rows, ctx, new, strict=True):  # keys of every position, written plainly
        k = torch.randn(c + n, kvh, hd, generator=g)
        v = torch.randn(c + n, kvh, hd, generator=g)
        for p in range(c + n):
            page = kv.block_table[r, p // kv.page_size]
            kv.k[li][page, p % kv.page_size] = k[p]
            kv.v[li][page, p % kv.page_size] = v[p]
        k_items.append(k)
        v_items.append(v)
    inp = StepInput(torch.zeros(sum(new), dtype=torch.long), rows, ctx, new)
    am = m.attn_meta(inp, kv)
    assert am.decode == (max(new) == 1)
    q = torch.randn(sum(new), TINY.heads, hd, generator=g)
    got = m.attend(li, q, kv, am).view(-1, TINY.heads, hd)
    want = _dense_attention(q, k_items, v_items, ctx, new, m.scale)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_random_slots_fill_every_slot_at_scaling_one():
    """LoraSlots.random: what calibration, benchmarks and diagnostics time LoRA with."""
    s = LoraSlots.random(TINY, 3, 4, "cpu", torch.float32)
    assert s.scaling == [1.0, 1.0, 1.0] and s.ranks == [4, 4, 4]
    assert set(s.targets) == set(ALL_TARGETS)
    assert all(s.pool[i].abs().sum() > 0 for i in range(3))


def _interpreted(mod) -> bool:
    """No kernel of module `mod` was decorated without the interpreter (@triton.jit reads
    TRITON_INTERPRET when it decorates, i.e. at import)."""
    return not any(type(v).__name__ == "JITFunction" for v in vars(mod).values())


@pytest.fixture
def triton_interpreter(monkeypatch):
    """Ops on CPU tensors run Triton's interpreter. Skipped with CUDA (the model runs the
    Triton kernels there in every test), without triton, or where triton or gpu.kernels'
    Triton modules were imported before TRITON_INTERPRET=1 was set."""
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the model tests run the Triton kernels there")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    if "triton" in sys.modules:
        import triton.language.standard as tl_std

        mods = [tl_std] + [m for n, m in list(sys.modules.items()) if n.startswith("gpu.kernels.") and m]
        if not all(_interpreted(m) for m in mods):
            pytest.skip("triton was imported without TRITON_INTERPRET=1")
    pytest.importorskip("triton")
    return monkeypatch


def test_the_triton_kernels_compute_what_the_references_do(tmp_path, triton_interpreter):
    """One chunked prefill (mixed adapters and base tokens, a continued context) and one
    decode step through the Triton kernels (interpreted on CPU) equal the reference ops."""
    slots = LoraSlots(TINY, 2, 8, ALL_TARGETS, "cpu", torch.float32)
    _fill(slots, 0, write_peft_adapter(tmp_path / "a", TINY, 8, seed=1))
    _fill(slots, 1, write_peft_adapter(tmp_path / "b", TINY, 4, ("q_proj", "v_proj"), seed=2))
    m = _model(slots)
    toks = torch.randint(0, TINY.vocab, (12,))
    outs = []
    for kernels in ("torch", "triton"):
        triton_interpreter.setenv("LORASIM_KERNELS", kernels)
        assert backend(toks) == kernels
        kv = _kv(rows=3, max_ctx=16, page_size=4)
        rows = [kv.row(i, 12) for i in range(3)]
        m.forward(StepInput(toks[:5], rows[:1], [0], [5], slots.meta([0] * 5)), kv)
        tok_slots = [0] * 3 + [-1] * 2 + [1] * 2
        pre = m.forward(StepInput(toks[5:12], rows, [5, 0, 0], [3, 2, 2], slots.meta(tok_slots)), kv)
        dec = m.forward(StepInput(toks[:3], rows, [8, 2, 2], [1, 1, 1], slots.meta([0, -1, 1])), kv)
        outs.append((pre, dec, kv.k[1].clone(), kv.v[1].clone()))
    for ref, tri in zip(*outs, strict=True):
        torch.testing.assert_close(tri, ref, rtol=1e-4, atol=1e-4)


def test_a_bad_lora_side_part_is_a_one_line_error(tmp_path, monkeypatch):
    """The side-stream part comes from the config table or its JSON override: a value it
    does not know is named in one line, never a traceback."""
    bad = tmp_path / "cfg.json"
    bad.write_text('{"lora_side": {"part": "sideways"}}')
    monkeypatch.setenv("LORASIM_KERNEL_CONFIGS", str(bad))
    with pytest.raises(SystemExit, match="lora_side part must be one of none, shrink, lora, got 'sideways'"):
        LoraSlots(TINY, 1, 4, ALL_TARGETS, "cpu", torch.float32)
    monkeypatch.delenv("LORASIM_KERNEL_CONFIGS")
    assert LoraSlots(TINY, 1, 4, ALL_TARGETS, "cpu", torch.float32).side == "none"  # CPU: in line


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="side streams need a GPU")
@pytest.mark.parametrize("part", ["none", "shrink", "lora"])
def test_every_side_stream_part_projects_what_apply_does(part):
    """`project` with the shrink, the whole LoRA or nothing on the side stream equals the
    base matmul plus `apply` in line, at decode size (the delta path) and above
    `side_max_rows` (the delta path falls back to the expand in place)."""
    slots = LoraSlots.random(TINY, 3, 8, "cuda", torch.float32)
    slots.side = part
    g = torch.Generator(device="cuda").manual_seed(0)
    for tokens in (5, slots.side_max_rows + 3):
        tok_slots = [t % 4 - 1 for t in range(tokens)]  # base tokens between three adapters
        meta = slots.meta(tok_slots)
        for fused, modules in FUSED.items():
            d_in = TINY.proj_dims(modules[0])[0]
            d_out = sum(TINY.proj_dims(m)[1] for m in modules)
            x = torch.randn(tokens, d_in, device="cuda", generator=g)
            w = torch.randn(d_out, d_in, device="cuda", generator=g)
            want = slots.apply(x @ w.t(), x, 0, fused, meta)
            got = slots.project(x, w, 0, fused, meta)
            torch.cuda.synchronize()
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=f"{part} {fused} {tokens}")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="side streams need a GPU")
@pytest.mark.parametrize("part", ["shrink", "lora"])
def test_a_forward_with_each_side_part_equals_one_all_in_line(part):
    """A prefill and a decode step through the model with the LoRA's side part `part` (for
    "lora", its deltas added by RoPE, the norms and SiLU*mul) give the logits and cache of
    the same forwards with everything in line."""
    slots = LoraSlots.random(TINY, 2, 8, "cuda", torch.float32)
    m = LlamaModel(TINY, device="cuda", dtype=torch.float32, seed=0, lora=slots)
    toks = torch.randint(0, TINY.vocab, (9,), device="cuda")
    outs = []
    for side in ("none", part):
        slots.side = side
        kv = PagedKV(TINY, 3, 16, "cuda", torch.float32, page_size=4)
        rows = [kv.row(i, 12) for i in range(3)]
        pre = m.forward(StepInput(toks, rows, [0, 0, 0], [4, 3, 2], slots.meta([0] * 4 + [-1] * 3 + [1] * 2)), kv)
        dec = m.forward(StepInput(toks[:3], rows, [4, 3, 2], [1, 1, 1], slots.meta([0, -1, 1])), kv)
        torch.cuda.synchronize()
        outs.append((pre, dec, kv.k[1].clone(), kv.v[1].clone()))
    for ref, got in zip(*outs, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
