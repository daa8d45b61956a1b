"""Piecewise prefill (gpu.prefill_graphs) computes what LlamaModel.forward computes with the
segment LoRA layout, padding tokens touch only the scratch row, and CUDA-graph replays equal
the eager pieces."""

import pytest

torch = pytest.importorskip("torch")

from gpu.lora import DenseLoraBatch, LoraSlots  # noqa: E402
from gpu.model import KVPool, LlamaModel, StepInput  # noqa: E402
from gpu.prefill_graphs import PrefillRunner, token_buckets  # noqa: E402
from sim.config import MODEL_PRESETS  # noqa: E402
from sim.core.model import ALL_TARGETS  # noqa: E402

TINY = MODEL_PRESETS["tiny"]


def test_token_buckets():
    assert token_buckets(300) == [16, 32, 48, 64, 96, 128, 160, 192, 224, 256, 300]
    assert token_buckets(2048)[-3:] == [1920, 1984, 2048]
    assert token_buckets(10) == [10]
    with pytest.raises(ValueError):
        token_buckets(0)


def _model(device="cpu", dtype=torch.float32, n_slots=4):
    torch.manual_seed(0)
    slots = LoraSlots(TINY, n_slots, 8, ALL_TARGETS, device, dtype)
    slots.pool.normal_(0, 0.05)
    slots.scaling = [2.0, 0.5, 1.0, 1.5][:n_slots]
    return LlamaModel(TINY, device=device, dtype=dtype, seed=0, lora=slots), slots


def _pools(device="cpu", dtype=torch.float32):
    return [KVPool(TINY, rows=6, max_ctx=40, device=device, dtype=dtype) for _ in range(2)]


def _expect_same(kv, twin, rows):
    idx = torch.tensor(rows, device=kv.k[0].device)
    for li in range(TINY.layers):
        torch.testing.assert_close(twin.k[li][idx], kv.k[li][idx], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(twin.v[li][idx], kv.v[li][idx], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "slot_of_item", [[0, -1, 1], [-1, -1, -1], [2, 2, 2], [0, 1, 3]], ids=str
)
def test_piecewise_prefill_equals_the_eager_forward(slot_of_item):
    m, slots = _model()
    kv, twin = _pools()
    lens, rows = [5, 3, 7], [0, 2, 4]
    toks = torch.randint(0, TINY.vocab, (sum(lens),))
    tok_slots = [s for n, s in zip(lens, slot_of_item, strict=True) for _ in range(n)]
    want = m.forward(StepInput(toks, rows, [0, 0, 0], lens, slots.batch(tok_slots)), kv)
    run = PrefillRunner(m, twin, max_tokens=64, graphs=False)
    got = run.run(StepInput(toks, rows, [0, 0, 0], lens), tok_slots)
    n_used = len({s for s in slot_of_item if s >= 0})
    assert list(run._keys) == [(16, {0: 0, 1: 1, 2: 2, 3: 4}[n_used])]  # 15 tokens -> 16
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    _expect_same(kv, twin, rows)
    free = torch.tensor([1, 3, 5])  # rows of no request: untouched by the padding token
    for li in range(TINY.layers):
        assert twin.k[li][free].abs().max() == 0 and twin.v[li][free].abs().max() == 0
    assert twin.k[0][twin.scratch].abs().max() > 0  # the padding token wrote there


def test_a_chunked_prefill_continues_an_items_context():
    """Second chunk of item 0 (ctx 6) packed with a fresh item: attention over the cached
    keys, as the eager forward does it."""
    m, slots = _model()
    kv, twin = _pools()
    first = torch.randint(0, TINY.vocab, (6,))
    for pool in (kv, twin):
        m.forward(StepInput(first, [1], [0], [6], slots.batch([0] * 6)), pool)
    toks = torch.randint(0, TINY.vocab, (9,))
    tok_slots = [0] * 4 + [1] * 5
    want = m.forward(StepInput(toks, [1, 3], [6, 0], [4, 5], slots.batch(tok_slots)), kv)
    got = PrefillRunner(m, twin, max_tokens=64, graphs=False).run(
        StepInput(toks, [1, 3], [6, 0], [4, 5]), tok_slots
    )
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    _expect_same(kv, twin, [1, 3])


def test_larger_prefills_and_adapter_counts_run_eagerly():
    m, slots = _model()
    kv, twin = _pools()
    run = PrefillRunner(m, twin, max_tokens=16, max_adapters=2, graphs=False)
    assert run.n_sizes == [1, 2]
    toks = torch.randint(0, TINY.vocab, (21,))
    big = StepInput(toks, [0, 1], [0, 0], [10, 11])
    want = m.forward(StepInput(toks, [0, 1], [0, 0], [10, 11], slots.batch([0] * 21)), kv)
    torch.testing.assert_close(run.run(big, [0] * 21), want, rtol=1e-4, atol=1e-4)
    three = [0] * 4 + [1] * 4 + [2] * 4  # 3 adapters > max_adapters: no graph either
    run.run(StepInput(toks[:12], [2, 3, 4], [0, 0, 0], [4, 4, 4]), three)
    assert not run._keys
    with pytest.raises(ValueError, match="token slots"):
        run.run(big, [0] * 20)


def test_dense_lora_equals_the_reference_per_token():
    """DenseLoraBatch: each token gets exactly its own adapter's delta, base tokens none,
    whatever the padding of blocks and rows."""
    _, slots = _model()
    x = torch.randn(7, TINY.hidden)
    tok_slots = [1, 1, -1, 3, 1, 3, -1]
    used, mask = slots.dense(tok_slots, n_min=4, t_min=8)
    assert used == [1, 3, 1, 1] and mask.shape == (8, 4) and mask[7].abs().max() == 0
    assert mask[0].tolist() == [0.5, 0, 0, 0] and mask[3].tolist() == [0, 1.5, 0, 0]
    db = DenseLoraBatch(torch.tensor(used), mask.view(8, 4, 1), 4)
    xp = torch.cat([x, torch.randn(1, TINY.hidden)])
    out = slots.apply_dense(torch.zeros(8, TINY.hidden), xp, 0, "q_proj", db)
    for t, s in enumerate(tok_slots):
        if s < 0:
            assert out[t].abs().max() == 0
            continue
        a = slots.A(0, "q_proj")[s]
        b = slots.Bt(0, "q_proj")[s].t()
        ref = slots.scaling[s] * (x[t] @ a.t()) @ b.t()
        torch.testing.assert_close(out[t], ref, rtol=1e-4, atol=1e-5)
    assert out[7].abs().max() == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_graph_replay_equals_the_eager_pieces_on_cuda():
    m, slots = _model("cuda", torch.float32)
    kv, twin = _pools("cuda", torch.float32)
    lens, rows = [5, 3, 7], [0, 2, 4]
    toks = torch.randint(0, TINY.vocab, (sum(lens),), device="cuda")
    tok_slots = [0] * 5 + [-1] * 3 + [1] * 7
    outs = []
    for pool, graphs in ((kv, False), (twin, True)):
        run = PrefillRunner(m, pool, max_tokens=64, graphs=graphs)
        run.prewarm()
        outs.append(run.run(StepInput(toks, rows, [0, 0, 0], lens), tok_slots))
    assert run.captured_s > 0 and all(st.graphs for st in run._keys.values())
    torch.cuda.synchronize()
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-4)
    _expect_same(kv, twin, rows)
