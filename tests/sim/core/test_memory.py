"""Unified memory: one byte budget for KV and adapters (sim.core.memory), in the pool, the
scheduler's KV admission, the engine's Evict effects and the invariant checker."""

import pytest

from sim.core.invariants import InvariantViolation
from sim.core.memory import UnifiedPool, slot_bytes, unified_budget
from sim.core.model import ALL_TARGETS, AdapterSpec, ModelShape
from sim.errors import ScenarioError
from sim.runner import simulate
from sim.simpy_driver import SimPyDriver
from tests.sim.fakes import fixed_hw, make_trace, scenario

MB = 1 << 20


def pool(budget=10 * MB, sizes=None, kv=0):
    p = UnifiedPool(budget, 1024, sizes or {"a": 2 * MB, "b": 3 * MB, "c": 4 * MB, "d": 6 * MB})
    p.kv_tokens = lambda: kv
    return p


def test_adapters_take_their_own_bytes_and_evict_only_what_a_new_one_needs():
    p = pool()
    for a in "abc":
        assert p.place(a, set(), "ready")[2] is False  # 9 of 10 MB, nothing evicted
    assert p.free_bytes() == MB and p.free == 0
    _, first, did = p.place("d", set(), "ready")  # needs 6 MB: a (2) and b (3) go, lru order
    assert did and first == "a" and p.evicted == ["a", "b"]
    assert p.adapter_bytes == 10 * MB and set(p.slot_of) == {"c", "d"}


def test_protected_loading_and_pinned_adapters_are_never_evicted():
    p = pool()
    p.place("a", set(), "ready")
    p.place("b", set(), "loading")
    p.place("c", set(), "ready")
    p.pinned.add("c")
    assert p.victims({"a"}) == []
    assert not p.can_place({"a"}, "d")
    with pytest.raises(RuntimeError):
        p.place("d", {"a"}, "ready")
    assert p.can_place(set(), "d") is False  # a (2) alone cannot free 6 MB
    p.protect = lambda: {"a"}  # the engine's own protected set is always honoured
    assert p.victims(set()) == []


def test_kv_admission_sees_the_same_allocator():
    kv = {"t": 0}
    p = pool(budget=10 * MB)
    p.kv_tokens = lambda: kv["t"]
    p.place("c", set(), "ready")  # 4 MB cached
    assert p.kv_fits(6 * 1024, "c", set())  # 6 MB of KV beside its own resident adapter
    assert p.kv_fits(10 * 1024, "x" if False else None, set())  # all 10 MB once c goes
    assert not p.kv_fits(10 * 1024, None, {"c"})  # ...unless c is protected
    assert not p.kv_fits(10 * 1024 + 1, None, set())
    kv["t"] = 8 * 1024  # 8 MB reserved: c must go
    p.kv_reserve(set())
    assert p.evicted == ["c"] and p.adapter_bytes == 0 and p.free_bytes() == 2 * MB


def test_slot_bytes_pad_to_the_largest_rank_over_the_targets_union_and_the_budget_is_the_slots_total():
    shape = ModelShape()
    ads = [AdapterSpec.from_shape("q8", 8, ("q_proj",), shape), AdapterSpec.from_shape("mlp16", 16, ("up_proj",), shape)]
    assert slot_bytes(shape, ads) == shape.adapter_bytes(16, ("q_proj", "up_proj"))
    assert shape.kv_bytes_per_token == 128 * 1024  # DESIGN §11: 128 KiB a token for Llama-3.1-8B
    full = shape.adapter_bytes(64, ALL_TARGETS)
    assert unified_budget(400_000, shape.kv_bytes_per_token, 16, full) == 400_000 * 131072 + 16 * full


def _tight(**kw):
    # budget: 100 KV tokens (12.5 MB) + 1 slot (4 MB: rank 8 on q_proj); adapters of 4 MB each
    return scenario(max_loras_per_batch=1, kv_cache_tokens=100, host_mode="pinned", adapter_memory="unified", **kw)


class Recorder(SimPyDriver):
    def __init__(self, hw):
        super().__init__(hw)
        self.effects = []

    def _handle(self, eff):
        self.effects.append(eff)
        return (yield from super()._handle(eff))


