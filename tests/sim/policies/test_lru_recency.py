"""SGLang's blocking LRU counts an adapter as used at every forward, decode steps included."""

from sim.runner import simulate
from tests.sim.fakes import fixed_hw, make_trace, scenario


def test_lru_recency_counts_decode_steps_not_only_prefills():
    # a0 is prefilled first but decodes 100 steps; a1 is prefilled later and finishes first.
    # a2 then needs a slot: the victim is a1 (last used earlier), so a0 is still a hit at 0.5 s
    trace = make_trace(
        [(0.0, "a0", 64, 100), (0.03, "a1", 64, 2), (0.3, "a2", 64, 2), (0.5, "a0", 64, 2)], n_adapters=3
    )
    sc = scenario(max_loras_per_batch=2, host_mode="pinned")
    res = simulate(sc, "lru", trace=trace, hardware=fixed_hw(), check=True)
    hits = res.records.set_index("rid")["adapter_hit"]
    assert res.records.set_index("rid").loc[0, "finish"] > 0.1  # a0 ran past a1's finish
    assert not hits[2] and hits[3]
