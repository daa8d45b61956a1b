"""Unified memory on the CUDA driver (issue #28): the serving core's unified pool decides what
is resident by bytes, the driver's arena (gpu.unified) where; a unified engine runs to
completion on the tiny model (CPU), its evictions and loads land in the arena, and a driver
refuses an engine whose memory model is not its own, in one line."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from gpu.driver import check_memory_model  # noqa: E402
from gpu.validate import GpuOptions, run_gpu  # noqa: E402
from sim.config import parse_scenario  # noqa: E402
from sim.core.engine import Engine  # noqa: E402
from sim.policies import registry  # noqa: E402
from sim.runner import serving_knobs  # noqa: E402
from tests.sim.fakes import fixed_hw, make_trace, scenario  # noqa: E402

UNIFIED = {
    "name": "tiny-unified",
    "seed": 3,
    "model": {"preset": "tiny"},
    "hardware": {"preset": "cpu"},
    # all targets (the arena lays every adapter out over the same modules), mixed ranks
    "adapters": {"groups": [{"count": 4, "rank": 8}, {"count": 4, "rank": 4}]},
    "workload": {
        "num_requests": 24,
        "arrival": {"process": "poisson", "rate": 300.0},
        "adapter_choice": {"dist": "uniform"},
        "input_len": {"dist": "random", "len": 12, "range_ratio": 0.5},
        "output_len": {"dist": "fixed", "len": 4},
    },
    # KV for 160 tokens (512 B each on the fp32 tiny model) + 2 slots of 64 KiB: 208 KiB,
    # room for three rank-8 adapters, so eight adapters must be evicted and reloaded
    "serving": {"max_loras_per_batch": 2, "max_loaded_loras": 8, "kv_cache_tokens": 160,
                "adapter_memory": "unified"},
    "policies": ["idle_cache", "lru"],
}


@pytest.mark.parametrize("policy", ["idle_cache", "lru"])
def test_a_unified_engine_runs_on_the_arena(tmp_path, policy, monkeypatch):
    from gpu import driver as drv
    from sim.workload import generate_trace

    seen = {}
    real_evict = drv.CudaDriver._evict

    def evict(self, adapters):
        seen["evicted"] = seen.get("evicted", 0) + len(adapters)
        out = real_evict(self, adapters)
        self.um.arena.check()
        assert not set(adapters) & set(self.um.lora.first)
        return out

    monkeypatch.setattr(drv.CudaDriver, "_evict", evict)
    sc = parse_scenario(UNIFIED)
    trace = generate_trace(sc)
    res = run_gpu(sc, policy, trace, GpuOptions(device="cpu", adapter_dir=str(tmp_path)))
    assert res.summary["completed"] == len(trace.requests)
    assert (res.records["ttft"] > 0).all()
    used = {r.adapter for r in trace.requests}
    assert len(used) == 8  # eight adapters in memory for about four: evictions are forced
    assert res.summary["loads"] >= len(used) and seen["evicted"] > 0


def test_memory_models_must_match_in_one_line():
    trace = make_trace([(0.0, "a0", 8, 1)], n_adapters=1)
    unified = Engine(trace, serving_knobs(scenario(adapter_memory="unified"), trace), registry.create("lru"),
                     estimator=fixed_hw())
    slots = Engine(trace, serving_knobs(scenario(), trace), registry.create("lru"), estimator=fixed_hw())
    for engine, arena in ((unified, False), (slots, True)):
        with pytest.raises(ValueError) as e:
            check_memory_model(engine, arena)
        assert "\n" not in str(e.value)
    check_memory_model(unified, True)
    check_memory_model(slots, False)
