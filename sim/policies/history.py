"""`history`: predictive prefetch from request history (SGLang issue/PR #8712 proposal).

Each arriving request bumps its adapter's score (exponentially decayed frequency, so recent
and frequent both count). After each schedule, the best-scored adapters not on the GPU are
copied asynchronously into *empty* slots only: it never evicts to prefetch, which keeps it
harmless but makes it idle once the pool is warm. Misses still load blocking, as `lru`.
"""

from __future__ import annotations

import math

from sim.core.model import RequestState
from sim.core.scheduler import PrefillPlan
from sim.policies.base import Key, int_option, number_option
from sim.policies.lru import BlockingLRU


class HistoryPrefetch(BlockingLRU):
    name = "history"
    summary = "blocking loads + prefetch of recent/frequent adapters into empty slots only"

    def __init__(self, half_life_s: float = 5.0, max_predictions: int = 3, **options):
        super().__init__(**options)
        half_life_s = number_option(self.name, "half_life_s", half_life_s, 0.0, strict=True)
        self.decay = math.log(2) / half_life_s
        self.max_predictions = int_option(self.name, "max_predictions", max_predictions, 0)
        self.score: dict[Key, float] = {}
        self.stamp: dict[Key, float] = {}

    def _score(self, a: Key, now: float) -> float:
        return self.score.get(a, 0.0) * math.exp(-self.decay * (now - self.stamp.get(a, now)))

    def on_arrival(self, st: RequestState, now: float) -> None:
        a = st.adapter
        self.score[a] = self._score(a, now) + 1.0
        self.stamp[a] = now

    def after_schedule(self, plan: PrefillPlan | None, now: float) -> None:
        e = self.e
        if e.pool.free == 0:
            return
        if e.unified and not (e.sched.pending or e.sched.waiting):
            return  # idle memory is plentiful there: no copy that no request is left to use
        cands = [a for a in self.score if a is not None and not e.pool.is_resident(a)]
        cands.sort(key=lambda a: -self._score(a, now))
        for a in cands[: min(self.max_predictions, e.pool.free)]:
            e.new_load(a, set(), stream="load", kind="prefetch")
