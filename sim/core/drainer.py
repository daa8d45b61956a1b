"""SGLang's LoRADrainer (PR #17913; `python/sglang/srt/lora/lora_drainer.py`).

Why: with more distinct adapters wanted than `max_loras_per_batch`, FCFS-with-skip lets the
running adapters' new requests keep every slot busy, and a waiting adapter can starve. The
drainer marks one running adapter per starving adapter as *draining*: it admits only short
requests until its running requests finish, which frees its slot.

The rules, as SGLang has them (`update_draining_state`, then `can_schedule` in the scan):
- starving: an adapter with a waiting request that has waited longer than the threshold
  (`--lora-drain-wait-threshold`, seconds; 0, the default, turns the drainer off);
- only when the running requests' distinct adapters fill `max_loras_per_batch`;
- starving adapters not yet drained for, longest wait first, each take the running adapter
  not already draining with the fewest remaining output tokens (max over its requests);
- a draining adapter admits a request only if its output length <= 1.2 x the adapter's
  remaining tokens (`DRAIN_SCHEDULE_TOLERANCE`);
- draining ends once the adapter has no running request.
- starving base-model requests (adapter None) drain nothing: SGLang marks a drain with the
  starving adapter's id, and None is its "not draining" value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sim.core.model import RequestState

Key = str | None

DRAIN_SCHEDULE_TOLERANCE = 1.2  # SGLang's constant: no flag sets it


@dataclass
class AdapterStats:
    """Per-adapter counts, recomputed at every scheduling pass (draining_for persists)."""

    waiting: int = 0
    max_wait_s: float = 0.0
    max_remaining_tokens: int = 0
    draining_for: Key = None  # the starving adapter this one drains for; None: not draining

    def starving(self, threshold_s: float) -> bool:
        return self.waiting > 0 and self.max_wait_s > threshold_s


class LoRADrainer:
    def __init__(
        self, max_loras_per_batch: int, wait_threshold_s: float, tolerance: float = DRAIN_SCHEDULE_TOLERANCE
    ):
        self.max_loras_per_batch = max_loras_per_batch
        self.wait_threshold_s = wait_threshold_s
        self.tolerance = tolerance
        self.stats: dict[Key, AdapterStats] = {}
        self.drains = 0  # adapters marked draining (a counter for results)

    def _of(self, a: Key) -> AdapterStats:
        s = self.stats.get(a)
        if s is None:
            s = self.stats[a] = AdapterStats()
        return s

    def update(self, waiting: Iterable[RequestState], running: Iterable[RequestState], now: float) -> None:
        """SGLang's update_draining_state: refresh stats, mark drains, end finished drains."""
        running = list(running)
        for s in self.stats.values():
            s.waiting, s.max_wait_s, s.max_remaining_tokens = 0, 0.0, 0
        for st in waiting:
            s = self._of(st.adapter)
            s.waiting += 1
            entered = st.req.arrival if st.queued_at is None else st.queued_at
            s.max_wait_s = max(s.max_wait_s, now - entered)
        for st in running:
            s = self._of(st.adapter)
            s.max_remaining_tokens = max(s.max_remaining_tokens, st.req.output_len - st.decoded)
        running_adapters = {st.adapter for st in running}
        self._mark_draining(running_adapters)
        for a, s in self.stats.items():
            if s.draining_for is not None and a not in running_adapters:
                s.draining_for = None

    def _mark_draining(self, running_adapters: set[Key]) -> None:
        if len(running_adapters) < self.max_loras_per_batch:
            return
        served = {s.draining_for for s in self.stats.values() if s.draining_for is not None}
        # sorted is stable: ties keep the stats' first-seen order (SGLang: dict order too)
        starving = sorted(
            (a for a, s in self.stats.items() if s.starving(self.wait_threshold_s) and a not in served),
            key=lambda a: -self.stats[a].max_wait_s,
        )
        eligible = [a for a in self.stats if a in running_adapters and self.stats[a].draining_for is None]
        for a in starving:
            if not eligible:
                break
            victim = min(eligible, key=lambda v: self.stats[v].max_remaining_tokens)
            eligible.remove(victim)
            if a is None:
                # SGLang stores the starving adapter's id as the mark; the base model's id is
                # None, the "not draining" value, so starving base requests drain nothing
                continue
            self.stats[victim].draining_for = a
            self.drains += 1

    def can_schedule(self, st: RequestState) -> bool:
        """A draining adapter admits only requests no longer than tolerance x its remaining
        tokens (output length stands for SGLang's max_new_tokens)."""
        s = self.stats.get(st.adapter)
        if s is None or s.draining_for is None:
            return True
        return st.req.output_len <= s.max_remaining_tokens * self.tolerance

    def draining(self) -> dict[Key, Key]:
        """Draining adapter -> the starving adapter it drains for (for tests and traces)."""
        return {a: s.draining_for for a, s in self.stats.items() if s.draining_for is not None}
