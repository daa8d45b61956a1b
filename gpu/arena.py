"""Page bookkeeping of the unified GPU arena (issue #28): KV pages and adapter weights in one
device buffer, as S-LoRA's unified paging and Chameleon's adapter cache keep them.

The arena is one array of equal pages; a page holds one KV page of every layer (K and V), so
a KV page is a single page and can live anywhere. An adapter's weights take a *run* of
contiguous pages, laid out at its own rank, so the SGMV kernels read it in place from one
base address. KV pages are taken from the bottom and adapters placed from the top, which
keeps the two apart; when no free run is long enough, the KV pages in the way are moved
(one page copy each and a block-table entry), and when cached adapters have fragmented the
top they are packed upward first. A packed adapter whose new place holds KV pages that have
nowhere else to go passes through a *transit* run of `transit` pages above the arena (the
largest adapter's size), so every move is a plain copy between disjoint pages. This class
only decides: it returns the moves, and the caller copies the pages and updates its tables
before it writes the new adapter.

The serving core's unified pool (`sim.core.memory.UnifiedPool`) decides *what* is resident by
bytes; this decides *where*. Page rounding costs up to a page per request and per adapter,
so the arena is sized with that much slack over the core's byte budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FREE, KV = 0, -1  # page owners; an adapter's pages hold its id (> 0)


@dataclass(frozen=True)
class Move:
    """Copy pages [src, src + n) to [dst, dst + n) (never overlapping), then repoint their
    owner: a block-table entry for a KV page, the adapter's base for an adapter run."""

    src: int
    dst: int
    n: int
    owner: str | None  # the adapter's name; None for a KV page


