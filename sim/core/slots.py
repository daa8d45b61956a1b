"""GPU adapter slot pool: which adapter sits in which slot, and in what state.

Mirrors SGLang's LoRA memory pool: a fixed number of slots padded to the largest rank,
lazily evicted. The base model (adapter None) also occupies a slot but needs no copy.
Eviction order (lru/fifo) is the pool's; *which* adapters may not be evicted is the caller's
(running, in the batch being formed, in flight) and is always passed in explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

Key = str | None
SlotState = Literal["loading", "ready"]


class AdapterStates:
    """What both pools answer the same way: an adapter's state (`slot_of`, `state`, `_loading`
    are the pool's own), so the engine and the policies ask either pool alike."""

    slot_of: dict[Key, int]
    state: dict[Key, SlotState]
    _loading: set[Key]
    _last_used: dict[Key, int]
    _clock: int

    def is_ready(self, a: Key) -> bool:
        return self.state.get(a) == "ready"

    def is_loading(self, a: Key) -> bool:
        return self.state.get(a) == "loading"

    def is_resident(self, a: Key) -> bool:
        return a in self.slot_of

    def loading(self) -> set[Key]:
        return set(self._loading)

    @property
    def used(self) -> int:
        return len(self.slot_of)

    def touch(self, a: Key) -> None:
        """Record a use, for LRU."""
        self._clock += 1
        self._last_used[a] = self._clock

    def mark_ready(self, a: Key) -> None:
        if self.state.get(a) != "loading":
            raise RuntimeError(f"adapter {a!r} is not loading")
        self.state[a] = "ready"
        self._loading.discard(a)


class SlotPool(AdapterStates):
    def __init__(self, capacity: int, order: Literal["lru", "fifo"] = "lru"):
        if capacity < 1:
            raise ValueError("slot pool needs at least one slot")
        self.capacity = capacity
        self.order = order
        self.slot_of: dict[Key, int] = {}
        self.state: dict[Key, SlotState] = {}
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self._last_used: dict[Key, int] = {}
        self._loaded_seq: dict[Key, int] = {}
        self._clock = 0
        self.pinned: set[Key] = set()  # never evicted (SGLang's pinned adapters)
        self._loading: set[Key] = set()
        # optional policy-supplied eviction key (smallest first), e.g. next use in the queue
        self.victim_key: Callable[[Key], Any] | None = None

    # -- queries ---------------------------------------------------------------------------
    @property
    def free(self) -> int:
        return len(self._free)

    # -- updates ---------------------------------------------------------------------------
    def victims(self, protected: Iterable[Key]) -> list[Key]:
        """Evictable adapters, next victim first; never protected, pinned or loading ones.
        (A list, because the base model's key is None.)"""
        prot = set(protected) | self.pinned
        cands = [a for a, s in self.state.items() if s == "ready" and a not in prot]
        rank = self._last_used if self.order == "lru" else self._loaded_seq
        if self.victim_key is not None:
            vk = self.victim_key
            return sorted(cands, key=lambda a: (vk(a), rank.get(a, 0)))
        # SGLang's mem_pool evicts the base model's slot (None) only when no adapter can go
        return sorted(cands, key=lambda a: (a is None, rank.get(a, 0)))

    def can_place(self, protected: Iterable[Key], a: Key = None) -> bool:
        """Could an adapter (any: every slot fits the largest) get a slot now?"""
        return bool(self._free) or bool(self.victims(protected))

    def place(
        self, a: Key, protected: Iterable[Key], state: SlotState
    ) -> tuple[int, Key | None, bool]:
        """Give `a` a slot (free one first, else evict a victim).

        Returns (slot, evicted adapter, evicted_anything). Raises if nothing can be placed:
        callers check `can_place` first, so this is a bug, not user input.
        """
        if a in self.slot_of:
            raise RuntimeError(f"adapter {a!r} already has a slot")
        evicted: Key | None = None
        did_evict = False
        if self._free:
            slot = self._free.pop()
        else:
            cands = self.victims(protected)
            if not cands:
                raise RuntimeError(f"no slot for {a!r}: every slot is protected")
            evicted = cands[0]
            slot = self.slot_of.pop(evicted)
            del self.state[evicted]
            did_evict = True
        self.slot_of[a] = slot
        self.state[a] = state
        if state == "loading":
            self._loading.add(a)
        self._clock += 1
        self._loaded_seq[a] = self._clock
        self._last_used[a] = self._clock
        return slot, evicted, did_evict

    def evict(self, a: Key) -> int:
        slot = self.slot_of.pop(a)
        del self.state[a]
        self._loading.discard(a)
        self._free.append(slot)
        return slot
