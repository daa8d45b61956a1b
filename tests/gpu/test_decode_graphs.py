"""Whole-step decode (gpu.decode_graphs) computes what LlamaModel.forward computes, padding
entries touch only the KV cache's scratch row and page, and CUDA-graph replays equal the
eager steps."""

import pytest

torch = pytest.importorskip("torch")

from gpu.decode_graphs import DecodeRunner, batch_buckets  # noqa: E402
from gpu.kv_cache import PagedKV  # noqa: E402
from gpu.lora import LoraSlots  # noqa: E402
from gpu.model import LlamaModel, StepInput  # noqa: E402
from sim.config import MODEL_PRESETS  # noqa: E402
from sim.core.model import ALL_TARGETS  # noqa: E402

TINY = MODEL_PRESETS["tiny"]
LENS = [5, 3, 7]  # prompts of the three requests
STEPS = 6  # decode steps in all


@pytest.fixture(autouse=True)
def _reference_kernels(monkeypatch):
    """CPU ops run the plain-torch references: tests/gpu/kernels' conftest sets
    TRITON_INTERPRET=1 for the whole session, which would interpret every op here."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def test_buckets_cover_every_size_with_the_smallest_padding():
    assert batch_buckets(64) == [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]
    assert batch_buckets(5) == [1, 2, 4, 5]
    assert batch_buckets(1) == [1]
    with pytest.raises(ValueError):
        batch_buckets(0)


def _kv(device, dtype) -> tuple[PagedKV, list[int]]:
    """A cache whose three requests sit on rows 0, 2, 3 with pages out of order (row 1 is
    another request's, released: its pages are free)."""
    kv = PagedKV(TINY, 5, 32, device, dtype, page_size=4)
    kv.row(100, 8)
    kv.row(101, 8)
    kv.release(100)
    rows = [kv.row(rid, n + STEPS) for rid, n in enumerate(LENS)]
    kv.release(101)
    return kv, rows


def _setup(device, dtype, tok_slot_of_item):
    """Model with 3 filled LoRA slots of mixed ranks, and two identical KV caches after a
    prefill of 3 items."""
    torch.manual_seed(0)
    slots = LoraSlots(TINY, 4, 8, ALL_TARGETS, device, dtype)
    slots.pool.normal_(0, 0.05)
    slots.scaling = [2.0, 0.5, 1.0, 1.0]
    slots.ranks = [8, 4, 2, 8]
    m = LlamaModel(TINY, device=device, dtype=dtype, seed=0, lora=slots)
    kv, rows = _kv(device, dtype)
    twin, twin_rows = _kv(device, dtype)
    assert rows == twin_rows == [0, 2, 3] and torch.equal(kv.block_table, twin.block_table)
    toks = torch.randint(0, TINY.vocab, (sum(LENS),), device=device)
    tok_slots = [s for n, s in zip(LENS, tok_slot_of_item, strict=True) for _ in range(n)]
    logits = m.forward(StepInput(toks, rows, [0, 0, 0], LENS, slots.meta(tok_slots)), kv)
    kv.last_tok[torch.tensor(rows, device=device)] = logits.argmax(-1)
    for a, b in zip(kv.k + kv.v + [kv.last_tok], twin.k + twin.v + [twin.last_tok], strict=True):
        b.copy_(a)
    return m, slots, kv, twin, rows


def _eager_steps(m, slots, kv, rows, ctx, tok_slot_of_item, steps):
    """Decode steps as LlamaModel.forward runs them (no padding, no graph)."""
    meta = slots.meta(list(tok_slot_of_item))
    rt = torch.tensor(rows, device=m.device)
    for j in range(steps):
        inp = StepInput(kv.last_tok[rt], rows, [c + j for c in ctx], [1] * len(rows), meta)
        kv.last_tok[rt] = m.forward(inp, kv).argmax(-1)


def _expect_same(kv, twin, rows):
    """Same tokens on the requests' rows, same keys/values on every page but the scratch."""
    idx = torch.tensor(rows, device=kv.k[0].device)
    assert torch.equal(twin.last_tok[idx], kv.last_tok[idx])
    s = kv.scratch_page
    for li in range(TINY.layers):
        torch.testing.assert_close(twin.k[li][:s], kv.k[li][:s], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(twin.v[li][:s], kv.v[li][:s], rtol=1e-4, atol=1e-5)


def _free_pages(kv) -> list[int]:
    used = {p for r in kv.row_of.values() for p in kv.block_table[r].tolist()}
    return [p for p in range(kv.pages) if p not in used]


@pytest.mark.parametrize("tok_slot_of_item", [[0, -1, 1], [-1, -1, -1], [2, 2, 2], [0, 1, 2]], ids=str)
def test_decode_steps_equal_the_eager_forward(tok_slot_of_item):
    m, slots, kv, twin, rows = _setup("cpu", torch.float32, tok_slot_of_item)
    _eager_steps(m, slots, kv, rows, LENS, tok_slot_of_item, steps=4)
    _eager_steps(m, slots, kv, rows[::2], [n + 4 for n in LENS[::2]], tok_slot_of_item[::2], steps=2)

    run = DecodeRunner(m, twin, max_batch=5, graphs=False)
    run.prepare(rows, LENS, tok_slot_of_item)  # 3 items -> bucket 4: one padding entry
    st = run._cur
    assert st.b == 4 and st.rows.tolist() == rows + [twin.scratch]
    n_adapters = len({s for s in tok_slot_of_item if s >= 0})
    assert (st.lora is None) == (n_adapters == 0)
    if st.lora is not None:
        assert st.lora.num_segments == n_adapters and st.lora.max_tokens == 4
    for _ in range(4):
        run.step()
    # item 1 finished: the batch changes, the same runner goes on with the other two
    run.prepare(rows[::2], [n + 4 for n in LENS[::2]], tok_slot_of_item[::2])
    assert run._cur.b == 2
    for _ in range(2):
        run.step()

    _expect_same(kv, twin, rows)
    free = _free_pages(twin)
    assert free  # row 1's released pages
    for li in range(TINY.layers):  # pages of no request: untouched by the padding entry
        assert twin.k[li][free].abs().max() == 0 and twin.v[li][free].abs().max() == 0
    assert twin.k[0][twin.scratch_page].abs().max() > 0  # padding wrote to the scratch page


def test_lora_of_one_item_changes_only_that_item():
    """Same prompts, same KV: decoding item 0 with an adapter leaves items 1, 2 as without."""
    m, slots, kv, twin, rows = _setup("cpu", torch.float32, [-1, -1, -1])
    for cache, slot_of_item in ((kv, [-1, -1, -1]), (twin, [1, -1, -1])):
        run = DecodeRunner(m, cache, max_batch=4, graphs=False)
        run.prepare(rows, LENS, slot_of_item)
        run.step()
    for r, n in zip(rows, LENS, strict=True):
        page, off = kv.block_table[r, n // kv.page_size], n % kv.page_size
        changed = (twin.k[0][page, off] - kv.k[0][page, off]).abs().max() > 1e-4
        assert changed == (r == rows[0]), f"row {r}"


def test_keys_and_refusals():
    m = LlamaModel(TINY, device="cpu", dtype=torch.float32, seed=0)
    kv = PagedKV(TINY, 4, 16, "cpu", torch.float32)
    kv.take_all_rows()
    run = DecodeRunner(m, kv, max_batch=2, graphs=False)
    assert run.keys() == [(1, False), (2, False)]  # no LoRA slots: no LoRA graphs
    with pytest.raises(ValueError, match="largest bucket 2"):
        run.prepare([0, 1, 2], [1, 1, 1], [-1, -1, -1])
    with pytest.raises(ValueError, match="empty"):
        run.prepare([], [], [])
    with pytest.raises(RuntimeError, match="prepare"):
        DecodeRunner(m, kv, max_batch=2, graphs=False).step()
    run.prepare([0], [1], [-1])
    run.step()
    run.reset()
    with pytest.raises(RuntimeError, match="prepare"):
        run.step()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
            DecodeRunner(m, kv, max_batch=2, graphs=True)

    slots = LoraSlots(TINY, 3, 4, ALL_TARGETS, "cpu", torch.float32)
    lm = LlamaModel(TINY, device="cpu", dtype=torch.float32, seed=0, lora=slots)
    run = DecodeRunner(lm, kv, max_batch=4, graphs=False, max_adapters=2)
    assert run.keys() == [(b, w) for b in (1, 2, 4) for w in (False, True)]
    run.prewarm()
    assert sorted(run._keys) == sorted(run.keys())
    assert run._keys[(4, True)].lora.max_segments == 2  # max_adapters caps the table
    assert run._keys[(1, True)].lora.max_segments == 1
    assert run.captured_s == 0  # nothing captured on CPU
    with pytest.raises(ValueError, match="capacity"):  # more adapters than a batch can hold
        run.prepare([0, 1, 2], [1, 1, 1], [0, 1, 2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_graph_replay_equals_the_eager_steps():
    tok_slot_of_item = [0, -1, 1]
    m, slots, kv, twin, rows = _setup("cuda", torch.float32, tok_slot_of_item)
    for cache, graphs in ((kv, False), (twin, True)):
        run = DecodeRunner(m, cache, max_batch=5, graphs=graphs)
        run.prewarm()
        run.prepare(rows, LENS, tok_slot_of_item)
        for _ in range(STEPS):
            run.step()
    assert run.captured_s > 0 and all(st.graph is not None for st in run._keys.values())
    torch.cuda.synchronize()
    _expect_same(kv, twin, rows)
