"""`serving.lora_refused`: today's SGLang skips a request whose LoRA check fails; older SGLang
(before PR #14795) stopped the scan there, so the requests behind it waited (docs/sglang_rules.md)."""

import pytest

from sim.config import ServingCfg, parse_scenario
from sim.core.model import Request
from sim.core.scheduler import Scheduler
from sim.errors import ConfigError
from sim.runner import simulate
from tests.sim.fakes import fixed_hw, make_trace, scenario


def _two_running_then(waiting, refused):
    """Two batch slots held by running a0 and a1; `waiting` [(rid, adapter)] arrive at 1 s."""
    reqs = [Request(0, 0.0, "a0", 10, 100), Request(1, 0.0, "a1", 10, 100)]
    reqs += [Request(rid, 1.0, a, 10, 10) for rid, a in waiting]
    s = Scheduler(reqs, ServingCfg(max_loras_per_batch=2, lora_refused=refused))
    s.admit_arrivals(0.0)
    plan = s.form_prefill(lambda st, b: True, lambda w: w)
    s.start_prefill(plan, 0.0)
    s.finish_prefill(plan, 0.1, 0)
    s.admit_arrivals(1.0)
    return s


def _fits(s):
    return lambda st, batch: len(s.adapters_in_use() | batch | {st.adapter}) <= 2


def test_default_is_todays_sglang():
    assert ServingCfg().lora_refused == "skip"
    assert ServingCfg().knobs().lora_refused == "skip"


@pytest.mark.parametrize("refused, admitted", [("skip", [3]), ("stop", [])])
def test_skip_admits_a_resident_adapter_behind_the_head_stop_blocks(refused, admitted):
    s = _two_running_then([(2, "a2"), (3, "a0")], refused)  # head a2 needs a third slot
    plan = s.form_prefill(_fits(s), lambda w: w)
    assert ([st.rid for st, _ in plan.items] if plan else []) == admitted
    assert s.states[2].skipped == (1 if refused == "skip" else 0)


def test_stop_keeps_what_the_scan_admitted_before_the_head():
    s = _two_running_then([(2, "a0"), (3, "a2"), (4, "a1")], "stop")
    plan = s.form_prefill(_fits(s), lambda w: w)
    assert [st.rid for st, _ in plan.items] == [2]  # a2 stops the scan; a1's request waits


def test_stop_also_ends_the_scan_at_a_drainer_refusal():
    reqs = [Request(0, 0.0, "a0", 10, 100), Request(1, 0.0, "a1", 10, 500),
            Request(2, 0.2, "a2", 10, 10), Request(3, 1.0, "a0", 10, 500), Request(4, 1.0, "a0", 10, 50)]
    s = Scheduler(reqs, ServingCfg(max_loras_per_batch=2, lora_drain_wait_threshold=1.0, lora_refused="stop"))
    s.admit_arrivals(0.0)
    s.start_prefill(plan := s.form_prefill(lambda st, b: True, lambda w: w, now=0.0), 0.0)
    s.finish_prefill(plan, 0.1, 0)
    s.admit_arrivals(1.0)
    plan = s.form_prefill(lambda st, b: st.adapter != "a2", lambda w: w, now=1.5)  # a0 drains for a2
    assert s.drainer.draining() == {"a0": "a2"}
    assert plan is None  # a2 has no slot: the scan ends there (skip would go on and admit rid 4)


@pytest.mark.parametrize("policy", ["lru", "slora"])
def test_end_to_end_the_request_behind_a_refused_head_waits_for_a_finish(policy):
    """Two slots: r0 (a0) finishes at ~0.12 s, r1 (a1) at ~0.27 s; r2 (a2, no slot) arrives at
    10 ms, r3 (a0 again) at 20 ms. Skipping, r3 shares a0's slot at once; stopping, it waits
    behind r2, which takes a0's slot when r0 finishes, and gets a slot only when r2 is done."""
    trace = make_trace([(0.0, "a0", 64, 100), (0.0, "a1", 64, 200), (0.01, "a2", 64, 10),
                        (0.02, "a0", 64, 10)], n_adapters=3)
    hw = fixed_hw(load_s=0.002, prefill_s=0.020, decode_s=0.001)

    def first_tokens(refused):
        sc = scenario(max_loras_per_batch=2, max_loras_prefetch=0, host_mode="pinned", lora_refused=refused)
        res = simulate(sc, policy, trace=trace, hardware=hw, check=True)
        return res.records.set_index("rid")["first_token"], res.records.set_index("rid")["finish"]

    ft_skip, fin_skip = first_tokens("skip")
    ft_stop, fin_stop = first_tokens("stop")
    assert ft_skip[3] < fin_skip[0]  # shared a0's slot while r0 decoded
    assert fin_stop[0] < ft_stop[2] < ft_stop[3]
    assert ft_stop[3] > fin_stop[2]  # a0 left with r0, a2 took its slot: r3 waits for r2's end
    assert ft_skip[2] == pytest.approx(ft_stop[2], abs=0.03)  # the head itself waits either way


def test_bad_values_are_one_line_errors_naming_the_key():
    base = {"adapters": {"count": 2}}
    for bad in ("break", 1, None, ["stop"]):
        with pytest.raises(ConfigError) as e:
            parse_scenario({**base, "serving": {"lora_refused": bad}}, "s.yaml")
        msg = str(e.value)
        assert "s.yaml" in msg and "serving.lora_refused" in msg and "\n" not in msg
    sc = parse_scenario({**base, "serving": {"lora_refused": "stop"}}, "s.yaml")
    assert sc.serving.knobs().lora_refused == "stop"
