"""PagedKV (gpu.kv_cache): rows and pages handed out and given back, capacity errors, the
scratch row and page, slot mapping through shuffled pages, and the runners refusing to go past
a row's pages."""

import pytest

torch = pytest.importorskip("torch")

from gpu.decode_graphs import DecodeRunner  # noqa: E402
from gpu.kv_cache import PAGE_SIZE, PagedKV  # noqa: E402
from gpu.model import LlamaModel, StepInput  # noqa: E402
from sim.config import MODEL_PRESETS  # noqa: E402

TINY = MODEL_PRESETS["tiny"]


@pytest.fixture(autouse=True)
def _reference_kernels(monkeypatch):
    """CPU ops run the plain-torch references: tests/gpu/kernels' conftest sets
    TRITON_INTERPRET=1 for the whole session, which would interpret every op here."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def _kv(rows=3, max_ctx=40, page_size=16, pages=None) -> PagedKV:
    return PagedKV(TINY, rows, max_ctx, "cpu", torch.float32, page_size=page_size, pages=pages)


def _pages(kv: PagedKV, row: int) -> list[int]:
    """The pages of a row's block-table entry (the scratch page marks unused entries)."""
    return [p for p in kv.block_table[row].tolist() if p != kv.scratch_page]


def test_shapes_and_defaults():
    kv = _kv(rows=3, max_ctx=40, page_size=16)
    assert kv.page_size == PAGE_SIZE == 16
    assert kv.max_pages == 3 and kv.pages == 9 and kv.free_pages == 9
    assert (kv.scratch, kv.scratch_page) == (3, 9)
    assert len(kv.k) == len(kv.v) == TINY.layers
    assert kv.k[0].shape == (10, 16, TINY.kv_heads, TINY.head_dim)  # + the scratch page
    assert kv.block_table.shape == (4, 3) and kv.block_table.dtype == torch.int32
    assert kv.last_tok.shape == (4,)
    assert (kv.block_table == kv.scratch_page).all()  # nothing handed out yet
    assert PagedKV.bytes_per_token(TINY) == 2 * TINY.layers * TINY.kv_heads * TINY.head_dim * 4
    with pytest.raises(ValueError, match="rows >= 1"):
        _kv(rows=0)


def test_rows_take_pages_for_their_length_and_give_them_back():
    kv = _kv(rows=3, max_ctx=40, page_size=16)
    r0 = kv.row(10, 20)  # 2 pages
    assert r0 == 0 and kv.capacity[0] == 32 and kv.free_pages == 7
    assert kv.row(10, 40) == 0 and kv.free_pages == 7  # a request keeps its row and pages
    r1 = kv.row(11)  # default: max_ctx -> 3 pages
    assert r1 == 1 and kv.capacity[1] == 48 and kv.free_pages == 4
    assert kv.row(12, 0) == 2 and kv.capacity[2] == 16  # even an empty request gets a page
    assert kv.row_of == {10: 0, 11: 1, 12: 2}
    p0, p1, p2 = _pages(kv, 0), _pages(kv, 1), _pages(kv, 2)
    assert (len(p0), len(p1), len(p2)) == (2, 3, 1)
    assert len(set(p0 + p1 + p2)) == 6  # no page shared
    assert kv.block_table[0, 2].item() == kv.scratch_page  # unused entries: scratch page

    kv.release(10)
    assert kv.free_pages == 5 and 0 not in kv.capacity and 10 not in kv.row_of
    kv.release(10)  # releasing twice, or an unknown request, is a no-op
    kv.release(99)
    assert kv.free_pages == 5
    kv.release(12)
    assert kv.row(13, 1) == 0  # lowest free row first (row 2 is free too)
    assert kv.row(14, 1) == 2
    assert set(_pages(kv, 0) + _pages(kv, 2)) <= set(p0 + p2)  # released pages reused

    kv.reset()
    assert kv.row_of == {} and kv.capacity == {} and kv.free_pages == kv.pages
    assert kv.row(20) == 0


def test_capacity_errors_are_one_line_and_leave_the_cache_as_it_was():
    kv = _kv(rows=2, max_ctx=40, page_size=16, pages=4)
    with pytest.raises(RuntimeError, match="needs 41 tokens") as too_long:
        kv.row(0, 41)
    kv.row(1, 40)  # 3 of 4 pages
    with pytest.raises(RuntimeError, match="KV cache full") as no_pages:
        kv.row(2, 17)  # needs 2 pages, 1 free
    assert "request 2 needs 2" in str(no_pages.value)
    kv.row(3, 16)  # the last page
    with pytest.raises(RuntimeError, match="KV cache full") as no_rows:
        kv.row(4, 1)
    assert "2 rows" in str(no_rows.value)
    for err in (too_long, no_pages, no_rows):
        assert "\n" not in str(err.value)
    assert kv.row_of == {1: 0, 3: 1} and kv.free_pages == 0  # failed requests took nothing
    kv.release(1)
    assert kv.row(2, 17) == 0


