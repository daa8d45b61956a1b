"""Unified GPU memory: KV cache and adapter weights in one byte budget (S-LoRA, Chameleon).

With `serving.adapter_memory: unified` this pool replaces the slot pool. Its budget is what
the slots configuration spends, KV tokens x bytes per token + slots x slot bytes, so the two
are compared at equal total GPU memory. An adapter occupies its own bytes (its rank and
targets), not a max-rank slot, and there is no per-batch adapter limit. Adapters stay cached
while nothing needs the memory and are evicted (never one in use, in flight, loaded for the
batch being formed, or pinned) when a new adapter or the KV cache needs the bytes: the
scheduler's KV admission asks this same pool (`kv_fits`, `kv_reserve`).

It answers the `SlotPool` interface the engine and the policies use; a "slot" here is a
handle naming the adapter's pages, stable while it is resident. KV is counted in tokens
(as the slots mode counts it), each token `kv_bytes_per_token` bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from sim.core.model import ALL_TARGETS, AdapterSpec, ModelShape
from sim.core.slots import AdapterStates, Key, SlotState


def slot_bytes(shape: ModelShape, adapters: Sequence[AdapterSpec]) -> int:
    """Bytes of one SGLang slot: padded to the largest rank over the union of the targets."""
    if not adapters:
        return 0
    targets = {t for a in adapters for t in a.targets}
    union = tuple(t for t in ALL_TARGETS if t in targets)
    padded = shape.adapter_bytes(max(a.rank for a in adapters), union) if union else 0
    return max(padded, max(a.nbytes for a in adapters))


def unified_budget(kv_cache_tokens: int, kv_bytes_per_token: int, slots: int, slot_size: int) -> int:
    """The slots configuration's total: KV tokens x bytes per token + slots x slot bytes."""
    return kv_cache_tokens * kv_bytes_per_token + slots * slot_size


class UnifiedPool(AdapterStates):
    def __init__(self, budget: int, kv_bytes_per_token: int, sizes: dict[str, int],
                 order: Literal["lru", "fifo"] = "lru"):
        if budget < 1 or kv_bytes_per_token < 1:
            raise ValueError(f"unified memory needs a budget and KV bytes per token > 0, got "
                             f"{budget} and {kv_bytes_per_token}")
        self.budget = budget
        self.capacity = budget  # bytes (the slot pool's capacity is slots)
        self.kv_bpt = kv_bytes_per_token
        self.sizes = dict(sizes)
        self.order = order
        self.slot_of: dict[Key, int] = {}
        self.state: dict[Key, SlotState] = {}
        self._loading: set[Key] = set()
        self.pinned: set[Key] = set()
        self._last_used: dict[Key, int] = {}
        self._loaded_seq: dict[Key, int] = {}
        self._clock = 0
        self._handles = itertools.count()
        self.adapter_bytes = 0  # bytes of resident adapters (loading ones included)
        self.largest = max(self.sizes.values(), default=1) or 1
        # set by the engine: KV tokens reserved now (the scan's tentative ones included), and
        # adapters that may never be evicted now (in use, in flight, loaded for this batch)
        self.kv_tokens: Callable[[], int] = lambda: 0
        self.protect: Callable[[], set] = set
        self.victim_key: Callable[[Key], Any] | None = None
        self.evicted: list[Key] = []  # since the engine last drained them (it issues Evict)

    # -- queries ---------------------------------------------------------------------------
    def nbytes(self, a: Key) -> int:
        return 0 if a is None else self.sizes[a]

    def kv_bytes(self) -> int:
        return self.kv_tokens() * self.kv_bpt

    def free_bytes(self) -> int:
        return self.budget - self.kv_bytes() - self.adapter_bytes

    @property
    def free(self) -> int:
        """Adapters of the largest size that fit without evicting (policies that prefetch
        only into free memory read this as the slot pool's free slots)."""
        return max(0, self.free_bytes()) // self.largest

    # -- updates ---------------------------------------------------------------------------
    def victims(self, protected: Iterable[Key]) -> list[Key]:
        """Evictable adapters, next victim first (the policy's key if it set one)."""
        prot = set(protected) | self.pinned | self.protect()
        cands = [a for a, s in self.state.items() if s == "ready" and a not in prot and a is not None]
        rank = self._last_used if self.order == "lru" else self._loaded_seq
        if self.victim_key is not None:
            vk = self.victim_key
            return sorted(cands, key=lambda a: (vk(a), rank.get(a, 0)))
        return sorted(cands, key=lambda a: rank.get(a, 0))

    def plan_room(self, need: int, protected: Iterable[Key]) -> list[Key] | None:
        """Victims (in order) that free `need` bytes beyond what is free; None if impossible."""
        short = need - self.free_bytes()
        out: list[Key] = []
        for v in self.victims(protected) if short > 0 else ():
            out.append(v)
            short -= self.nbytes(v)
            if short <= 0:
                break
        return out if short <= 0 else None

    def can_place(self, protected: Iterable[Key], a: Key = None) -> bool:
        return self.plan_room(self.nbytes(a), protected) is not None

    def _evict_one(self, a: Key) -> None:
        """Every eviction goes through here (the invariant checker guards it)."""
        self.slot_of.pop(a)
        del self.state[a]
        self._loading.discard(a)
        self.adapter_bytes -= self.nbytes(a)
        self.evicted.append(a)

    def _make_room(self, need: int, protected: Iterable[Key]) -> list[Key]:
        plan = self.plan_room(need, protected)
        if plan is None:
            raise RuntimeError(f"no room for {need} bytes: every cached adapter is protected")
        for v in plan:
            self._evict_one(v)
        return plan

    def place(self, a: Key, protected: Iterable[Key], state: SlotState) -> tuple[int, Key | None, bool]:
        """Give `a` its bytes, evicting victims as needed (callers check `can_place`).
        Returns (handle, first adapter evicted, evicted anything)."""
        if a in self.slot_of:
            raise RuntimeError(f"adapter {a!r} is already resident")
        gone = self._make_room(self.nbytes(a), protected)
        self.slot_of[a] = next(self._handles)
        self.state[a] = state
        self.adapter_bytes += self.nbytes(a)
        if state == "loading":
            self._loading.add(a)
        self._clock += 1
        self._loaded_seq[a] = self._clock
        self._last_used[a] = self._clock
        return self.slot_of[a], (gone[0] if gone else None), bool(gone)

    def evict(self, a: Key) -> int:
        slot = self.slot_of[a]
        self._evict_one(a)
        return slot

    # -- KV admission ------------------------------------------------------------------------
    def kv_fits(self, tokens: int, a: Key, batch: Iterable[Key], with_adapter: bool = True) -> bool:
        """Would `tokens` KV tokens in all (the new request's included), plus its adapter if it
        is not resident (`with_adapter`), fit once evictable adapters go? Evicts nothing."""
        extra = (tokens - self.kv_tokens()) * self.kv_bpt
        if with_adapter and a not in self.slot_of:
            extra += self.nbytes(a)
        return self.plan_room(extra, set(batch) | {a}) is not None

    def kv_reserve(self, batch: Iterable[Key]) -> None:
        """KV tokens were just reserved (`kv_tokens` counts them): evict cached adapters until
        the budget holds again."""
        if self.free_bytes() < 0:
            self._make_room(0, batch)
