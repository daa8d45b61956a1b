"""SGMV shrink/expand (Triton) against the plain-torch reference, and the reference against
the PEFT formula through LoraSlots' own views."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from gpu.kernels import LoraMeta, LoraSlices, reference  # noqa: E402
from tests.gpu.kernels.helpers import (  # noqa: E402
    LLAMA_8B_1L,
    SMALL,
    make_slots,
    shrink_sum,
    tok_slots_of,
)

RANKS = [8, 16, 64, 64]  # mixed ranks in a max-rank-64 pool
SCALES = [0.5, 2.0, 1.0, 0.25]


def _inputs(slots, tok, fused, layer, device, dtype, *, by_adapter=True, max_segments=None, seed=1):
    """(meta, slices, x, y0) of one fused projection over a packed batch."""
    n = slots.n_slots
    ranks = RANKS[:n] if n <= len(RANKS) else [slots.max_rank] * n
    scales = SCALES[:n] if n <= len(SCALES) else [1.0] * n
    meta = LoraMeta.build(tok, ranks, scales, device, by_adapter=by_adapter, max_segments=max_segments)
    sl = LoraSlices.of(slots, layer, fused)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(tok), sl.in_dim, generator=g).to(device, dtype)
    y0 = torch.randn(len(tok), sl.out_offsets[-1] + sl.widths[-1], generator=g).to(device, dtype)
    return meta, sl, x, y0


def _ref(slots, meta, sl, x, y0):
    r = slots.max_rank
    hr = reference.lora_shrink(x, slots.pool, sl.a_offsets, r, meta)
    yr = reference.lora_expand(hr, slots.pool, sl.bt_offsets, sl.widths, y0.clone(), meta, r, sl.out_offsets)
    return hr, yr


def _run(slots, tok, fused, layer, device, dtype, **kw):
    """(kernel h summed over its split-K partials, reference h, kernel y, reference y) for one
    fused projection."""
    from gpu.kernels.lora_expand_op import lora_expand
    from gpu.kernels.lora_shrink_op import lora_shrink

    meta, sl, x, y0 = _inputs(slots, tok, fused, layer, device, dtype, **kw)
    r = slots.max_rank
    hk = lora_shrink(x, slots.pool, sl.a_offsets, r, meta)
    yk = lora_expand(hk, slots.pool, sl.bt_offsets, sl.widths, y0.clone(), meta, r, sl.out_offsets)
    hr, yr = _ref(slots, meta, sl, x, y0)
    return shrink_sum(hk, x, meta, r), hr[0], yk, yr


def _close(a, b, dtype):
    tol = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(a.float(), b.float(), atol=tol, rtol=tol)


# ---- reference vs the PEFT formula (pure torch, no Triton) -----------------------------------


def test_reference_matches_peft_formula_through_slot_views():
    slots = make_slots(SMALL, RANKS, 64, "cpu", torch.float32)
    tok = tok_slots_of([(2, 3), (-1, 2), (0, 1), (1, 4), (2, 2), (3, 1)])
    meta, sl, x, y0 = _inputs(slots, tok, "qkv", 1, "cpu", torch.float32)
    hr, yr = _ref(slots, meta, sl, x, y0)
    assert torch.isfinite(hr).all() and torch.isfinite(yr).all()
    want = y0.clone()
    for t, s in enumerate(tok):
        if s < 0:
            continue
        r = RANKS[s]
        for m, o, w in zip(("q_proj", "k_proj", "v_proj"), sl.out_offsets, sl.widths, strict=True):
            a, bt = slots.A(1, m)[s, :r], slots.Bt(1, m)[s, :r]
            want[t, o : o + w] += SCALES[s] * (x[t] @ a.t()) @ bt
    torch.testing.assert_close(yr, want, atol=1e-5, rtol=1e-5)
    assert torch.equal(yr[3:5], y0[3:5])  # base-model tokens untouched


def test_meta_groups_by_adapter_skips_base_tokens_and_pads():
    tok = [1, 1, -1, 0, 1, -1, 3]
    m = LoraMeta.build(tok, [8, 16, 64, 32], [1.0, 2.0, 3.0, 4.0], max_segments=6, max_tokens=10)
    assert m.segments() == [([3], 0, 8, 1.0), ([0, 1, 4], 1, 16, 2.0), ([6], 3, 32, 4.0)]
    assert m.seg_len.tolist()[3:] == [0, 0, 0] and m.seg_slot.tolist()[3:] == [-1, -1, -1]
    assert (m.max_len, m.num_tokens, m.max_tokens, m.max_segments) == (3, 7, 10, 6)
    runs = LoraMeta.build(tok, [8, 16, 64, 32], [1.0] * 4, by_adapter=False)
    assert [s[0] for s in runs.segments()] == [[0, 1], [3], [4], [6]]
    with pytest.raises(ValueError):
        LoraMeta.build(tok, [8, 16, 64, 32], [1.0] * 4, max_segments=2)
    empty = LoraMeta.build([-1, -1], [8], [1.0])
    assert empty.segments() == [] and empty.max_len == 0


def test_meta_copy_from_refreshes_a_captured_table():
    a = LoraMeta.build([0, 1, 1], [8, 8], [1.0, 1.0], max_segments=4, max_tokens=8, max_len=8)
    b = LoraMeta.build([1, 1, 1, 0, -1], [8, 8], [1.0, 2.0], max_segments=4, max_tokens=8, max_len=8)
    a.copy_from(b)
    assert a.segments() == b.segments()


def test_slices_follow_the_fused_columns_when_a_module_is_absent():
    from gpu.lora import LoraSlots

    slots = LoraSlots(SMALL, 2, 8, ("q_proj", "v_proj"), "cpu", torch.float32)
    sl = LoraSlices.of(slots, 0, "qkv")
    q, kv = SMALL.hidden, SMALL.kv_heads * SMALL.head_dim
    assert sl.widths == (q, kv) and sl.out_offsets == (0, q + kv)
    assert LoraSlices.of(slots, 0, "gate_up") is None


# ---- Triton kernels vs reference -------------------------------------------------------------

CASES = {
    # prefill-like: mixed ranks, a base-model run, single-token segments
    "mixed_prefill": [(2, 20), (-1, 3), (0, 1), (1, 17), (3, 5), (0, 2)],
    "batch_1": [(1, 1)],
    "single_adapter_long": [(2, 40)],
    "all_base": [(-1, 4)],
}


@pytest.fixture(params=["segments", "tiles"])
def schedule(request, monkeypatch):
    """Both SGMV schedules on the same cases: the segment loop (decode-sized bounds) and the
    tile grid (prefill), chosen by the segment-length bound."""
    import gpu.kernels.lora_shrink_op as ks

    monkeypatch.setattr(ks, "SEGMENT_LOOP_MAX_LEN", 1 << 30 if request.param == "segments" else 0)
    return request.param


@pytest.fixture
def many_splits(monkeypatch):
    """A config under which the segment-loop shrink splits K several ways even on the
    interpreter's 4 'SMs' (its default gives one split to most CPU cases)."""
    from gpu.kernels import configs

    table = configs.CONFIGS["default"]
    cfg = {**table["shrink_decode"], "BLOCK_K": 16, "SPLIT_K": 4, "PROGRAMS_PER_SM": 8}
    monkeypatch.setitem(table, "shrink_decode", cfg)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("fused", ["qkv", "gate_up", "down"])
