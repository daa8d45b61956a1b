"""`lookahead`: overlap loading + queue lookahead prefetch + next-use eviction + cost-aware
batch merging. The new policy of issue #6, built from what the others each get half right:

- Every copy is asynchronous on the load stream, so decode never stalls on a copy (overlap).
- After each schedule it looks `lookahead` requests into the waiting queue and starts copies
  for the adapters they will need (slora), but into the *same* slots as everything else, so it
  needs no extra memory, and at most `max_inflight` copies are queued so that far-future
  prefetches never delay a near-future one.
- A request's copy starts when it arrives, even while a decode step runs (the scheduler's
  thread is free then), so a short copy is done by the step's end and the request joins the
  next prefill, where lru would first block the GPU for the copy and overlap would start it
  only at the step's end. It is the queue prefetch run at the arrival, so `lookahead: 0` turns
  it off too, as does `loads_on_arrival: false`.
- Victims are chosen by next use in the waiting queue (Belady-like): the adapter needed
  last, or not at all, goes first; a prefetch never evicts an adapter the queue needs sooner.
- When the GPU has no decode work, a request whose adapter is still copying joins the batch
  (the forward waits for the copy) if the extra wait, times the requests it delays (those
  already in the batch and this one), is within `wait_factor` x the predicted prefill time
  of that request, instead of getting a prefill of its own later: this avoids overlap's
  worst case (one prefill per newly loaded adapter) without holding a batch of ready
  requests for one copy. With nothing ready in the batch it sleeps through the copy instead,
  so that requests arriving meanwhile join the batch. Predictions come from the engine's
  estimator (the calibrated hardware profile); without one it never waits.
- A request whose copy finished under the last forward (or is still running) joins a prefill
  only where that helps (`split_new`): joining adds its marginal prefill time to every request
  in that prefill, while waiting for the next one, right after, costs it and everything behind
  only the surplus of a prefill of its own. Where batching is nearly free (short prompts) it
  joins; where prefill time grows with tokens it goes next, as overlap's skip would have sent
  it, so having loaded early never delays the requests that were ready anyway.
- Layer pipelining (`layer_pipeline`): copies go layer by layer and a prefill waits for each
  layer just before it runs it, so a copy overlaps the forward that needs it. A copy's wait is
  priced as the longer of waiting for its first layer and its end outrunning the forward's last
  layer, and a decode run stops when a waiting request's copy is that far along
  (`look_again_at`). Same memory: at equal memory it took the last three of the issue's 30
  cells from ties to better or within one standard error (rank-256 zipf P99 -9.0 -> -29.5 %
  vs overlap).
"""

from __future__ import annotations

import itertools
import math

from sim.core.effects import Batch, BatchItem
from sim.core.model import RequestState
from sim.core.scheduler import PrefillPlan
from sim.core.serving import ServingKnobs
from sim.policies.base import Key, Policy, TracksPrefetch, bool_option, int_option, number_option


