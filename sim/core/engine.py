"""The engine loop: scheduler + policy, written once, yielding effects to a driver.

    gen = Engine(trace, serving, policy).run()
    result = None
    while True:
        effect = gen.send(result)      # StopIteration when every request has finished
        result = driver.handle(effect)

Start-up copies the pinned adapters (`serving.pinned_loras`). Each iteration: see arrivals
(with `serving.host_reload: arrival`, one naming an adapter missing from the host tier is held
while the scheduler's thread reloads it, `_reload_held`), poll finished async loads, let the
policy form a prefill batch
(it may start or plan loads while the queue is scanned), run it (blocking loads first, on the
compute stream), else one or more decode steps of all running requests, else sleep until
something can change. Decode runs are fast-forwarded up to the first finish, the next
arrival, or (when a load could unblock a waiting request) the next load completion, which
is exactly when the scheduler's answer could differ. A policy with `loads_on_arrival` is also
woken at each arrival while a decode runs, to start that request's copy under the step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import Any

from sim.core.effects import (
    Batch,
    BatchItem,
    Effect,
    Evict,
    Forward,
    Idle,
    LoadJob,
    Now,
    PollForwards,
    PollLoads,
    ReadHost,
    StartLoad,
    WaitForward,
    WaitLoad,
)
from sim.core.host import HostTier
from sim.core.memory import UnifiedPool, unified_budget
from sim.core.model import RequestState, Trace
from sim.core.records import RecordColumns
from sim.core.scheduler import PrefillPlan, Scheduler
from sim.core.serving import ServingKnobs
from sim.core.slots import SlotPool
from sim.core.steps import StepLog
from sim.errors import DeadlockError

Key = str | None


# Livelock guard defaults: requests wait but none is admitted, decoded or finished for this
# long (simulated seconds), or for this many iterations without progress or an arrival.
STALL_S = 3600.0
STALL_ITERATIONS = 100_000


class Engine:
    def __init__(
        self,
        trace: Trace,
        serving: ServingKnobs,
        policy: Any,
        estimator: Any = None,
        *,
        stall_s: float | None = STALL_S,
        stall_iterations: int | None = STALL_ITERATIONS,
        keep_states: bool = True,
    ):
        """`estimator`: optional cost model (copy.load_time, compute.forward_time) that
        cost-aware policies may use to *predict* durations, as a server would from its
        calibrated profile. The engine itself never uses it to advance time.

        `stall_s` / `stall_iterations`: the livelock guard (None disables either). While
        requests wait, the engine raises DeadlockError naming them if no prefill is
        scheduled, no decode step runs and no request finishes for `stall_s` simulated
        seconds, or for `stall_iterations` iterations in a row that also see no arrival.

        `serving`: the server's knobs; anything carrying them by name (a validated
        `ServingCfg`) is read into a `ServingKnobs` (`ServingKnobs.of`).

        `keep_states`: keep every RequestState (`states`) for checkers and tests; either way
        each finished request's outcome goes to `records` (sim.core.records), which is what
        metrics are built from."""
        self.trace = trace
        self.estimator = estimator
        self.cfg = serving = ServingKnobs.of(serving)
        self.policy = policy
        self.adapters = trace.adapter_map()
        self._ranks: dict[Key, int] = {a.name: a.rank for a in trace.adapters} | {None: 0}
        # the model's layer count, as the adapters' tensors give it (0: no adapter to tell)
        a0 = next((a for a in trace.adapters if a.targets), None)
        self.model_layers = a0.n_tensors // (2 * len(a0.targets)) if a0 is not None else 0
        self.memory = policy.memory_model(serving)  # "slots" | "unified"
        self.unified = self.memory == "unified"
        order = getattr(policy, "eviction", serving.eviction)
        self.pool: SlotPool | UnifiedPool
        if self.unified:
            self.pool = self._unified_pool(trace, serving, policy, order)
        else:
            self.pool = SlotPool(policy.slot_capacity(serving), order=order)
        self.sched = Scheduler(
            trace.requests, serving, slot_limited=not (getattr(policy, "unbounded", False) or self.unified),
            memory=self.pool if self.unified else None, keep_states=keep_states,
        )
        self.records = RecordColumns()
        self.sched.on_finish = self.records.add
        self.pending_evicts: list[str] = []  # unified: evicted since the last Evict effect
        self.last_job: LoadJob | None = None
        # SGLang's pinned adapters (serving.pinned_loras): the population's first N, copied at
        # start-up (`run`), never evicted from the GPU or unloaded from host RAM
        self.pinned: frozenset[str] = (
            frozenset(a.name for a in trace.adapters[: serving.pinned_loras])
            if getattr(policy, "uses_slots", True) else frozenset()
        )
        self.pool.pinned |= self.pinned
        self.host = HostTier([a.name for a in trace.adapters], serving.max_loaded_loras, self.pinned)
        self.host_mode = policy.host_mode(serving)
        # serving.host_reload "arrival": requests whose adapter is being reloaded into the host
        # tier, in arrival order (SGLang serves the reloads one at a time), and the reload at
        # their head: read yet, and the adapter it pushed out, draining
        self.reload_at_arrival = serving.host_reload == "arrival" and self.host.capacity < len(trace.adapters)
        self.held: deque[RequestState] = deque()
        self._head_read = False
        self._draining: str | None = None
        self.pending_jobs: list[LoadJob] = []
        self.inflight: dict[int, Key] = {}  # async load id -> adapter
        self.blocking_in_batch: set[Key] = set()  # loaded on the compute stream for this batch
        self.wait_lids: set[int] = set()  # async loads the next forward must wait for
        self.step_ends = StepLog()
        self.counters: dict[str, float] = {
            "loads": 0,
            "bytes_moved": 0,
            "prefetch_wasted": 0,
            "disk_reads": 0,
            "evictions": 0,
            "stall_s": 0.0,
            "iterations": 0,
        }
        self.load_log: list[tuple[int, Key, str, int]] = []  # lid, adapter, kind, bytes
        self._next_lid = 0
        self.ready_seen: dict[Key, float] = {}  # when the scheduler saw an async load finish
        self.now = 0.0
        self.check = None  # optional invariant checker: callable(engine)
        self.stall_s = stall_s
        self.stall_iterations = stall_iterations
        self._prefills = 0  # prefill batches scheduled (progress marker)
        self._progress: tuple[int, int, int] = (-1, -1, -1)
        self._progress_t = 0.0
        self._progress_iter = 0
        self._was_waiting = False
        policy.bind(self)

    def _unified_pool(self, trace: Trace, serving: ServingKnobs, policy: Any, order: str) -> UnifiedPool:
        """One byte budget for KV and adapters, the slots configuration's total."""
        if serving.kv_bytes_per_token < 1 or serving.slot_bytes < 1:
            raise ValueError("serving.adapter_memory: unified needs the model's KV bytes per token and "
                             "slot bytes; build the knobs with sim.runner.serving_knobs")
        slots = serving.max_loras_per_batch + serving.max_loras_prefetch
        budget = unified_budget(serving.kv_cache_tokens, serving.kv_bytes_per_token, slots, serving.slot_bytes)
        pool = UnifiedPool(budget, serving.kv_bytes_per_token, {a.name: a.nbytes for a in trace.adapters},
                           order=order)  # type: ignore[arg-type]
        pool.kv_tokens = lambda: self.sched.kv_used + self.sched.kv_scan
        pool.protect = lambda: (self.sched.adapters_in_use() | pool._loading | self.blocking_in_batch
                                | self.sched.scan_batch)
        return pool

    @property
    def states(self) -> list[RequestState] | None:
        """Every request's state, when kept (`keep_states`); else None."""
        return self.sched.states

    def final_records(self) -> RecordColumns:
        """`records` with the unfinished requests added (call once, when the run has stopped)."""
        for st, seq in self.sched.unfinished():
            self.records.add(st, seq)
        return self.records

    # -- services for policies -------------------------------------------------------------
    def protected(self, batch_adapters: set[Key]) -> set[Key]:
        """Adapters that may not be evicted now: used by running requests or this batch (with
        unified memory also those of the requests the scan passed over: `Scheduler.scan_passed`)."""
        if self.unified:
            return self.sched.adapters_in_use() | batch_adapters | self.sched.scan_passed
        return self.sched.adapters_in_use() | batch_adapters

    def new_load(self, adapter: Key, batch_adapters: set[Key], stream: str, kind: str) -> bool:
        """Give `adapter` a slot (evicting per the pool's order) and plan its copy.

        The base model (None) needs a slot but no copy. Returns False if no slot can be had.
        """
        prot = self.protected(batch_adapters) | self.pool.loading()
        if not self.pool.can_place(prot, adapter):
            return False
        state = "ready" if adapter is None or stream == "compute" else "loading"
        slot, evicted, did_evict = self.pool.place(adapter, prot, state)
        if self.unified:  # maybe several: issued as one Evict effect before the copy
            self._drain_evictions()
            evicted, did_evict = None, False
        elif did_evict:
            self.counters["evictions"] += 1
            self.policy.on_evict(evicted)
        if adapter is None:
            return True
        spec = self.adapters[adapter]
        if self.cfg.host_reload == "load":
            from_disk, host_dropped = self.host.access(adapter)
        else:  # reloaded at arrival; only a policy's guess (a prefetch) can miss RAM
            from_disk, host_dropped = not self.host.in_ram(adapter), None
        lid = self._next_lid
        self._next_lid += 1
        job = LoadJob(
            lid=lid,
            adapter=spec,
            slot=slot,
            stream=stream,  # type: ignore[arg-type]
            kind=kind,  # type: ignore[arg-type]
            copy_mode=self.cfg.copy_mode,
            host_mode=self.host_mode,
            from_disk=from_disk,
            evicted=evicted if did_evict else None,
            host_evicted=host_dropped,
            layered=stream == "load" and self.policy.layer_pipelined,
        )
        self.pending_jobs.append(job)
        self.last_job = job
        self.counters["loads"] += 1
        self.counters["bytes_moved"] += spec.nbytes
        self.counters["disk_reads"] += int(from_disk)
        self.load_log.append((lid, adapter, kind, spec.nbytes))
        if stream == "load":
            self.inflight[lid] = adapter
        else:
            self.blocking_in_batch.add(adapter)
        return True

    def _drain_evictions(self) -> None:
        """Unified memory: count and report the pool's evictions (placements and KV)."""
        for a in self.pool.evicted:
            self.counters["evictions"] += 1
            self.policy.on_evict(a)
            self.pending_evicts.append(a)  # type: ignore[arg-type]
        self.pool.evicted.clear()

    def lid_of(self, adapter: Key) -> int | None:
        for lid, a in self.inflight.items():
            if a == adapter:
                return lid
        return None

    # -- the loop --------------------------------------------------------------------------
    def admit(self, st: RequestState, batch_adapters: set[Key]) -> bool:
        """Scan callback: note hit/miss on first look, then ask the policy."""
        if st.adapter_hit is None:
            st.adapter_hit = self.policy.is_hit(st.adapter)
        return self.policy.admit(st, batch_adapters)

    def lora_check(self, st: RequestState, batch_adapters: set[Key]) -> bool:
        """Scan callback where the scan would stop (`serving.lora_check_first`): note hit/miss
        on first look, as `admit` does, then ask the policy's LoRA check."""
        if st.adapter_hit is None:
            st.adapter_hit = self.policy.is_hit(st.adapter)
        return self.policy.lora_check(st, batch_adapters)

    def run(self) -> Generator[Effect, Any, None]:
        sched, policy = self.sched, self.policy
        launched: list[tuple[int, PrefillPlan]] = []  # prefills launched ahead (wait=False)
        for a in sorted(self.pinned):  # start-up: SGLang loads pinned adapters before serving
            self.new_load(a, set(), "load", "prefetch")
        yield from self._start_pending_loads()
        while not sched.all_done():
            self.counters["iterations"] += 1
            self.now = yield Now()
            arrived = self._admit_arrivals()
            self._watch_progress(bool(arrived))
            if self.held:
                yield from self._reload_held()
            done = yield PollLoads()
            for lid in done:
                if lid not in self.inflight:
                    continue  # a blocking copy: already usable
                a = self.inflight.pop(lid)
                self.pool.mark_ready(a)
                self.ready_seen[a] = self.now
                policy.on_load_done(a, self.now)
            if launched:
                for ticket in (yield PollForwards()):
                    idx = next(i for i, (t, _) in enumerate(launched) if t == ticket)
                    _, lplan = launched.pop(idx)
                    res = yield WaitForward(ticket)
                    sched.finish_prefill(lplan, res.end, len(self.step_ends))
            if self.check is not None:
                self.check(self)

            plan = sched.form_prefill(
                self.admit, policy.order, self.now,
                self.lora_check if self.cfg.lora_check_first and policy.lora_check_effects else None,
            )
            if sched.drainer is not None:
                self.counters["drains"] = sched.drainer.drains
            if plan is not None:
                self._prefills += 1
                sched.start_prefill(plan, self.now)
                policy.on_batch(plan, self.now)
            policy.after_schedule(plan, self.now)  # prefetch planning
            yield from self._start_pending_loads()

            if plan is not None:
                batch = self._batch(plan)
                if policy.layer_pipelined:
                    # a chunked prompt's next chunk may follow its first before the copy that
                    # chunk waited for has been seen to finish: it waits for it too
                    for a in plan.adapters:
                        lid = self.lid_of(a) if self.pool.is_loading(a) else None
                        if lid is not None:
                            self.wait_lids.add(lid)
                if self.check is not None and hasattr(self.check, "on_forward"):
                    self.check.on_forward(self, batch, frozenset(self.wait_lids))
                layer_waits: tuple[int, ...] = ()
                if policy.layer_pipelined:
                    layer_waits = tuple(sorted(self.wait_lids))
                else:
                    for lid in sorted(self.wait_lids):
                        t0 = self.now
                        t1 = yield WaitLoad(lid)
                        self.counters["stall_s"] += max(0.0, t1 - t0)
                        self.now = max(self.now, t1)
                self.wait_lids.clear()
                if len(launched) + 1 < policy.launch_ahead:
                    ticket = yield Forward(batch, wait=False, layer_waits=layer_waits)
                    launched.append((ticket, plan))
                    self._note_adapter_wait(plan, self.now)
                else:
                    res = yield Forward(batch, layer_waits=layer_waits)
                    self._note_adapter_wait(plan, res.start)
                    sched.finish_prefill(plan, res.end, len(self.step_ends))
                self.blocking_in_batch.clear()
                continue

            if launched:
                if policy.load_completion_unblocks and self.inflight and sched.waiting:
                    # a load finishing may let another prefill launch before these end
                    self.now = yield Idle(self._look_again(sched.next_arrival()))
                    continue
                ticket, lplan = launched.pop(0)
                res = yield WaitForward(ticket)
                sched.finish_prefill(lplan, res.end, len(self.step_ends))
                continue

            if sched.running:
                stop_on_load = bool(policy.load_completion_unblocks and self.inflight and sched.waiting)
                policy.on_decode(self.now)
                dbatch = self._decode_batch()
                if self.check is not None and hasattr(self.check, "on_forward"):
                    self.check.on_forward(self, dbatch, frozenset())
                nxt = sched.next_arrival()
                fwd = Forward(
                    dbatch,
                    max_steps=sched.decode_horizon(),
                    until=self._look_again(nxt),
                    stop_on_load=stop_on_load,
                    wait=not (policy.loads_on_arrival and nxt is not None),
                )
                if fwd.wait:
                    res = yield fwd
                else:
                    res = yield from self._decode_watching_arrivals(fwd)
                self.step_ends.extend(res.step_ends)
                sched.finish_decode(res.step_ends)
                continue

            if sched.all_done():  # the last launched prefill was retired above
                break
            if self.held:  # a request retired above may have been the last one a drain waited for
                n = len(self.held)
                yield from self._reload_held()
                if len(self.held) < n:
                    continue
            # nothing runnable: sleep until an arrival or a load finishes
            nxt = sched.next_arrival()
            if nxt is None and not self.inflight:
                raise DeadlockError(self._diagnose())
            self.now = yield Idle(self._look_again(nxt))

    # -- helpers ---------------------------------------------------------------------------
    def _look_again(self, nxt: float | None) -> float | None:
        """When the scheduler must look again: the next arrival, or earlier if the policy
        asks (a time still to come; e.g. when a copy is far enough along to join a prefill)."""
        t = self.policy.look_again_at(self.now)
        if t is None or t <= self.now:
            return nxt
        return t if nxt is None else min(t, nxt)

    def _decode_watching_arrivals(self, fwd: Forward) -> Generator[Effect, Any, Any]:
        """Run a decode launched with wait=False, waking at each arrival while it runs so the
        policy can start that request's copy at once (`loads_on_arrival`): the copy then runs
        under the decode step instead of starting at the step's end. Arrivals are admitted
        to the queue here; scheduling still waits for the forward."""
        ticket = yield fwd
        while True:
            res = yield WaitForward(ticket, until=self.sched.next_arrival())
            if res is not None:
                return res
            self.now = yield Now()
            self._admit_arrivals()
            yield from self._start_pending_loads()

    def _admit_arrivals(self) -> list[RequestState]:
        """Queue the requests that have arrived by now and tell the policy of each; with
        reloads at arrival, hold those whose adapter is not registered in the host tier."""
        arrived = self.sched.admit_arrivals(self.now, self._hold if self.reload_at_arrival else None)
        for st in arrived:
            self.policy.on_arrival(st, self.now)
        return arrived

    def _hold(self, st: RequestState) -> bool:
        """Arrival with `host_reload: arrival`: the request's adapter moves up the host tier's
        recency, or, not registered, the request waits for its reload (`_reload_held`)."""
        if st.adapter is None or self.host.touch(st.adapter):
            return False
        self.held.append(st)
        return True

    def _reload_held(self) -> Generator[Effect, Any, None]:
        """SGLang's reload of an evicted adapter (`_resolve_lora_path` -> `load_lora_adapter`
        under `lora_update_lock`), one at a time, for the held request at the head: read the
        file (the scheduler launches nothing meanwhile), register it, unregister the least
        recently used adapter and wait until no request holds that one
        (`wait_for_unload`), then free it, also on the GPU (a reload gets a new lora_id, so
        the old GPU copy is never used again). Only then does the request reach the waiting
        queue; a request whose adapter was registered meanwhile (SGLang: "already loaded")
        goes straight in."""
        while self.held:
            st = self.held[0]
            if not self._head_read and st.adapter not in self.host:
                self.now = yield ReadHost(self.adapters[st.adapter], pinned=self.host_mode == "pinned")
                self.counters["disk_reads"] += 1
                self._head_read = True
                self._draining = self.host.register(st.adapter)
            victim = self._draining
            if victim is not None:
                if self.sched.has_live(victim):
                    return  # looked at again after a request finishes
                self.host.drop(victim)
                self._forget_on_gpu(victim)
                yield ReadHost(None, (victim,))
            self._head_read, self._draining = False, None
            self.held.popleft()
            st.queued_at = self.now
            self.sched.enqueue(st)
            self.policy.on_arrival(st, self.now)

    def _forget_on_gpu(self, a: str) -> None:
        """Drop an unloaded adapter's GPU copy (no request holds it, so nothing protects it)."""
        if not self.pool.is_ready(a) or a in self.pool.pinned:
            return
        self.pool.evict(a)
        if not self.unified:  # unified: counted and reported by _drain_evictions
            self.counters["evictions"] += 1
            self.policy.on_evict(a)

    def _start_pending_loads(self) -> Generator[Effect, Any, None]:
        """Issue the copies the policy asked for since the last call; with unified memory,
        first free the pages of the adapters evicted since (for these copies or for KV)."""
        if self.unified:
            self._drain_evictions()
            if self.pending_evicts:
                gone, self.pending_evicts = tuple(self.pending_evicts), []
                yield Evict(gone)
        jobs, self.pending_jobs = self.pending_jobs, []
        for job in jobs:
            yield StartLoad(job)

    def _watch_progress(self, arrived: bool) -> None:
        """Livelock guard: see `stall_s` / `stall_iterations` in __init__."""
        it = int(self.counters["iterations"])
        mark = (self.sched.finished, len(self.step_ends), self._prefills)
        waiting = bool(self.sched.waiting)
        fresh = mark != self._progress or not waiting or not self._was_waiting
        self._was_waiting = waiting
        if fresh:  # progress, or the queue just became non-empty: restart the clock
            self._progress, self._progress_t, self._progress_iter = mark, self.now, it
            return
        if arrived:
            self._progress_iter = it
        idle_s = self.now - self._progress_t
        idle_it = it - self._progress_iter
        if (self.stall_s is not None and idle_s > self.stall_s) or (
            self.stall_iterations is not None and idle_it > self.stall_iterations
        ):
            raise DeadlockError(self._diagnose_livelock(idle_s, idle_it))

    def _adapter_state(self, a: Key) -> str:
        pool = self.pool
        if not getattr(self.policy, "uses_slots", True):
            return "always resident"
        if pool.is_loading(a):
            lid = self.lid_of(a)
            return f"loading in slot {pool.slot_of[a]}" + (f" (load {lid})" if lid is not None else "")
        if pool.is_ready(a):
            return f"ready in slot {pool.slot_of[a]}"
        return "not on the GPU"

    def _diagnose_livelock(self, idle_s: float, idle_it: int) -> str:
        sched = self.sched
        stuck = sched.waiting[:5]
        parts = [
            f"request {st.rid} (adapter {st.adapter!r}: {self._adapter_state(st.adapter)}; "
            f"waiting since t={st.req.arrival:.3f}s, skipped {st.skipped}x)"
            for st in stuck
        ]
        more = f" and {len(sched.waiting) - len(stuck)} more" if len(sched.waiting) > len(stuck) else ""
        inflight = sorted(map(str, self.inflight.values()))
        return (
            f"livelock at t={self.now:.3f}s: {len(sched.waiting)} request(s) waiting but none "
            f"scheduled, decoded or finished for {idle_s:.3f} simulated s ({idle_it} iterations; "
            f"limits stall_s={self.stall_s}, stall_iterations={self.stall_iterations}) under "
            f"policy {getattr(self.policy, 'name', '?')!r}; stuck: {', '.join(parts)}{more}; "
            f"running {len(sched.running)}, loads in flight {inflight}; slots "
            f"{sorted(map(str, self.pool.slot_of))} of {self.pool.capacity}; "
            f"KV used {sched.kv_used}/{self.cfg.kv_cache_tokens}"
        )

    def _slot(self, a: Key) -> int:
        return self.pool.slot_of.get(a, -1) if a is not None else self.pool.slot_of.get(None, -1)

    def _rank(self, a: Key) -> int:
        return self._ranks[a]

    def _batch(self, plan: PrefillPlan) -> Batch:
        return Batch(
            "prefill",
            tuple(
                BatchItem(st.rid, st.adapter, self._slot(st.adapter), self._rank(st.adapter), n, st.prefilled - n)
                for st, n in plan.items
            ),
        )

    def _decode_batch(self) -> Batch:
        slot_of, ranks = self.pool.slot_of, self._ranks
        items = []
        for st in self.sched.running:  # one item per running request per decode forward: hot
            req = st.req
            a = req.adapter
            items.append(BatchItem(req.rid, a, slot_of.get(a, -1), ranks[a], 1, req.input_len + st.decoded - 1))
        return Batch("decode", tuple(items))

    def _note_adapter_wait(self, plan: PrefillPlan, start: float) -> None:
        """When each newly scheduled request's adapter became usable for it (metrics)."""
        for st, _ in plan.items:
            if st.adapter_ready_at is not None:
                continue
            arr = st.req.arrival
            if st.adapter_hit:
                ready = arr
            elif st.adapter in self.blocking_in_batch:
                ready = start  # copied on the compute stream just before this forward
            else:
                ready = max(arr, self.ready_seen.get(st.adapter, arr))
            st.adapter_ready_at = ready
            st.waited_on_adapter = max(0.0, ready - arr)

    def _diagnose(self) -> str:
        stuck = self.sched.waiting[:5]
        parts = [
            f"request {st.rid} (adapter {st.adapter!r}, {st.req.input_len}+{st.req.output_len} tokens)"
            for st in stuck
        ]
        return (
            f"no progress possible at t={self.now:.3f}s: {len(self.sched.waiting)} waiting request(s) "
            f"can never be scheduled, e.g. {', '.join(parts)}; slots in use: "
            f"{sorted(map(str, self.pool.slot_of))} of {self.pool.capacity}; "
            f"KV used {self.sched.kv_used}/{self.cfg.kv_cache_tokens}"
        )