def test_sgmv_matches_reference(triton_device, case, fused, schedule):
    slots = make_slots(SMALL, RANKS, 64, triton_device, torch.float32)
    tok = tok_slots_of(CASES[case])
    hk, hr, yk, yr = _run(slots, tok, fused, 1, triton_device, torch.float32, max_segments=6)
    _close(hk, hr, torch.float32)
    _close(yk, yr, torch.float32)


@pytest.mark.parametrize("capacity", [4, 5, 64])
def test_tile_grid_numbers_the_real_segments_tiles_at_any_capacity(triton_device, capacity, monkeypatch):
    """The prefill grid walks the token tiles of the real segments one after another
    (`segment_tile`): segments of several tiles, one-token ones and a table with room for
    64 segments (16 times the real ones) give the reference's h and y."""
    import gpu.kernels.lora_shrink_op as ks

    monkeypatch.setattr(ks, "SEGMENT_LOOP_MAX_LEN", 0)
    slots = make_slots(SMALL, RANKS, 64, triton_device, torch.float32)
    tok = tok_slots_of(CASES["mixed_prefill"])
    for fused in ("qkv", "down"):
        hk, hr, yk, yr = _run(slots, tok, fused, 1, triton_device, torch.float32, max_segments=capacity)
        _close(hk, hr, torch.float32)
        _close(yk, yr, torch.float32)


