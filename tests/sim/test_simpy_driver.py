"""SimPy driver: where host work (disk read, pinning) runs and what it blocks; the
scheduler's wake-up latency and the CPU cost of launching a forward ahead."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sim.core.effects import (
    Batch,
    BatchItem,
    Forward,
    LoadJob,
    Now,
    PollLoads,
    StartLoad,
    WaitForward,
    WaitLoad,
)
from sim.runner import simulate
from sim.simpy_driver import SimPyDriver
from tests.sim.fakes import fixed_hw, make_trace, scenario

ADAPTER = make_trace([(0.0, "a0", 8, 1)], n_adapters=1).adapters[0]
PREFILL = Batch("prefill", (BatchItem(0, None, -1, 0, 8, 0),))


class _Effects:
    """Stands in for an Engine: SimPyDriver.run only needs `.run()` to give the effects."""

    def __init__(self, gen):
        self.gen = gen

    def run(self):
        return self.gen


def _run(hw, gen_fn) -> SimPyDriver:
    d = SimPyDriver(hw)
    d.run(_Effects(gen_fn()))
    return d


def _hw(host_work: str):
    return replace(fixed_hw(load_s=0.002, prefill_s=0.020, pin_s=0.005), host_work=host_work)


@pytest.mark.parametrize("host_work, forward_start", [("scheduler", 0.005), ("background", 0.0)])
def test_pinning_a_prefetch_holds_the_scheduler_thread(host_work, forward_start):
    """A load-stream copy with pin_per_load: on the scheduler's thread the next forward is
    issued only after the pin; on a background thread it starts at once."""
    out = {}

    def gen():
        yield StartLoad(LoadJob(0, ADAPTER, 0, "load", "prefetch", host_mode="pin_per_load"))
        out["fwd"] = yield Forward(PREFILL)
        out["load"] = yield WaitLoad(0)

    d = _run(_hw(host_work), gen)
    assert out["fwd"].start == pytest.approx(forward_start)
    assert out["load"] == pytest.approx(0.007)  # pin then copy, either way
    pins = [r for r in d.timeline if r[0] == "host" and r[3] == "pin"]
    assert len(pins) == 1 and pins[0][1:3] == pytest.approx((0.0, 0.005))
    assert d.counters["pin_s"] == pytest.approx(0.005)


@pytest.mark.parametrize("host_work, forward_start", [("scheduler", 0.003), ("background", 0.0)])
def test_issuing_a_loads_copies_holds_the_scheduler_thread(host_work, forward_start):
    """Round 9 on the H200: after an async per-module load began, the next decode step
    started ~3.5 ms later (448 copies issued one by one), not after the usual host gap. The
    scheduler's thread is held `issue_s`; the copy itself starts at once and still ends
    after its PCIe time."""
    out = {}

    def gen():
        yield StartLoad(LoadJob(0, ADAPTER, 0, "load", "overlap", host_mode="pinned"))
        out["fwd"] = yield Forward(PREFILL)
        out["load"] = yield WaitLoad(0)

    hw = replace(fixed_hw(load_s=0.007, prefill_s=0.020), host_work=host_work)
    hw.copy.issue_s = 0.003
    d = _run(hw, gen)
    assert out["fwd"].start == pytest.approx(forward_start)
    assert out["load"] == pytest.approx(0.007)
    # the issue time is a `host` row, as the CUDA driver records it, on the scheduler only
    issue = [r[1:3] for r in d.timeline if r[0] == "host" and r[3] == "issue"]
    assert issue == ([pytest.approx((0.0, 0.003))] if host_work == "scheduler" else [])
    (copy,) = [r for r in d.timeline if r[0] == "pcie"]
    assert copy[1] == pytest.approx(0.0)


@pytest.mark.parametrize(
    "host_mode, prefill_start, next_start", [("pin_per_load", 0.007, 0.0285), ("pinned", 0.002, 0.022)]
)
def test_freeing_a_pin_per_loads_copies_holds_the_scheduler_when_it_next_looks(host_mode, prefill_start, next_start):
    """Round 13 on the H200: after a blocking load's prefill the next forward started ~1.6 ms
    later than after any other prefill: the CUDA driver frees the load's temporary pinned
    copies (a CUDA event each) when it next collects finished loads. The SimPy driver pays
    `release_s` there too, once, and not while the copy is still running; a copy from
    pinned host memory frees nothing."""
    out = {}

    def gen():
        yield StartLoad(LoadJob(0, ADAPTER, 0, "compute", "blocking", host_mode=host_mode))
        out["prefill"] = yield Forward(PREFILL)
        yield PollLoads()
        out["next"] = yield Forward(PREFILL)
        yield PollLoads()
        out["third"] = yield Forward(PREFILL)

    hw = fixed_hw(load_s=0.002, prefill_s=0.020, pin_s=0.005)
    hw.copy.release_s = 0.0015
    d = _run(hw, gen)
    assert out["prefill"].start == pytest.approx(prefill_start)  # after the pin (if any) and the copy
    assert out["next"].start == pytest.approx(next_start)
    assert out["third"].start == pytest.approx(out["next"].end)  # paid once
    release = [r[1:3] for r in d.timeline if r[0] == "host" and r[3] == "release"]
    assert release == ([pytest.approx((0.027, 0.0285))] if host_mode == "pin_per_load" else [])


def test_each_forward_first_holds_the_scheduler_for_its_host_overhead():
    """Round 7 on the H200: the CUDA driver leaves a median 0.39 ms between back-to-back
    forwards (scheduling, preparing inputs, launching). Two forwards issued one after the
    other start that long after their predecessor, and a forward launched ahead while the GPU
    is still busy hides it under the running one."""
    out = {}

    def gen():
        out["a"] = yield Forward(PREFILL)
        out["b"] = yield Forward(PREFILL)
        t = yield Forward(PREFILL, wait=False)
        u = yield Forward(PREFILL, wait=False)
        out["c"] = yield WaitForward(t)
        out["d"] = yield WaitForward(u)

    hw = replace(fixed_hw(prefill_s=0.020), forward_overhead_s=0.0004)
    _run(hw, gen)
    assert out["a"].start == pytest.approx(0.0004)
    assert out["b"].start == pytest.approx(out["a"].end + 0.0004)
    assert out["c"].start == pytest.approx(out["b"].end + 0.0004)
    assert out["d"].start == pytest.approx(out["c"].end)  # launched while c ran: no gap
    _run(fixed_hw(prefill_s=0.020), gen)
    assert out["b"].start == pytest.approx(out["a"].end) and out["a"].start == 0.0


def test_blocking_row_starts_when_compute_runs_out_of_queued_work():
    """A compute-stream load pinned while a launched forward still runs: the pin overlaps the
    forward, the copy follows it, and only the copy counts as a compute-lane stall."""

    def gen():
        t = yield Forward(PREFILL, wait=False)
        yield StartLoad(LoadJob(0, ADAPTER, 0, "compute", "blocking", host_mode="pin_per_load"))
        yield WaitForward(t)
        yield WaitLoad(0)

    d = _run(_hw("scheduler"), gen)
    block = [r for r in d.timeline if r[3] == "blocking" and r[0] == "compute"]
    assert block[0][1:3] == pytest.approx((0.020, 0.022))
    assert d.counters["stall_s"] == pytest.approx(0.002)


def test_blocking_row_includes_the_pin_when_compute_is_idle():
    def gen():
        yield StartLoad(LoadJob(0, ADAPTER, 0, "compute", "blocking", host_mode="pin_per_load"))
        yield WaitLoad(0)

    d = _run(_hw("scheduler"), gen)
    block = [r for r in d.timeline if r[3] == "blocking" and r[0] == "compute"]
    assert block[0][1:3] == pytest.approx((0.0, 0.007))
    assert d.counters["stall_s"] == pytest.approx(0.007)



def _prefill_groups(res) -> list[list[int]]:
    """Requests by the prefill that produced their first token, in time order."""
    groups = res.records.groupby("first_token")["rid"].apply(sorted)
    return [list(g) for g in groups.sort_index()]


@pytest.mark.parametrize("wake_s, groups", [(250e-6, [[0, 1, 2]]), (0.0, [[0], [1, 2]])])
def test_an_idle_scheduler_batches_arrivals_within_its_wake_up_latency(wake_s, groups):
    """A burst's requests arrive nanoseconds apart (gamma arrivals, cv 4). A serving loop
    sees them in one look; a scheduler that reacted at the instant of the first one would
    load and prefill it alone (what round 3 found against the H200's timelines)."""
    trace = make_trace([(0.0, "a0", 8, 1), (1e-13, "a1", 8, 1), (1e-9, "a2", 8, 1)], n_adapters=3)
    hw = replace(fixed_hw(), wake_s=wake_s)
    res = simulate(scenario(max_loras_per_batch=4), "lru", trace=trace, hardware=hw)
    assert _prefill_groups(res) == groups


@pytest.mark.parametrize("launch_fraction, groups", [(0.0, [[0], [1], [2]]), (1.0, [[0], [1, 2]])])
def test_launching_a_prefill_ahead_holds_the_scheduler(launch_fraction, groups):
    """overlap launches a prefill as each load lands. With free launches that is one
    prefill per adapter; when launching costs the forward's whole GPU time (an eager,
    launch-bound server) the loads that land meanwhile are seen together afterwards."""
    trace = make_trace([(0.0, a, 8, 1) for a in ("a0", "a1", "a2")], n_adapters=3)
    hw = replace(fixed_hw(load_s=0.002, prefill_s=0.020), launch_fraction=launch_fraction)
    res = simulate(scenario(max_loras_per_batch=4), "overlap", trace=trace, hardware=hw)
    assert _prefill_groups(res) == groups


def test_slow_pins_of_the_pin_tail_hold_the_scheduler_longer():
    """Measured on the H200 harness: a few per cent of pin-per-load pins take ~50 ms more.
    With a tail, the driver adds it to the pins its draw picks (fraction 1: every pin), and
    what the scheduler waits for grows by as much; without one nothing changes."""
    from sim.hw.pcie import PinTail

    def gen():
        yield StartLoad(LoadJob(0, ADAPTER, 0, "compute", "blocking", host_mode="pin_per_load"))
        yield WaitLoad(0)
        yield StartLoad(LoadJob(1, ADAPTER, 1, "compute", "blocking", host_mode="pinned"))
        yield WaitLoad(1)

    plain = _run(_hw("scheduler"), gen)
    slow = _run(replace(_hw("scheduler"), pin_tail=PinTail(1.0, 0.050)), gen)
    never = _run(replace(_hw("scheduler"), pin_tail=PinTail(0.0, 0.050)), gen)
    pins = [r for r in slow.timeline if r[3] == "pin"]
    assert len(pins) == 1 and pins[0][2] - pins[0][1] == pytest.approx(0.055)  # 5 ms + 50 ms
    assert slow.counters["pin_s"] == pytest.approx(plain.counters["pin_s"] + 0.050)
    assert slow.counters["stall_s"] == pytest.approx(plain.counters["stall_s"] + 0.050)
    assert never.timeline == plain.timeline
    # the cost model a policy plans with does not see it
    assert slow.hw.copy.load_time(LoadJob(0, ADAPTER, 0, "compute", "blocking", host_mode="pin_per_load")).pin_s \
        == pytest.approx(0.005)


@pytest.mark.parametrize("poll_first, steps", [(False, 1), (True, 10)])
def test_a_decode_that_should_stop_on_a_load_stops_for_one_that_already_finished(poll_first, steps):
    """The CUDA driver checks between decode steps whether any load-stream copy is done, so a
    copy that finished after the scheduler last polled (during a slow issue or the host gap)
    stops the decode after its first step. Round 12: the SimPy driver waited for the *next*
    copy to finish instead, and ran a light-load decode 12 steps (187 ms) past a request whose
    adapter was ready. Once the scheduler has seen the copy (polled), nothing stops the steps."""
    out = {}
    decode = Batch("decode", (BatchItem(0, None, -1, 0, 1, 8),))

    def gen():
        yield StartLoad(LoadJob(0, ADAPTER, 0, "load", "overlap", host_mode="pinned"))
        yield Forward(PREFILL)  # 20 ms: the 2 ms copy ends meanwhile, unseen
        if poll_first:
            assert (yield PollLoads()) == (0,)
        out["dec"] = yield Forward(decode, max_steps=10, stop_on_load=True)

    _run(fixed_hw(load_s=0.002, prefill_s=0.020, decode_s=0.001), gen)
    assert len(out["dec"].step_ends) == steps


def test_waiting_for_a_launched_decode_until_a_time_returns_then_and_the_decode_goes_on():
    """The engine wakes at an arrival while a decode runs (loads_on_arrival) and redeems the
    decode afterwards: its steps are not cut by the wake-up, only by the Forward's `until`."""
    out = {}
    decode = Batch("decode", (BatchItem(0, None, -1, 0, 1, 8),))

    def gen():
        t = yield Forward(decode, max_steps=5, until=0.025, wait=False)
        out["early"] = yield WaitForward(t, until=0.015)
        out["now"] = yield Now()
        out["res"] = yield WaitForward(t, until=0.100)

    _run(fixed_hw(decode_s=0.010), gen)
    assert out["early"] is None and out["now"] == pytest.approx(0.015)
    # steps that start before until=25 ms run: three, ending at 30 ms
    assert out["res"].step_ends == pytest.approx((0.010, 0.020, 0.030))


@pytest.mark.parametrize("dma_start, load_s, prefill_s, end, layered", [
    # the copy (40 ms over 4 layers) is longer than the forward (20 ms): the forward ends one
    # layer's compute (5 ms) after the copy, not a whole forward after it (60 ms)
    (0.0, 0.040, 0.020, 0.045, True),
    # a short copy (8 ms): layer 0 arrives at 2 ms, the rest keeps ahead of the compute
    (0.0, 0.008, 0.020, 0.022, True),
    # the copy starts 10 ms into the forward (queued behind another one): 10 + 40 + 5
    (0.010, 0.040, 0.020, 0.055, True),
    # a copy that was not issued layer by layer is waited for whole, as the CUDA driver does
    (0.0, 0.040, 0.020, 0.060, False),
])
def test_a_prefill_waiting_for_a_copy_layer_by_layer_ends_one_layer_after_it(
    dma_start, load_s, prefill_s, end, layered
):
    adapter = make_trace([(0.0, "a0", 8, 1)], n_adapters=1, layers=4).adapters[0]
    hw = fixed_hw(load_s=load_s, prefill_s=prefill_s)
    out = {}

    def effects():
        if dma_start:  # another copy holds the load stream first
            yield StartLoad(LoadJob(9, adapter, 1, "load", "prefetch", host_mode="pinned"))
            hw.copy.load_s = load_s
        yield StartLoad(LoadJob(0, adapter, 0, "load", "prefetch", host_mode="pinned", layered=layered))
        res = yield Forward(PREFILL, layer_waits=(0,))
        out["end"] = res.end
        out["load"] = yield WaitLoad(0)

    if dma_start:
        hw.copy.load_s = dma_start  # the first copy's length
    _run(hw, effects)
    assert out["end"] == pytest.approx(end)
    assert out["load"] == pytest.approx(dma_start + load_s)


@pytest.mark.parametrize("policy", ["lru", "overlap", "lookahead"])
def test_finished_forwards_and_polled_loads_leave_no_events_behind(policy):
    """A day-long run issues millions of forwards and many loads: once the engine has their
    results, the driver keeps no SimPy event for them (only each load's end time)."""
    from pathlib import Path

    from sim.core.engine import Engine
    from sim.hw import load_hardware
    from sim.policies import registry
    from sim.runner import load_scenario, serving_knobs
    from sim.simpy_driver import SimPyDriver
    from sim.workload import generate_trace

    sc = load_scenario(Path(__file__).resolve().parents[2] / "configs/scenarios/zipf.yaml")
    trace = generate_trace(sc)
    hw = load_hardware(sc.hardware, sc.model.shape())
    engine = Engine(trace, serving_knobs(sc, trace), registry.create(policy), estimator=hw)
    driver = SimPyDriver(hw)
    driver.run(engine)
    assert engine.sched.all_done() and engine.counters["loads"] > 10
    assert not driver.fwd_done and not driver.fwd_result
    assert len(driver.load_done) <= 1 and len(driver.dma_started) <= 1  # at most the last, unpolled
    assert len(driver._load_end) == engine.counters["loads"] and not driver._loads_pending
