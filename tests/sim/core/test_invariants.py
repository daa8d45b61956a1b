"""The invariant checker catches what it promises: an adapter in use evicted, a victim
chosen among adapters in use (checked at eviction time against the engine's own record)."""

import pytest

from sim.core.engine import Engine
from sim.core.invariants import InvariantChecker, InvariantViolation
from sim.policies.lru import BlockingLRU
from sim.simpy_driver import SimPyDriver
from tests.sim.fakes import fixed_hw, make_trace, scenario


def test_invariant_checker_catches_eviction_of_an_adapter_in_use():
    class EvictsInUse(BlockingLRU):
        name = "evicts_in_use"

        def after_schedule(self, plan, now):
            for a in list(self.e.sched.adapters_in_use()):
                if self.e.pool.is_resident(a):
                    self.e.pool.evict(a)

    trace = make_trace([(0.0, "a0", 10, 50), (0.0, "a1", 10, 50)], n_adapters=2)
    eng = Engine(trace, scenario(max_loras_per_batch=2).serving, EvictsInUse())
    eng.check = InvariantChecker()
    with pytest.raises(InvariantViolation, match=r"evicting 'a[01]' but it is in use"):
        SimPyDriver(fixed_hw()).run(eng)


def test_invariant_checker_catches_victim_that_is_in_use():
    class BadProtect(BlockingLRU):
        name = "bad_protect"

    trace = make_trace([(0.0, "a0", 10, 50), (0.001, "a1", 10, 50)], n_adapters=2)
    eng = Engine(trace, scenario(max_loras_per_batch=1).serving, BadProtect())
    eng.protected = lambda batch: set(batch)  # forgets the running requests' adapters
    eng.policy.fits_batch = lambda a, b, extra=frozenset(): True  # and the batch limit
    eng.check = InvariantChecker()
    with pytest.raises(InvariantViolation, match=r"evicting 'a0' for 'a1' but it is used by a running"):
        SimPyDriver(fixed_hw()).run(eng)