@pytest.fixture(params=[1, 3])
def expand_groups(request, monkeypatch):
    """Segment-loop expand units of N_PER_UNIT output tiles (h summed once a unit): narrow
    tiles so that a width spans several, groups of 3 not dividing them, one K step."""
    import gpu.kernels.lora_shrink_op as ks
    from gpu.kernels import configs

    monkeypatch.setattr(ks, "SEGMENT_LOOP_MAX_LEN", 1 << 30)
    table = configs.CONFIGS["default"]
    cfg = {**table["expand_decode"], "BLOCK_N": 16, "BLOCK_K": 64, "N_PER_UNIT": request.param}
    monkeypatch.setitem(table, "expand_decode", cfg)
    return request.param


@pytest.mark.parametrize("case", ["mixed_prefill", "batch_1"])
@pytest.mark.parametrize("fused", ["qkv", "gate_up"])
def test_expand_units_of_several_output_tiles_match_reference(triton_device, case, fused, expand_groups, many_splits):
    slots = make_slots(SMALL, RANKS, 64, triton_device, torch.float32)
    hk, hr, yk, yr = _run(slots, tok_slots_of(CASES[case]), fused, 1, triton_device, torch.float32, max_segments=6)
    _close(hk, hr, torch.float32)
    _close(yk, yr, torch.float32)


@pytest.mark.parametrize(("by_adapter", "batch"), [(True, 128), (False, 12)])
def test_sgmv_decode_buckets(triton_device, by_adapter, batch):
    """Decode: one-token requests over 4 adapters plus base tokens. Grouped by adapter at the
    largest bucket (128); one segment per request (Punica layout, slow under the interpreter,
    hence a smaller batch) padded with 2 empty segments."""
    slots = make_slots(SMALL, RANKS, 64, triton_device, torch.float32)
    tok = [(i * 7) % 5 - 1 for i in range(batch)]  # slots -1..3
    n_seg = None if by_adapter else batch + 2
    hk, hr, yk, yr = _run(slots, tok, "qkv", 0, triton_device, torch.float32,
                             by_adapter=by_adapter, max_segments=n_seg)  # fmt: skip
    _close(hk, hr, torch.float32)
    _close(yk, yr, torch.float32)


@pytest.mark.parametrize("segments", [[(1, 3)], [(1, 3), (-1, 2), (0, 1), (3, 2)]])
def test_expand_reads_only_the_partials_the_shrink_defines(triton_device, schedule, many_splits, segments):
    """The shrink leaves h undefined for base-model tokens, past each rank and in partials
    past the split it chose (no zero-fill): NaN there must not reach y, and the partials it
    defined must all be summed. One segment splits 4 ways, three segments do not split."""
    from gpu.kernels.lora_expand_op import lora_expand
    from gpu.kernels.lora_shrink_op import partials_defined

    slots = make_slots(SMALL, RANKS, 64, triton_device, torch.float32)
    meta, sl, x, y0 = _inputs(slots, tok_slots_of(segments), "qkv", 0, triton_device, torch.float32)
    hr, yr = _ref(slots, meta, sl, x, y0)
    defined = shrink_sum(torch.ones_like(hr), x, meta, 64).bool()
    parts = torch.full((4, *hr.shape[1:]), float("nan"), device=hr.device)
    s = partials_defined(parts, x, 3, 64, meta)
    if schedule == "tiles" or triton_device == "cpu":  # a GPU's SM count splits 3 segments too
        assert s == (4 if schedule == "tiles" or len(segments) == 1 else 1)
    parts[:s] = hr[0] / s
    parts[:, ~defined] = float("nan")
    yk = lora_expand(parts, slots.pool, sl.bt_offsets, sl.widths, y0.clone(), meta, 64, sl.out_offsets)
    assert torch.isfinite(yk).all()
    _close(yk, yr, torch.float32)


