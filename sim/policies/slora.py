"""`slora`: S-LoRA-style queue-based prefetch (SGLang PR #14190).

Batches form as with blocking LRU over `max_loras_per_batch` batch slots. After each batch is
formed, the head of the waiting queue is examined and the adapters it will need are copied
asynchronously (load stream) into `max_loras_prefetch` extra slots; a prefetched adapter is
promoted (used in place) when its request is scheduled, and waited for if still in flight.
"""

from __future__ import annotations

from sim.core.scheduler import PrefillPlan
from sim.policies.base import Key, TracksPrefetch, int_option
from sim.policies.lru import BlockingLRU


class SLoRAPrefetch(TracksPrefetch, BlockingLRU):
    name = "slora"
    summary = "blocking loads + async prefetch of the queue head's adapters into extra slots (S-LoRA)"
    uses_prefetch_slots = True

    def __init__(self, lookahead: int = 32, **options):
        super().__init__(**options)
        # waiting-queue entries examined per iteration
        self.lookahead = int_option(self.name, "lookahead", lookahead, 0)
        self.unused: set[Key] = set()  # prefetched, not yet used by a batch

    def memory_model(self, serving) -> str:
        if serving.adapter_memory != "slots":
            raise ValueError(f"policy {self.name!r} prefetches into reserved slots, which unified memory "
                             "does not have; expected serving.adapter_memory: slots")
        return "slots"

    def after_schedule(self, plan: PrefillPlan | None, now: float) -> None:
        e = self.e
        budget = e.cfg.max_loras_prefetch - len(self.unused)
        if budget <= 0:
            return
        batch = plan.adapters if plan is not None else set()
        # never evict what the queue head is about to use
        keep = batch | self.unused | {st.adapter for st in e.sched.waiting[: self.lookahead]}
        for st in e.sched.waiting[: self.lookahead]:
            a = st.adapter
            if budget <= 0:
                break
            if a is None or e.pool.is_resident(a):
                continue
            if not e.pool.can_place(e.protected(keep) | e.pool.loading()):
                break
            if e.new_load(a, keep, stream="load", kind="prefetch"):
                self.unused.add(a)
                budget -= 1
