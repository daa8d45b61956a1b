"""`serving.pinned_loras`: SGLang's pinned adapters. Copied at start-up, never evicted from the
GPU pool or unloaded from host RAM, and each keeps its batch slot: the adapters not pinned may
use only the slots the pinned ones leave (`LoRAManager.validate_lora_batch`)."""

import pytest

from sim.config import ServingCfg, parse_scenario
from sim.core.host import HostTier
from sim.errors import ConfigError
from sim.runner import simulate
from tests.sim.fakes import fixed_hw, make_trace, scenario


def _run(reqs, n_adapters, policy="lru", **serving):
    hw = fixed_hw(load_s=0.010, prefill_s=0.010, decode_s=0.001)
    return simulate(scenario(host_mode="pinned", **serving), policy, trace=make_trace(reqs, n_adapters), hardware=hw)


def test_pinned_adapters_may_not_take_every_slot():
    assert ServingCfg().pinned_loras == 0
    with pytest.raises(ConfigError, match="pinned_loras .* max_loras_per_batch - 1"):
        parse_scenario({"adapters": {"count": 4}, "serving": {"max_loras_per_batch": 2, "pinned_loras": 2}})


def test_a_pinned_adapter_is_copied_at_start_up_and_never_evicted():
    # one free slot besides the pinned a0: a1, a2, a3 take turns in it; a0 at the end is a hit
    reqs = [(0.1, "a1", 8, 1), (0.2, "a2", 8, 1), (0.3, "a3", 8, 1), (0.4, "a0", 8, 1)]
    pinned = _run(reqs, 4, max_loras_per_batch=2, pinned_loras=1)
    plain = _run(reqs, 4, max_loras_per_batch=2)
    assert list(pinned.records.adapter_hit) == [False, False, False, True]
    assert not plain.records.adapter_hit.iloc[3]  # a0 was evicted (or never loaded) without pinning
    assert pinned.records.ttft.iloc[3] == pytest.approx(0.010)  # its prefill alone
    assert pinned.summary["loads"] == 4  # a0 once at start-up, then a1, a2, a3


def test_unpinned_adapters_use_only_the_slots_the_pinned_leave():
    # 3 batch slots, a0 pinned and idle: a1, a2, a3 arrive together; only two may join a batch
    # beside a0's slot, though slora's 2 prefetch slots leave the pool room for all three
    reqs = [(0.0, "a1", 8, 50), (0.0, "a2", 8, 50), (0.0, "a3", 8, 50)]
    pinned = _run(reqs, 4, "slora", max_loras_per_batch=3, max_loras_prefetch=2, pinned_loras=1)
    plain = _run(reqs, 4, "slora", max_loras_per_batch=3, max_loras_prefetch=2)
    first = sorted(pinned.records.first_token.to_numpy())
    done = sorted(pinned.records.e2e.to_numpy())  # arrivals at 0: finish times
    assert first[1] < done[0] <= first[2]  # the third waits until a running one has ended
    assert plain.records.first_token.nunique() == 1  # all three in one batch without a pinned slot


def test_the_host_tier_never_unloads_a_pinned_adapter():
    host = HostTier(["a", "b", "c", "d"], capacity=2, pinned=frozenset({"c"}))
    assert "c" in host and "a" in host and "b" not in host  # pinned registered first
    assert host.touch("a")  # c is now least recently named, but pinned
    assert host.register("b") == "a"
    assert host.register("d") == "b"
    assert "c" in host