class PageArena:
    """`pages` pages for KV and adapters, numbered 0..pages-1, and `transit` pages above them
    (pages..pages+transit-1) that only a packed adapter passes through."""

    def __init__(self, pages: int, transit: int = 0):
        if pages < 1 or transit < 0:
            raise ValueError(f"an arena needs at least one page and no negative transit, got {pages}, {transit}")
        self.pages, self.transit = pages, transit
        # numpy, not a list: an 80 GB arena has ~40k pages and the scheduler thread places
        # adapters and takes KV pages between forwards
        self._owner = np.zeros(pages, dtype=np.int64)  # FREE
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}
        self._runs: dict[str, tuple[int, int]] = {}  # name -> (start, n)
        self._next_id = 1

    # -- queries ---------------------------------------------------------------------------
    @property
    def free_pages(self) -> int:
        return int(np.count_nonzero(self._owner == FREE))

    @property
    def kv_pages(self) -> int:
        return int(np.count_nonzero(self._owner == KV))

    def run_of(self, name: str) -> tuple[int, int]:
        """(first page, pages) of a resident adapter."""
        return self._runs[name]

    def adapters(self) -> dict[str, tuple[int, int]]:
        return dict(self._runs)

    # -- KV ----------------------------------------------------------------------------------
    def take_kv(self, n: int) -> list[int]:
        """`n` free pages for KV, lowest first (KV grows from the bottom)."""
        got = np.flatnonzero(self._owner == FREE)[:n]
        if len(got) < n:
            raise RuntimeError(f"arena full: {len(got)} free pages of {self.pages}, the KV cache asks {n}")
        self._owner[got] = KV
        return got.tolist()

    def free_kv(self, pages: list[int]) -> None:
        for p in pages:
            if self._owner[p] != KV:
                raise RuntimeError(f"page {p} is not a KV page")
        self._owner[pages] = FREE

    # -- adapters ----------------------------------------------------------------------------
    def place_adapter(self, name: str, n: int) -> tuple[int, list[Move]]:
        """A run of `n` pages for adapter `name`: (first page, moves to apply first, in
        order). Raises when fewer than `n` pages are free (the core evicts by bytes first)."""
        if name in self._runs:
            raise RuntimeError(f"adapter {name!r} is already in the arena")
        if n < 1:
            raise ValueError(f"an adapter takes at least one page, got {n}")
        if self.free_pages < n:
            raise RuntimeError(f"arena full: {self.free_pages} free pages of {self.pages}, "
                               f"adapter {name!r} needs {n}")
        moves: list[Move] = []
        start = self._window(n)
        if start is None:
            moves += self._pack_adapters()
            start = self._window(n)
            assert start is not None, "a packed arena with enough free pages has a window"
        moves += self._clear(start, n)
        aid = self._next_id
        self._next_id += 1
        self._ids[name], self._names[aid], self._runs[name] = aid, name, (start, n)
        self._owner[start:start + n] = aid
        return start, moves

    def free_adapter(self, name: str) -> None:
        start, n = self._runs.pop(name)
        del self._names[self._ids.pop(name)]
        self._owner[start:start + n] = FREE

    # -- placement -------------------------------------------------------------------------------
    def _window(self, n: int) -> int | None:
        """Start of the window of `n` pages with no adapter page whose KV pages fit in the
        free pages outside it: fewest KV pages to move, then highest."""
        if n > self.pages:
            return None
        adapter = np.concatenate(([0], np.cumsum(self._owner > 0)))
        kv = np.concatenate(([0], np.cumsum(self._owner == KV)))
        starts = np.arange(self.pages - n + 1)
        inside = kv[starts + n] - kv[starts]
        # no adapter page, and its KV pages fit in the free pages outside it
        ok = (adapter[starts + n] == adapter[starts]) & (inside <= self.free_pages - (n - inside))
        if not ok.any():
            return None
        cand = starts[ok]
        fewest = inside[ok].min()
        return int(cand[inside[ok] == fewest].max())  # fewest KV pages to move, then highest

    def _room_outside(self, start: int, n: int) -> tuple[list[int], list[int]]:
        """(KV pages of [start, start + n), free pages outside it)."""
        inside = (start + np.flatnonzero(self._owner[start:start + n] == KV)).tolist()
        free = np.flatnonzero(self._owner == FREE)
        outside = free[(free < start) | (free >= start + n)].tolist()
        return inside, outside

    def _clear(self, start: int, n: int) -> list[Move]:
        """Move the KV pages of [start, start + n) to the lowest free pages outside it."""
        inside, outside = self._room_outside(start, n)
        if len(outside) < len(inside):
            raise RuntimeError(f"arena fragmented: {len(inside)} KV pages to move out of "
                               f"[{start}, {start + n}), {len(outside)} free pages elsewhere")
        moves = []
        for src, dst in zip(inside, outside, strict=False):
            self._owner[src], self._owner[dst] = FREE, KV
            moves.append(Move(int(src), int(dst), 1, None))
        return moves

    def _pack_adapters(self) -> list[Move]:
        """Slide every adapter run up against the top (highest first), closing the holes
        that evicted adapters left; KV pages in a run's new place are moved out of it."""
        moves: list[Move] = []
        top = self.pages
        for name, (start, n) in sorted(self._runs.items(), key=lambda kv: -kv[1][0]):
            dst = top - n
            top = dst
            if dst == start:
                continue
            aid = self._ids[name]
            inside, outside = self._room_outside(dst, n)
            if dst >= start + n and len(outside) >= len(inside):
                # the KV pages under the new place move first, and not into the old run,
                # which holds the adapter until its own copy
                moves += self._clear(dst, n)
                self._owner[start:start + n] = FREE
                moves.append(Move(start, dst, n, name))
            else:  # overlapping, or the KV pages need the old run's: the adapter waits in transit
                if self.transit < n:
                    raise RuntimeError(f"arena fragmented: adapter {name!r} ({n} pages) must pass "
                                       f"through a transit run of {self.transit}")
                moves.append(Move(start, self.pages, n, name))
                self._owner[start:start + n] = FREE
                moves += self._clear(dst, n)
                moves.append(Move(self.pages, dst, n, name))
            self._owner[dst:dst + n] = aid
            self._runs[name] = (dst, n)
        return moves

    def check(self) -> None:
        """Invariants (tests): every adapter run contiguous and owned by it alone."""
        for name, (start, n) in self._runs.items():
            aid = self._ids[name]
            if not (self._owner[start:start + n] == aid).all():
                raise AssertionError(f"adapter {name!r} does not own its run [{start}, {start + n})")
        if int(np.count_nonzero(self._owner > 0)) != sum(n for _, n in self._runs.values()):
            raise AssertionError("adapter pages outside every run")
