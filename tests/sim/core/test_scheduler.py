"""Scheduler rules from SGLang: skip on adapter, budgets, chunking, prefill-first."""

from sim.config import ServingCfg
from sim.core.model import Request
from sim.core.scheduler import Scheduler


def _sched(reqs, **kw):
    s = Scheduler([Request(i, 0.0, a, inp, out) for i, (a, inp, out) in enumerate(reqs)], ServingCfg(**kw))
    s.admit_arrivals(0.0)
    return s


def fcfs(w):
    return w


def test_skipped_request_does_not_block_later_ones():
    s = _sched([("x", 10, 5), ("y", 10, 5), ("z", 10, 5)])
    plan = s.form_prefill(lambda st, b: st.adapter != "y", fcfs)
    assert [st.adapter for st, _ in plan.items] == ["x", "z"]
    assert s.waiting[1].skipped == 1


def test_token_budget_chunks_the_last_request_and_it_goes_first_next_time():
    s = _sched([("a", 600, 2), ("b", 600, 2)], max_prefill_tokens=1000, chunked_prefill_size=8192)
    plan = s.form_prefill(lambda st, b: True, fcfs)
    assert [(st.rid, n) for st, n in plan.items] == [(0, 600), (1, 400)]
    s.start_prefill(plan, 0.0)
    s.finish_prefill(plan, 1.0, 0)
    assert s.chunked is not None and s.chunked.rid == 1
    assert [st.rid for st in s.running] == [0]
    plan2 = s.form_prefill(lambda st, b: True, fcfs)
    assert [(st.rid, n) for st, n in plan2.items] == [(1, 200)]
    s.start_prefill(plan2, 1.0)
    s.finish_prefill(plan2, 2.0, 0)
    assert s.chunked is None and s.states[1].first_token_at == 2.0


def test_chunked_prefill_size_caps_one_request():
    s = _sched([("a", 5000, 2)], max_prefill_tokens=16384, chunked_prefill_size=2048)
    plan = s.form_prefill(lambda st, b: True, fcfs)
    assert [n for _, n in plan.items] == [2048]


def test_kv_capacity_stops_the_scan():
    s = _sched([("a", 100, 100), ("b", 100, 100), ("c", 10, 10)], kv_cache_tokens=250)
    plan = s.form_prefill(lambda st, b: True, fcfs)
    assert [st.rid for st, _ in plan.items] == [0]  # b does not fit and the scan stops


def test_max_running_requests():
    s = _sched([("a", 10, 5)] * 5, max_running_requests=3)
    plan = s.form_prefill(lambda st, b: True, fcfs)
    assert len(plan.items) == 3


def test_decode_horizon_is_first_finish_and_finishes_release_kv():
    s = _sched([("a", 10, 3), ("b", 10, 6)])
    plan = s.form_prefill(lambda st, b: True, fcfs)
    s.start_prefill(plan, 0.0)
    assert s.kv_used == 13 + 16
    s.finish_prefill(plan, 1.0, 0)
    assert s.decode_horizon() == 2
    s.finish_decode([1.1, 1.2])
    assert s.states[0].finished_at == 1.2 and s.kv_used == 16
    assert s.adapters_in_use() == {"b"}
