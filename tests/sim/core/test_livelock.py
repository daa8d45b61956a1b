"""Deadlock/livelock guard: a simulation that makes no progress stops with a diagnostic that
names the stuck requests and their adapters."""

import pytest

from sim.core.engine import Engine
from sim.errors import DeadlockError
from sim.policies.base import Policy
from sim.policies.lru import BlockingLRU
from sim.simpy_driver import SimPyDriver
from tests.sim.fakes import fixed_hw, make_trace, scenario


class NeverAdmits(Policy):
    """Refuses every request, but keeps the load stream busy swapping adapters in and out,
    so the engine always has something in flight: a livelock, not a deadlock."""

    name = "never_admits"
    load_completion_unblocks = True

    def admit(self, st, batch_adapters):
        return False

    def after_schedule(self, plan, now):
        e = self.e
        if e.inflight:
            return
        for a in sorted(e.adapters):
            if not e.pool.is_resident(a):
                e.new_load(a, set(), stream="load", kind="prefetch")
                return


class Silent(Policy):
    """Refuses everything and loads nothing: nothing in flight (the plain deadlock)."""

    name = "silent"

    def admit(self, st, batch_adapters):
        return False


def _run(policy, trace, hw=None, **engine_kw):
    eng = Engine(trace, scenario(max_loras_per_batch=1).serving, policy, **engine_kw)
    SimPyDriver(hw or fixed_hw(load_s=0.5)).run(eng)
    return eng


def test_livelock_stops_after_stall_time_and_names_request_and_adapter():
    trace = make_trace([(0.0, "a1", 10, 5), (0.1, "a0", 10, 5)], n_adapters=3)
    with pytest.raises(DeadlockError) as ei:
        _run(NeverAdmits(), trace, stall_s=60.0, stall_iterations=None)
    msg = str(ei.value)
    assert "livelock" in msg
    assert "request 0 (adapter 'a1'" in msg and "request 1 (adapter 'a0'" in msg
    assert "never_admits" in msg and "stall_s=60.0" in msg
    # it stopped soon after the limit, not at some unrelated time
    t = float(msg.split("livelock at t=")[1].split("s:")[0])
    assert 60.0 < t < 62.0


def test_livelock_stops_after_stall_iterations_without_arrivals():
    trace = make_trace([(0.0, "a2", 10, 5)], n_adapters=3)
    with pytest.raises(DeadlockError) as ei:
        _run(NeverAdmits(), trace, stall_s=None, stall_iterations=50)
    msg = str(ei.value)
    assert "request 0 (adapter 'a2': not on the GPU" in msg
    assert "(51 iterations" in msg and "stall_iterations=50" in msg


def test_deadlock_with_nothing_in_flight_names_request_and_adapter():
    trace = make_trace([(0.0, "a1", 10, 5)], n_adapters=2)
    with pytest.raises(DeadlockError, match=r"request 0 \(adapter 'a1'"):
        _run(Silent(), trace)


def test_guard_does_not_fire_on_long_quiet_gaps_or_slow_loads():
    # an hour-long gap between arrivals while nothing waits, then a load slower than the
    # iteration limit would allow if iterations were counted while waiting on it
    trace = make_trace([(0.0, "a0", 10, 5), (7200.0, "a1", 10, 5), (7200.5, "a0", 10, 5)], n_adapters=2)
    eng = _run(BlockingLRU(), trace, hw=fixed_hw(load_s=100.0), stall_s=150.0, stall_iterations=3)
    assert eng.sched.all_done()
