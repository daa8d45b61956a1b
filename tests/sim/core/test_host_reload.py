"""`serving.host_reload`: SGLang reloads an adapter missing from the host tier when a request
names it, before the scheduler sees the request, one reload at a time, its scheduler reading
the file while it launches nothing; the least recently named adapter is unloaded once no
request holds it (docs/sglang_rules.md)."""

import pytest

from sim.config import ServingCfg, parse_scenario
from sim.core.host import HostTier
from sim.runner import simulate
from tests.sim.fakes import fixed_hw, make_trace, scenario

DISK_S, LOAD_S, PREFILL_S, DECODE_S = 0.100, 0.002, 0.010, 0.001


def _run(mode, reqs, n_adapters, **serving):
    hw = fixed_hw(load_s=LOAD_S, prefill_s=PREFILL_S, decode_s=DECODE_S, disk_s=DISK_S)
    sc = scenario(host_mode="pinned", host_reload=mode, **serving)
    return simulate(sc, "lru", trace=make_trace(reqs, n_adapters), hardware=hw)


def test_default_is_todays_sglang():
    assert ServingCfg().host_reload == "arrival"
    assert ServingCfg().knobs().host_reload == "arrival"


def test_registry_recency_moves_when_a_request_names_an_adapter():
    host = HostTier(["a", "b", "c"], capacity=2)
    assert host.touch("a") and not host.touch("c")  # b is now least recently named
    assert host.register("c") == "b"
    assert "b" not in host and host.in_ram("b")  # unregistered, draining
    host.drop("b")
    assert not host.in_ram("b") and len(host) == 2 and host.disk_reads == 1


def test_a_reload_stalls_the_scheduler_and_waits_for_the_unloaded_adapter_to_drain():
    # one slot, one adapter in RAM: r0 (a0) decodes 50 steps; r1 (a1) arrives at 5 ms
    reqs = [(0.0, "a0", 8, 50), (0.005, "a1", 8, 1)]
    arrival = _run("arrival", reqs, 2, max_loras_per_batch=1, max_loaded_loras=1)
    load = _run("load", reqs, 2, max_loras_per_batch=1, max_loaded_loras=1)
    r0_arr, r0_load = arrival.records.e2e[0], load.records.e2e[0]
    # the read runs on the scheduler's thread: r0's decode launches nothing for DISK_S
    assert r0_arr == pytest.approx(r0_load + DISK_S)
    # r1 reaches the queue only once a0 (unloaded for it) has no request left; then a GPU
    # copy and its prefill; at a GPU load instead, the read comes after r0, before the copy
    assert arrival.records.ttft[1] == pytest.approx(r0_arr + LOAD_S + PREFILL_S - 0.005)
    assert load.records.ttft[1] == pytest.approx(r0_load + DISK_S + LOAD_S + PREFILL_S - 0.005)
    assert arrival.summary["disk_reads"] == load.summary["disk_reads"] == 1


def test_a_later_request_for_the_reloaded_adapter_goes_ahead_of_the_one_that_asked():
    # two slots, two adapters in RAM. r0 (a0, long) then r1 (a1) keep both named; r2 (a2)
    # pushes out a0, the least recently named, which r0 still holds: r2 waits for r0's end.
    # r3 (a2) arrives after the read has registered a2, so it is served at once.
    reqs = [(0.0, "a0", 8, 200), (0.001, "a1", 8, 1), (0.020, "a2", 8, 1), (0.150, "a2", 8, 1)]
    res = _run("arrival", reqs, 3, max_loras_per_batch=2, max_loaded_loras=2)
    done = [a + e for a, e in zip((r[0] for r in reqs), res.records.e2e, strict=True)]
    first_token = [a + t for a, t in zip((r[0] for r in reqs), res.records.ttft, strict=True)]
    assert first_token[2] > done[0]  # held until a0 drained
    assert first_token[3] < done[0]  # registered meanwhile: straight to the queue
    assert res.summary["disk_reads"] == 1


def test_nothing_changes_while_every_adapter_fits_the_host_tier():
    reqs = [(0.0, "a0", 8, 5), (0.001, "a1", 8, 5), (0.002, "a2", 8, 5)]
    a = _run("arrival", reqs, 3, max_loras_per_batch=1, max_loaded_loras=3)
    b = _run("load", reqs, 3, max_loras_per_batch=1, max_loaded_loras=3)
    assert list(a.records.ttft) == list(b.records.ttft) and a.summary["disk_reads"] == 0


@pytest.mark.parametrize("policy", ["overlap", "lookahead", "idle_cache"])
def test_a_drain_ended_by_a_prefill_launched_ahead_releases_the_held_request(policy):
    """`lorasim check` found this deadlock: the last request of the adapter a reload unloads
    finished in a prefill launched ahead, retired after the loop had looked at the held
    requests, and with nothing else to run the engine stopped instead of looking again."""
    sc = parse_scenario({
        "seed": 2021628122, "model": {"preset": "llama-3.2-1b"}, "hardware": {"preset": "cpu"},
        "adapters": {"count": 6, "rank": 1},
        "workload": {"num_requests": 40, "arrival": {"process": "poisson", "rate": float("inf")},
                     "adapter_choice": {"dist": "phased", "phases": [{"requests": 14, "adapters": [4, 6]}],
                                        "base_fraction": 0.2037958390702204},
                     "input_len": {"dist": "fixed", "len": 13},
                     "output_len": {"dist": "random", "len": 1, "range_ratio": 0.04179767158072423}},
        "serving": {"max_loras_per_batch": 2, "max_running_requests": 2, "max_prefill_tokens": 3491,
                    "chunked_prefill_size": 296, "kv_cache_tokens": 1400, "copy_mode": "flat",
                    "host_mode": "pin_per_load", "max_loaded_loras": 2, "host_reload": "arrival"},
        "policies": [policy],
    })
    res = simulate(sc, policy)
    assert res.summary["completed"] == 40 and res.summary["disk_reads"] > 0