def test_kv_evicts_cached_adapters_with_an_evict_effect_before_the_forward_that_reuses_them():
    from sim.core.effects import Evict, Forward, StartLoad
    from sim.core.engine import Engine
    from sim.core.invariants import InvariantChecker
    from sim.policies import registry
    from sim.runner import serving_knobs

    # a0 and a1 cached (8 MB); then a base-model request reserves 90 KV tokens (11.25 MB):
    # the budget (16.5 MB) holds it only once one of them is gone
    trace = make_trace([(0.0, "a0", 8, 1), (0.0, "a1", 8, 1), (1.0, None, 80, 10)], n_adapters=2, nbytes=4 * MB)
    sc = _tight()
    hw = fixed_hw(load_s=0.002, prefill_s=0.005)
    eng = Engine(trace, serving_knobs(sc, trace), registry.create("idle_cache"), estimator=hw)
    eng.check = InvariantChecker()
    drv = Recorder(hw)
    drv.run(eng)
    evicts = [i for i, e in enumerate(drv.effects) if isinstance(e, Evict)]
    gone = [a for i in evicts for a in drv.effects[i].adapters]
    assert len(gone) == 1 and gone[0] in {"a0", "a1"}
    last = evicts[-1]
    nxt = next(e for e in drv.effects[last:] if isinstance(e, Forward | StartLoad))
    assert isinstance(nxt, Forward) and nxt.batch.items[0].adapter is None
    assert eng.counters["evictions"] == 1 and all(st.done for st in eng.states)


def test_no_per_batch_adapter_limit_beyond_memory():
    trace = make_trace([(0.0, f"a{i}", 8, 1) for i in range(3)], n_adapters=3, nbytes=MB)
    res = simulate(_tight(), "idle_cache", trace=trace, hardware=fixed_hw(load_s=0.001, prefill_s=0.005), check=True)
    assert (res.timeline.kind == "prefill").sum() == 1  # three adapters in one batch, 1 slot's worth of memory
    lru = simulate(scenario(max_loras_per_batch=1, kv_cache_tokens=100), "lru", trace=trace,
                   hardware=fixed_hw(load_s=0.001, prefill_s=0.005))
    assert (lru.timeline.kind == "prefill").sum() == 3


@pytest.mark.parametrize("policy", ["lru", "overlap", "lookahead", "history", "idle_cache"])
def test_every_policy_but_slora_runs_on_unified_memory_with_invariants(policy):
    reqs = [(0.01 * i, f"a{i % 5}", 8 + 7 * (i % 4), 1 + i % 5) for i in range(30)]
    trace = make_trace(reqs, n_adapters=5, nbytes=4 * MB)
    res = simulate(_tight(), policy, trace=trace, hardware=fixed_hw(load_s=0.002, prefill_s=0.005), check=True)
    assert res.summary["completed"] == 30


def test_invariant_checker_catches_an_eviction_of_an_adapter_in_use(monkeypatch):
    trace = make_trace([(0.0, "a0", 8, 50), (0.001, "a1", 8, 1), (0.002, "a2", 8, 1)], n_adapters=3, nbytes=6 * MB)
    monkeypatch.setattr(UnifiedPool, "victims", lambda self, protected: [a for a in self.state if a is not None
                                                                          and self.state[a] == "ready"])
    with pytest.raises(InvariantViolation, match="evicting 'a0' but it is (used by a running|in the batch)"):
        simulate(_tight(), "idle_cache", trace=trace, hardware=fixed_hw(load_s=0.001, prefill_s=0.005), check=True)


def test_invariant_checker_catches_kv_beyond_the_budget(monkeypatch):
    trace = make_trace([(0.0, "a0", 8, 1), (0.0, "a1", 8, 1), (0.5, "a0", 90, 1)], n_adapters=2, nbytes=4 * MB)
    monkeypatch.setattr(UnifiedPool, "kv_reserve", lambda self, batch: None)
    monkeypatch.setattr(UnifiedPool, "kv_fits", lambda self, tokens, a, batch: True)
    with pytest.raises(InvariantViolation, match="budget"):
        simulate(_tight(), "idle_cache", trace=trace, hardware=fixed_hw(load_s=0.001, prefill_s=0.005), check=True)


def test_slora_refuses_unified_memory_in_one_line_naming_the_key():
    trace = make_trace([(0.0, "a0", 8, 1)], n_adapters=1)
    with pytest.raises(ScenarioError, match=r"serving\.adapter_memory: .*expected serving\.adapter_memory: slots") as e:
        simulate(_tight(), "slora", trace=trace, hardware=fixed_hw())
    assert "\n" not in str(e.value)
