"""SGLang's LoRADrainer: each rule on its own, then the starvation it exists to end."""

import pytest

from sim.config import ServingCfg, parse_scenario
from sim.core.drainer import DRAIN_SCHEDULE_TOLERANCE, LoRADrainer
from sim.core.model import Request, RequestState
from sim.core.scheduler import Scheduler
from sim.errors import ConfigError
from sim.runner import simulate
from tests.sim.fakes import fixed_hw, make_trace, scenario

_rid = iter(range(10**6))


def req(adapter, arrival=0.0, out=100, decoded=0) -> RequestState:
    st = RequestState(Request(next(_rid), arrival, adapter, 10, out))
    st.decoded = decoded
    return st


def test_tolerance_and_threshold_default_to_sglangs():
    assert DRAIN_SCHEDULE_TOLERANCE == 1.2
    assert ServingCfg().lora_drain_wait_threshold == 0.0  # off, as in SGLang
    s = Scheduler([Request(0, 0.0, "a", 10, 10)], ServingCfg())
    assert s.drainer is None


def test_starving_needs_a_wait_past_the_threshold():
    d = LoRADrainer(2, wait_threshold_s=3.0)
    running = [req("a"), req("b")]
    d.update([req("c", arrival=0.0)], running, now=3.0)  # waited exactly 3 s: not past it
    assert d.draining() == {}
    d.update([req("c", arrival=0.0)], running, now=3.01)
    assert list(d.draining().values()) == ["c"]


def test_the_starvation_clock_starts_when_the_request_reaches_the_queue():
    # held for a host-tier reload until 2 s: SGLang's wait_queue_entry_time, not the arrival
    d = LoRADrainer(2, wait_threshold_s=3.0)
    held = req("c", arrival=0.0)
    held.queued_at = 2.0
    d.update([held], [req("a"), req("b")], now=4.0)
    assert d.draining() == {}
    d.update([held], [req("a"), req("b")], now=5.01)
    assert list(d.draining().values()) == ["c"]


def test_no_drain_while_a_batch_slot_is_free():
    d = LoRADrainer(3, wait_threshold_s=1.0)
    d.update([req("c")], [req("a"), req("b")], now=10.0)  # 2 running adapters < 3 slots
    assert d.draining() == {}


def test_drains_the_running_adapter_with_fewest_remaining_tokens():
    d = LoRADrainer(3, wait_threshold_s=1.0)
    # remaining per adapter is the max over its requests: a 90, b 40, c 70
    running = [req("a", out=100, decoded=60), req("a", out=100, decoded=10),
               req("b", out=50, decoded=10), req("c", out=80, decoded=10)]
    d.update([req("x")], running, now=5.0)
    assert d.draining() == {"b": "x"}


def test_longest_waiting_starving_adapter_is_served_first_and_each_gets_one_drain():
    d = LoRADrainer(2, wait_threshold_s=1.0)
    running = [req("a", out=10), req("b", out=20)]
    d.update([req("x", arrival=3.0), req("y", arrival=1.0)], running, now=5.0)
    assert d.draining() == {"a": "y", "b": "x"}
    d.update([req("x", arrival=3.0), req("y", arrival=1.0)], running, now=6.0)
    assert d.drains == 2  # already drained for: not marked again


def test_a_draining_adapter_admits_only_requests_within_tolerance():
    d = LoRADrainer(2, wait_threshold_s=1.0)
    d.update([req("x")], [req("a", out=100, decoded=50), req("b", out=500)], now=5.0)
    assert d.draining() == {"a": "x"}  # a has 50 tokens left
    assert d.can_schedule(req("a", out=60))  # 60 <= 1.2 * 50
    assert not d.can_schedule(req("a", out=61))
    assert d.can_schedule(req("b", out=10_000))  # b is not draining


def test_draining_ends_when_the_adapter_has_no_running_request():
    d = LoRADrainer(2, wait_threshold_s=1.0)
    d.update([req("x")], [req("a", out=10), req("b", out=50)], now=5.0)
    assert d.draining() == {"a": "x"}
    d.update([req("x")], [req("a", out=10, decoded=5), req("b", out=50)], now=5.1)
    assert d.draining() == {"a": "x"}  # still one running request
    d.update([req("a"), req("x")], [req("b", out=50)], now=5.2)
    assert d.draining() == {}
    assert d.can_schedule(req("a", out=10_000))


