"""Invariant checker: run after every engine iteration (on in tests, `--check` in the CLI).

It looks only at the serving core's state, so it guards both drivers. Each violation is an
AssertionError naming the invariant, the time and what was seen.

Three hooks:
- `__call__(engine)` after each poll: conservation of requests, slot and prefetch-slot
  counts, KV accounting, in-use adapters resident, in-flight loads loading, bytes copied,
  time monotonic.
- `on_forward(engine, batch, wait_lids)` just before a forward is issued: every adapter of
  the batch is resident and either ready or a load the forward waits for; at most
  `max_loras_per_batch` distinct adapters; time monotonic.
- an eviction guard installed on the engine's slot pool the first time the checker runs:
  an adapter used by a running or prefilling request, in flight, loaded for the batch being
  formed, or pinned is never evicted.

With unified adapter memory (sim.core.memory) the slot counts give way to bytes: KV bytes
(the scan's tentative reservations included) + adapter bytes <= the budget after every
placement, KV reservation and iteration and before every forward; the pool's byte count is
the sum of its adapters' sizes; no per-batch adapter limit applies.
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
        self._installed = False

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _fail(engine, msg: str) -> None:
        raise InvariantViolation(
            f"t={engine.now:.6f}s iteration {engine.counters['iterations']}: {msg}"
        )

    def _time(self, engine) -> None:
        if engine.now < self.last_now:
            self._fail(engine, f"time went backwards ({self.last_now} -> {engine.now})")
        self.last_now = engine.now

    def _install(self, engine) -> None:
        """Check every eviction against the engine's own record of what is in use."""
        self._installed = True
        if engine.unified:
            self._install_unified(engine)
            return
        pool = engine.pool
        place = pool.place

        def guarded_place(a, protected, state):
            prot = set(protected)
            if not pool._free:
                victims = pool.victims(prot)
                if victims:
                    v = victims[0]
                    why = []
                    if v in engine.sched.adapters_in_use():
                        why.append("used by a running/prefilling request")
                    if v in engine.inflight.values() or pool.is_loading(v):
                        why.append("in flight")
                    if v in engine.blocking_in_batch:
                        why.append("loaded for the batch being formed")
                    if v in pool.pinned:
                        why.append("pinned")
                    if why:
                        self._fail(engine, f"evicting {v!r} for {a!r} but it is {', '.join(why)}")
            return place(a, protected, state)

        evict = pool.evict

        def guarded_evict(a):
            if a in engine.sched.adapters_in_use() or a in engine.inflight.values() or a in pool.pinned:
                self._fail(engine, f"evicting {a!r} but it is in use, in flight or pinned")
            return evict(a)

        pool.place = guarded_place  # instance attributes shadow the methods
        pool.evict = guarded_evict

    def _install_unified(self, engine) -> None:
        """Unified memory: guard every eviction (placements and KV admission both go through
        `_evict_one`) and check the byte budget after every placement and KV reservation."""
        pool = engine.pool
        evict_one, place, reserve = pool._evict_one, pool.place, pool.kv_reserve

        def guarded_evict_one(a):
            why = []
            if a in engine.sched.adapters_in_use():
                why.append("used by a running/prefilling request")
            if a in engine.inflight.values() or pool.is_loading(a):
                why.append("in flight")
            if a in engine.blocking_in_batch or a in engine.sched.scan_batch:
                why.append("in the batch being formed")
            if a in pool.pinned:
                why.append("pinned")
            if why:
                self._fail(engine, f"evicting {a!r} but it is {', '.join(why)}")
            return evict_one(a)

        def guarded_place(a, protected, state):
            out = place(a, protected, state)
            self._budget(engine, f"after placing {a!r}")
            return out

        def guarded_reserve(batch):
            reserve(batch)
            self._budget(engine, "after a KV reservation")

        pool._evict_one = guarded_evict_one
        pool.place = guarded_place
        pool.kv_reserve = guarded_reserve

    def _budget(self, engine, when: str) -> None:
        pool = engine.pool
        kv = pool.kv_bytes()
        if kv + pool.adapter_bytes > pool.budget:
            self._fail(engine, f"{when}: KV {kv} + adapter {pool.adapter_bytes} bytes > budget {pool.budget}")

    # -- per iteration ---------------------------------------------------------------------
    def __call__(self, engine) -> None:
        if not self._installed:
            self._install(engine)
        self.checks += 1
        sched, pool, cfg = engine.sched, engine.pool, engine.cfg
        policy = engine.policy

        def fail(msg: str) -> None:
            self._fail(engine, msg)

        self._time(engine)

        # conservation: every request is in exactly one place
        places = Counter()
        for st in sched.pending:
            places[st.rid] += 1
        for st in sched.waiting:
            places[st.rid] += 1
        for st in engine.held:  # waiting for its adapter's reload into the host tier
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

        # progress of each request matches where it is
        for st in sched.states:
            r = st.req
            if st.finished_at is not None:
                if st.prefilled != r.input_len or st.decoded != r.output_len:
                    fail(
                        f"request {st.rid} finished with {st.prefilled}/{r.input_len} prompt and "
                        f"{st.decoded}/{r.output_len} output tokens"
                    )
                if st.first_token_at is None or st.first_token_at > st.finished_at:
                    fail(f"request {st.rid} finished at {st.finished_at} before its first token")
            elif st.prefilled > r.input_len or st.decoded >= r.output_len:
                fail(f"request {st.rid} unfinished with {st.prefilled}/{r.input_len} prompt and "
                     f"{st.decoded}/{r.output_len} output tokens")
        for st in sched.running:
            if st.prefilled != st.req.input_len:
                fail(f"request {st.rid} decoding with only {st.prefilled}/{st.req.input_len} prompt tokens")
        for st in sched.waiting:
            if st.prefilled or st.admitted_at is not None:
                fail(f"request {st.rid} waiting but already admitted")
            if st.req.arrival > engine.now:
                fail(f"request {st.rid} waiting before its arrival {st.req.arrival}")

        # pinned adapters (serving.pinned_loras): on the GPU from start-up on, and registered
        for a in engine.pinned:
            if not pool.is_resident(a):
                fail(f"pinned adapter {a!r} is not on the GPU")
            if a not in engine.host:
                fail(f"pinned adapter {a!r} was unloaded from the host tier")

        # host tier (reloads at arrival): a request the scheduler holds has its adapter in RAM,
        # registered or draining, and at most max_loaded_loras are registered
        if engine.reload_at_arrival:
            host = engine.host
            if len(host) > host.capacity:
                fail(f"{len(host)} adapters registered in the host tier > max_loaded_loras {host.capacity}")
            for st in (*sched.waiting, *sched.running):
                if st.adapter is not None and not host.in_ram(st.adapter):
                    fail(f"request {st.rid} queued or running but adapter {st.adapter!r} is not in host RAM")
            for st in engine.held:
                if st.finished_at is not None or st.admitted_at is not None:
                    fail(f"request {st.rid} held for a reload but already admitted")

        # KV cache: exactly the reservations of admitted, unfinished requests
        live = [st for st in sched.states if st.admitted_at is not None and st.finished_at is None]
        kv = sum(sched.kv_need(st) for st in live)
        if kv != sched.kv_used:
            fail(f"KV tokens used {sched.kv_used} != {kv} reserved by admitted requests")
        if engine.unified:
            self._unified(engine)
        elif sched.kv_used > cfg.kv_cache_tokens or sched.kv_used < 0:
            fail(f"KV tokens used {sched.kv_used} outside [0, {cfg.kv_cache_tokens}]")
        if len(live) > cfg.max_running_requests:
            fail(f"{len(live)} admitted requests > max_running_requests {cfg.max_running_requests}")

        # slots and prefetch slots
        uses_slots = getattr(policy, "uses_slots", True)
        if uses_slots and not engine.unified:
            expect = cfg.max_loras_per_batch + (
                cfg.max_loras_prefetch if getattr(policy, "uses_prefetch_slots", False) else 0
            )
            if pool.capacity != expect:
                fail(f"slot pool has {pool.capacity} slots, expected {expect} "
                     f"(batch + prefetch slots of policy {policy.name!r})")
        if not engine.unified and pool.used > pool.capacity:
            fail(f"{pool.used} adapters in {pool.capacity} slots")
        if not engine.unified and pool.used + pool.free != pool.capacity:
            fail(f"{pool.used} used + {pool.free} free slots != capacity {pool.capacity}")
        if len(set(pool.slot_of.values())) != len(pool.slot_of):
            fail("two adapters share a slot")
        if set(pool.slot_of) != set(pool.state):
            fail("slot table and slot states disagree")
        unused = getattr(policy, "unused", None)
        if getattr(policy, "uses_prefetch_slots", False) and unused is not None \
                and len(unused) > cfg.max_loras_prefetch:
            fail(f"{len(unused)} prefetched, unused adapters > max_loras_prefetch {cfg.max_loras_prefetch}")
        in_use = sched.adapters_in_use()
        limit = cfg.max_loras_per_batch
        if not (getattr(policy, "unbounded", False) or engine.unified) and len(in_use) > limit:
            fail(f"{len(in_use)} distinct adapters in use > max_loras_per_batch {limit}")
        truth = {st.adapter for st in live}
        if truth != in_use:
            fail(f"adapters in use {sorted(map(str, in_use))} != those of admitted requests "
                 f"{sorted(map(str, truth))}")
        if uses_slots:
            gone = [a for a in in_use if not pool.is_resident(a)]
            if gone:
                fail(f"adapters used by running requests were evicted: {gone[:5]}")
        for lid, a in engine.inflight.items():
            if not pool.is_loading(a):
                fail(f"load {lid} of {a!r} in flight but its slot is not loading")
        if pool.loading() != set(engine.inflight.values()):
            fail(f"slots loading {sorted(map(str, pool.loading()))} != loads in flight "
                 f"{sorted(map(str, engine.inflight.values()))}")
        if not uses_slots and engine.load_log:
            fail(f"policy {policy.name!r} keeps every adapter resident but loaded {len(engine.load_log)}")

        if engine.unified and engine.sched.kv_scan:
            fail(f"{engine.sched.kv_scan} KV tokens reserved by a scan that was never committed")

        # bytes copied = sizes of adapters loaded
        for lid, a, _kind, b in engine.load_log:
            if a is None or b != engine.adapters[a].nbytes:
                fail(f"load {lid} of {a!r} moved {b} bytes, the adapter has "
                     f"{None if a is None else engine.adapters[a].nbytes}")
        moved = sum(b for _, _, _, b in engine.load_log)
        if moved != engine.counters["bytes_moved"]:
            fail(f"bytes_moved {engine.counters['bytes_moved']} != sum of loaded adapters {moved}")
        if len(engine.load_log) != engine.counters["loads"]:
            fail(f"loads counter {engine.counters['loads']} != {len(engine.load_log)} loads logged")

    def _unified(self, engine) -> None:
        """Unified memory's byte accounting."""
        pool, sched = engine.pool, engine.sched
        if sched.kv_used < 0:
            self._fail(engine, f"KV tokens used {sched.kv_used} < 0")
        self._budget(engine, "at an iteration")
        held = sum(pool.nbytes(a) for a in pool.slot_of)
        if held != pool.adapter_bytes:
            self._fail(engine, f"pool counts {pool.adapter_bytes} adapter bytes, its adapters have {held}")

    # -- per forward -----------------------------------------------------------------------
    def on_forward(self, engine, batch, wait_lids) -> None:
        """Just before `batch` is issued (waits for `wait_lids` still to come)."""
        self._time(engine)
        policy, pool = engine.policy, engine.pool
        adapters = {it.adapter for it in batch.items}
        limit = engine.cfg.max_loras_per_batch
        if engine.unified:
            self._budget(engine, f"before a {batch.kind} forward")
        elif not getattr(policy, "unbounded", False) and len(adapters) > limit:
            self._fail(engine, f"{batch.kind} batch with {len(adapters)} distinct adapters > "
                               f"max_loras_per_batch {limit}")
        if not batch.items:
            self._fail(engine, f"empty {batch.kind} batch")
        rids = [it.rid for it in batch.items]
        if len(set(rids)) != len(rids):
            self._fail(engine, f"{batch.kind} batch has a request twice: {rids}")
        if not getattr(policy, "uses_slots", True):
            return
        for it in batch.items:
            a = it.adapter
            if not pool.is_resident(a):
                self._fail(engine, f"{batch.kind} of request {it.rid} uses adapter {a!r}, not on the GPU")
            if it.slot != pool.slot_of[a]:
                self._fail(engine, f"request {it.rid} uses slot {it.slot} but {a!r} is in {pool.slot_of[a]}")
            if pool.is_loading(a):
                lid = engine.lid_of(a)
                if batch.kind == "decode" or lid not in wait_lids:
                    self._fail(engine, f"{batch.kind} of request {it.rid} uses adapter {a!r} while "
                                       f"its copy (load {lid}) is still in flight and not waited for")
