"""Invariant checker: run after every engine iteration (on in tests, `--check` in the CLI).

It looks only at the serving core's state, so it guards both drivers. Each violation is an
AssertionError naming the invariant, the time and what was seen.
"""

from __future__ import annotations

from collections import Counter


class InvariantViolation(AssertionError):
    pass


class InvariantChecker:
    def __init__(self) -> None:
        self.last_now = float("-inf")
        self.checks = 0
        self.prev_resident: dict = {}

    def __call__(self, engine) -> None:
        self.checks += 1
        sched, pool, now = engine.sched, engine.pool, engine.now

        def fail(msg: str) -> None:
            raise InvariantViolation(f"t={now:.6f}s iteration {engine.counters['iterations']}: {msg}")

        if now < self.last_now:
            fail(f"time went backwards ({self.last_now} -> {now})")
        self.last_now = now

        # conservation: every request is in exactly one place
        places = Counter()
        for st in sched.pending:
            places[st.rid] += 1
        for st in sched.waiting:
            places[st.rid] += 1
        for st in sched.running:
            places[st.rid] += 1
        for rid in sched.prefilling:
            places[rid] += 1
        finished = [st.rid for st in sched.states if st.finished_at is not None]
        for rid in finished:
            places[rid] += 1
        dup = [rid for rid, c in places.items() if c > 1]
        if dup:
            fail(f"requests in two places at once: {dup[:5]}")
        lost = len(sched.states) - len(places)
        if lost:
            missing = [st.rid for st in sched.states if st.rid not in places][:5]
            fail(f"{lost} request(s) lost, e.g. {missing}")
        if len(finished) != sched.finished:
            fail(f"finished counter {sched.finished} != {len(finished)} finished requests")

        # slots
        if pool.used > pool.capacity:
            fail(f"{pool.used} adapters in {pool.capacity} slots")
        if len(set(pool.slot_of.values())) != len(pool.slot_of):
            fail("two adapters share a slot")
        in_use = sched.adapters_in_use()
        limit = engine.cfg.max_loras_per_batch
        if not getattr(engine.policy, "unbounded", False) and len(in_use) > limit:
            fail(f"{len(in_use)} distinct adapters in use > max_loras_per_batch {limit}")
        if getattr(engine.policy, "uses_slots", True):
            gone = [a for a in in_use if not pool.is_resident(a)]
            if gone:
                fail(f"adapters used by running requests were evicted: {gone[:5]}")
        for lid, a in engine.inflight.items():
            if not pool.is_loading(a):
                fail(f"load {lid} of {a!r} in flight but its slot is not loading")

        # bytes copied = sizes of adapters loaded
        moved = sum(b for _, _, _, b in engine.load_log)
        if moved != engine.counters["bytes_moved"]:
            fail(f"bytes_moved {engine.counters['bytes_moved']} != sum of loaded adapters {moved}")

        if sched.kv_used > engine.cfg.kv_cache_tokens or sched.kv_used < 0:
            fail(f"KV tokens used {sched.kv_used} outside [0, {engine.cfg.kv_cache_tokens}]")