def test_shrink_split_follows_the_real_segment_count(triton_device, many_splits):
    """Segment loop: the same table capacity gives one adapter a 4-way split of K and
    three adapters none (under the interpreter's 4 "SMs"); both sum to the reference."""
    from gpu.kernels.lora_shrink_op import lora_shrink, partials_defined

    slots = make_slots(SMALL, RANKS, 64, triton_device, torch.float32)
    for tok, want in (([2] * 3, 4), ([0, 1, 2], 1)):
        meta, sl, x, y0 = _inputs(slots, tok, "qkv", 1, triton_device, torch.float32, max_segments=4)
        hk = lora_shrink(x, slots.pool, sl.a_offsets, 64, meta)
        if triton_device == "cpu":  # the interpreter's 4 "SMs"; a GPU has enough to split both
            assert partials_defined(hk, x, 3, 64, meta) == want
        hr, _ = _ref(slots, meta, sl, x, y0)
        _close(shrink_sum(hk, x, meta, 64), hr[0], torch.float32)


def test_prefill_split_counts_tokens_not_segment_capacity_when_asked():
    """The tile grid's split-K is chosen from its working tiles. Counted with one partial tile
    a segment, that count grows with the graph's segment capacity (one adapter's 2048 tokens:
    32 + 64 tiles in a 64-segment graph, 32 + 16 in a 16-segment one); by tokens it does not."""
    from gpu.kernels.lora_shrink_op import prefill_work_tiles

    tok = [0] * 2048
    metas = [LoraMeta.build(tok, [64] * 64, [1.0] * 64, max_segments=cap, max_tokens=2048, max_len=2048)
             for cap in (4, 16, 64)]
    assert [prefill_work_tiles(m, 64) for m in metas] == [36, 48, 96]
    assert [prefill_work_tiles(m, 64, by_tokens=True) for m in metas] == [32, 32, 32]
    short = LoraMeta.build([0] * 10 + [1] * 10, [64, 64], [1.0, 1.0], max_segments=8)
    # two real segments, capacity 8: the default counts the capacity
    assert prefill_work_tiles(short, 64) == 8 and prefill_work_tiles(short, 64, by_tokens=True) == 1


def test_prefill_split_aims_at_the_configs_programs_per_sm(monkeypatch):
    """The tile grid's split-K gives about PROGRAMS_PER_SM working programs an SM (2 without
    the key), capped by SPLIT_K and by the K steps: a 512-token qkv shrink (24 tiles) on 132
    SMs splits 16 ways at 2 an SM and 32 (the cap) at 8."""
    from types import SimpleNamespace

    import gpu.kernels.lora_shrink_op as ks

    monkeypatch.setattr(ks, "sm_count", lambda x: 132)
    gpu_x = SimpleNamespace(is_cuda=True)
    cfg = {"SPLIT_K": 32, "BLOCK_K": 64}
    assert ks._split_k_tiles(gpu_x, cfg, programs=24, k=4096) == 16
    assert ks._split_k_tiles(gpu_x, {**cfg, "PROGRAMS_PER_SM": 8}, programs=24, k=4096) == 32
    assert ks._split_k_tiles(gpu_x, {**cfg, "PROGRAMS_PER_SM": 8}, programs=24, k=1024) == 16  # K steps
    assert ks._split_k_tiles(SimpleNamespace(is_cuda=False), cfg, programs=24, k=4096) == 32  # the config's


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sgmv_half_precision(triton_device, dtype):
    slots = make_slots(SMALL, RANKS, 64, triton_device, dtype)
    tok = tok_slots_of(CASES["mixed_prefill"])
    hk, hr, yk, yr = _run(slots, tok, "qkv", 0, triton_device, dtype)
    _close(hk, hr, dtype)
    _close(yk, yr, dtype)


