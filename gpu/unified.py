"""The unified arena on the device (issue #28): KV pages and adapter weights in one tensor.

`UnifiedMemory` holds one buffer of equal pages, each one KV page of every layer (K and V:
layers x 2 x page_size x kv_heads x head_dim elements). The KV cache (`PagedKV`) sees strided
per-layer views of it and takes its pages from the arena's bookkeeping (`gpu.arena`); an
adapter occupies a run of pages holding its flat layout at its own rank (`gpu.adapters`), so
`ArenaLora`'s SGMV launches read it in place (`tight` offsets, its first page as the "slot").
`place` and `evict` are what the CUDA driver does for the serving core's unified pool; the
moves the arena asks for (a KV page out of an adapter's way, a cached adapter packed up) are
page copies on the device followed by a block-table entry or an adapter's first page.

Layout: pages 0..pages-1 for KV and adapters, then `transit` pages (the largest adapter:
where a packed adapter waits), then the KV cache's scratch page (padding of graph batches).
"""

from __future__ import annotations

import torch

from gpu.adapters import HostAdapter, flat_layout, ordered_targets
from gpu.arena import Move, PageArena
from gpu.kv_cache import PAGE_SIZE, PagedKV
from gpu.lora import SgmvLora
from sim.core.model import ModelShape


def page_numel(shape: ModelShape, page_size: int = PAGE_SIZE) -> int:
    """Elements of one arena page: a KV page of every layer, K and V."""
    return shape.layers * 2 * page_size * shape.kv_heads * shape.head_dim


class ArenaLora(SgmvLora):
    """SGMV over adapters lying in arena pages at their own rank. `ranks` and `scaling` are
    indexed by page (an adapter's first page); `n_slots` is only the most adapters a batch
    can hold (the graphs' segment capacity)."""

    tight = True

    def __init__(self, shape: ModelShape, pool: torch.Tensor, targets, max_rank: int, max_adapters: int):
        self.shape, self.pool, self.max_rank, self.n_slots = shape, pool, max_rank, max_adapters
        self.targets = ordered_targets(targets)
        self.device, self.dtype = pool.device, pool.dtype
        segs, self.numel_per_rank = flat_layout(shape, 1, self.targets)
        # offsets at rank 1: the kernels scale them by each adapter's rank
        self.layout = {(s.layer, s.module): s for s in segs}
        self.ranks = [0] * pool.shape[0]
        self.scaling = [0.0] * pool.shape[0]
        self.first: dict[str, int] = {}  # adapter -> its first page
        self._init_compute()

    def pages_for(self, rank: int) -> int:
        return -(-rank * self.numel_per_rank // self.pool.shape[1])

    def check(self, ad: HostAdapter) -> None:
        if ad.rank > self.max_rank:
            raise ValueError(f"adapter {ad.name!r}: rank {ad.rank} exceeds the arena's max rank {self.max_rank}")
        if ordered_targets(ad.targets) != self.targets:
            raise ValueError(f"adapter {ad.name!r} targets {ad.targets}; the arena's adapters all target "
                             f"{self.targets} (their offsets are per unit of rank)")

    def write(self, ad: HostAdapter, page: int) -> None:
        """Copy the adapter's flat host buffer (its own rank, the arena's targets) into its
        run from `page`, on the current stream, and record it there."""
        self.copy_flat(ad.flat, page)
        self.register(ad.name, page, ad.rank, ad.scaling)

    def copy_flat(self, flat: torch.Tensor, page: int, lo: int = 0, hi: int | None = None) -> None:
        """One copy of elements [lo, hi) of a flat host buffer into the run from `page` (the
        run holds the flat layout as it is: a flat load, or one layer of a layered one)."""
        hi = flat.numel() if hi is None else hi
        base = page * self.pool.shape[1]
        self.pool.view(-1)[base + lo : base + hi].copy_(flat[lo:hi], non_blocking=True)

    def copy_modules(self, page: int, modules) -> None:
        """One copy per A and B^T tensor (a per-module load, as SGLang's) into the run from
        `page`: the same places as the flat layout."""
        flat = self.pool.view(-1)
        base = page * self.pool.shape[1]
        for seg, a, bt in modules:
            flat[base + seg.a_off : base + seg.b_off].copy_(a.reshape(-1), non_blocking=True)
            b0 = base + seg.b_off
            flat[b0 : b0 + seg.rank * seg.d_out].copy_(bt.reshape(-1), non_blocking=True)

    def register(self, name: str, page: int, rank: int, scaling: float) -> None:
        self.first[name] = page
        self.ranks[page], self.scaling[page] = rank, scaling

    def forget(self, name: str) -> None:
        page = self.first.pop(name)
        self.ranks[page], self.scaling[page] = 0, 0.0

    def repoint(self, name: str, page: int) -> None:
        old = self.first[name]
        self.first[name] = page
        self.ranks[page], self.scaling[page] = self.ranks[old], self.scaling[old]
        if old != page:
            self.ranks[old], self.scaling[old] = 0, 0.0


class UnifiedMemory:
    """One device buffer for KV pages and adapters; `kv` and `lora` are its two views."""

    def __init__(
        self,
        shape: ModelShape,
        pages: int,
        *,
        rows: int,
        max_ctx: int,
        max_rank: int,
        targets,
        max_adapters: int,
        device: torch.device | str,
        dtype: torch.dtype,
    ):
        self.shape, self.dtype = shape, dtype
        numel = page_numel(shape)
        probe = flat_layout(shape, max_rank, ordered_targets(targets))[1]
        transit = -(-probe // numel)  # the largest adapter's pages
        self.arena = PageArena(pages, transit)
        self.mem = torch.zeros(pages + transit + 1, numel, device=device, dtype=dtype)
        kv_pages = pages + transit  # PagedKV's scratch page is the last one
        view = self.mem.view(kv_pages + 1, shape.layers, 2, PAGE_SIZE, shape.kv_heads, shape.head_dim)
        storage = ([view[:, li, 0] for li in range(shape.layers)], [view[:, li, 1] for li in range(shape.layers)])
        self.kv = PagedKV(shape, rows, max_ctx, device, dtype, pages=kv_pages, storage=storage, pager=self.arena)
        self.lora = ArenaLora(shape, self.mem, targets, max_rank, max_adapters)

    @property
    def page_bytes(self) -> int:
        return self.mem.shape[1] * self.mem.element_size()

    def reserve(self, ad: HostAdapter) -> tuple[int, int, list[Move]]:
        """A run of pages for `ad` in the bookkeeping: (first page, pages, the moves to apply
        before anything is written there). The driver applies them on its streams."""
        self.lora.check(ad)
        n = self.lora.pages_for(ad.rank)
        start, moves = self.arena.place_adapter(ad.name, n)
        return start, n, moves

    def place(self, ad: HostAdapter) -> int:
        """`reserve`, then the moves and the copy on the current stream; -> its first page."""
        start, _, moves = self.reserve(ad)
        self.apply(moves)
        self.lora.write(ad, start)
        return start

    def evict(self, name: str) -> None:
        self.arena.free_adapter(name)
        self.lora.forget(name)

    def apply(self, moves: list[Move]) -> None:
        """Copy the moved pages (in order: an adapter passing through transit lands after the
        KV pages it made way for) and repoint their owners."""
        for m in moves:
            self.mem[m.dst : m.dst + m.n].copy_(self.mem[m.src : m.src + m.n])
            if m.owner is None:
                self.kv.repoint(m.src, m.dst)
            else:
                self.lora.repoint(m.owner, m.dst)
