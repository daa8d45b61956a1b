"""Compute models: H200 roofline vs DESIGN §6 anchors, vectorised decode, profile tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.core.effects import Batch, BatchItem
from sim.core.model import ModelShape
from sim.hw.compute import ProfileCompute, RooflineCompute
from sim.hw.presets import preset
from sim.hw.profile import ComputeProfile, Grid, Table

H200 = RooflineCompute(ModelShape(), preset("h200"))


def prefill(tokens: int, context: int = 0, adapter: str | None = None, rank: int = 0) -> Batch:
    return Batch("prefill", (BatchItem(0, adapter, 0 if adapter else -1, rank, tokens, context),))


def decode(n: int, context: int, adapters: int = 0, rank: int = 64) -> Batch:
    return Batch(
        "decode",
        tuple(
            BatchItem(k, f"a{k % adapters}" if adapters else None, k % adapters if adapters else -1,
                      rank if adapters else 0, 1, context + k)
            for k in range(n)
        ),
    )


@pytest.mark.parametrize(("tokens", "ms"), [(1, 6.6), (32, 6.6), (128, 6.6), (1024, 20.0), (2048, 40.0)])
def test_h200_layer_stack_matches_design_anchors(tokens, ms):
    assert abs(H200.linear_time(tokens) * 1e3 - ms) <= 0.2 * ms
    # the whole forward (attention, LM head, overhead on top) stays within the same band
    assert abs(H200.forward_time(prefill(tokens)) * 1e3 - ms) <= 0.2 * ms


def test_forward_time_monotone_in_tokens_context_adapters():
    ts = [H200.forward_time(prefill(t)) for t in (1, 256, 512, 1024, 4096)]
    assert ts == sorted(ts)
    cs = [H200.forward_time(decode(32, c)) for c in (0, 1000, 10_000)]
    assert cs[0] < cs[1] < cs[2]
    la = [H200.forward_time(decode(32, 100, a)) for a in (0, 1, 4, 16)]
    assert la[0] < la[1] < la[2] < la[3]
    ranks = [H200.forward_time(decode(32, 100, 4, r)) for r in (8, 64, 256)]
    assert ranks[0] < ranks[1] < ranks[2]


def test_memory_bound_decode_step_grows_with_kv_bytes_exactly():
    """Deep in the memory-bound regime one more context token per item costs exactly its KV
    bytes at the attained HBM bandwidth."""
    spec = preset("h200")
    s = ModelShape()
    kv = 2 * s.kv_heads * s.head_dim * s.dtype_bytes * s.layers
    b = decode(64, 4000)
    t = H200.decode_times(b, 3)
    assert np.diff(t) == pytest.approx(np.full(2, 64 * kv / spec.eff_hbm), rel=1e-9)


def test_decode_times_equals_forward_time_of_grown_batch():
    b = decode(16, 500, adapters=3)
    steps = H200.decode_times(b, 50)
    assert steps.shape == (50,)
    for j in (0, 1, 17, 49):
        grown = Batch("decode", tuple(BatchItem(i.rid, i.adapter, i.slot, i.rank, 1, i.context + j) for i in b.items))
        assert steps[j] == pytest.approx(H200.forward_time(grown), rel=1e-12)


def test_base_model_items_cost_no_lora():
    base = decode(8, 100)
    assert H200.forward_time(base) < H200.forward_time(decode(8, 100, adapters=1))


def test_empty_batch_and_zero_steps():
    assert H200.forward_time(Batch("decode", ())) == 0.0
    assert H200.decode_times(decode(4, 0), 0).shape == (0,)


# ---- ProfileCompute --------------------------------------------------------------------

PROF = ComputeProfile(
    prefill=Table((100.0, 1000.0), (0.01, 0.05)),
    decode=Grid((1.0, 11.0), (0.0, 1000.0), ((0.006, 0.008), (0.010, 0.020))),
    lora=Table((0.0, 1.0, 5.0), (0.0, 0.001, 0.003)),
    lora_rank=64,
)
PC = ProfileCompute(PROF)


def test_profile_hits_table_points_exactly():
    assert PC.forward_time(prefill(100)) == pytest.approx(0.01)
    assert PC.forward_time(prefill(1000)) == pytest.approx(0.05)
    for i, b in enumerate((1, 11)):
        for j, c in enumerate((0, 1000)):
            batch = Batch("decode", tuple(BatchItem(k, None, -1, 0, 1, c) for k in range(b)))
            assert PC.forward_time(batch) == pytest.approx(PROF.decode.seconds[i][j])


def test_profile_interpolates_and_extrapolates_linearly():
    assert PC.forward_time(prefill(550)) == pytest.approx(0.03)
    assert PC.forward_time(prefill(1900)) == pytest.approx(0.05 + 900 * 0.04 / 900)
    # bilinear centre of the decode grid: mean of the four corners
    mid = Batch("decode", tuple(BatchItem(k, None, -1, 0, 1, 500) for k in range(6)))
    assert PC.forward_time(mid) == pytest.approx((0.006 + 0.008 + 0.010 + 0.020) / 4)
    # beyond the batch axis: linear continuation
    big = Batch("decode", tuple(BatchItem(k, None, -1, 0, 1, 0) for k in range(21)))
    assert PC.forward_time(big) == pytest.approx(0.014)


def test_profile_decode_uses_mean_context_growing_per_step():
    b = Batch("decode", (BatchItem(0, None, -1, 0, 1, 0), BatchItem(1, None, -1, 0, 1, 200)))  # mean 100
    t = PC.decode_times(b, 3)
    # batch 2 is 10% of the way from batch 1 to 11; context 100 + j along 0..1000
    at_c0, at_c1000 = 0.006 * 0.9 + 0.010 * 0.1, 0.008 * 0.9 + 0.020 * 0.1
    expect = [at_c0 + (at_c1000 - at_c0) * (100 + j) / 1000 for j in range(3)]
    assert t == pytest.approx(expect)


def test_decode_at_the_longest_context_when_the_profile_says_max():
    """Round 10: the harness's decode attention reads every row up to the batch's longest
    context, so steps of 9-64 requests ran 3-9 % above the mean-context price; with
    `decode_context: max` a step costs what a batch all at the longest context does."""
    from dataclasses import replace

    ragged = Batch("decode", (BatchItem(0, None, -1, 0, 1, 0), BatchItem(1, None, -1, 0, 1, 200)))
    even = Batch("decode", (BatchItem(0, None, -1, 0, 1, 200), BatchItem(1, None, -1, 0, 1, 200)))
    longest = ProfileCompute(replace(PROF, decode_context="max"))
    assert longest.decode_times(ragged, 3) == pytest.approx(PC.decode_times(even, 3))
    assert longest.decode_times(ragged, 3) == pytest.approx(longest.decode_times(even, 3))
    assert (longest.decode_times(ragged, 3) > PC.decode_times(ragged, 3)).all()  # mean: 100
    # the longest context grows one token a step too
    t = longest.decode_times(ragged, 2)
    assert t[1] - t[0] == pytest.approx(PC.decode_times(even, 2)[1] - PC.decode_times(even, 2)[0])
    assert t[1] > t[0]


def test_profile_lora_extra_by_distinct_adapters_and_rank():
    base = prefill(100)
    one = prefill(100, adapter="x", rank=64)
    assert PC.forward_time(one) - PC.forward_time(base) == pytest.approx(0.001)
    half = prefill(100, adapter="x", rank=32)
    assert PC.forward_time(half) - PC.forward_time(base) == pytest.approx(0.0005)
    three = Batch("prefill", tuple(BatchItem(k, f"a{k}", k, 64, 30, 0) for k in range(3)))
    assert PC.forward_time(three) - PC.forward_time(Batch("prefill", (BatchItem(0, None, -1, 0, 90, 0),))) == pytest.approx(0.002)


# ---- multi-rank and prefill LoRA tables (profile format v2) ------------------------------

from sim.hw.profile import LoraPrefillTable, LoraTable  # noqa: E402

PROF2 = ComputeProfile(
    prefill=PROF.prefill,
    decode=PROF.decode,
    lora_ranks=LoraTable((16.0, 256.0), (0.0, 1.0, 5.0), ((0.0, 0.010, 0.014), (0.0, 0.012, 0.020))),
    lora_prefill=LoraPrefillTable(
        (64.0, 256.0), (100.0, 1000.0), (1.0, 3.0),
        (((0.020, 0.022), (0.030, 0.034)), ((0.022, 0.024), (0.040, 0.044))),
    ),
)
PC2 = ProfileCompute(PROF2)


def _dec(rank, n_adapters=1):
    return Batch("decode", tuple(BatchItem(k, f"a{k % n_adapters}", k, rank, 1, 0) for k in range(4)))


def test_multi_rank_lora_interpolates_in_rank_not_proportionally():
    base = PC2.forward_time(Batch("decode", tuple(BatchItem(k, None, -1, 0, 1, 0) for k in range(4))))
    assert PC2.forward_time(_dec(16)) - base == pytest.approx(0.010)
    assert PC2.forward_time(_dec(256)) - base == pytest.approx(0.012)
    # rank 64 is 20% of the way from 16 to 256; a single-rank table would scale by 4x
    assert PC2.forward_time(_dec(64)) - base == pytest.approx(0.010 + 0.2 * 0.002)


def test_prefill_uses_prefill_lora_table():
    one = Batch("prefill", (BatchItem(0, "x", 0, 64, 100, 0),))
    assert PC2.forward_time(one) - PC2.forward_time(prefill(100)) == pytest.approx(0.020)
    three = Batch("prefill", tuple(BatchItem(k, f"a{k}", k, 256, 333, 0) for k in range(3)))
    extra = PC2.forward_time(three) - PC2.forward_time(prefill(999))
    assert extra == pytest.approx(0.024 + 0.020 * 899 / 900)  # rank-256 plane, 3 adapters


def test_decode_lora_table_is_looked_up_at_the_batch_size():
    """Round 6: the harness's decode LoRA costs ~1 ms less a step at batch 1 than at the
    batch 32 the single-batch table was measured at; `lora_decode` has a batch axis."""
    from dataclasses import replace

    pc = ProfileCompute(replace(
        PROF2,
        lora_ranks=None,
        lora_decode=LoraPrefillTable(
            (64.0,), (1.0, 32.0), (0.0, 1.0, 4.0), (((0.0, 0.005, 0.007), (0.0, 0.0065, 0.0085)),),
        ),
    ))

    def extra(b: int, n: int) -> float:
        items = tuple(BatchItem(k, f"a{k % n}", k, 64, 1, 0) for k in range(b))
        base = tuple(BatchItem(k, None, -1, 0, 1, 0) for k in range(b))
        return pc.forward_time(Batch("decode", items)) - pc.forward_time(Batch("decode", base))

    assert extra(1, 1) == pytest.approx(0.005)
    assert extra(32, 1) == pytest.approx(0.0065)
    assert extra(32, 4) == pytest.approx(0.0085)
    assert extra(4, 4) == pytest.approx(0.007 + 0.0015 * 3 / 31)
    # prefills keep their own table
    one = Batch("prefill", (BatchItem(0, "x", 0, 64, 100, 0),))
    assert pc.forward_time(one) - pc.forward_time(prefill(100)) == pytest.approx(0.020)


def test_single_rank_profile_still_scales_by_rank():
    assert PROF.decode_lora().ranks == (64.0,)
    base = PC.forward_time(prefill(100))
    assert PC.forward_time(prefill(100, adapter="x", rank=128)) - base == pytest.approx(0.002)


def test_graphed_forwards_pay_lora_at_the_padded_adapter_count():
    """Round 8: the harness's graphs are captured for 1, 2, 4, 8, ... adapters and compute
    the padding blocks, so a decode with 3 adapters costs what 4 do. Prefills above the last
    prefill bucket run eagerly, unpadded."""
    from dataclasses import replace

    lp = LoraPrefillTable((64.0,), (100.0, 1000.0), (1.0, 2.0, 4.0), (((0.01, 0.02, 0.04), (0.01, 0.02, 0.04)),))
    ld = LoraPrefillTable((64.0,), (1.0, 32.0), (0.0, 1.0, 2.0, 4.0), (((0.0, 0.01, 0.02, 0.04),) * 2,))
    flat = replace(PROF2, lora_ranks=None, lora_decode=ld, lora_prefill=lp, prefill_buckets=(100, 500))
    padded = replace(flat, adapter_buckets=(1, 2, 4))

    def dec(n):
        return Batch("decode", tuple(BatchItem(k, f"a{k}", k, 64, 1, 0) for k in range(n)))

    def pre(n, tokens):
        return Batch("prefill", tuple(BatchItem(k, f"a{k}", k, 64, tokens // n, 0) for k in range(n)))

    plain, pad = ProfileCompute(flat), ProfileCompute(padded)

    def extra(pc, batch):  # the LoRA part: minus the same batch on the base model
        base = Batch(batch.kind, tuple(it._replace(adapter=None, slot=-1, rank=0) for it in batch.items))
        return pc.forward_time(batch) - pc.forward_time(base)

    assert extra(plain, dec(3)) == pytest.approx(0.03)  # interpolated between 2 and 4
    assert extra(pad, dec(3)) == pytest.approx(0.04) == pytest.approx(extra(pad, dec(4)))
    assert extra(pad, dec(2)) == pytest.approx(extra(plain, dec(2)))  # a bucket: as measured
    assert extra(pad, pre(3, 300)) == pytest.approx(extra(pad, pre(4, 300)))  # graphed
    assert extra(pad, pre(3, 900)) == pytest.approx(extra(plain, pre(3, 900)))  # eager: unpadded
    assert extra(pad, pre(3, 900)) < extra(pad, pre(4, 900))
    assert padded.padded_adapters(5, "decode", 1) == 5  # above the last bucket: as it is


def test_a_decode_step_costs_what_its_padded_graph_batch_does():
    """Round 9: the harness's decode graphs are captured for batches 1, 2, 4, 8, 16, 24, ...
    (SGLang's cuda_graph_bs), so a step of 9 requests ran 21.4 ms, what 16 cost, not the
    ~19 ms the table interpolated between 8 and 16. Base and LoRA parts both pad."""
    from dataclasses import replace

    ld = LoraPrefillTable((64.0,), (1.0, 32.0), (0.0, 1.0), (((0.0, 0.001), (0.0, 0.004)),))
    flat = replace(PROF2, lora_ranks=None, lora_decode=ld)
    padded = replace(flat, batch_buckets=(1, 2, 4, 8, 16, 24, 32))

    def dec(n, adapter=None):
        return Batch("decode", tuple(BatchItem(k, adapter, 0, 64 if adapter else 0, 1, 128) for k in range(n)))

    plain, pad = ProfileCompute(flat), ProfileCompute(padded)
    assert pad.forward_time(dec(9)) == pytest.approx(plain.forward_time(dec(16)))
    assert pad.forward_time(dec(9)) > plain.forward_time(dec(9))
    assert pad.forward_time(dec(8)) == pytest.approx(plain.forward_time(dec(8)))  # a bucket
    assert pad.forward_time(dec(9, "a")) == pytest.approx(plain.forward_time(dec(16, "a")))
    assert padded.padded_batch(3) == 4 and padded.padded_batch(40) == 40  # above: as it is


def test_prefill_attention_is_priced_for_its_own_padded_layout():
    """Round 8: 9 requests of ~350 tokens (3095 in all) took 126 ms without LoRA, calibration's
    6 x 512 + 23 at the same total 115 ms: the harness pads each request to the longest. With
    `attention_ms_per_mcell` an eager prefill (above the last bucket) pays for its cells. A
    graphed one pays for cells above calibration's only (round 11: 55 in-situ prefills with
    more cells ran 5-11 ms over the table, ~30 ms per million; 192 with fewer saved ~1 ms)."""
    from dataclasses import replace

    from sim.hw.compute import attention_cells, reference_cells

    coef = 30.0
    plain = ProfileCompute(replace(PROF, prefill_buckets=(100, 500)))
    att = ProfileCompute(replace(PROF, prefill_buckets=(100, 500), attention_ms_per_mcell=coef))

    def pre(lens):
        return Batch("prefill", tuple(BatchItem(k, None, -1, 0, n, 0) for k, n in enumerate(lens)))

    burst = pre([400, 300, 300])  # 1000 tokens, eager
    assert attention_cells(burst) == 3 * 400 * 400 and reference_cells(1000) == 2 * 512 * 512
    want = (3 * 400 * 400 - 2 * 512 * 512) * 1e-6 * coef * 1e-3
    assert att.forward_time(burst) - plain.forward_time(burst) == pytest.approx(want)
    calib = pre([512, 488])  # calibration's layout: the table as measured
    assert att.forward_time(calib) == pytest.approx(plain.forward_time(calib))
    graphed = pre([40, 40, 40])  # graphed, fewer cells than calibration's: as the table says
    assert att.forward_time(graphed) == pytest.approx(plain.forward_time(graphed))
    at_bucket = pre([250, 250])  # exactly a bucket's size is graphed too
    assert att.forward_time(at_bucket) == pytest.approx(plain.forward_time(at_bucket))
    lopsided = pre([400, 50])  # graphed (450 -> bucket 500), padded to 2 x 400 x 400 cells
    more = (2 * 400 * 400 - 500 * 500) * 1e-6 * coef * 1e-3
    assert att.forward_time(lopsided) - plain.forward_time(lopsided) == pytest.approx(more)
    many = pre([1] * 1000)  # tiny cells: never below half the table
    big = ProfileCompute(replace(PROF, prefill_buckets=(100, 500), attention_ms_per_mcell=100.0))
    assert big.forward_time(many) == pytest.approx(0.5 * plain.forward_time(many))


def test_prefill_attention_is_priced_per_causal_cell_for_a_paged_harness():
    """`attention_cells: causal` (the paged varlen kernel: each request's new tokens over its own
    keys) counts n x context + n (n + 1) / 2 per request; calibration's reference is requests of
    512 at context 0. The padded layout's rules (graphed: upwards only; never below half the
    table) are the same; a profile without the key prices as before (padded)."""
    from dataclasses import replace

    from sim.hw.compute import attention_cells, reference_cells

    coef = 30.0
    plain = ProfileCompute(replace(PROF, prefill_buckets=(100, 500)))
    causal = ProfileCompute(replace(PROF, prefill_buckets=(100, 500), attention_ms_per_mcell=coef,
                                    attention_cells="causal"))

    def pre(lens, ctx=0):
        return Batch("prefill", tuple(BatchItem(k, None, -1, 0, n, ctx) for k, n in enumerate(lens)))

    assert reference_cells(1000, layout="causal") == 512 * 513 / 2 + 488 * 489 / 2
    assert reference_cells(1000) == 2 * 512 * 512  # padded, the default
    one = pre([1000])  # eager: one long request, more cells than calibration's two
    cells = 1000 * 1001 / 2
    assert attention_cells(one, "causal") == cells and attention_cells(one) == 1000 * 1000
    want = (cells - reference_cells(1000, layout="causal")) * 1e-6 * coef * 1e-3
    assert causal.forward_time(one) - plain.forward_time(one) == pytest.approx(want)
    calib = pre([512, 488])  # calibration's layout: the table as measured
    assert causal.forward_time(calib) == pytest.approx(plain.forward_time(calib))
    burst = pre([400, 300, 300])  # eager, fewer cells than calibration's: cheaper
    fewer = (400 * 401 / 2 + 2 * 300 * 301 / 2 - reference_cells(1000, layout="causal")) * 1e-6 * coef * 1e-3
    assert fewer < 0
    assert causal.forward_time(burst) - plain.forward_time(burst) == pytest.approx(fewer)
    # context counts: a chunk of 200 new tokens after 600 cached reads all 800 keys per query
    chunk = pre([200], ctx=600)
    assert attention_cells(chunk, "causal") == 200 * 600 + 200 * 201 / 2
    more = (200 * 600 + 200 * 201 / 2 - reference_cells(500, layout="causal")) * 1e-6 * coef * 1e-3  # bucket 500
    assert causal.forward_time(chunk) - plain.forward_time(chunk) == pytest.approx(more)  # graphed: up
    short = pre([50, 50, 50])  # graphed, fewer cells: as the table says
    assert causal.forward_time(short) == pytest.approx(plain.forward_time(short))
    # the same profile read as padded prices the padded cells
    padded = ProfileCompute(replace(PROF, prefill_buckets=(100, 500), attention_ms_per_mcell=coef))
    want_padded = (1000 * 1000 - 2 * 512 * 512) * 1e-6 * coef * 1e-3
    assert padded.forward_time(one) - plain.forward_time(one) == pytest.approx(want_padded)


def test_profile_prices_are_cached_without_changing_them():
    """ProfileCompute caches LoRA extras by (kind, size, adapters, rank): a repeated price is
    the same number, and a batch that differs in any of them is priced anew."""
    from sim.hw.profile import HardwareProfile

    prof = HardwareProfile.from_yaml(Path(__file__).resolve().parents[3] / "configs/hardware/h200-measured.yaml").compute
    fresh = lambda: ProfileCompute(prof)  # noqa: E731

    def dec(n, adapters, rank=64):
        return Batch("decode", tuple(BatchItem(i, f"a{i % adapters}", i % adapters, rank, 1, 400) for i in range(n)))

    warm = fresh()
    for b in (dec(8, 4), dec(8, 2), dec(24, 4), dec(8, 4, rank=16), dec(8, 4)):
        assert warm.forward_time(b) == fresh().forward_time(b)
    assert warm.forward_time(dec(8, 4)) != warm.forward_time(dec(8, 2))
    assert warm.forward_time(dec(8, 4)) != warm.forward_time(dec(8, 4, rank=16))


def test_lora_compute_scale_scales_only_the_lora_part_of_a_forward():
    """hardware.lora_compute_scale: 0 prices LoRA as free, 0.5 halves it, the base model's
    time is untouched; the same on the analytic model and on a profile's tables."""
    for make in (lambda k: RooflineCompute(ModelShape(), preset("h200"), k), lambda k: ProfileCompute(PROF, k)):
        for batch, plain in ((decode(8, 512, adapters=4), decode(8, 512)), (prefill(256, 0, "a", 64), prefill(256))):
            full, half, free = (make(k).forward_time(batch) for k in (1.0, 0.5, 0.0))
            base = make(1.0).forward_time(plain)
            assert full > base
            assert free == pytest.approx(base)
            assert half == pytest.approx(base + (full - base) / 2)


def test_lora_prefill_scale_prices_prefill_lora_apart_from_decode_lora():
    """hardware.lora_prefill_scale: its factor on prefill forwards, lora_compute_scale's on
    decodes; unset, lora_compute_scale covers both."""
    for make in (
        lambda k, p: RooflineCompute(ModelShape(), preset("h200"), k, p),
        lambda k, p: ProfileCompute(PROF, k, p),
    ):
        pre, dec = prefill(256, 0, "a", 64), decode(8, 512, adapters=4)
        pre_base, dec_base = make(1.0, None).forward_time(prefill(256)), make(1.0, None).forward_time(decode(8, 512))
        pre_lora = make(1.0, None).forward_time(pre) - pre_base
        dec_lora = make(1.0, None).forward_time(dec) - dec_base
        split = make(0.5, 2.0)
        assert split.forward_time(pre) == pytest.approx(pre_base + 2.0 * pre_lora)
        assert split.forward_time(dec) == pytest.approx(dec_base + 0.5 * dec_lora)
        assert make(0.5, None).forward_time(pre) == pytest.approx(pre_base + 0.5 * pre_lora)

