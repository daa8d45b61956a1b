"""`lru` / `fifo`: SGLang's default blocking load.

A request whose adapter is missing joins the batch if a slot can be freed; the batch's
missing adapters are copied synchronously on the compute stream right before its forward.
An adapter still being prefetched (slora) is waited for.

LRU recency: SGLang's blocking path fetches every forward batch's adapters, decode batches
included (`ForwardBatch.init_new` -> `LoRAManager.fetch_new_loras` -> `mark_used`), so an
adapter counts as used until its last request's last decode step, not only at its prefills.
"""

from __future__ import annotations

from sim.core.model import RequestState
from sim.policies.base import Key, Policy


class BlockingLRU(Policy):
    name = "lru"
    summary = "blocking load on the compute stream before the forward; evict least recently used"
    eviction = "lru"

    def admit(self, st: RequestState, batch_adapters: set[Key]) -> bool:
        a, e = st.adapter, self.e
        if not self.fits_batch(a, batch_adapters):
            return False
        if e.pool.is_ready(a):
            return True
        if e.pool.is_loading(a):  # prefetch in flight: the forward waits for it
            lid = e.lid_of(a)
            if lid is not None:
                e.wait_lids.add(lid)
            return True
        return e.new_load(a, batch_adapters, stream="compute", kind="blocking")

    def on_decode(self, now: float) -> None:
        # in running order, not set order: set order of strings changes with PYTHONHASHSEED
        for a in dict.fromkeys(st.adapter for st in self.e.sched.running):
            self.e.pool.touch(a)


class BlockingFIFO(BlockingLRU):
    name = "fifo"
    summary = "blocking load like lru; evict the adapter loaded first"
    eviction = "fifo"
