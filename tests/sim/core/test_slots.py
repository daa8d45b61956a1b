import pytest

from sim.core.host import HostTier
from sim.core.slots import SlotPool


def test_free_slots_are_used_before_evicting():
    pool = SlotPool(2)
    assert pool.place("a", set(), "ready")[2] is False
    assert pool.place("b", set(), "ready")[2] is False
    _, evicted, did = pool.place("c", set(), "ready")
    assert did and evicted == "a"


def test_lru_evicts_least_recently_used_and_fifo_oldest_loaded():
    lru, fifo = SlotPool(2, "lru"), SlotPool(2, "fifo")
    for pool in (lru, fifo):
        pool.place("a", set(), "ready")
        pool.place("b", set(), "ready")
        pool.touch("a")  # a used after b was loaded
    assert lru.victims(set())[0] == "b"
    assert fifo.victims(set())[0] == "a"


def test_protected_pinned_and_loading_adapters_are_never_victims():
    pool = SlotPool(3)
    pool.place("run", set(), "ready")
    pool.place("pin", set(), "ready")
    pool.place("flight", set(), "loading")
    pool.pinned.add("pin")
    assert pool.victims({"run"}) == []
    assert not pool.can_place({"run"})
    with pytest.raises(RuntimeError):
        pool.place("new", {"run"}, "ready")
    pool.mark_ready("flight")
    assert pool.victims({"run"}) == ["flight"]


def test_base_model_key_none_is_a_normal_resident():
    pool = SlotPool(1)
    pool.place(None, set(), "ready")
    assert pool.is_ready(None)
    assert pool.victims(set()) == [None]
    _, evicted, did = pool.place("a", set(), "ready")
    assert did and evicted is None and not pool.is_resident(None)


def test_host_tier_is_lru_and_reports_disk_reads():
    host = HostTier(["a", "b", "c"], capacity=2)
    assert "a" in host and "b" in host and "c" not in host
    assert host.access("a") == (False, None)  # b is now least recent
    assert host.access("c") == (True, "b")
    assert host.disk_reads == 1
    assert host.access("b") == (True, "a")


def test_base_model_slot_is_evicted_only_when_no_adapter_can_go():
    pool = SlotPool(3, "lru")
    pool.place(None, set(), "ready")  # least recently used, but SGLang keeps it
    pool.place("a", set(), "ready")
    pool.place("b", set(), "ready")
    assert pool.victims(set()) == ["a", "b", None]
    assert pool.victims({"a", "b"}) == [None]
