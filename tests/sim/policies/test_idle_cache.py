"""The `idle_cache` policy: unified memory always, cost-aware eviction, prefetch into idle memory."""

from sim.core.engine import Engine
from sim.policies import registry
from sim.runner import serving_knobs, simulate
from tests.sim.fakes import fixed_hw, make_trace, scenario

MB = 1 << 20


def _engine(trace, **serving):
    sc = scenario(host_mode="pinned", **serving)
    return Engine(trace, serving_knobs(sc, trace), registry.create("idle_cache"), estimator=fixed_hw())


def test_runs_on_unified_memory_whatever_the_serving_knob_says():
    trace = make_trace([(0.0, "a0", 8, 1)], n_adapters=1)
    eng = _engine(trace, adapter_memory="slots")
    assert eng.unified and eng.pool.budget == 400_000 * 128 * 1024 + 8 * 4 * MB


def test_evicts_the_queue_needed_last_and_of_the_others_the_cheapest_reload_per_byte():
    trace = make_trace([(0.0, "a0", 8, 1)], n_adapters=4)
    eng = _engine(trace)
    pol, pool = eng.policy, eng.pool
    for a in ("a0", "a1", "a2", "a3"):
        pool.place(a, set(), "ready")
    pol.freq.update({"a0": 5.0, "a1": 1.0})  # a0 asked for often, a1 once, a2/a3 never lately
    eng.sched.admit_arrivals(0.0)  # the queue needs a0
    pol._nu_iter = -1
    order = pool.victims(set())
    assert order[-1] == "a0"  # needed by the queue: last
    assert order.index("a1") > max(order.index("a2"), order.index("a3"))  # used lately: after idle ones


def test_keeps_every_adapter_cached_when_memory_is_idle():
    # 6 adapters, one slot's worth of adapter memory, but the KV cache is idle: all stay cached
    reqs = [(0.01 * i, f"a{i % 6}", 8, 1) for i in range(24)]
    trace = make_trace(reqs, n_adapters=6, nbytes=4 * MB)
    sc = scenario(max_loras_per_batch=1, host_mode="pinned")
    res = simulate(sc, "idle_cache", trace=trace, hardware=fixed_hw(load_s=0.002, prefill_s=0.005), check=True)
    lru = simulate(sc, "lru", trace=trace, hardware=fixed_hw(load_s=0.002, prefill_s=0.005))
    assert res.summary["loads"] == 6 and lru.summary["loads"] > 6


def _short_memory_case(**opts):
    """1,000 KV tokens + one 32-token adapter slot of memory. r0 (a0) holds 600 tokens + a0;
    then r1 (a1, new) and r2 (a0, in use) wait, 300 tokens each: 400 free fit one of them."""
    reqs = [(0.0, "a0", 400, 200), (0.001, "a1", 200, 100), (0.002, "a0", 200, 100)]
    trace = make_trace(reqs, n_adapters=2, nbytes=4 * MB)
    sc = scenario(kv_cache_tokens=1000, max_loras_per_batch=1, host_mode="pinned")
    if opts:
        sc = sc.model_copy(update={"policy_options": {"idle_cache": opts}})
    res = simulate(sc, "idle_cache", trace=trace, hardware=fixed_hw(load_s=0.002, prefill_s=0.01, decode_s=0.001),
                   check=True)
    return res.records.set_index("rid")["ttft"]


def test_a_new_adapter_yields_to_an_in_use_one_while_memory_is_short():
    ttft = _short_memory_case()
    assert ttft[2] < ttft[1]  # r2 (a0, running) first: it costs only its KV
    fcfs = _short_memory_case(kv_reserve=0)
    assert fcfs[1] < fcfs[2]  # without the reserve r1 takes the memory in arrival order


def test_a_request_that_waited_long_enough_no_longer_yields():
    ttft = _short_memory_case(reserve_max_wait_s=0.0005)  # r1 has waited >= 1 ms when scanned
    assert ttft[1] < ttft[2]


def test_the_reserve_never_holds_back_a_request_when_nothing_runs():
    """A lone request whose KV, adapter and one more request's KV do not fit: with nothing
    running no memory would come free, so it must not yield (`lorasim check` found the
    deadlock)."""
    trace = make_trace([(0.0, "a0", 200, 100)], n_adapters=1, nbytes=4 * MB)
    sc = scenario(kv_cache_tokens=500, max_loras_per_batch=1, host_mode="pinned")
    res = simulate(sc, "idle_cache", trace=trace, hardware=fixed_hw(load_s=0.002, prefill_s=0.01, decode_s=0.001),
                   check=True)
    assert res.summary["completed"] == 1
