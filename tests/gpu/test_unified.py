"""The unified arena on the device (gpu.unified): a model whose KV pages and adapters share one
buffer computes what the slot pool and a KV cache of its own compute, also after the arena
has moved KV pages out of an adapter's way and packed cached adapters."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from gpu.adapters import HostPool, write_peft_adapter  # noqa: E402
from gpu.arena import Move  # noqa: E402
from gpu.kv_cache import PagedKV  # noqa: E402
from gpu.lora import LoraSlots  # noqa: E402
from gpu.model import LlamaModel, StepInput  # noqa: E402
from gpu.unified import UnifiedMemory, page_numel  # noqa: E402
from sim.config import MODEL_PRESETS  # noqa: E402
from sim.core.model import ALL_TARGETS  # noqa: E402

TINY = MODEL_PRESETS["tiny"]
RANKS = {"a": 8, "b": 4, "c": 2, "d": 8}


@pytest.fixture(autouse=True)
def _reference_kernels(monkeypatch):
    """CPU ops run the plain-torch references (the kernels' interpreter tests are elsewhere)."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    paths = {n: write_peft_adapter(root / n, TINY, r, ALL_TARGETS, seed=i, alpha=16)
             for i, (n, r) in enumerate(RANKS.items())}
    return HostPool(TINY, paths, mode="pageable", dtype=torch.float32)


def _run(model, kv, lora, tok_of_req: list[int], steps: int = 3) -> torch.Tensor:
    """A prefill of 3 requests (5 tokens each) then `steps` decode steps; -> every logit."""
    g = torch.Generator().manual_seed(7)
    prompts = torch.randint(0, TINY.vocab, (3, 5), generator=g)
    rows = [kv.row(i, 24) for i in range(3)]
    meta = lora.meta([s for s in tok_of_req for _ in range(5)])
    out = [model.forward(StepInput(prompts.flatten(), rows, [0, 0, 0], [5, 5, 5], meta), kv)]
    for step in range(steps):
        tok = out[-1].argmax(-1)
        meta = lora.meta(tok_of_req)
        out.append(model.forward(StepInput(tok, rows, [5 + step] * 3, [1, 1, 1], meta), kv))
    for i in range(3):
        kv.release(i)
    return torch.stack(out)


def _slot_model(host):
    slots = LoraSlots(TINY, 4, 8, ALL_TARGETS, "cpu", torch.float32)
    for i, n in enumerate(RANKS):
        ad = host.get(n)
        slots.copy_modules(i, ad.modules)
        slots.ranks[i], slots.scaling[i] = ad.rank, ad.scaling
    model = LlamaModel(TINY, device="cpu", dtype=torch.float32, seed=0, lora=slots)
    return model, PagedKV(TINY, 4, 32, "cpu", torch.float32)


def _unified(pages: int) -> UnifiedMemory:
    return UnifiedMemory(TINY, pages, rows=4, max_ctx=32, max_rank=8, targets=ALL_TARGETS,
                         max_adapters=4, device="cpu", dtype=torch.float32)


def test_a_forward_on_the_arena_equals_one_on_slots(host):
    model, kv = _slot_model(host)
    want = _run(model, kv, model.lora, [0, 2, -1])  # a, c, base
    um = _unified(40)
    um.mem.fill_(float("nan"))  # nothing outside what the arena wrote may be read
    um.kv.block_table.fill_(um.kv.scratch_page)
    um.mem[um.kv.scratch_page].zero_()
    first = {n: um.place(host.get(n)) for n in ("a", "c")}
    arena_model = LlamaModel(TINY, device="cpu", dtype=torch.float32, seed=0, lora=um.lora)
    got = _run(arena_model, um.kv, um.lora, [first["a"], first["c"], -1])
    torch.testing.assert_close(got, want)


def test_moves_between_steps_leave_the_forward_unchanged(host):
    """Mid-run (after the prefill, between decode steps) the arena moves two live KV pages out
    of a new adapter's way and an adapter to other pages: the decode reads the same values.
    TINY: a page is 2048 elements, a rank-8 adapter 8 pages, rank 4 four, rank 2 two."""
    model, kv = _slot_model(host)
    want = _run(model, kv, model.lora, [1, 3, 0])  # b, d, a
    um = _unified(26)
    lora = um.lora
    moves = []
    apply = um.apply
    um.apply = lambda ms: (moves.extend(ms), apply(ms))  # record what the arena asks
    dummy = um.kv.row(10, 24)  # pages 0-1
    g = torch.Generator().manual_seed(7)
    prompts = torch.randint(0, TINY.vocab, (3, 5), generator=g)
    rows = [um.kv.row(i, 24) for i in range(3)]  # pages 2-7
    for n in ("a", "c", "b"):
        um.place(host.get(n))  # a 18-25, c 16-17, b 12-15
    arena_model = LlamaModel(TINY, device="cpu", dtype=torch.float32, seed=0, lora=lora)
    tok = lambda: [lora.first["b"], lora.first["d"], lora.first["a"]]  # noqa: E731
    um.kv.release(10)  # free 0-1 and 8-11
    assert dummy == 0
    um.evict("c")  # free 16-17
    um.place(host.get("d"))  # 8 pages: the window 4-11 holds live KV pages 4-7
    assert [(m.src, m.n, m.owner) for m in moves] == [(4, 1, None), (5, 1, None), (6, 1, None), (7, 1, None)]
    out = [arena_model.forward(StepInput(prompts.flatten(), rows, [0, 0, 0], [5, 5, 5],
                                         lora.meta([s for s in tok() for _ in range(5)])), um.kv)]
    for step in range(3):
        t = out[-1].argmax(-1)
        if step == 1:  # move b by hand, as packing does: copy, then repoint
            start, n = um.arena.run_of("b")
            um.apply([Move(start, um.arena.pages, n, "b")])  # into the transit run
        out.append(arena_model.forward(StepInput(t, rows, [5 + step] * 3, [1, 1, 1], lora.meta(tok())), um.kv))
    torch.testing.assert_close(torch.stack(out), want)
    assert lora.first["b"] == um.arena.pages


def test_page_size_and_adapter_checks(host):
    um = _unified(40)
    assert um.mem.shape == (40 + um.arena.transit + 1, page_numel(TINY))
    assert um.lora.pages_for(8) == um.arena.transit
    small = UnifiedMemory(TINY, 8, rows=2, max_ctx=16, max_rank=4, targets=ALL_TARGETS,
                          max_adapters=2, device="cpu", dtype=torch.float32)
    with pytest.raises(ValueError, match="rank 8 exceeds the arena's max rank 4"):
        small.place(host.get("a"))