class LookaheadOverlap(TracksPrefetch, Policy):
    name = "lookahead"
    summary = ("async loads started at arrival and pipelined layer by layer with the prefill, queue lookahead "
               "prefetch, next-use eviction, cost-aware batch merging (new)")
    load_completion_unblocks = True
    eviction = "lru"

    def __init__(
        self,
        lookahead: int = 32,
        max_inflight: int = 2,
        wait_factor: float = 1.0,
        busy_wait_factor: float = 0.25,
        launch_ahead: int | None = None,
        loads_on_arrival: bool = True,
        split_new: bool = True,
        layer_pipeline: bool = True,
        **options,
    ):
        super().__init__(**options)
        self.layer_pipelined = bool_option(self.name, "layer_pipeline", layer_pipeline)
        self.split_new = bool_option(self.name, "split_new", split_new)
        self._scan_it = -1
        self._scan: list[BatchItem] = []  # this scan's batch so far (split_new prices it)
        # prefills in flight before the scheduler waits for one; default the batch's adapter
        # limit, as `overlap`. Above 1 the scheduler looks again as soon as a prefill's launch
        # returns, so a request that arrived while it was launching gets its copy started then,
        # not after the prefill (with 1, light zipf P99 lost to overlap: 95 vs 70 ms on the H200)
        self._launch_ahead = (
            None if launch_ahead is None else int_option(self.name, "launch_ahead", launch_ahead, 1)
        )
        self.loads_on_arrival = bool_option(self.name, "loads_on_arrival", loads_on_arrival)
        self.lookahead = int_option(self.name, "lookahead", lookahead, 0)
        self.max_inflight = int_option(self.name, "max_inflight", max_inflight, 1)
        self.wait_factor = number_option(self.name, "wait_factor", wait_factor, 0.0)
        self.busy_wait_factor = number_option(self.name, "busy_wait_factor", busy_wait_factor, 0.0)
        self.predicted_done: dict[Key, float] = {}
        self.predicted_dma: dict[Key, tuple[float, float]] = {}  # a copy's DMA: start, length
        self.stream_free = 0.0
        self.unused: set[Key] = set()
        self._nu: dict[Key, int] = {}
        self._nu_iter = -1
        # a request's predicted prefill, by (rid, tokens prefilled): admit asks for it at every
        # scheduling point the request waits through, and the lookup is the policy's main CPU
        # cost with the decode-step estimate (round 9, light passes on the H200: lookahead's median
        # host gap 442 us vs overlap's 377 us; 353 us once both were cached)
        self._pf: dict[tuple[int, int], float] = {}
        self._ds_cache: dict[tuple[int, int, int, int], float] = {}

    def bind(self, engine) -> None:
        super().bind(engine)
        self.launch_ahead = self._launch_ahead or engine.cfg.max_loras_per_batch
        engine.pool.victim_key = lambda a: -self._next_use().get(a, math.inf)

    def host_mode(self, serving: ServingKnobs) -> str:
        return "pinned" if serving.host_mode == "auto" else serving.host_mode

    # -- predictions -----------------------------------------------------------------------
    def _next_use(self) -> dict[Key, int]:
        """Position of each adapter's first request in the waiting queue (this iteration)."""
        it = self.e.counters["iterations"]
        if it != self._nu_iter:
            nu: dict[Key, int] = {}
            for i, st in enumerate(self.e.sched.waiting):
                nu.setdefault(st.adapter, i)
            self._nu, self._nu_iter = nu, it
        return self._nu

    def _started(self, a: Key) -> None:
        est = self.e.estimator
        job = self.e.last_job
        if est is None or job is None or job.adapter.name != a:
            self.predicted_done[a] = math.inf
            return
        start = max(self.e.now, self.stream_free)
        cost = est.copy.load_time(job)
        self.stream_free = start + cost.total
        self.predicted_done[a] = self.stream_free
        self.predicted_dma[a] = (self.stream_free - cost.dma_s, cost.dma_s)

    def _prefill_estimate(self, st: RequestState) -> float:
        est = self.e.estimator
        if est is None:
            return 0.0
        key = (st.rid, st.prefilled)
        if key not in self._pf:
            if len(self._pf) > 4096:  # bounded: old requests' entries are not asked for again
                self._pf.clear()
            self._pf[key] = est.compute.forward_time(Batch("prefill", (self._item(st),)))
        return self._pf[key]

    def _decode_step_estimate(self) -> float:
        """Predicted time of one decode step of the running batch (cached per iteration, and
        by batch shape: requests, distinct adapters, their ranks, and mean and longest context to
        64 tokens, as a profile may price either; a lookup costs ~0.3 ms of CPU, which a GPU run
        pays at every scheduling point)."""
        e = self.e
        it = e.counters["iterations"]
        if getattr(self, "_ds_iter", -1) != it:
            self._ds_iter = it
            est, running = e.estimator, e.sched.running
            if est is None or not running:
                self._ds = 0.0
                return self._ds
            ctxs = [st.req.input_len + st.decoded for st in running]
            adapters = {st.adapter for st in running}
            ranks = sum(e.adapters[a].rank for a in adapters if a is not None)
            shape = (len(running), len(adapters), ranks, sum(ctxs) // len(ctxs) // 64, max(ctxs) // 64)
            if shape not in self._ds_cache:
                if len(self._ds_cache) > 4096:
                    self._ds_cache.clear()
                items = tuple(
                    BatchItem(st.rid, st.adapter, 0, e.adapters[st.adapter].rank if st.adapter else 0, 1,
                              st.req.input_len + st.decoded)
                    for st in running
                )
                self._ds_cache[shape] = est.compute.forward_time(Batch("decode", items))
            self._ds = self._ds_cache[shape]
        return self._ds

    def _extra_wait(self, a: Key, t_fwd: float) -> float:
        """How long a forward of `t_fwd` started now would wait for adapter `a`'s copy (as
        predicted): the rest of the copy; with layer pipelining, only until the copy's first
        layer has arrived, or as long as the copy's end outruns the forward's last layer,
        whichever is longer (a copy still queued behind another delays the forward from its
        start). Unclamped without pipelining (a late copy reads as negative, as before)."""
        now, done = self.e.now, self.predicted_done.get(a, math.inf)
        layers = self.e.model_layers
        if not self.layer_pipelined or layers < 1 or a not in self.predicted_dma:
            return done - now
        c0, d = self.predicted_dma[a]
        return max(0.0, c0 + d / layers - now, done - now - t_fwd * (layers - 1) / layers)

    def _load(self, a: Key, batch_adapters: set[Key], kind: str) -> bool:
        if not self.e.new_load(a, batch_adapters, stream="load", kind=kind):
            return False
        if a is not None:
            self._started(a)
        return True

    # -- scan ------------------------------------------------------------------------------
    def _batch_so_far(self) -> list[BatchItem]:
        """The prefill items admitted so far in this scan (the chunked request's first)."""
        e = self.e
        it = e.counters["iterations"]
        if self._scan_it != it:
            self._scan_it, self._scan = it, []
            st = e.sched.chunked
            if st is not None:
                self._scan.append(self._item(st))
        return self._scan

    def _item(self, st: RequestState) -> BatchItem:
        """`st`'s next prefill chunk as a batch item, for pricing it."""
        n = min(st.prefill_remaining, self.e.cfg.chunked_prefill_size)
        rank = self.e.adapters[st.adapter].rank if st.adapter else 0
        return BatchItem(st.rid, st.adapter, 0, rank, n, st.prefilled)

    def _joins_now(self, st: RequestState, copying: bool = False) -> bool:
        """Should a request whose adapter became ready at this scheduling point (its copy ran
        under the last forward), or whose copy is still running (`copying`, after the wait rules
        allowed it), join this prefill? Joining adds its marginal prefill time to every request
        that will be in it (the batch so far and the ready requests behind it); left out, it runs
        in the next prefill, and only the surplus of a prefill of its own over that marginal time
        delays it, the running requests and the waiting ones this prefill will not take. It
        joins iff the first total is within the second: where batching is nearly free (short
        prompts: the SGLang docs case) it merges, where prefill time grows with tokens it runs
        next, as overlap's skip would have sent it (gamma-bursty, 32 slots, rank 16: P50 +11.6 %
        vs overlap without this, +0.4 % with it)."""
        e, est = self.e, self.e.estimator
        batch = self._batch_so_far()
        if est is None or not (copying or e.ready_seen.get(st.adapter, -math.inf) >= e.now):
            return True
        if e.unified and not (e.sched.running or e.sched.prefilling or e.inflight):
            # unified memory: the ready requests behind may not fit beside the KV in use, and
            # then, with nothing to wake the scheduler, the queue would wait for ever
            return True
        item = self._item(st)
        before = est.compute.forward_time(Batch("prefill", tuple(batch))) if batch else 0.0
        after = est.compute.forward_time(Batch("prefill", (*batch, item)))
        extra = after - before  # what it adds to this prefill; left out, its own prefill costs more
        behind = self._ready_behind(st, batch)
        delayed = len(batch) + behind  # by `extra`, if it joins
        # if it waits, its own prefill's surplus over `extra` delays it, every running request
        # and every waiting request that will not be in this prefill
        later = len(e.sched.waiting) - len(batch) - behind - 1
        return delayed * extra <= (1 + len(e.sched.running) + max(0, later)) * max(
            0.0, self._prefill_estimate(st) - extra)

    def _ready_behind(self, st: RequestState, batch: list[BatchItem]) -> int:
        """Requests after `st` in the queue that will join this prefill whatever it does
        (adapter ready before this scheduling point), within the prefill token budget; only the
        next `lookahead` places (at least 8) are looked at: the scan runs at scheduling points,
        where a GPU run's GPU waits for it."""
        e = self.e
        cap = e.cfg.chunked_prefill_size
        budget = e.cfg.max_prefill_tokens - sum(it.new_tokens for it in batch) - min(st.prefill_remaining, cap)
        waiting = e.sched.waiting
        i = next((k for k, w in enumerate(waiting) if w is st), None)
        if i is None:
            return 0
        n = 0
        for w in itertools.islice(waiting, i + 1, i + 1 + max(self.lookahead, 8)):
            if budget <= 0:
                break
            if e.pool.is_ready(w.adapter) and e.ready_seen.get(w.adapter, -math.inf) < e.now:
                n += 1
                budget -= min(w.prefill_remaining, cap)
        return n

    def admit(self, st: RequestState, batch_adapters: set[Key]) -> bool:
        ok = self._admit(st, batch_adapters)
        if ok and self.split_new:
            self._batch_so_far().append(self._item(st))
        return ok

    def _admit(self, st: RequestState, batch_adapters: set[Key]) -> bool:
        a, e = st.adapter, self.e
        if e.pool.is_ready(a):
            if not self.fits_batch(a, batch_adapters):
                return False
            return not (self.split_new and a is not None) or self._joins_now(st)
        if a is None:  # base model: a slot, no copy
            return self.fits_batch(a, batch_adapters) and self._load(a, batch_adapters, "overlap")
        if not e.pool.is_loading(a):
            if len(e.pool.loading()) >= self.max_inflight and e.sched.running:
                return False
            if not self._load(a, batch_adapters, "overlap"):
                return False
        # copying now: make this prefill wait for it if that is cheaper than a prefill of
        # its own later; with decode work waiting too, only for copies much shorter still
        busy = bool(e.sched.running or e.sched.prefilling)
        # the forward is at least this request's prefill; layer by layer it hides all of the
        # copy but its last layer's share behind it
        t_fwd = self._prefill_estimate(st)
        extra = self._extra_wait(a, t_fwd)
        if not busy and not any(e.pool.is_ready(b) for b in batch_adapters) and (
                not self.layer_pipelined or extra > 0):
            # nothing in the batch could run now: sleep until the copy is done instead of
            # committing the batch, so that requests arriving meanwhile join it (bursts)
            return False
        budget = (
            self.busy_wait_factor * self._decode_step_estimate()
            if busy
            else self.wait_factor * self._prefill_estimate(st)
        )
        cost = max(0.0, extra)
        if not busy:
            # the forward already waits for the batch's other copies: only the extra wait
            # counts, and it delays the batch's requests as well as this one (their number
            # is taken as the batch's distinct adapters: a lower bound; gamma-bursty rank-16
            # P50 went +4.2 -> +1.8 % vs overlap when a lone copy stopped holding a full batch)
            waited = [self._extra_wait(e.inflight[lid], t_fwd) if lid in e.inflight else 0.0 for lid in e.wait_lids]
            cost = max(0.0, extra - max(waited, default=0.0)) * (len(batch_adapters) + 1)
        if cost <= budget and self.fits_batch(a, batch_adapters):
            if self.split_new and not self._joins_now(st, copying=True):
                return False
            lid = e.lid_of(a)
            if lid is not None:
                e.wait_lids.add(lid)
            return True
        return False

    # -- events ----------------------------------------------------------------------------
    def on_arrival(self, st: RequestState, now: float) -> None:
        """Prefetch for the queue now, not at the step's end: the new request may be the first
        in it whose adapter is not on the GPU (queue order still decides which copy goes first)."""
        self._nu_iter = -1  # the queue just grew: next uses change
        if self.loads_on_arrival:
            self._prefetch(set())

    def after_schedule(self, plan: PrefillPlan | None, now: float) -> None:
        self._prefetch(plan.adapters if plan is not None else set())

    def look_again_at(self, now: float) -> float | None:
        """With layer pipelining: when the first copy a queued request waits for is far
        enough along for a prefill to hide the rest (a decode run would otherwise go on to
        the copy's end, and the request's prefill would start only then)."""
        if not self.layer_pipelined or not self.e.pool.loading():
            return None
        layers = self.e.model_layers
        if layers <= 1:
            return None
        t = math.inf
        for st in self.e.sched.waiting[: max(self.lookahead, 1)]:
            a = st.adapter
            if self.e.pool.is_loading(a) and a in self.predicted_dma:
                # when _extra_wait(a, its prefill) reaches 0
                c0, d = self.predicted_dma[a]
                hide = self._prefill_estimate(st) * (layers - 1) / layers
                t = min(t, max(c0 + d / layers, self.predicted_done[a] - hide))
        return t if math.isfinite(t) and t > now else None

    def _prefetch(self, batch: set[Key]) -> None:
        """Start copies for the first `lookahead` waiting requests' adapters, in queue order,
        at most `max_inflight` at once, never evicting what the queue needs as soon."""
        e = self.e
        if self.lookahead == 0:
            return
        nu = self._next_use()
        for st in e.sched.waiting[: self.lookahead]:
            a = st.adapter
            if a is None or e.pool.is_resident(a):
                continue
            if len(e.pool.loading()) >= self.max_inflight:
                break
            if e.pool.free == 0:
                victims = e.pool.victims(e.protected(batch) | e.pool.loading())
                if not victims or nu.get(victims[0], math.inf) <= nu.get(a, math.inf):
                    break  # would evict something the queue needs as soon or sooner
            if self._load(a, batch, "prefetch"):
                self.unused.add(a)
