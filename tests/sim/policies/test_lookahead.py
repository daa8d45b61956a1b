"""The `lookahead` policy: the behaviours it is built on."""

import subprocess
import sys

import pytest

from sim.runner import simulate
from tests.sim.fakes import Cost, FixedCopy, fixed_hw, make_trace, scenario


def test_avoids_overlap_worst_case_by_merging_short_loads_into_one_prefill():
    trace = make_trace([(0.0, f"a{i}", 64, 1) for i in range(4)], n_adapters=4)
    sc = scenario(max_loras_per_batch=8, host_mode="pinned")
    hw = fixed_hw(load_s=0.002, prefill_s=0.020)
    res = simulate(sc, "lookahead", trace=trace, hardware=hw)
    assert res.records["finish"].max() == pytest.approx(0.028)  # blocking's 28 ms, not 82
    assert (res.timeline.kind == "prefill").sum() == 1
    # the GPU has nothing to run during the first copy, so the scheduler sleeps through it
    # (the batch stays open to arrivals); the forward then waits for the other three copies
    assert res.summary["gpu_stall_ms"] == pytest.approx(6.0)


def test_long_loads_are_not_waited_for_while_decode_work_exists():
    # a0 decodes for a long time; a1's copy (40 ms) must not stall it (unlike lru)
    trace = make_trace([(0.0, "a0", 64, 200), (0.05, "a1", 64, 200)], n_adapters=2)
    hw = fixed_hw(load_s=0.040, prefill_s=0.005, decode_s=0.001)
    sc = scenario(max_loras_per_batch=2, host_mode="pinned")
    res = simulate(sc, "lookahead", trace=trace, hardware=hw)
    lru = simulate(sc, "lru", trace=trace, hardware=hw)
    assert res.summary["gpu_stall_ms"] == pytest.approx(0.0, abs=1e-9)
    assert res.records.e2e[0] < lru.records.e2e[0]


def _queue_head_case():
    # 3 slots, one request at a time. a0 and a1 sit idle in slots, a2 runs long; the queue
    # then holds r3 (a0) at its head and r4 (a3) behind it. Loading a3 must evict a1 (never
    # needed again), not a0 (needed by the head), although a0 is the least recently used.
    reqs = [(0.0, "a0", 8, 1), (0.1, "a1", 8, 1), (0.2, "a2", 8, 300), (0.3, "a0", 8, 1), (0.31, "a3", 8, 1)]
    return make_trace(reqs, n_adapters=4)


def test_never_evicts_adapter_needed_by_queue_head_when_another_victim_exists():
    sc = scenario(max_loras_per_batch=3, max_running_requests=1, host_mode="pinned")
    hw = fixed_hw(load_s=0.002, prefill_s=0.005, decode_s=0.001)
    res = simulate(sc, "lookahead", trace=_queue_head_case(), hardware=hw, check=True)
    pcie = res.timeline[res.timeline.lane == "pcie"]
    assert (pcie.label == "a0").sum() == 1
    rec = res.records.set_index("rid")
    assert bool(rec.adapter_hit[3])
    # a3 was prefetched while a2 was still decoding, so r4 does not wait for its copy
    a3_copy = pcie[pcie.label == "a3"]
    assert a3_copy.kind.iloc[0] == "prefetch" and a3_copy.end.iloc[0] < rec.finish[2]
    assert bool(rec.adapter_hit[4])


def test_results_do_not_depend_on_python_hash_seed():
    code = (
        "from sim.config import parse_scenario; from sim.runner import simulate;"
        "sc=parse_scenario({'seed':3,'adapters':{'count':30,'rank':64},'workload':{'num_requests':120,"
        "'arrival':{'process':'gamma','rate':20,'cv':3},'adapter_choice':{'dist':'zipf','s':1.2}},"
        "'serving':{'max_loras_per_batch':4,'max_loras_prefetch':2}});"
        "print([round(simulate(sc,p).summary['ttft_p99_ms'],9) for p in ['lru','slora','overlap','lookahead']])"
    )
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": s, "PATH": "/usr/bin"}).stdout
        for s in ("1", "2", "3")
    }
    assert len(outs) == 1


