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
