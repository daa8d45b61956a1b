"""SGLang docs: 4 adapters, 2 ms load, 20 ms prefill each: blocking ~28 ms, overlap ~82 ms."""

import pytest

from sim.runner import simulate
from tests.sim.fakes import fixed_hw, make_trace, scenario


def _docs_case():
    trace = make_trace([(0.0, f"a{i}", 64, 1) for i in range(4)], n_adapters=4)
    return scenario(max_loras_per_batch=8, host_mode="pinned"), trace


def test_blocking_loads_all_then_one_prefill():
    sc, trace = _docs_case()
    res = simulate(sc, "lru", trace=trace, hardware=fixed_hw(load_s=0.002, prefill_s=0.020))
    assert res.records["finish"].max() == pytest.approx(0.028)


def test_overlap_gives_each_new_adapter_its_own_prefill():
    sc, trace = _docs_case()
    res = simulate(sc, "overlap", trace=trace, hardware=fixed_hw(load_s=0.002, prefill_s=0.020))
    assert res.records["finish"].max() == pytest.approx(0.082)
    prefills = res.timeline[(res.timeline.lane == "compute") & (res.timeline.kind == "prefill")]
    assert len(prefills) == 4


def test_pipelined_overlap_admits_once_loads_start_and_waits_layer_by_layer():
    """SGLang's newer loader: all four loads start in the first scan and the four requests
    share one prefill that waits for each layer's copy, so the docs' case ends with one
    prefill, sooner than blocking's loads-then-prefill: it waits only for the last copy's
    first layer (6 ms + 2/32 ms), then runs its 20 ms."""
    sc, _ = _docs_case()
    trace = make_trace([(0.0, f"a{i}", 64, 1) for i in range(4)], n_adapters=4, layers=32)
    sc = sc.model_copy(update={"policy_options": {"overlap": {"pipelined": True}}})
    res = simulate(sc, "overlap", trace=trace, hardware=fixed_hw(load_s=0.002, prefill_s=0.020))
    prefills = res.timeline[(res.timeline.lane == "compute") & (res.timeline.kind == "prefill")]
    assert len(prefills) == 1
    assert res.records["finish"].max() == pytest.approx(0.006 + 0.002 / 32 + 0.020)


@pytest.mark.parametrize("check_first", [False, True])
def test_sglang_scan_order_starts_a_load_for_a_request_behind_a_full_batch(check_first):
    """max_running_requests 1: while r0 decodes, r1 (another adapter) waits. With SGLang's scan
    order (LoRA check before the batch-size check) its overlap load starts during r0's decode;
    stopping the scan at the full batch starts it only when r0 is done."""
    trace = make_trace([(0.0, "a0", 64, 40), (0.005, "a1", 64, 1)], n_adapters=2)
    sc = scenario(max_loras_per_batch=8, max_running_requests=1, host_mode="pinned",
                  lora_check_first=check_first)
    res = simulate(sc, "overlap", trace=trace, hardware=fixed_hw(load_s=0.002, prefill_s=0.020, decode_s=0.001))
    copies = res.timeline[(res.timeline.lane == "pcie") & (res.timeline.label == "a1")]
    r0_done = res.records.set_index("rid")["finish"][0]
    assert (copies.start.min() < r0_done) == check_first