# ---- realistic dims on a GPU -------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("fused", ["qkv", "gate_up", "o", "down"])
@pytest.mark.parametrize("batch", ["decode64", "prefill", "prefill_split_by_tokens"])
def test_sgmv_llama8b_bf16(fused, batch, monkeypatch):
    if batch == "prefill_split_by_tokens":  # the tile grid's split from tokens alone
        from gpu.kernels import configs

        monkeypatch.delenv(configs.OVERRIDE_ENV, raising=False)
        table = configs.device_configs(torch.cuda.get_device_name())
        monkeypatch.setitem(table, "shrink_prefill", {**table["shrink_prefill"], "SPLIT_BY_TOKENS": True})
    slots = make_slots(LLAMA_8B_1L, [16, 32, 64, 64, 64, 8, 64, 64], 64, "cuda", torch.bfloat16)
    if batch == "decode64":
        tok = [(i % 9) - 1 for i in range(64)]  # 8 adapters and base tokens, one token each
    else:  # the prefill is checked with the default split and the split from tokens
        tok = tok_slots_of([(0, 300), (3, 1000), (-1, 50), (5, 1), (2, 129)])
    import gpu.kernels.lora_expand_op as ke
    import gpu.kernels.lora_shrink_op as ks

    ranks, scales = [16, 32, 64, 64, 64, 8, 64, 64], [0.5, 1.0, 2.0, 1.0, 0.25, 1.0, 1.0, 1.0]
    # a graph-sized capacity, where the two splits differ (64 segments' tiles vs the tokens')
    caps = {"max_segments": 64, "max_tokens": len(tok), "max_len": len(tok)} if batch.endswith("tokens") else {}
    meta = LoraMeta.build(tok, ranks, scales, "cuda", **caps)
    sl = LoraSlices.of(slots, 0, fused)
    x = torch.randn(len(tok), sl.in_dim, device="cuda", dtype=torch.bfloat16)
    y0 = torch.randn(len(tok), sl.out_offsets[-1] + sl.widths[-1], device="cuda", dtype=torch.bfloat16)
    hk = ks.lora_shrink(x, slots.pool, sl.a_offsets, 64, meta)
    hr = reference.lora_shrink(x, slots.pool, sl.a_offsets, 64, meta)
    torch.testing.assert_close(shrink_sum(hk, x, meta, 64), hr[0], atol=2e-2, rtol=2e-2)
    yk = ke.lora_expand(hk, slots.pool, sl.bt_offsets, sl.widths, y0.clone(), meta, 64, sl.out_offsets)
    yr = reference.lora_expand(hr, slots.pool, sl.bt_offsets, sl.widths, y0.clone(), meta, 64, sl.out_offsets)
    torch.testing.assert_close(yk.float(), yr.float(), atol=6e-2, rtol=3e-2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_sgmv_replays_in_a_cuda_graph_with_new_metadata():
    """Fixed capacities -> one captured graph serves any batch of the bucket."""
    import gpu.kernels as K

    slots = make_slots(LLAMA_8B_1L, [64, 16, 32, 64], 64, "cuda", torch.bfloat16)
    ranks, scales = [64, 16, 32, 64], [1.0, 2.0, 0.5, 1.0]
    caps = {"max_tokens": 32, "max_segments": 4, "max_len": 32}
    meta = LoraMeta.build([0] * 32, ranks, scales, "cuda", **caps)
    sl = LoraSlices.of(slots, 0, "qkv")
    x = torch.randn(32, sl.in_dim, device="cuda", dtype=torch.bfloat16)
    y0 = torch.randn(32, sum(sl.widths), device="cuda", dtype=torch.bfloat16)
    y = y0.clone()
    K.lora_apply(y, x, slots.pool, sl, 64, meta)  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y.copy_(y0)
        K.lora_apply(y, x, slots.pool, sl, 64, meta)
    for tok in ([i % 5 - 1 for i in range(32)], [2] * 32, [-1] * 31 + [1]):
        new = LoraMeta.build(tok, ranks, scales, "cuda", **caps)
        meta.copy_from(new)
        graph.replay()
        want = y0.clone()
        h = reference.lora_shrink(x, slots.pool, sl.a_offsets, 64, new)
        reference.lora_expand(h, slots.pool, sl.bt_offsets, sl.widths, want, new, 64)
        torch.testing.assert_close(y.float(), want.float(), atol=6e-2, rtol=3e-2)


# ---- adapters laid out at their own rank (the unified arena, issue #28) ---------------------

ARENA_PAGE = 1024  # elements a page of the toy arena


def _arena_of(slots, order=(2, 0, 3, 1)):
    """The slots' adapters copied into a page arena at their own rank (tight layout), in
    runs placed in `order` with a NaN page between them; returns (arena [pages, ARENA_PAGE],
    first page of each slot's adapter)."""
    from gpu.adapters import flat_layout

    runs, first, page = {}, {}, 1  # page 0 stays NaN
    for s in order:
        segs, numel = flat_layout(slots.shape, RANKS[s], slots.targets)
        runs[s] = (segs, numel)
        first[s] = page
        page += -(-numel // ARENA_PAGE) + 1
    arena = torch.full((page, ARENA_PAGE), float("nan"), dtype=slots.pool.dtype, device=slots.pool.device)
    flat = arena.view(-1)
    for s, (segs, _) in runs.items():
        base = first[s] * ARENA_PAGE
        for seg in segs:
            r, d_in, d_out = seg.rank, seg.d_in, seg.d_out
            flat[base + seg.a_off:base + seg.a_off + r * d_in] = slots.A(seg.layer, seg.module)[s, :r].reshape(-1)
            flat[base + seg.b_off:base + seg.b_off + r * d_out] = slots.Bt(seg.layer, seg.module)[s, :r].reshape(-1)
    return arena, first


@pytest.mark.parametrize("case", ["mixed_prefill", "batch_1"])
@pytest.mark.parametrize("fused", ["qkv", "gate_up", "down"])
def test_sgmv_reads_adapters_at_their_own_rank_where_they_lie(triton_device, case, fused, schedule):
    """The same adapters in max-rank slots and, at their own rank, in runs of an arena (a
    "slot" being a run's first page, offsets per unit of rank): same h and y, kernel and
    reference alike; every element between runs is NaN."""
    from gpu.kernels import lora_apply

    slots = make_slots(SMALL, RANKS, 64, triton_device, torch.float32)
    arena, first = _arena_of(slots)
    tok = tok_slots_of(CASES[case])
    meta, sl, x, y0 = _inputs(slots, tok, fused, 1, triton_device, torch.float32, max_segments=6)
    want = lora_apply(y0.clone(), x, slots.pool, sl, slots.max_rank, meta)
    pages = arena.shape[0]
    ranks, scales = [0] * pages, [0.0] * pages
    for s, p in first.items():
        ranks[p], scales[p] = RANKS[s], SCALES[s]
    tok_pages = [first[s] if s >= 0 else -1 for s in tok]
    ameta = LoraMeta.build(tok_pages, ranks, scales, triton_device, max_segments=6)
    r = slots.max_rank
    coef = LoraSlices(*(tuple(o // r for o in offs) for offs in (sl.a_offsets, sl.bt_offsets)),
                      sl.widths, sl.out_offsets, sl.in_dim)
    got = lora_apply(y0.clone(), x, arena, coef, r, ameta, tight=True)
    _close(got, want, torch.float32)
    ref = y0.clone()
    hr = reference.lora_shrink(x, arena, coef.a_offsets, r, ameta, tight=True)
    reference.lora_expand(hr, arena, coef.bt_offsets, coef.widths, ref, ameta, r, coef.out_offsets, tight=True)
    _close(ref, want, torch.float32)


def _bench_grids() -> dict:
    import runpy
    from pathlib import Path

    bench = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_kernels.py"
    return runpy.run_path(str(bench))


@pytest.mark.parametrize("which", ["first", "last"])
def test_the_prefill_tuners_extreme_configs_keep_the_tile_grid_right(triton_device, which, monkeypatch):
    """`bench_kernels.py --tune-sgmv-prefill` installs each config of its grids; the smallest and
    largest tiles, split caps and both split rules must still match the reference."""
    import gpu.kernels.lora_shrink_op as ks
    from gpu.kernels import configs

    monkeypatch.setattr(ks, "SEGMENT_LOOP_MAX_LEN", 0)  # the tile grid, whatever the lengths
    grids = _bench_grids()
    pick = 0 if which == "first" else -1
    monkeypatch.delenv(configs.OVERRIDE_ENV, raising=False)
    table = configs.device_configs(torch.cuda.get_device_name() if triton_device == "cuda" else None)
    monkeypatch.setitem(table, "shrink_prefill", grids["PREFILL_SHRINK_GRID"][pick])
    monkeypatch.setitem(table, "expand_prefill", grids["PREFILL_EXPAND_GRID"][pick])
    slots = make_slots(SMALL, RANKS, 64, triton_device, torch.float32)
    tok = tok_slots_of(CASES["mixed_prefill"])
    hk, hr, yk, yr = _run(slots, tok, "qkv", 0, triton_device, torch.float32, max_segments=8)
    _close(hk, hr, torch.float32)
    _close(yk, yr, torch.float32)