@pytest.mark.parametrize("launch_ahead, load_start", [(1, 0.022), (2, 0.012), (None, 0.012)])
def test_launching_ahead_starts_a_copy_for_a_request_that_arrived_during_the_launch(
    launch_ahead, load_start
):
    """Round 8 (light zipf, on the H200 and in the simulator): waiting for each prefill, the
    scheduler saw a request that arrived while it was launching one only when that prefill
    ended, and started its copy a forward late. With `launch_ahead` > 1 it looks again as soon
    as the launch returns (here half of the 20 ms prefill) and starts the copy then. The
    default (None) is the batch's adapter limit, as `overlap`'s."""
    from dataclasses import replace

    trace = make_trace([(0.0, "a0", 64, 4), (0.005, "a1", 64, 4)], n_adapters=2)
    sc = scenario(max_loras_per_batch=2, host_mode="pinned")
    if launch_ahead is not None:
        sc = sc.model_copy(update={"policy_options": {"lookahead": {"launch_ahead": launch_ahead}}})
    hw = replace(fixed_hw(load_s=0.002, prefill_s=0.020, decode_s=0.001), launch_fraction=0.5)
    res = simulate(sc, "lookahead", trace=trace, hardware=hw)
    copies = res.timeline[(res.timeline.lane == "pcie") & (res.timeline.label == "a1")]
    assert copies.start.min() == pytest.approx(load_start)


def _arrival_during_decode():
    # r0 decodes in 10 ms steps from t=9 ms; r1 (another adapter, 4 ms copy) arrives at 35 ms,
    # inside the step 29-39 ms
    trace = make_trace([(0.0, "a0", 64, 200), (0.035, "a1", 64, 1)], n_adapters=2)
    hw = fixed_hw(load_s=0.004, prefill_s=0.005, decode_s=0.010)
    return trace, hw


@pytest.mark.parametrize(
    "policy, options, copy_start, first_token",
    [
        # its copy starts at the arrival, under the step, so r1 joins the prefill at 39 ms
        ("lookahead", {}, 0.035, 0.044),
        # started at the step's end, the copy is not waited for with decode running: 49 ms
        ("lookahead", {"loads_on_arrival": False}, 0.039, 0.054),
        # lru copies at the step's end, blocking the GPU
        ("lru", {}, 0.039, 0.048),
        ("overlap", {}, 0.039, 0.054),
    ],
)
def test_a_copy_starts_when_its_request_arrives_during_a_decode_step(policy, options, copy_start, first_token):
    trace, hw = _arrival_during_decode()
    sc = scenario(max_loras_per_batch=2, host_mode="pinned")
    sc = sc.model_copy(update={"policy_options": {policy: options}})
    res = simulate(sc, policy, trace=trace, hardware=hw, check=True)
    pcie = res.timeline[(res.timeline.lane == "pcie") & (res.timeline.label == "a1")]
    assert pcie.start.iloc[0] == pytest.approx(copy_start)
    assert res.records.set_index("rid").first_token[1] == pytest.approx(first_token)


def test_requests_arriving_during_a_copy_the_idle_gpu_waits_for_share_its_prefill():
    # r0 (a0, 10 ms copy) arrives at an idle GPU; r1 for the same adapter 4 ms later. The
    # scheduler sleeps through the copy instead of committing r0's prefill to wait for it, so
    # r1 joins that prefill (first token at 30 ms, not after a second prefill at 50 ms).
    trace = make_trace([(0.0, "a0", 64, 1), (0.004, "a0", 64, 1)], n_adapters=1)
    hw = fixed_hw(load_s=0.010, prefill_s=0.020)
    sc = scenario(max_loras_per_batch=2, host_mode="pinned")
    res = simulate(sc, "lookahead", trace=trace, hardware=hw, check=True)
    rec = res.records.set_index("rid")
    assert rec.first_token[0] == pytest.approx(0.030) and rec.first_token[1] == pytest.approx(0.030)
    assert (res.timeline.kind == "prefill").sum() == 1


