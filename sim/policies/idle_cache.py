"""`idle_cache`: lookahead's copy timing on unified memory, adapters cached in idle KV memory.

In the spirit of Chameleon (arXiv 2411.17741) and S-LoRA's unified paging: the policy always
runs on `sim.core.memory.UnifiedPool` (whatever `serving.adapter_memory` says), so adapters
take their own bytes out of the budget the slots configuration splits into KV and slots, and
a batch may hold any number of them. What the memory is not using for KV caches adapters;
KV admission evicts them when it needs the bytes.

- Copies: `lookahead`'s (async at arrival, layer-pipelined, cost-aware batch merging).
- Eviction, cost-aware: adapters the waiting queue needs go last, the one needed latest first
  (Belady-like); of the others, the lowest expected reload cost per byte freed goes first:
  decayed request frequency (recency and frequency, `half_life_s`) x predicted copy time /
  bytes. A small adapter that is often asked for stays; a large idle one goes.
- Prefetch into idle memory only: a copy for a queued request starts if it fits after leaving
  room for the KV of the requests ahead of it, evicting only adapters needed later or not at
  all, so a prefetch never takes memory the queue's head needs for KV.
- Admission when memory is short (`kv_reserve`): a request that would bring a NEW adapter
  into the running set (none of the running or batched requests uses it) yields unless, with
  its KV and its adapter placed, the memory still holds `kv_reserve` more queued requests' KV
  (their mean need); the scan goes on to requests of adapters already in use, which cost only
  their KV. Without it the running set held ~20 distinct rank-64 adapters on the KV-pressure
  workload, ~2.6k tokens of memory each, and ran fewer requests than the slot policies. A
  request that has waited `reserve_max_wait_s` no longer yields (a starvation bound, as
  SGLang's drainer bounds a slot-starved adapter's wait), nor does one when nothing runs and
  the batch is empty (no memory would come free: `lorasim check` found that deadlock).
"""

from __future__ import annotations

import math

from sim.core.effects import LoadJob
from sim.core.model import RequestState
from sim.core.serving import ServingKnobs
from sim.policies.base import Key, number_option
from sim.policies.lookahead import LookaheadOverlap


class IdleCache(LookaheadOverlap):
    name = "idle_cache"
    summary = ("lookahead's copies on unified memory: adapters cached in idle KV memory, evicted when KV "
               "needs it, by next use then reload cost per byte (new; Chameleon, S-LoRA)")

    def __init__(
        self, half_life_s: float = 10.0, kv_reserve: float = 1.0, reserve_max_wait_s: float = 30.0, **options
    ):
        super().__init__(**options)
        half_life_s = number_option(self.name, "half_life_s", half_life_s, 0.0, strict=True)
        self.kv_reserve = number_option(self.name, "kv_reserve", kv_reserve, 0.0)
        self.reserve_max_wait_s = number_option(self.name, "reserve_max_wait_s", reserve_max_wait_s, 0.0)
        self._mean_need: tuple[int, float] = (-1, 0.0)  # (iteration, mean KV need of the queue)
        self.decay = math.log(2) / half_life_s
        self.freq: dict[Key, float] = {}
        self.stamp: dict[Key, float] = {}
        self._cost: dict[Key, float] = {}

    def memory_model(self, serving: ServingKnobs) -> str:
        return "unified"

    def bind(self, engine) -> None:
        super().bind(engine)
        engine.pool.victim_key = self._victim_key

    # -- eviction ----------------------------------------------------------------------------
    def _frequency(self, a: Key) -> float:
        now = self.e.now
        return self.freq.get(a, 0.0) * math.exp(-self.decay * max(0.0, now - self.stamp.get(a, now)))

    def _reload_cost(self, a: Key) -> float:
        """Predicted copy time of `a` (its bytes without an estimator), cached."""
        if a not in self._cost:
            spec = self.e.adapters[a]
            est = self.e.estimator
            if est is None:
                self._cost[a] = float(spec.nbytes)
            else:
                job = LoadJob(lid=-1, adapter=spec, slot=0, stream="load", kind="prefetch",
                              copy_mode=self.e.cfg.copy_mode, host_mode=self.e.host_mode)  # type: ignore[arg-type]
                self._cost[a] = est.copy.load_time(job).total
        return self._cost[a]

    def _victim_key(self, a: Key) -> tuple[int, float]:
        """Smallest first: (0, value per byte) if no queued request needs `a`, else
        (1, -its first position in the queue)."""
        nu = self._next_use().get(a)
        if nu is not None:
            return 1, -float(nu)
        return 0, self._frequency(a) * self._reload_cost(a) / max(1, self.e.pool.nbytes(a))

    def on_arrival(self, st: RequestState, now: float) -> None:
        a = st.adapter
        self.freq[a] = self._frequency(a) + 1.0
        self.stamp[a] = now
        super().on_arrival(st, now)

    # -- admission ---------------------------------------------------------------------------
    def admit(self, st: RequestState, batch_adapters: set[Key]) -> bool:
        if self.kv_reserve > 0 and self._yields(st, batch_adapters):
            return False
        return super().admit(st, batch_adapters)

    def _yields(self, st: RequestState, batch_adapters: set[Key]) -> bool:
        """Does a request of a new adapter give way to cheaper ones (module docstring)?"""
        e = self.e
        a = st.adapter
        if a is None or a in batch_adapters or e.now - st.req.arrival >= self.reserve_max_wait_s:
            return False
        sched = e.sched
        if not (sched.running or sched.prefilling or batch_adapters):
            return False  # nothing would free memory or use it meanwhile: yielding never ends
        if a in sched.adapters_in_use():
            return False
        it = e.counters["iterations"]
        if self._mean_need[0] != it:  # once per scan: the queue does not change during it
            w = sched.waiting
            self._mean_need = (it, sum(sched.kv_need(x) for x in w) / len(w) if w else 0.0)
        reserve = int(self.kv_reserve * self._mean_need[1])
        # sched.kv_scan already counts this request's KV (set before the policy is asked)
        return not e.pool.kv_fits(sched.kv_used + sched.kv_scan + reserve, a, batch_adapters)

    # -- prefetch ----------------------------------------------------------------------------
    def _prefetch(self, batch: set[Key]) -> None:
        """Copies for the first `lookahead` queued requests, into memory that neither the KV of
        the requests ahead of each nor an adapter needed as soon would use."""
        e = self.e
        if self.lookahead == 0:
            return
        pool, nu = e.pool, self._next_use()
        ahead = 0  # KV bytes of the queued requests before this one
        for st in e.sched.waiting[: self.lookahead]:
            a = st.adapter
            need_kv = e.sched.kv_need(st) * pool.kv_bpt
            if a is None or pool.is_resident(a):
                ahead += need_kv
                continue
            if len(pool.loading()) >= self.max_inflight:
                break
            plan = pool.plan_room(pool.nbytes(a) + ahead, e.protected(batch) | pool.loading())
            if plan is None or any(nu.get(v, math.inf) <= nu.get(a, math.inf) for v in plan):
                break  # no idle memory for it, or only by evicting what the queue needs as soon
            if self._load(a, batch, "prefetch"):
                self.unused.add(a)
            ahead += need_kv