def test_starving_base_model_drains_nothing_as_in_sglang():
    d = LoRADrainer(2, wait_threshold_s=1.0)
    d.update([req(None)], [req("a"), req("b")], now=5.0)
    assert d.draining() == {}


def test_scheduler_skips_what_the_drainer_refuses_before_asking_the_policy():
    s = Scheduler([Request(0, 0.0, "a", 10, 100), Request(1, 0.0, "b", 10, 500)],
                  ServingCfg(max_loras_per_batch=2, lora_drain_wait_threshold=1.0))
    s.admit_arrivals(0.0)
    plan = s.form_prefill(lambda st, b: True, lambda w: w, now=0.0)
    s.start_prefill(plan, 0.0)
    s.finish_prefill(plan, 0.1, 0)  # a and b decode: both slots taken
    s.pending.extend(Request(i, t, a, 10, out) for i, t, a, out in
                     [(2, 0.2, "c", 10), (3, 1.0, "a", 500), (4, 1.0, "a", 50)])
    s.admit_arrivals(1.0)
    asked = []

    def admit(st, batch):
        asked.append(st.rid)
        return st.adapter != "c"  # c has no slot

    plan = s.form_prefill(admit, lambda w: w, now=1.5)  # c waited 1.3 s > 1 s: drain a (99 left)
    assert s.drainer.draining() == {"a": "c"}
    assert [st.rid for st, _ in plan.items] == [4]  # 50 <= 1.2 * 99; 500 is not
    assert asked == [2, 4]  # the drainer refused rid 3 before the policy saw it


# -- end to end: FCFS with skip starves an adapter; the drainer ends it ---------------------

def _starving_trace():
    """Two slots; a0 and a1 get a request every 50 ms for 10 s (100 output tokens, 1 ms a
    step), so each always has one running; a2's one request arrives at 10 ms."""
    reqs = [(0.0, "a0", 64, 100), (0.0, "a1", 64, 100), (0.01, "a2", 64, 20)]
    t = 0.05
    while t < 10.0:
        reqs += [(t, "a0", 64, 100), (t, "a1", 64, 100)]
        t = round(t + 0.05, 6)
    return make_trace(reqs, n_adapters=3)


@pytest.mark.parametrize("policy", ["lru", "overlap"])
def test_fcfs_with_skip_starves_an_adapter_and_the_drainer_ends_it(policy):
    trace = _starving_trace()
    hw = fixed_hw(load_s=0.002, prefill_s=0.010, decode_s=0.001)

    def ttft_a2(threshold):
        sc = scenario(max_loras_per_batch=2, host_mode="pinned", lora_drain_wait_threshold=threshold)
        res = simulate(sc, policy, trace=trace, hardware=hw, check=True)
        rec = res.records.set_index("rid").loc[2]
        return rec["first_token"] - rec["arrival"]

    assert ttft_a2(0.0) > 9.0  # starved until the a0/a1 stream ends
    # with a 0.5 s threshold: starving from 0.51 s, one adapter drains in <= 100 decode steps
    # plus the prefills interleaved with them
    assert ttft_a2(0.5) < 0.5 + 0.4


def test_scenario_key_errors_name_the_key():
    base = {"adapters": {"count": 2}}
    for bad in (-1, "soon", float("nan")):
        with pytest.raises(ConfigError) as e:
            parse_scenario({**base, "serving": {"lora_drain_wait_threshold": bad}}, "s.yaml")
        msg = str(e.value)
        assert "s.yaml" in msg and "serving.lora_drain_wait_threshold" in msg and "\n" not in msg
    sc = parse_scenario({**base, "serving": {"lora_drain_wait_threshold": 3}}, "s.yaml")
    assert sc.serving.knobs().lora_drain_wait_threshold == 3.0


def test_the_resident_oracle_has_no_drainer_it_has_no_slots_to_free():
    from sim.core.engine import Engine
    from sim.policies.registry import create

    trace = make_trace([(0.0, "a0", 64, 4)], n_adapters=1)
    knobs = ServingCfg(lora_drain_wait_threshold=1.0).knobs()
    assert Engine(trace, knobs, create("resident")).sched.drainer is None
    assert Engine(trace, knobs, create("zero_load")).sched.drainer is not None
