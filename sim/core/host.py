"""Host (CPU memory) tier: `max_loaded_loras` adapters registered in RAM, LRU.

A GPU load of an adapter missing here must first read it from disk (SGLang reloads it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class HostTier:
    def __init__(self, names: Sequence[str], capacity: int | None):
        self.capacity = capacity if capacity is not None else len(names)
        self._lru: OrderedDict[str, None] = OrderedDict()
        # Adapters registered at start-up, in population order, up to capacity.
        for n in list(names)[: self.capacity]:
            self._lru[n] = None
        self.disk_reads = 0

    def __contains__(self, name: str) -> bool:
        return name in self._lru

    def __len__(self) -> int:
        return len(self._lru)

    def access(self, name: str) -> tuple[bool, str | None]:
        """Use `name` for a GPU load. Returns (read from disk first, adapter dropped from RAM)."""
        if name in self._lru:
            self._lru.move_to_end(name)
            return False, None
        dropped = None
        if len(self._lru) >= self.capacity:
            dropped, _ = self._lru.popitem(last=False)
        self._lru[name] = None
        self.disk_reads += 1
        return True, dropped
