"""The serving scheduler, modelled on SGLang's (DESIGN §2).

Per iteration: arrivals join the waiting queue; the queue (FCFS unless the policy orders it)
is scanned; a request whose adapter cannot join the batch is skipped (`continue`); the scan
stops when a budget is full: `max_running_requests`, `max_prefill_tokens`, KV-cache tokens.
With `lora_refused: stop` the scan stops at that request instead (SGLang before PR #14795:
`break`, head-of-line blocking; docs/sglang_rules.md).
A prompt longer than the remaining budget or `chunked_prefill_size` is chunked; the
unfinished chunk goes first in the next prefill. Prefill-first: if a prefill batch forms it
runs, else one decode step of every running request.

KV cache: a request reserves input+output tokens when first scheduled and frees them when it
finishes (no retraction), so the KV budget only changes at finishes.

With unified adapter memory (sim.core.memory) the KV budget is bytes shared with adapter
weights: a request fits if its KV (and its adapter, if not resident) fit once cached adapters
are evicted, and admitting it evicts them (`memory.kv_fits`, `memory.kv_reserve`); one whose
KV fits but whose adapter does not is skipped, as one without a free slot is. The
tokens this scan has reserved so far (`kv_scan`) count as used while the policy places copies.

With `lora_drain_wait_threshold` > 0, SGLang's LoRADrainer (sim.core.drainer) is updated at
the start of each scan and asked first for every request, before its adapter (SGLang's
`_can_schedule_lora_req`): a refusal skips the request like a missing slot does.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sim.core.drainer import LoRADrainer
from sim.core.model import Request, RequestState
from sim.core.serving import ServingKnobs

Key = str | None


@dataclass
class PrefillPlan:
    """A formed prefill batch: (request, new tokens) pairs and the adapters it adds."""

    items: list[tuple[RequestState, int]]
    final: frozenset[int] = frozenset()  # rids whose prompt this batch completes (set at start)

    @property
    def tokens(self) -> int:
        return sum(n for _, n in self.items)

    @property
    def adapters(self) -> set[Key]:
        return {st.adapter for st, _ in self.items}


# admit(state, batch_adapters) -> True if the request's adapter can join this batch now.
AdmitFn = Callable[[RequestState, set], bool]


class Scheduler:
    def __init__(self, requests: Sequence[Request], serving: ServingKnobs, *, slot_limited: bool = True,
                 memory: Any = None, keep_states: bool = True):
        """`slot_limited`: the policy obeys max_loras_per_batch (False for the `resident`
        oracle, which the drainer would only slow down: it has no slots to free).
        `memory`: the unified pool whose bytes KV shares (None: KV of kv_cache_tokens tokens).
        `keep_states`: make every request's state up front and keep it in `states` (the
        invariant checker and tests read them); otherwise a state is made when its request
        arrives and, once finished, only handed to `on_finish` (a day-long trace's objects
        would not fit in memory)."""
        self.cfg = serving = ServingKnobs.of(serving)
        reqs = sorted(requests, key=lambda r: (r.arrival, r.rid))
        self.n_requests = len(reqs)
        self.pending: deque[Request] = deque(reqs)
        self.states: list[RequestState] | None = [RequestState(r) for r in reqs] if keep_states else None
        self._made = {st.rid: st for st in self.states} if self.states is not None else None
        self._live: dict[int, RequestState] = {}  # arrived, not finished
        self._seq: dict[int, int] = {}  # rid -> position in arrival order, while live
        self._arrived = 0
        # called with (state, position in arrival order) as each request finishes
        self.on_finish: Callable[[RequestState, int], None] | None = None
        self.waiting: list[RequestState] = []
        self.running: list[RequestState] = []  # decoding, plus prefills launched ahead
        self.chunked: RequestState | None = None  # partially prefilled, goes first next time
        self.prefilling: set[int] = set()  # admitted, prompt not finished (incl. launched ahead)
        self.kv_used = 0
        self.kv_scan = 0  # tokens the scan in progress reserves (unified memory counts them)
        # adapters of requests the last scan passed over: with unified memory a later request's
        # KV or copy may not evict them (FCFS; else the head's adapter can be evicted and
        # reloaded for ever while the policy waits for it)
        self.scan_passed: set[Key] = set()
        self.scan_batch: set[Key] = set()
        self.memory = memory
        self.finished = 0
        # adapters referenced by running/chunked requests: these may not be evicted
        self.in_use: Counter[Key] = Counter()
        self._in_use_set: set[Key] | None = None
        self.waiting_per_adapter: Counter[Key] = Counter()
        threshold = serving.lora_drain_wait_threshold
        self.drainer = (
            LoRADrainer(serving.max_loras_per_batch, threshold) if threshold > 0 and slot_limited else None
        )

    # -- queue -----------------------------------------------------------------------------
    def admit_arrivals(self, now: float, hold: Callable[[RequestState], bool] | None = None) -> list[RequestState]:
        """Queue the requests that have arrived by now; those `hold` answers True for are
        live but kept out of the waiting queue until `enqueue` (an adapter being reloaded
        into the host tier). Returns the queued ones."""
        new = []
        pending, made = self.pending, self._made
        while pending and pending[0].arrival <= now:
            req = pending.popleft()
            st = made.pop(req.rid, None) if made is not None else None
            if st is None:
                st = RequestState(req)
                if self.states is not None:
                    self.states.append(st)
            self._live[req.rid] = st
            self._seq[req.rid] = self._arrived
            self._arrived += 1
            if hold is not None and hold(st):
                continue
            self.enqueue(st)
            new.append(st)
        return new

    def enqueue(self, st: RequestState) -> None:
        """Put an arrived request at the end of the waiting queue."""
        self.waiting.append(st)
        self.waiting_per_adapter[st.adapter] += 1

    def has_live(self, a: Key) -> bool:
        """Whether any queued, prefilling or running request uses adapter `a` (SGLang's
        registry counter of requests holding it, which an unload waits to reach zero)."""
        return self.waiting_per_adapter[a] > 0 or self.in_use[a] > 0

    def next_arrival(self) -> float | None:
        return self.pending[0].arrival if self.pending else None

    def all_done(self) -> bool:
        return self.finished == self.n_requests

    def adapters_in_use(self) -> set[Key]:
        """Distinct adapters of running/prefilling requests (cached: the scan asks often)."""
        if self._in_use_set is None:
            self._in_use_set = {a for a, c in self.in_use.items() if c > 0}
        return self._in_use_set

    def kv_need(self, st: RequestState) -> int:
        return st.req.input_len + st.req.output_len

    def running_for_drainer(self) -> list[RequestState]:
        """SGLang's running batch: decoding requests and prefills already launched, not the
        chunked request (it sits in the batch being formed)."""
        chunked = self.chunked.rid if self.chunked is not None else None
        ahead = [self._live[r] for r in sorted(self.prefilling) if r != chunked]
        return self.running + ahead

    # -- batch formation -------------------------------------------------------------------
    def form_prefill(
        self,
        admit: AdmitFn,
        order: Callable[[list[RequestState]], list[RequestState]],
        now: float = 0.0,
        lora_check: AdmitFn | None = None,
    ) -> PrefillPlan | None:
        """`now` is when the scan runs (the drainer measures waits against it). With
        `lora_check` (`serving.lora_check_first`, SGLang's order) a request the scan would stop
        at (full batch, token budget, KV) gets its LoRA check first: a request that fails it is
        skipped and the scan goes on, as SGLang's `continue` precedes its `break`s.

        With `lora_refused: stop` every failed LoRA check (drainer, policy, unified memory's
        adapter room) ends the scan instead of skipping the request. Older SGLang also latched
        `batch_is_full` until a running request finished; re-scanning each iteration gives the
        same answer, since the check depends only on the running adapters, the queue's order
        and the batch being formed."""
        cfg = self.cfg
        stop = cfg.lora_refused == "stop"
        drainer = self.drainer
        if drainer is not None:
            drainer.update(self.waiting, self.running_for_drainer(), now)
        budget = cfg.max_prefill_tokens
        items: list[tuple[RequestState, int]] = []
        batch_adapters: set[Key] = set()
        if self.chunked is not None:
            st = self.chunked
            n = min(st.prefill_remaining, cfg.chunked_prefill_size, budget)
            items.append((st, n))
            batch_adapters.add(st.adapter)
            budget -= n
            if n < st.prefill_remaining:  # still chunked: nothing else fits
                return PrefillPlan(items)
        n_active = len(self.running) + len(self.prefilling)
        n_new = 0
        # A refusal is final for the rest of the scan (the batch only grows, loads don't
        # finish mid-scan), so later requests for a refused adapter skip the policy call.
        # Once every adapter left in the unvisited tail is refused, the scan can stop.
        refused: set[Key] = set()
        passed = self.scan_passed = set()
        self.scan_batch = batch_adapters  # live while the scan runs: never evicted for its KV
        left = dict(self.waiting_per_adapter)  # a plain dict: Counter's item access is slower
        open_left = len(self.waiting)
        kv_planned = 0
        mem = self.memory
        kv_free = cfg.kv_cache_tokens - self.kv_used  # slots mode: KV tokens left
        max_running = cfg.max_running_requests
        for st in order(self.waiting):
            full = budget <= 0 or n_active + n_new >= max_running
            if open_left <= 0 or (full and lora_check is None):
                break
            req = st.req
            a = req.adapter
            if a in refused:
                st.skipped += 1
                left[a] -= 1
                continue
            left[a] -= 1
            open_left -= 1
            if drainer is not None and not drainer.can_schedule(st):
                if stop:
                    break
                st.skipped += 1  # per request (its length), so the adapter is not refused
                passed.add(a)
                continue
            if full:
                assert lora_check is not None
                if lora_check(st, batch_adapters) or stop:
                    break  # the check's side effects (a load start) happen either way
                open_left = self._refuse(st, a, refused, passed, left, open_left)
                continue
            need = req.input_len + req.output_len  # kv_need
            if mem is None:
                fits = kv_planned + need <= kv_free
            else:
                fits = mem.kv_fits(self.kv_used + kv_planned + need, a, batch_adapters | passed)
            if not fits:
                if mem is not None and mem.kv_fits(self.kv_used + kv_planned + need, a, batch_adapters | passed,
                                                   with_adapter=False):
                    # its KV fits, its adapter does not: skipped as SGLang skips a request
                    # whose adapter has no slot; the scan goes on
                    if stop:
                        break
                    refused.add(a)
                    open_left -= left[a]
                    st.skipped += 1
                    continue
                if lora_check is not None and not lora_check(st, batch_adapters) and not stop:
                    open_left = self._refuse(st, a, refused, passed, left, open_left)
                    continue
                break  # SGLang stops adding when memory runs out
            self.kv_scan = kv_planned + need  # a copy placed for it must leave room for its KV
            if not admit(st, batch_adapters):
                self.kv_scan = kv_planned
                if stop:
                    break
                open_left = self._refuse(st, a, refused, passed, left, open_left)
                continue
            n = min(st.prefill_remaining, cfg.chunked_prefill_size, budget)
            items.append((st, n))
            n_new += 1
            kv_planned += need
            batch_adapters.add(st.adapter)
            if self.memory is not None:
                self.memory.kv_reserve(batch_adapters | passed)
            budget -= n
            if n < st.prefill_remaining:
                break  # this one becomes the chunked request
        if not items:
            return None
        return PrefillPlan(items)

    @staticmethod
    def _refuse(st: RequestState, a: Key, refused: set[Key], passed: set[Key], left: dict, open_left: int) -> int:
        """A request its LoRA check turned away: its adapter is refused for the rest of the
        scan (the check's answer cannot change within it). -> the open requests left."""
        st.skipped += 1
        passed.add(a)
        refused.add(a)
        return open_left - left[a]

    def start_prefill(self, plan: PrefillPlan, now: float) -> None:
        """Commit a formed batch: reserve KV, move requests out of the waiting queue.

        Prompt tokens count as scheduled here (not when the forward ends) so that a prefill
        launched ahead is never scheduled twice."""
        self.kv_scan = 0  # now in kv_used
        self.scan_batch = set()
        plan.final = frozenset(st.rid for st, n in plan.items if n == st.prefill_remaining)
        newly = {id(st) for st, _ in plan.items if st is not self.chunked}
        if newly:
            self.waiting = [st for st in self.waiting if id(st) not in newly]
            for st, _ in plan.items:
                if id(st) in newly:
                    self.waiting_per_adapter[st.adapter] -= 1
        for st, n in plan.items:
            if st.rid not in self.prefilling:
                self.prefilling.add(st.rid)
                self.kv_used += self.kv_need(st)
                self.in_use[st.adapter] += 1
                self._in_use_set = None
                st.admitted_at = now
            if n < st.prefill_remaining:
                self.chunked = st
            elif st is self.chunked:
                self.chunked = None
            st.prefilled += n

    def finish_prefill(self, plan: PrefillPlan, end: float, next_step: int) -> None:
        """A prefill forward finished at `end`; complete prompts produce their first token."""
        for st, _ in plan.items:
            if st.rid not in plan.final:
                continue
            self.prefilling.discard(st.rid)
            st.first_token_at = end
            st.decoded = 1
            if st.decoded >= st.req.output_len:
                self._finish(st, end)
            else:
                st.first_decode_step = next_step
                self.running.append(st)

    # -- decode ----------------------------------------------------------------------------
    def decode_horizon(self) -> int:
        """Steps until the first running request finishes: nothing changes before then."""
        return min(st.req.output_len - st.decoded for st in self.running)

    def finish_decode(self, step_ends: Sequence[float]) -> None:
        k = len(step_ends)
        still = []
        for st in self.running:
            st.decoded += k
            st.decode_steps += k
            if st.decoded >= st.req.output_len:
                self._finish(st, step_ends[-1])
            else:
                still.append(st)
        self.running = still

    def _finish(self, st: RequestState, t: float) -> None:
        st.finished_at = t
        self.kv_used -= self.kv_need(st)
        self.in_use[st.adapter] -= 1
        if self.in_use[st.adapter] == 0:
            del self.in_use[st.adapter]
            self._in_use_set = None
        self.finished += 1
        del self._live[st.rid]
        seq = self._seq.pop(st.rid)
        if self.on_finish is not None:
            self.on_finish(st, seq)

    def unfinished(self) -> list[tuple[RequestState, int]]:
        """(state, position in arrival order) of every request not finished, arrived or not
        (a pending one gets a fresh state): the records of a run that stopped early."""
        out = [(st, self._seq[rid]) for rid, st in self._live.items()]
        made = self._made or {}
        for i, req in enumerate(self.pending):
            out.append((made.get(req.rid) or RequestState(req), self._arrived + i))
        return out
