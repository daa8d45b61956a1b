"""The unified arena's page bookkeeping (gpu.arena): adapter runs stay contiguous, KV pages
move out of the way, and applying the returned moves in order never loses a page's data."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu.arena import PageArena


class Memory:
    """What the caller does with the moves: page contents copied in order, tables
    repointed."""

    def __init__(self, pages: int):
        self.data: list[object] = [None] * pages
        self.kv: dict[str, int] = {}  # logical KV page -> arena page (the block table)

    def apply(self, arena: PageArena, moves) -> None:
        where = {page: key for key, page in self.kv.items()}
        for m in moves:
            assert m.dst >= m.src + m.n or m.src >= m.dst + m.n, "overlapping copy"
            block = self.data[m.src:m.src + m.n]
            self.data[m.dst:m.dst + m.n] = block
            if m.owner is None:
                key = where.pop(m.src)
                self.kv[key], where[m.dst] = m.dst, key

    def check(self, arena: PageArena, adapters: dict[str, int]) -> None:
        for key, page in self.kv.items():
            assert self.data[page] == key, f"KV page {key} lost its data"
        for name, (start, n) in arena.adapters().items():
            assert n == adapters[name]
            assert self.data[start:start + n] == [(name, i) for i in range(n)], f"adapter {name} corrupted"


def _place(arena: PageArena, mem: Memory, name: str, n: int) -> None:
    start, moves = arena.place_adapter(name, n)
    mem.apply(arena, moves)
    mem.data[start:start + n] = [(name, i) for i in range(n)]


def test_kv_from_the_bottom_adapters_from_the_top():
    arena = PageArena(10)
    assert arena.take_kv(3) == [0, 1, 2]
    assert arena.place_adapter("a", 2) == (8, [])
    assert arena.place_adapter("b", 3) == (5, [])
    assert arena.free_pages == 2 and arena.kv_pages == 3


def test_kv_pages_in_the_way_move_to_free_pages():
    arena = PageArena(8)
    kv = arena.take_kv(6)  # pages 0..5, free 6, 7
    arena.free_kv(kv[:2])  # free 0, 1, 6, 7
    start, moves = arena.place_adapter("a", 3)
    assert start == 5  # the highest window with the fewest KV pages (page 5) to move
    assert [(m.src, m.dst, m.n, m.owner) for m in moves] == [(5, 0, 1, None)]
    arena.check()


def test_kv_pages_move_into_holes_rather_than_adapters():
    """A window whose KV pages can go elsewhere costs page copies; an adapter stays put."""
    arena, mem = PageArena(10), Memory(10)
    sizes = {"a": 2, "c": 2, "d": 3}
    _place(arena, mem, "a", 2)  # 8-9
    _place(arena, mem, "b", 2)  # 6-7
    _place(arena, mem, "c", 2)  # 4-5
    for i, page in enumerate(arena.take_kv(4)):  # 0-3
        mem.kv[f"kv{i}"], mem.data[page] = page, f"kv{i}"
    arena.free_adapter("b")
    arena.free_kv([mem.kv.pop("kv3")])  # free: 3, 6, 7
    _place(arena, mem, "d", 3)
    arena.check()
    mem.check(arena, sizes)
    assert arena.run_of("c") == (4, 2) and arena.run_of("d") == (1, 3)
    assert sorted(mem.kv.values()) == [0, 6, 7]


def test_fragmented_adapters_are_packed_up():
    arena, mem = PageArena(8), Memory(8)
    for name in "abcd":
        _place(arena, mem, name, 2)  # a 6-7, b 4-5, c 2-3, d 0-1
    arena.free_adapter("b")
    arena.free_adapter("d")  # free 0-1, 4-5: no run of 3
    start, moves = arena.place_adapter("e", 3)
    assert [(m.src, m.dst, m.n, m.owner) for m in moves] == [(2, 4, 2, "c")]
    mem.apply(arena, moves)
    mem.data[start:start + 3] = [("e", i) for i in range(3)]
    arena.check()
    mem.check(arena, {"a": 2, "c": 2, "e": 3})
    assert arena.run_of("c") == (4, 2) and start == 1


def _fragmented(transit: int) -> tuple[PageArena, Memory]:
    """a 6-7, c 3-4, e 0-1 with free pages 2 and 5: no run of 2."""
    arena, mem = PageArena(8, transit=transit), Memory(8 + transit)
    for name, n in (("a", 2), ("b", 1), ("c", 2), ("d", 1), ("e", 2)):
        _place(arena, mem, name, n)
    arena.free_adapter("b")
    arena.free_adapter("d")
    return arena, mem


def test_an_adapter_packed_onto_its_own_pages_passes_through_transit():
    """c moves up by less than its length (an overlapping copy): it waits in the transit
    run above the arena; e moves clear of itself directly."""
    arena, mem = _fragmented(transit=2)
    start, moves = arena.place_adapter("f", 2)
    assert [(m.src, m.dst, m.owner) for m in moves] == [(3, 8, "c"), (8, 4, "c"), (0, 2, "e")]
    mem.apply(arena, moves)
    mem.data[start:start + 2] = [("f", 0), ("f", 1)]
    arena.check()
    mem.check(arena, {"a": 2, "c": 2, "e": 2, "f": 2})
    assert start == 0
    with pytest.raises(RuntimeError, match="must pass through a transit run of 0"):
        _fragmented(transit=0)[0].place_adapter("f", 2)


def test_full_arena_and_bad_requests_are_refused():
    arena = PageArena(4)
    arena.take_kv(3)
    with pytest.raises(RuntimeError, match="arena full: 1 free pages of 4, adapter 'a' needs 2"):
        arena.place_adapter("a", 2)
    with pytest.raises(RuntimeError, match="arena full"):
        arena.take_kv(2)
    arena.place_adapter("a", 1)
    with pytest.raises(RuntimeError, match="already in the arena"):
        arena.place_adapter("a", 1)
    with pytest.raises(RuntimeError, match="page 3 is not a KV page"):
        arena.free_kv([3])
    with pytest.raises(ValueError):
        PageArena(0)


ops = st.lists(
    st.tuples(st.sampled_from(["kv", "free_kv", "adapter", "free_adapter"]), st.integers(1, 6)),
    min_size=1, max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(pages=st.integers(4, 40), ops=ops)
def test_random_sequences_keep_runs_whole_and_data_intact(pages, ops):
    """Any mix of KV takes and frees and adapter placements and evictions: a placement with
    enough free pages always succeeds, and applying its moves keeps every KV page's and every
    adapter's data."""
    arena, mem = PageArena(pages, transit=6), Memory(pages + 6)
    sizes: dict[str, int] = {}
    kv_keys = 0
    for i, (op, n) in enumerate(ops):
        if op == "kv" and arena.free_pages >= n:
            for page in arena.take_kv(n):
                key = f"kv{kv_keys}"
                kv_keys += 1
                mem.kv[key], mem.data[page] = page, key
        elif op == "free_kv" and mem.kv:
            keys = sorted(mem.kv)
            arena.free_kv([mem.kv.pop(keys[(n * 7919 + i) % len(keys)])])
        elif op == "adapter" and arena.free_pages >= n:
            name = f"ad{i}"
            sizes[name] = n
            _place(arena, mem, name, n)
        elif op == "free_adapter" and arena.adapters():
            arena.free_adapter(sorted(arena.adapters())[n % len(arena.adapters())])
        arena.check()
        mem.check(arena, sizes)
        assert arena.free_pages + arena.kv_pages + sum(n for _, n in arena.adapters().values()) == pages