def test_an_idle_gpu_does_not_hold_a_batch_of_ready_requests_for_one_copy_that_would_delay_them_all():
    # a0-a2 are in slots after a warm-up; at t=1 s three requests for them and one for a3 (an
    # 8 ms copy) arrive at an idle GPU. Waiting would delay all four by 8 ms (32 ms of TTFT)
    # to spare r6 a prefill of its own (20 ms): the three run at once, r6 right after them.
    warm = [(0.0, f"a{i}", 64, 1) for i in range(3)]
    trace = make_trace([*warm, (1.0, "a0", 64, 1), (1.0, "a1", 64, 1), (1.0, "a2", 64, 1), (1.0, "a3", 64, 1)],
                       n_adapters=4)
    sc = scenario(max_loras_per_batch=4, host_mode="pinned")
    res = simulate(sc, "lookahead", trace=trace, hardware=fixed_hw(load_s=0.008, prefill_s=0.020), check=True)
    first = res.records.set_index("rid").first_token
    assert [first[r] for r in (3, 4, 5)] == pytest.approx([1.020] * 3)
    assert first[6] == pytest.approx(1.040)


@pytest.mark.parametrize("split_new, prefills, first_tokens", [
    # r1's adapter became ready under the step: the two hits run first (41 ms), r1 next (21 ms)
    (True, 2, [0.146, 0.146, 0.167]),
    # all three in one prefill (61 ms): the hits wait for r1's 20 ms too, r1 gains 1 ms
    (False, 1, [0.166, 0.166, 0.166]),
])
def test_a_request_whose_copy_just_finished_does_not_delay_a_prefill_it_would_not_speed_up(
    split_new, prefills, first_tokens
):
    # r0 (a0) decodes in 10 ms steps; at 100 ms r1 (a1, a 4 ms copy started at its arrival)
    # and two more requests for a0 arrive inside the step 95-105 ms. Prefill time grows with tokens (1 ms
    # + 20 ms a request): joining, r1 would add its 20 ms to both hits' first token and gain
    # at most the 1 ms fixed part itself, so it waits for the next prefill, right after.
    trace = make_trace([(0.0, "a0", 64, 400), (0.1, "a1", 64, 2), (0.1, "a0", 64, 2), (0.1, "a0", 64, 2)],
                       n_adapters=2)
    hw = fixed_hw(load_s=0.004, prefill_s=0.001, decode_s=0.010, prefill_token_s=0.020 / 64)
    sc = scenario(max_loras_per_batch=2, host_mode="pinned")
    sc = sc.model_copy(update={"policy_options": {"lookahead": {"split_new": split_new}}})
    res = simulate(sc, "lookahead", trace=trace, hardware=hw, check=True)
    first = res.records.set_index("rid").first_token
    assert [first[r] for r in (2, 3, 1)] == pytest.approx(first_tokens, abs=1e-6)
    assert (res.timeline.kind == "prefill").sum() == 1 + prefills  # + r0's own


def _layered(options: dict) -> object:
    sc = scenario(max_loras_per_batch=2, host_mode="pinned")
    return sc.model_copy(update={"policy_options": {"lookahead": options}})


@pytest.mark.parametrize("layer_pipeline, first_token, prefill_start", [
    # the idle scheduler sleeps until the copy (40 ms, 4 layers) is 15 ms from its end, a
    # prefill's last three layers (20 ms forward): that forward ends 5 ms after the copy
    (True, 0.045, 0.025),
    (False, 0.060, 0.040),  # the forward waits for the whole copy
])
def test_with_layer_pipelining_a_cold_request_prefills_under_its_copy(layer_pipeline, first_token, prefill_start):
    trace = make_trace([(0.0, "a0", 64, 1)], n_adapters=1, layers=4)
    res = simulate(_layered({"layer_pipeline": layer_pipeline}), "lookahead", trace=trace,
                   hardware=fixed_hw(load_s=0.040, prefill_s=0.020), check=True)
    assert res.records.first_token[0] == pytest.approx(first_token)
    prefill = res.timeline[res.timeline.kind == "prefill"]
    assert prefill.start.iloc[0] == pytest.approx(prefill_start)
    pcie = res.timeline[res.timeline.lane == "pcie"]
    assert res.records.first_token[0] >= pcie.end.iloc[0]  # never before its adapter arrived


