"""Host (CPU memory) tier: `max_loaded_loras` adapters registered in RAM, LRU.

Two ways a miss is read from disk (`serving.host_reload`):
- "arrival" (SGLang today, `TokenizerManager._resolve_lora_path`): a request naming an
  adapter that is not registered waits before the scheduler sees it while the adapter is
  reloaded (`register`), and every arriving request moves its adapter's recency (`touch`).
  Reloads run one at a time (SGLang's `lora_update_lock`). The registry's least recently used
  adapter is unregistered at once but stays in RAM, *draining*, until no request that already
  holds it is left (`LoRARegistry.wait_for_unload`); then it is dropped (`drop`).
- "load": the GPU load of a missing adapter reads it first (`access`), recency moving at GPU
  loads: the simulator's model before SGLang's reload path was followed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class HostTier:
    def __init__(self, names: Sequence[str], capacity: int | None, pinned: frozenset[str] = frozenset()):
        """`pinned`: never unloaded (SGLang's LRU skips pinned adapters); registered first."""
        self.capacity = capacity if capacity is not None else len(names)
        self.pinned = pinned
        names = [n for n in names if n in pinned] + [n for n in names if n not in pinned]
        self._lru: OrderedDict[str, None] = OrderedDict()
        # Adapters registered at start-up: the pinned ones, then population order, up to capacity.
        for n in names[: self.capacity]:
            self._lru[n] = None
        self.draining: set[str] = set()  # unregistered, still in RAM until their requests end
        self.disk_reads = 0

    def __contains__(self, name: str) -> bool:
        """Registered (a request naming it is served without a reload)."""
        return name in self._lru

    def __len__(self) -> int:
        return len(self._lru)

    def in_ram(self, name: str) -> bool:
        return name in self._lru or name in self.draining

    def access(self, name: str) -> tuple[bool, str | None]:
        """"load" mode: use `name` for a GPU load. Returns (read from disk first, adapter
        dropped from RAM)."""
        if name in self._lru:
            self._lru.move_to_end(name)
            return False, None
        dropped = None
        if len(self._lru) >= self.capacity:
            dropped = self._least_recent()
            del self._lru[dropped]
        self._lru[name] = None
        self.disk_reads += 1
        return True, dropped

    def touch(self, name: str) -> bool:
        """"arrival" mode: a request names `name`. True if registered (its recency moves)."""
        if name in self._lru:
            self._lru.move_to_end(name)
            return True
        return False

    def register(self, name: str) -> str | None:
        """"arrival" mode: `name` was read from disk. Returns the least recently used adapter
        it pushes out of the registry (now draining), if the registry was full."""
        self._lru[name] = None
        self.disk_reads += 1
        if len(self._lru) <= self.capacity:
            return None
        victim = self._least_recent()
        del self._lru[victim]
        self.draining.add(victim)
        return victim

    def _least_recent(self) -> str:
        """`lru_lora_name(exclude_pinned=True)` (config validation keeps one unpinned)."""
        return next(n for n in self._lru if n not in self.pinned)

    def drop(self, name: str) -> None:
        """A draining adapter's last request ended: free its RAM."""
        self.draining.discard(name)
