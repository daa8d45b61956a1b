"""Piecewise prefill (gpu.prefill_graphs) computes what LlamaModel.forward computes, padding
tokens touch only the KV cache's scratch page, prefills above the largest bucket run eagerly,
and CUDA-graph replays equal the eager pieces."""

import pytest

torch = pytest.importorskip("torch")

from gpu.kv_cache import PagedKV  # noqa: E402
from gpu.lora import LoraSlots  # noqa: E402
from gpu.model import LlamaModel, StepInput  # noqa: E402
from gpu.piecewise import bucket  # noqa: E402
from gpu.prefill_graphs import PrefillRunner, device_buckets, pad_past, token_buckets  # noqa: E402
from sim.config import MODEL_PRESETS  # noqa: E402
from sim.core.model import ALL_TARGETS  # noqa: E402

TINY = MODEL_PRESETS["tiny"]


@pytest.fixture(autouse=True)
def _reference_kernels(monkeypatch):
    """CPU ops run the plain-torch references: tests/gpu/kernels' conftest sets
    TRITON_INTERPRET=1 for the whole session, which would interpret every op here."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def test_token_buckets():
    assert token_buckets(300) == [16, 32, 48, 64, 96, 128, 160, 192, 224, 256, 300]
    assert token_buckets(2048)[-3:] == [1920, 1984, 2048]
    assert token_buckets(10) == [10]
    with pytest.raises(ValueError):
        token_buckets(0)
    assert token_buckets(300, skip=(32, 300, 500)) == [16, 48, 64, 96, 128, 160, 192, 224, 256, 300]
    assert bucket([16, 32], 1) == 16 and bucket([16, 32], 17) == 32
    with pytest.raises(ValueError, match="largest bucket 32"):
        bucket([16, 32], 33)


def test_hopper_prefills_pad_past_448_tokens_and_cpu_pads_past_none():
    """cuBLAS ran a prefill's weight GEMMs at 448 rows a third slower than at 512 on an H100
    (gpu.kernels.configs): a 400-token prefill pads to 512 there; the CPU keeps every bucket."""
    assert pad_past("NVIDIA H100 80GB HBM3") == pad_past("NVIDIA H200") == (448,)
    assert pad_past(None) == ()
    assert 448 in device_buckets(2048, torch.device("cpu"))
    hopper = token_buckets(2048, pad_past("NVIDIA H200"))
    assert 448 not in hopper and bucket(hopper, 400) == 512 and bucket(hopper, 384) == 384


def _model(device="cpu", dtype=torch.float32, n_slots=4):
    torch.manual_seed(0)
    slots = LoraSlots(TINY, n_slots, 8, ALL_TARGETS, device, dtype)
    slots.pool.normal_(0, 0.05)
    slots.scaling = [2.0, 0.5, 1.0, 1.5][:n_slots]
    slots.ranks = [8, 4, 2, 8][:n_slots]
    return LlamaModel(TINY, device=device, dtype=dtype, seed=0, lora=slots), slots


def _caches(lens, device="cpu", dtype=torch.float32):
    """Two identical caches; request i (length lens[i]) on row rows[i]. Rows 0 and 2 are the
    requests' and row 1 free (taken and released first: its pages free, the requests' out of
    order)."""
    out = []
    for _ in range(2):
        kv = PagedKV(TINY, 6, 40, device, dtype, page_size=4)
        kv.row(100, 8)
        kv.row(101, 8)
        kv.release(100)
        rows = [kv.row(i, n) for i, n in enumerate(lens)]
        kv.release(101)
        out.append((kv, rows))
    (kv, rows), (twin, twin_rows) = out
    assert rows == twin_rows and torch.equal(kv.block_table, twin.block_table)
    return kv, twin, rows


def _free_pages(kv) -> list[int]:
    used = {p for r in kv.row_of.values() for p in kv.block_table[r].tolist()}
    return [p for p in range(kv.pages) if p not in used]


def _expect_same(kv, twin):
    """Same keys/values on every page but the scratch one (which padding writes)."""
    s = kv.scratch_page
    for li in range(TINY.layers):
        torch.testing.assert_close(twin.k[li][:s], kv.k[li][:s], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(twin.v[li][:s], kv.v[li][:s], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("slot_of_item", [[0, -1, 1], [-1, -1, -1], [2, 2, 2], [0, 1, 3]], ids=str)
def test_piecewise_prefill_equals_the_eager_forward(slot_of_item):
    m, slots = _model()
    lens = [5, 3, 7]
    kv, twin, rows = _caches(lens)
    toks = torch.randint(0, TINY.vocab, (sum(lens),))
    tok_slots = [s for n, s in zip(lens, slot_of_item, strict=True) for _ in range(n)]
    want = m.forward(StepInput(toks, rows, [0, 0, 0], lens, slots.meta(tok_slots)), kv)
    run = PrefillRunner(m, twin, max_tokens=64, graphs=False)
    got = run.run(StepInput(toks, rows, [0, 0, 0], lens), tok_slots)
    with_lora = any(s >= 0 for s in slot_of_item)
    assert list(run._keys) == [(16, with_lora)]  # 15 tokens -> bucket 16: one padding token
    st = run._keys[(16, with_lora)]
    if with_lora:
        assert st.lora.num_segments == len({s for s in slot_of_item if s >= 0})
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    _expect_same(kv, twin)
    free = _free_pages(twin)
    assert free
    for li in range(TINY.layers):  # pages of no request: untouched by the padding token
        assert twin.k[li][free].abs().max() == 0 and twin.v[li][free].abs().max() == 0
    assert twin.k[0][twin.scratch_page].abs().max() > 0  # the padding token wrote there


def test_a_chunked_prefill_continues_an_items_context():
    """Second chunk of item 0 (ctx 6) packed with a fresh item: attention over the cached
    keys, as the eager forward does it."""
    m, slots = _model()
    kv, twin, rows = _caches([10, 5])
    first = torch.randint(0, TINY.vocab, (6,))
    for cache in (kv, twin):
        m.forward(StepInput(first, rows[:1], [0], [6], slots.meta([0] * 6)), cache)
    toks = torch.randint(0, TINY.vocab, (9,))
    tok_slots = [0] * 4 + [1] * 5
    want = m.forward(StepInput(toks, rows, [6, 0], [4, 5], slots.meta(tok_slots)), kv)
    got = PrefillRunner(m, twin, max_tokens=64, graphs=False).run(
        StepInput(toks, rows, [6, 0], [4, 5]), tok_slots
    )
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    _expect_same(kv, twin)


def test_prefills_above_the_largest_bucket_run_eagerly():
    m, slots = _model()
    kv, twin, rows = _caches([10, 11])
    run = PrefillRunner(m, twin, max_tokens=16, graphs=False)
    assert run.t_sizes == [16] and run.graphed(16) and not run.graphed(17)
    toks = torch.randint(0, TINY.vocab, (21,))
    big = StepInput(toks, rows, [0, 0], [10, 11])
    tok_slots = [0] * 10 + [-1] * 11
    want = m.forward(StepInput(toks, rows, [0, 0], [10, 11], slots.meta(tok_slots)), kv)
    torch.testing.assert_close(run.run(big, tok_slots), want, rtol=1e-4, atol=1e-4)
    assert not run._keys  # no bucket built
    _expect_same(kv, twin)
    assert twin.k[0][twin.scratch_page].abs().max() == 0  # eager: no padding token
    with pytest.raises(ValueError, match="token slots"):
        run.run(big, [0] * 20)

    eager = PrefillRunner(m, twin, max_tokens=0, graphs=False)  # always eager
    assert eager.t_sizes == [] and eager.keys() == [] and not eager.graphed(1)


def test_layer_hooks_run_before_each_layer():
    m, _ = _model()
    kv, _, rows = _caches([4])
    toks = torch.randint(0, TINY.vocab, (4,))
    for max_tokens in (16, 0):  # graphed pieces, then the eager forward
        seen = []
        PrefillRunner(m, kv, max_tokens=max_tokens, graphs=False).run(
            StepInput(toks, rows, [0], [4]), [-1] * 4, before_layer=seen.append
        )
        assert seen == list(range(TINY.layers))


def test_keys_capacities_and_refusals():
    m, _ = _model()
    kv, _, rows = _caches([12, 12, 12])
    run = PrefillRunner(m, kv, max_tokens=32, max_adapters=2, graphs=False)
    assert run.keys() == [(16, False), (16, True), (32, False), (32, True)]
    run.prewarm()
    assert sorted(run._keys) == run.keys() and run.captured_s == 0
    assert run._keys[(16, True)].lora.max_segments == 2  # max_adapters caps the table
    assert run._keys[(16, False)].lora is None
    three = [0] * 4 + [1] * 4 + [2] * 4  # 3 adapters > max_adapters: refused
    with pytest.raises(ValueError, match="capacity"):
        run.run(StepInput(torch.zeros(12, dtype=torch.long), rows, [0, 0, 0], [4, 4, 4]), three)
    base = LlamaModel(TINY, device="cpu", dtype=torch.float32, seed=0)
    assert PrefillRunner(base, kv, max_tokens=32, graphs=False).keys() == [(16, False), (32, False)]
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
            PrefillRunner(m, kv, max_tokens=32, graphs=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_graph_replay_equals_the_eager_pieces_on_cuda():
    m, slots = _model("cuda", torch.float32)
    lens = [5, 3, 7]
    kv, twin, rows = _caches(lens, "cuda", torch.float32)
    toks = torch.randint(0, TINY.vocab, (sum(lens),), device="cuda")
    tok_slots = [0] * 5 + [-1] * 3 + [1] * 7
    outs = []
    for cache, graphs in ((kv, False), (twin, True)):
        run = PrefillRunner(m, cache, max_tokens=64, graphs=graphs)
        run.prewarm()
        outs.append(run.run(StepInput(toks, rows, [0, 0, 0], lens), tok_slots))
    assert run.captured_s > 0 and all(st.graphs for st in run._keys.values())
    torch.cuda.synchronize()
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-4)
    _expect_same(kv, twin)