@pytest.mark.parametrize("layer_pipeline, first_token", [
    # r0 decodes in 10 ms steps (ends at 105, 115, ... ms); r1's copy runs 97-127 ms and a
    # prefill (20 ms, 4 layers) can hide all but its last 5 ms: the decode stops at the first
    # step end after 112 ms, and r1's prefill runs 115-135 ms, waiting layer by layer
    (True, 0.135),
    # without it, the decode runs to the step end after the copy, 130 ms, then the prefill
    (False, 0.150),
])
def test_with_layer_pipelining_a_decode_stops_to_prefill_under_a_copy(layer_pipeline, first_token):
    trace = make_trace([(0.0, "a0", 64, 400), (0.097, "a1", 64, 2)], n_adapters=2, layers=4)
    hw = fixed_hw(load_s=0.030, prefill_s=0.020, decode_s=0.010)
    res = simulate(_layered({"layer_pipeline": layer_pipeline}), "lookahead", trace=trace, hardware=hw, check=True)
    assert res.records.set_index("rid").first_token[1] == pytest.approx(first_token)
    pcie = res.timeline[res.timeline.lane == "pcie"]
    assert pcie.end.iloc[1] == pytest.approx(0.127)


def test_layer_pipelining_does_not_start_a_prefill_that_would_idle_the_gpu_through_a_copy():
    # r1's copy runs 500-700 ms under r0's decode; a prefill started before 685 ms would hold
    # the GPU waiting for the copy: the decode runs until the step end after 685 ms (690 ms)
    trace = make_trace([(0.0, "a0", 64, 400), (0.5, "a1", 64, 2)], n_adapters=2, layers=4)
    hw = fixed_hw(load_s=0.200, prefill_s=0.020, decode_s=0.010)
    res = simulate(_layered({"layer_pipeline": True}), "lookahead", trace=trace, hardware=hw, check=True)
    prefill = res.timeline[res.timeline.kind == "prefill"]
    assert prefill.start.iloc[1] == pytest.approx(0.690)
    assert res.records.set_index("rid").first_token[1] == pytest.approx(0.710)


class _CopyPerAdapter(FixedCopy):
    """a0 copies in 20 ms, a1 in 8 ms, the rest in 2 ms."""

    def load_time(self, job) -> Cost:
        c = super().load_time(job)
        return Cost(c.pin_s, c.disk_s, {"a0": 0.020, "a1": 0.008}.get(job.adapter.name, 0.002), c.issue_s,
                    c.release_s)


def test_layer_pipelining_prices_a_copy_queued_behind_another_from_when_its_first_layer_arrives():
    # At t=1 s a hit (a2) and misses a0 (20 ms copy) and a1 (8 ms, queued behind a0's) arrive
    # at an idle GPU; a prefill takes 40 ms over 4 layers. a0 joins (its first layer is there
    # at 5 ms). a1's copy would end under the forward's last layer too, but its first layer
    # arrives only at 22 ms: waiting for it would hold the hit and a0 until 62 ms, so a1 goes
    # in the next prefill (pricing only the copy's end, all three would get 62 ms).
    trace = make_trace([(0.0, "a2", 64, 1), (1.0, "a2", 64, 1), (1.0, "a0", 64, 1), (1.0, "a1", 64, 1)],
                       n_adapters=3, layers=4)
    hw = fixed_hw(prefill_s=0.040)
    hw.copy = _CopyPerAdapter(0.002)
    sc = scenario(max_loras_per_batch=3, host_mode="pinned")
    res = simulate(sc, "lookahead", trace=trace, hardware=hw, check=True)
    first = res.records.set_index("rid").first_token
    assert [first[r] for r in (1, 2, 3)] == pytest.approx([1.045, 1.045, 1.085])
