"""Piecewise decode (gpu.decode_graphs) computes what LlamaModel.forward computes, padding
entries touch only the scratch row, and CUDA-graph replays equal the eager pieces."""

import pytest

torch = pytest.importorskip("torch")

from gpu.decode_graphs import DecodeRunner, adapter_buckets, batch_buckets  # noqa: E402
from gpu.lora import LoraSlots  # noqa: E402
from gpu.model import KVPool, LlamaModel, StepInput  # noqa: E402
from sim.config import MODEL_PRESETS  # noqa: E402
from sim.core.model import ALL_TARGETS  # noqa: E402

TINY = MODEL_PRESETS["tiny"]


def test_buckets_cover_every_size_with_the_smallest_padding():
    assert batch_buckets(64) == [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]
    assert batch_buckets(5) == [1, 2, 4, 5]
    assert batch_buckets(1) == [1]
    assert adapter_buckets(16) == [1, 2, 4, 8, 16]
    assert adapter_buckets(6) == [1, 2, 4, 6]
    with pytest.raises(ValueError):
        batch_buckets(0)


def _setup(device, dtype, tok_slot_of_item):
    """Model with 3 filled LoRA slots, and two identical KV pools after a prefill of 3 items."""
    torch.manual_seed(0)
    slots = LoraSlots(TINY, 4, 8, ALL_TARGETS, device, dtype)
    slots.pool.normal_(0, 0.05)
    slots.scaling = [2.0, 0.5, 1.0, 1.0]
    m = LlamaModel(TINY, device=device, dtype=dtype, seed=0, lora=slots)
    kv = KVPool(TINY, rows=6, max_ctx=32, device=device, dtype=dtype)
    lens, rows = [5, 3, 7], [0, 2, 4]
    toks = torch.randint(0, TINY.vocab, (sum(lens),), device=device)
    tok_slots = [s for n, s in zip(lens, tok_slot_of_item, strict=True) for _ in range(n)]
    logits = m.forward(StepInput(toks, rows, [0, 0, 0], lens, slots.batch(tok_slots)), kv)
    kv.last_tok[torch.tensor(rows, device=device)] = logits.argmax(-1)
    twin = KVPool(TINY, rows=6, max_ctx=32, device=device, dtype=dtype)
    for a, b in zip(kv.k + kv.v + [kv.last_tok], twin.k + twin.v + [twin.last_tok], strict=True):
        b.copy_(a)
    return m, slots, kv, twin, lens, rows


def _eager_steps(m, slots, kv, rows, ctx, tok_slot_of_item, steps):
    lb = slots.batch(list(tok_slot_of_item))
    rt = torch.tensor(rows, device=m.device)
    for j in range(steps):
        inp = StepInput(kv.last_tok[rt], rows, [c + j for c in ctx], [1] * len(rows), lb)
        kv.last_tok[rt] = m.forward(inp, kv).argmax(-1)


@pytest.mark.parametrize("tok_slot_of_item", [[0, -1, 1], [-1, -1, -1], [2, 2, 2]])
def test_piecewise_decode_equals_the_eager_forward(tok_slot_of_item):
    m, slots, kv, twin, lens, rows = _setup("cpu", torch.float32, tok_slot_of_item)
    _eager_steps(m, slots, kv, rows, lens, tok_slot_of_item, steps=4)
    run = DecodeRunner(m, twin, max_batch=6, graphs=False)
    run.prepare(rows, lens, tok_slot_of_item)  # 3 items -> bucket 4: one padding entry
    for _ in range(4):
        run.step()
    assert run._cur.t == 4
    assert run._cur.n == len({s for s in tok_slot_of_item if s >= 0})
    idx = torch.tensor(rows)
    assert torch.equal(twin.last_tok[idx], kv.last_tok[idx])  # same generated tokens
    for li in range(TINY.layers):
        torch.testing.assert_close(twin.k[li][idx], kv.k[li][idx], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(twin.v[li][idx], kv.v[li][idx], rtol=1e-4, atol=1e-5)
    free = torch.tensor([1, 3, 5])  # rows of no request: untouched by the padding entry
    for li in range(TINY.layers):
        assert twin.k[li][free].abs().max() == 0 and twin.v[li][free].abs().max() == 0
    assert twin.k[0][twin.scratch].abs().max() > 0  # padding wrote to the scratch row


def test_lora_of_one_item_changes_only_that_item():
    """Same prompts, same KV: decoding item 0 with an adapter leaves items 1, 2 as without."""
    m, slots, kv, twin, lens, rows = _setup("cpu", torch.float32, [-1, -1, -1])
    for pool, slot_of_item in ((kv, [-1, -1, -1]), (twin, [1, -1, -1])):
        run = DecodeRunner(m, pool, max_batch=4, graphs=False)
        run.prepare(rows, lens, slot_of_item)
        run.step()
    for r, n in zip(rows, lens, strict=True):
        changed = (twin.k[0][r, n] - kv.k[0][r, n]).abs().max() > 1e-4
        assert changed == (r == rows[0]), f"row {r}"


def test_a_batch_larger_than_the_largest_bucket_is_refused():
    m = LlamaModel(TINY, device="cpu", dtype=torch.float32, seed=0)
    kv = KVPool(TINY, rows=4, max_ctx=16, device="cpu", dtype=torch.float32)
    run = DecodeRunner(m, kv, max_batch=2, graphs=False)
    with pytest.raises(ValueError, match="largest bucket 2"):
        run.prepare([0, 1, 2], [1, 1, 1], [-1, -1, -1])
    with pytest.raises(RuntimeError, match="prepare"):
        DecodeRunner(m, kv, max_batch=2, graphs=False).step()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_graph_replay_equals_the_eager_pieces():
    tok_slot_of_item = [0, -1, 1]
    m, slots, kv, twin, lens, rows = _setup("cuda", torch.float32, tok_slot_of_item)
    for pool, graphs in ((kv, False), (twin, True)):
        run = DecodeRunner(m, pool, max_batch=6, graphs=graphs)
        run.prewarm()
        run.prepare(rows, lens, tok_slot_of_item)
        for _ in range(5):
            run.step()
    assert run.captured_s > 0 and all(st.graphs for st in run._keys.values())
    idx = torch.tensor(rows, device="cuda")
    torch.cuda.synchronize()
    assert torch.equal(twin.last_tok[idx], kv.last_tok[idx])
    for li in range(TINY.layers):
        torch.testing.assert_close(twin.k[li][idx], kv.k[li][idx], rtol=1e-4, atol=1e-5)
