"""Property tests over random small workloads: the invariant checker runs after every
iteration (conservation, slot limits, no eviction of in-use adapters, bytes, time), and
every request finishes exactly once with consistent timestamps."""

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.config import parse_scenario
from sim.policies import registry
from sim.runner import simulate

scenarios = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 10_000),
        "adapters": st.fixed_dictionaries(
            {"count": st.integers(1, 12), "rank": st.sampled_from([4, 8, 64, 128])}
        ),
        "workload": st.fixed_dictionaries(
            {
                "num_requests": st.integers(1, 30),
                "arrival": st.one_of(
                    st.fixed_dictionaries({"process": st.just("poisson"), "rate": st.floats(0.5, 200)}),
                    st.fixed_dictionaries(
                        {"process": st.just("gamma"), "rate": st.floats(0.5, 200), "cv": st.floats(0.2, 5)}
                    ),
                    st.fixed_dictionaries({"process": st.just("burst")}),
                ),
                "adapter_choice": st.one_of(
                    st.fixed_dictionaries(
                        {"dist": st.sampled_from(["uniform", "distinct"]), "base_fraction": st.floats(0, 0.5)}
                    ),
                    st.fixed_dictionaries({"dist": st.just("zipf"), "s": st.floats(0.5, 3)}),
                    st.fixed_dictionaries({"dist": st.just("skewed"), "alpha": st.floats(1.1, 3)}),
                ),
                "input_len": st.fixed_dictionaries(
                    {"dist": st.just("random"), "len": st.integers(1, 3000), "range_ratio": st.floats(0, 1)}
                ),
                "output_len": st.fixed_dictionaries(
                    {"dist": st.just("random"), "len": st.integers(1, 200), "range_ratio": st.floats(0, 1)}
                ),
            }
        ),
        "serving": st.fixed_dictionaries(
            {
                "max_loras_per_batch": st.integers(1, 6),
                "max_loras_prefetch": st.integers(0, 4),
                "max_running_requests": st.integers(1, 16),
                "max_prefill_tokens": st.integers(256, 4096),
                "chunked_prefill_size": st.integers(128, 4096),
                "copy_mode": st.sampled_from(["flat", "per_module"]),
                "host_mode": st.sampled_from(["auto", "pinned", "pageable", "pin_per_load"]),
                "eviction": st.sampled_from(["lru", "fifo"]),
            }
        ),
        "policy": st.sampled_from(sorted(registry.names())),
        "layer_pipeline": st.booleans(),  # lookahead's forwards wait for copies layer by layer
    }
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios)
def test_invariants_hold_on_random_workloads(d):
    policy = d.pop("policy")
    if d.pop("layer_pipeline") and policy == "lookahead":
        d["policy_options"] = {"lookahead": {"layer_pipeline": True}}
    d["serving"]["kv_cache_tokens"] = 20_000
    if d["serving"]["max_loras_per_batch"] < 2 and d["workload"]["adapter_choice"].get("base_fraction"):
        d["workload"]["adapter_choice"]["base_fraction"] = 0.0
    sc = parse_scenario(d, "<hypothesis>")
    res = simulate(sc, policy, check=True)
    rec = res.records
    n = sc.workload.num_requests
    assert len(rec) == n and rec.rid.is_unique and set(rec.rid) == set(range(n))
    assert (rec.first_token >= rec.arrival - 1e-12).all()
    assert (rec.finish >= rec.first_token - 1e-12).all()
    assert res.summary["completed"] == n
    # every output token accounted for: ITL gaps = sum(output_len - 1)
    assert len(res.itl) == int((rec.output_len - 1).sum())
    assert np.all(np.asarray(res.itl) >= -1e-12)
    if policy == "resident":
        assert res.summary["loads"] == 0
    pcie = res.timeline[res.timeline.lane == "pcie"]
    assert len(pcie) == res.summary["loads"]
    # the PCIe lane never runs two copies at once
    iv = pcie.sort_values("start")[["start", "end"]].to_numpy()
    assert all(iv[i + 1][0] >= iv[i][1] - 1e-12 for i in range(len(iv) - 1))
    assert not math.isnan(res.summary["ttft_mean_ms"])


def test_same_seed_same_results_different_seed_differs():
    d = {
        "seed": 5,
        "adapters": {"count": 20, "rank": 64},
        "workload": {"num_requests": 80, "arrival": {"process": "poisson", "rate": 20},
                     "adapter_choice": {"dist": "zipf", "s": 1.2}},
        "serving": {"max_loras_per_batch": 4, "max_loras_prefetch": 2},
    }
    a = simulate(parse_scenario(d), "slora")
    b = simulate(parse_scenario(d), "slora")
    c = simulate(parse_scenario({**d, "seed": 6}), "slora")
    assert a.records.equals(b.records) and a.summary == b.summary
    assert not a.records[["arrival", "adapter"]].equals(c.records[["arrival", "adapter"]])
