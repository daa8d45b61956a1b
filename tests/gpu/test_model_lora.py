"""Batched LoRA equals per-request reference; KV-cached decode equals a full forward."""

import pytest

torch = pytest.importorskip("torch")

from gpu.adapters import flat_layout, peft_key, read_peft_adapter, to_flat, write_peft_adapter  # noqa: E402
from gpu.lora import LoraSlots, reference_lora  # noqa: E402
from gpu.model import KVPool, LlamaModel, StepInput  # noqa: E402
from sim.config import MODEL_PRESETS  # noqa: E402
from sim.core.model import ALL_TARGETS  # noqa: E402

TINY = MODEL_PRESETS["tiny"]


def _fill(slots: LoraSlots, slot: int, path) -> object:
    """Load a PEFT adapter into a slot the slow, obvious way (per module)."""
    ad = read_peft_adapter(path)
    slots.pool[slot].zero_()
    segs, _ = flat_layout(TINY, ad.rank, ad.targets)
    flat = to_flat(ad, TINY, torch.float32)
    for s in segs:
        slots.A(s.layer, s.module)[slot, : s.rank].copy_(
            flat[s.a_off : s.b_off].view(s.rank, s.d_in)
        )
        slots.Bt(s.layer, s.module)[slot, : s.rank].copy_(
            flat[s.b_off : s.b_off + s.rank * s.d_out].view(s.rank, s.d_out)
        )
    slots.scaling[slot] = ad.scaling
    return ad


def test_batched_lora_equals_per_request_reference(tmp_path):
    slots = LoraSlots(TINY, 4, 8, ALL_TARGETS, "cpu", torch.float32)
    specs = [(8, ALL_TARGETS), (4, ("q_proj", "v_proj")), (2, ALL_TARGETS)]
    ads = {}
    for i, (r, tg) in enumerate(specs):
        p = write_peft_adapter(tmp_path / f"a{i}", TINY, r, tg, seed=i, alpha=16)
        ads[i] = _fill(slots, i, p)
    # tokens of 5 requests: slots 0, 2, base, 1, 0 with different lengths (packed)
    lens, tok_slot_of_req = [3, 1, 2, 4, 2], [0, 2, -1, 1, 0]
    tok_slots = [s for n, s in zip(lens, tok_slot_of_req, strict=True) for _ in range(n)]
    x = torch.randn(len(tok_slots), TINY.hidden)
    lb = slots.batch(tok_slots)
    assert lb is not None and lb.n == 3
    for module in ("q_proj", "v_proj", "gate_proj"):
        d_in, d_out = TINY.proj_dims(module)
        y = torch.zeros(len(tok_slots), d_out)
        xs = slots.shrink_input(x, lb)
        got = slots.apply(y.clone(), xs, 1, module, lb)
        want = torch.zeros_like(y)
        for t, s in enumerate(tok_slots):
            if s < 0 or module not in ads[s].targets:
                continue
            a = ads[s].tensors[peft_key(1, module, "A")]
            b = ads[s].tensors[peft_key(1, module, "B")]
            want[t] = reference_lora(x[t : t + 1], a, b, ads[s].scaling)[0]
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert got[lens[0] + lens[1] : lens[0] + lens[1] + 2].abs().max() == 0  # base tokens


def test_no_adapter_tokens_means_no_lora_batch():
    slots = LoraSlots(TINY, 2, 4, ALL_TARGETS, "cpu", torch.float32)
    assert slots.batch([-1, -1]) is None


def _model(lora=None):
    return LlamaModel(TINY, device="cpu", dtype=torch.float32, seed=0, lora=lora)


def test_prefill_then_decode_matches_full_forward():
    m = _model()
    kv = KVPool(TINY, rows=4, max_ctx=32, device="cpu", dtype=torch.float32)
    seq = torch.randint(0, TINY.vocab, (9,))
    full = m.forward(StepInput(seq, [0], [0], [9]), kv)
    m.forward(StepInput(seq[:6], [1], [0], [6]), kv)  # chunked prefill: 6 then 2
    m.forward(StepInput(seq[6:8], [1], [6], [2]), kv)
    step = m.forward(StepInput(seq[8:], [1], [8], [1]), kv)
    torch.testing.assert_close(step, full, rtol=1e-4, atol=1e-4)


def test_batched_variable_length_equals_single():
    m = _model()
    kv = KVPool(TINY, rows=4, max_ctx=32, device="cpu", dtype=torch.float32)
    a, b = torch.randint(0, TINY.vocab, (7,)), torch.randint(0, TINY.vocab, (3,))
    both = m.forward(StepInput(torch.cat([a, b]), [0, 1], [0, 0], [7, 3]), kv)
    dec = m.forward(StepInput(torch.tensor([5, 6]), [0, 1], [7, 3], [1, 1]), kv)
    kv2 = KVPool(TINY, rows=4, max_ctx=32, device="cpu", dtype=torch.float32)
    solo_b = m.forward(StepInput(torch.cat([b, torch.tensor([6])]), [2], [0], [4]), kv2)
    torch.testing.assert_close(
        both[1], m.forward(StepInput(b, [3], [0], [3]), kv2)[0], rtol=1e-4, atol=1e-4
    )
    torch.testing.assert_close(dec[1], solo_b[0], rtol=1e-4, atol=1e-4)


def test_lora_changes_only_its_requests(tmp_path):
    slots = LoraSlots(TINY, 2, 4, ALL_TARGETS, "cpu", torch.float32)
    _fill(slots, 0, write_peft_adapter(tmp_path / "a", TINY, 4, seed=1))
    m = _model(slots)
    kv = KVPool(TINY, rows=4, max_ctx=32, device="cpu", dtype=torch.float32)
    seq = torch.randint(0, TINY.vocab, (5,))
    two = torch.cat([seq, seq])
    out = m.forward(StepInput(two, [0, 1], [0, 0], [5, 5], slots.batch([0] * 5 + [-1] * 5)), kv)
    base = m.forward(StepInput(seq, [2], [0], [5]), kv)
    torch.testing.assert_close(out[1], base[0], rtol=1e-4, atol=1e-4)
    assert (out[0] - base[0]).abs().max() > 1e-3


def test_matmul_attention_equals_sdpa_with_gqa_and_mask():
    """gpu.model._attention (no cuDNN plans) is exact masked GQA attention."""
    import torch.nn.functional as F

    from gpu.model import _attention

    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, 8, 5, 16, generator=g)
    k = torch.randn(3, 2, 9, 16, generator=g)
    v = torch.randn(3, 2, 9, 16, generator=g)
    mask = torch.rand(3, 1, 5, 9, generator=g) > 0.3
    mask[..., 0] = True  # every query sees at least one key
    ref = F.scaled_dot_product_attention(
        q, k.repeat_interleave(4, dim=1), v.repeat_interleave(4, dim=1), attn_mask=mask
    )
    torch.testing.assert_close(_attention(q, k, v, mask), ref, rtol=1e-4, atol=1e-5)


def test_random_slots_fill_every_slot_at_scaling_one():
    """LoraSlots.random: what calibration, benchmarks and diagnostics time LoRA with."""
    s = LoraSlots.random(TINY, 3, 4, "cpu", torch.float32)
    assert s.scaling == [1.0, 1.0, 1.0] and set(s.targets) == set(ALL_TARGETS)
    assert all(s.pool[i].abs().sum() > 0 for i in range(3))