def test_scratch_row_and_page_are_never_handed_out():
    kv = _kv(rows=4, max_ctx=33, page_size=8)
    kv.take_all_rows()
    assert kv.row_of == {r: r for r in range(4)} and kv.free_pages == 0
    assert all(kv.capacity[r] == 40 for r in range(4))  # 5 pages of 8 each
    pages = [p for r in range(4) for p in _pages(kv, r)]
    assert sorted(pages) == list(range(kv.pages)) and kv.scratch_page not in pages
    assert kv.scratch not in kv.row_of.values()
    assert (kv.block_table[kv.scratch] == kv.scratch_page).all()
    with pytest.raises(RuntimeError, match="KV cache full"):
        kv.row(99, 1)
    kv.take_all_rows()  # again: a reset first
    assert kv.free_pages == 0 and len(kv.row_of) == 4


def test_slot_mapping_follows_shuffled_pages():
    kv = _kv(rows=4, max_ctx=32, page_size=4)
    for rid in range(3):
        kv.row(rid, 8)  # rows 0..2: pages 0..5 in order
    kv.release(1)  # pages 2, 3 back at the end of the free list
    kv.release(0)
    r = kv.row(7, 24)  # row 0: 6 pages, partly released ones, out of order
    assert r == 0
    pages = _pages(kv, r)
    assert pages != sorted(pages)
    rows = [0, 0, 0, 2, 0, 2, 0]
    pos = [0, 3, 4, 5, 9, 7, 23]
    got = kv.slot_mapping(kv.block_table[rows], torch.tensor(pos))
    table = kv.block_table.tolist()
    want = [table[rw][p // 4] * 4 + p % 4 for rw, p in zip(rows, pos, strict=True)]
    assert got.tolist() == want

    # an arbitrary permutation written into the table maps the same way
    perm = torch.randperm(kv.pages, generator=torch.Generator().manual_seed(0))[: kv.max_pages]
    kv.block_table[1] = perm.to(torch.int32)
    p = torch.arange(kv.max_ctx)
    got = kv.slot_mapping(kv.block_table[torch.ones_like(p)], p)
    assert got.tolist() == [perm[i // 4].item() * 4 + i % 4 for i in range(kv.max_ctx)]


def test_the_model_refuses_a_context_past_a_rows_pages():
    m = LlamaModel(TINY, device="cpu", dtype=torch.float32, seed=0)
    kv = _kv(rows=2, max_ctx=32, page_size=4)
    r = kv.row(0, 6)  # 2 pages: 8 positions
    toks = torch.randint(0, TINY.vocab, (9,))
    m.forward(StepInput(toks[:8], [r], [0], [8]), kv)  # exactly fills them
    with pytest.raises(RuntimeError, match="exceeds KV row 0's pages"):
        m.forward(StepInput(toks[8:], [r], [8], [1]), kv)
    with pytest.raises(RuntimeError, match="exceeds KV row 1's pages"):
        m.forward(StepInput(toks[:1], [1], [0], [1]), kv)  # a row nobody took


def test_the_decode_runner_refuses_to_step_past_a_rows_pages():
    m = LlamaModel(TINY, device="cpu", dtype=torch.float32, seed=0)
    kv = _kv(rows=2, max_ctx=32, page_size=4)
    short, long = kv.row(0, 6), kv.row(1, 20)  # 8 and 20 positions
    toks = torch.randint(0, TINY.vocab, (11,))
    m.forward(StepInput(toks, [short, long], [0, 0], [5, 6]), kv)
    run = DecodeRunner(m, kv, max_batch=2, graphs=False)
    run.prepare([short, long], [5, 6], [-1, -1])
    for _ in range(3):  # positions 5, 6, 7 of the short row: its last page
        run.step()
    with pytest.raises(RuntimeError, match="past its KV rows' pages"):
        run.step()
    run.prepare([long], [9], [-1])  # the long row alone goes on to its end
    for _ in range(11):
        run.step()
    with pytest.raises(RuntimeError, match="past its KV rows' pages"):
        run.step()
    run.prepare([short], [8], [-1])  # prepared already full: no step at all
    with pytest.raises(RuntimeError, match="past its KV rows' pages"):
        run.step()
