"""Metrics: exact bench_serving formulas on crafted states, interval union, parquet."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sim.core.model import Request, RequestState
from sim.core.steps import StepLog
from sim.metrics import (
    RECORD_COLUMNS,
    Itl,
    _stats,
    build_records,
    hidden_load_fraction,
    host_gaps,
    itl_array,
    post_load_gaps,
    read_parquet,
    summarize,
    wake_latencies,
    write_parquet,
)

# global decode-step end times
STEPS = [1.0, 1.5, 2.5, 3.0, 4.0]


def state(rid, arrival, out_len, first, fds=-1, nsteps=0, adapter="a", hit=True, wait=0.0, skipped=0):
    s = RequestState(Request(rid, arrival, adapter, 100, out_len))
    s.admitted_at = arrival + 0.05
    s.first_token_at = first
    s.first_decode_step, s.decode_steps = fds, nsteps
    s.finished_at = STEPS[fds + nsteps - 1] if nsteps else first
    s.adapter_hit, s.waited_on_adapter, s.skipped = hit, wait, skipped
    return s


STATES = [
    state(0, 0.0, 4, 0.5, fds=0, nsteps=3),  # tokens at 0.5, 1.0, 1.5, 2.5
    state(1, 0.2, 1, 0.8, adapter=None, hit=False, wait=0.3),  # single token
    state(2, 0.4, 3, 2.0, fds=2, nsteps=2, skipped=2),  # tokens at 2.0, 2.5, 3.0
]


def test_records_exact():
    df = build_records(STATES, STEPS, "lru")
    assert tuple(df.columns) == RECORD_COLUMNS and len(df) == 3
    r0, r1, r2 = (df.iloc[i] for i in range(3))
    assert r0.ttft == pytest.approx(0.5) and r0.e2e == pytest.approx(2.5)
    assert r0.tpot == pytest.approx((2.5 - 0.5) / 3)
    assert math.isnan(r1.tpot) and r1.e2e == pytest.approx(0.6) and pd.isna(r1.adapter)
    assert r2.ttft == pytest.approx(1.6) and r2.tpot == pytest.approx((2.6 - 1.6) / 2)
    assert list(df.adapter_hit) == [True, False, True] and list(df.skipped) == [0, 0, 2]
    assert r1.adapter_wait == pytest.approx(0.3) and (df.policy == "lru").all()


def test_unfinished_request_has_nan_latencies():
    s = RequestState(Request(9, 1.0, "a", 10, 5))
    df = build_records([s], [], "lru")
    assert df.ttft.isna().all() and df.e2e.isna().all() and df.adapter_hit.isna().all()


def test_itl_exact_gaps():
    itl = itl_array(STATES, STEPS)
    np.testing.assert_allclose(itl, [0.5, 0.5, 1.0, 0.5, 0.5])


def test_itl_mean_equals_tpot_per_request():
    """For one request, the mean of its ITLs is its TPOT (bench_serving identity)."""
    df = build_records(STATES[:1], STEPS, "x")
    assert itl_array(STATES[:1], STEPS).mean() == pytest.approx(df.tpot.iloc[0])


def test_itl_vectorised_on_large_input():
    n, k = 10_000, 512
    steps = np.arange(1, k + n + 1, dtype=float) * 0.01
    states = []
    for i in range(n):
        s = RequestState(Request(i, 0.0, None, 1, k + 1))
        s.first_token_at, s.first_decode_step, s.decode_steps = steps[i] - 0.005, i, k
        states.append(s)
    itl = itl_array(states, steps)
    assert itl.shape == (n * k,)
    assert itl[0] == pytest.approx(0.005) and np.allclose(itl.reshape(n, k)[:, 1:], 0.01)


def test_itl_rejects_steps_outside_the_list():
    bad = state(5, 0.0, 3, 0.5, fds=3, nsteps=2)
    bad.decode_steps = 3  # steps 3, 4, 5: there is no step 5
    with pytest.raises(ValueError):
        itl_array([bad], STEPS)


def test_itl_from_a_step_log_equals_the_list_form():
    log = StepLog()
    log.extend(STEPS[:2])
    log.extend(np.asarray(STEPS[2:]))
    assert len(log) == len(STEPS) and list(log) == STEPS
    np.testing.assert_array_equal(np.asarray(Itl.of(STATES, log)), itl_array(STATES, STEPS))


@pytest.mark.parametrize("seed", range(6))
def test_itl_stats_without_the_per_token_array_equal_numpys(seed):
    """Mean, median and P99 from (step gap, count) pairs are numpy's over the whole array:
    random overlapping requests, odd and even totals, ties, single-step requests."""
    rng = np.random.default_rng(seed)
    steps = np.cumsum(rng.choice([0.01, 0.02, 0.013], size=400))  # repeated gap values
    states = []
    for i in range(int(rng.integers(1, 60))):
        first = int(rng.integers(0, 390))
        n = int(rng.integers(1, 400 - first))
        s = RequestState(Request(i, 0.0, "a", 1, n + 1))
        s.first_token_at = steps[first] - rng.uniform(0.001, 0.05)
        s.first_decode_step, s.decode_steps = first, n
        states.append(s)
    itl = Itl.of(states, steps)
    want = _stats("itl", np.asarray(itl))
    got = itl.stats()
    assert got["itl_median_ms"] == want["itl_median_ms"] and got["itl_p99_ms"] == want["itl_p99_ms"]
    assert got["itl_mean_ms"] == pytest.approx(want["itl_mean_ms"], rel=1e-14)
    assert len(itl) == sum(s.decode_steps for s in states)


def test_summary_percentiles_use_numpy_linear_definition():
    rng = np.random.default_rng(0)
    states = []
    for i in range(57):
        s = RequestState(Request(i, float(i), "a", 10, 2))
        s.first_token_at = i + float(rng.uniform(0.01, 2))
        s.finished_at = s.first_token_at + float(rng.uniform(0.01, 1))
        s.adapter_hit = bool(i % 3)
        states.append(s)
    df = build_records(states, [], "p")
    sm = summarize(df, np.array([0.1, 0.2, 0.3, 0.4]), {}, pd.DataFrame())
    ttft = df.ttft.to_numpy()
    assert sm["ttft_p99_ms"] == pytest.approx(np.percentile(ttft, 99) * 1e3)
    assert sm["ttft_median_ms"] == pytest.approx(np.median(ttft) * 1e3)
    assert sm["e2e_mean_ms"] == pytest.approx(df.e2e.mean() * 1e3)
    assert sm["tpot_p99_ms"] == pytest.approx(np.percentile(df.tpot, 99) * 1e3)
    assert sm["itl_p99_ms"] == pytest.approx(np.percentile([0.1, 0.2, 0.3, 0.4], 99) * 1e3)
    assert sm["hit_rate"] == pytest.approx(np.mean([bool(i % 3) for i in range(57)]))


def test_summary_exact_on_crafted_run():
    df = build_records(STATES, STEPS, "lru")
    timeline = pd.DataFrame(
        {
            "lane": ["pcie", "pcie", "pcie", "compute", "compute", "compute"],
            "start": [0.1, 0.3, 2.0, 0.0, 0.5, 1.0],
            "end": [0.5, 0.7, 2.2, 0.2, 0.8, 1.2],
            "kind": ["blocking", "overlap", "prefetch", "blocking", "prefill", "blocking"],
            "label": [""] * 6,
        }
    )
    counters = {"loads": 3, "bytes_moved": 300, "prefetch_wasted": 1, "stall_s": 0.05}
    sm = summarize(df, itl_array(STATES, STEPS), counters, timeline)
    assert sm["completed"] == 3 and sm["duration_s"] == pytest.approx(3.0)  # 0.0 -> 3.0
    assert sm["request_throughput"] == pytest.approx(1.0)
    assert sm["output_throughput"] == pytest.approx((4 + 1 + 3) / 3.0)
    assert sm["ttft_mean_ms"] == pytest.approx((0.5 + 0.6 + 1.6) / 3 * 1e3)
    assert sm["tpot_mean_ms"] == pytest.approx((2 / 3 + 0.5) / 2 * 1e3)  # output_len 1 excluded
    assert sm["pcie_busy_frac"] == pytest.approx((0.6 + 0.2) / 3.0)  # [0.1,0.7] merged + [2.0,2.2]
    assert sm["gpu_stall_ms"] == pytest.approx((0.2 + 0.2 + 0.05) * 1e3)
    assert (sm["loads"], sm["bytes_moved"], sm["prefetch_wasted"]) == (3, 300, 1)
    assert sm["hit_rate"] == pytest.approx(2 / 3)


def test_pcie_union_merges_nested_and_touching_intervals():
    df = build_records(STATES, STEPS, "lru")
    tl = pd.DataFrame(
        {
            "lane": ["pcie"] * 4,
            "start": [1.0, 0.0, 0.2, 0.5],
            "end": [1.5, 0.5, 0.3, 1.0],  # [0,0.5] ⊃ [0.2,0.3], touches [0.5,1.0], touches [1,1.5]
            "kind": ["overlap"] * 4,
            "label": [""] * 4,
        }
    )
    assert summarize(df, None, {}, tl)["pcie_busy_frac"] == pytest.approx(1.5 / 3.0)


def test_missing_counters_default_to_zero():
    sm = summarize(build_records(STATES, STEPS, "lru"), None, {}, None)
    assert (sm["loads"], sm["bytes_moved"], sm["prefetch_wasted"], sm["gpu_stall_ms"]) == (0, 0, 0, 0.0)
    assert sm["pcie_busy_frac"] == 0.0 and math.isnan(sm["itl_mean_ms"])


def test_parquet_round_trip(tmp_path):
    df = build_records(STATES, STEPS, "lru")
    p = tmp_path / "sub" / "records.parquet"
    write_parquet(df, p)
    back = read_parquet(p)
    pd.testing.assert_frame_equal(back, df)
    assert [f.name for f in p.parent.iterdir()] == ["records.parquet"]


def test_hidden_load_fraction_counts_copy_time_under_forwards_only():
    tl = pd.DataFrame(
        [
            ("pcie", 0.0, 1.0, "overlap", "a"),
            ("pcie", 0.5, 1.5, "overlap", "b"),  # copies: union [0, 1.5] = 1.5 s
            ("compute", 0.25, 0.75, "prefill", "p"),
            ("compute", 0.5, 1.0, "decode", "d"),  # forwards: union [0.25, 1.0]
            ("compute", 1.0, 1.5, "blocking", "a"),  # a blocking copy hides nothing
            ("pcie", 3.0, 3.0, "overlap", "c"),
        ],
        columns=["lane", "start", "end", "kind", "label"],
    )
    assert hidden_load_fraction(tl) == pytest.approx(0.75 / 1.5)
    assert math.isnan(hidden_load_fraction(tl[tl["lane"] == "compute"]))
    only_copies = tl[~tl["kind"].isin(["prefill", "decode"])]
    assert hidden_load_fraction(only_copies) == 0.0


def test_host_gaps_are_the_short_gaps_between_compute_operations():
    tl = pd.DataFrame(
        [
            ("compute", 0.0, 0.010, "prefill", "p"),
            ("pcie", 0.0105, 0.02, "overlap", "a"),  # other lanes do not count
            ("compute", 0.0104, 0.020, "decode", "d"),  # 0.4 ms after the prefill
            ("compute", 0.0203, 0.030, "decode", "d"),  # 0.3 ms
            ("compute", 0.5, 0.6, "prefill", "p"),  # 470 ms: idle, no work waiting
            ("compute", 0.6, 0.7, "decode", "d"),  # back to back: no gap
        ],
        columns=["lane", "start", "end", "kind", "label"],
    ).sample(frac=1.0, random_state=0)  # order of rows does not matter
    assert sorted(host_gaps(tl)) == pytest.approx([0.0003, 0.0004])
    assert len(host_gaps(tl, max_gap_s=1.0)) == 3


def test_wake_latencies_are_idle_arrivals_to_their_admission():
    """Only arrivals that found the compute lane idle count (one that arrived mid-forward
    waited for the forward, not for the scheduler to wake), and not those admitted much later."""
    tl = pd.DataFrame(
        [("compute", 0.100, 0.120, "prefill", "p"), ("pcie", 0.0, 0.5, "overlap", "a")],
        columns=["lane", "start", "end", "kind", "label"],
    )
    rec = pd.DataFrame({
        "arrival": [0.05, 0.110, 0.2, 0.3],
        "admitted": [0.05006, 0.1201, 0.20004, 0.35],  # idle 60 us; busy; idle 40 us; idle 50 ms
    })
    assert sorted(wake_latencies(rec, tl)) == pytest.approx([40e-6, 60e-6])
    assert len(wake_latencies(rec, tl, max_s=1.0)) == 3


def test_pin_tail_is_the_share_and_mean_excess_of_slow_pins():
    from sim.metrics import pin_tail

    pins = np.array([0.015] * 18 + [0.065, 0.095])  # median 15 ms; two slow by 50 and 80 ms
    frac, extra = pin_tail(pins)
    assert frac == pytest.approx(0.1) and extra == pytest.approx(0.065)
    assert pin_tail(np.array([0.015, 0.016, 0.017])) == (0.0, 0.0)
    with pytest.raises(ValueError):
        pin_tail(np.array([]))


def test_post_load_gaps_split_prefills_by_whether_a_blocking_load_came_first():
    """The gap after a prefill that follows a blocking load (when the driver frees that load's
    pinned copies) is told apart from the gap after any other prefill; a prefill at the end of
    the run or followed by a load has no gap to count."""
    tl = pd.DataFrame(
        [("compute", 0.000, 0.010, "blocking", "a"), ("compute", 0.010, 0.030, "prefill", "p"),
         ("compute", 0.032, 0.040, "decode", "d"), ("compute", 0.0405, 0.060, "prefill", "p"),
         ("compute", 0.0610, 0.070, "decode", "d"), ("compute", 0.0705, 0.080, "prefill", "p"),
         ("compute", 0.0806, 0.090, "blocking", "b"), ("compute", 0.090, 0.100, "prefill", "p"),
         ("host", 0.0, 0.5, "pin", "a")],
        columns=["lane", "start", "end", "kind", "label"],
    ).sample(frac=1.0, random_state=1)
    after, other = post_load_gaps(tl)
    assert after == pytest.approx([0.002])
    assert other == pytest.approx([0.001])
