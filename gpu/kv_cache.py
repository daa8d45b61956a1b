"""Paged KV cache: fixed-size pages, a page table per request, one cache tensor per layer.

Why paged: the harness must read only the KV a request has, as SGLang and vLLM do. The old
per-request slabs made attention pad every request to the longest one and read it, so a
decode step cost the batch's longest context times its size. Here attention kernels
(gpu.kernels) follow each request's block-table row and stop at its length.

Requests hold a *row* (their block-table row and their next token in `last_tok`), as in
SGLang's req_to_token pool; pages are handed out when the row is taken, enough for the
length the driver asks for. Row `scratch` and page `scratch_page` belong to no request:
padding entries of a fixed-shape CUDA-graph batch read and write there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from gpu.staging import copy_into
from sim.core.model import ModelShape

if TYPE_CHECKING:
    from gpu.arena import PageArena

PAGE_SIZE = 16  # tokens a page (vLLM's default block size)


class PagedKV:
    """Per-layer caches `k[li]`, `v[li]` of shape [pages + 1, page_size, kv_heads, head_dim]
    (the last page is scratch), block table [rows + 1, max_pages] int32 (the last row is
    scratch), `last_tok` [rows + 1]: each row's next input token."""

    def __init__(
        self,
        shape: ModelShape,
        rows: int,
        max_ctx: int,
        device: torch.device | str,
        dtype: torch.dtype,
        *,
        page_size: int = PAGE_SIZE,
        pages: int | None = None,
        storage: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None,
        pager: PageArena | None = None,
    ):
        """`storage` (per-layer K and V views of [pages + 1, page_size, kv_heads, head_dim],
        any page stride) and `pager` (which hands out and takes back pages): the KV lives in
        the unified arena (gpu.unified) instead of tensors of its own."""
        if rows < 1 or max_ctx < 1:
            raise ValueError(f"a KV cache needs rows >= 1 and max_ctx >= 1, got {rows}, {max_ctx}")
        self.shape, self.rows, self.max_ctx, self.page_size = shape, rows, max_ctx, page_size
        self.max_pages = -(-max_ctx // page_size)
        self.pages = pages if pages is not None else rows * self.max_pages
        self.scratch, self.scratch_page = rows, self.pages
        dev = torch.device(device)
        kvh, hd = shape.kv_heads, shape.head_dim
        self.pager = pager
        if storage is not None:
            self.k, self.v = storage
        else:
            size = (shape.layers, self.pages + 1, page_size, kvh, hd)
            self.k = list(torch.zeros(size, device=dev, dtype=dtype).unbind(0))
            self.v = list(torch.zeros(size, device=dev, dtype=dtype).unbind(0))
        self.block_table = torch.full(
            (rows + 1, self.max_pages), self.scratch_page, dtype=torch.int32, device=dev
        )
        self.last_tok = torch.zeros(rows + 1, dtype=torch.long, device=dev)
        self.row_of: dict[int, int] = {}
        self.capacity: dict[int, int] = {}  # row -> tokens its pages hold
        self._pages_of: dict[int, list[int]] = {}
        self.reset()

    @staticmethod
    def bytes_per_token(shape: ModelShape) -> int:
        return 2 * shape.layers * shape.kv_heads * shape.head_dim * shape.dtype_bytes

    @property
    def free_pages(self) -> int:
        return self.pager.free_pages if self.pager is not None else len(self._free_pages)

    def row(self, rid: int, length: int | None = None) -> int:
        """The row of request `rid`, taken with pages for `length` tokens (default max_ctx)
        on first use."""
        if rid in self.row_of:
            return self.row_of[rid]
        n = length if length is not None else self.max_ctx
        if n > self.max_ctx:
            raise RuntimeError(f"request {rid} needs {n} tokens; the KV cache holds {self.max_ctx} a request")
        need = -(-max(n, 1) // self.page_size)
        if not self._free_rows:
            raise RuntimeError(f"KV cache full ({self.rows} rows): cannot place request {rid}")
        if need > self.free_pages:
            raise RuntimeError(
                f"KV cache full ({self.free_pages} free pages of {self.pages}): "
                f"request {rid} needs {need}"
            )
        self._free_rows.sort()
        r = self._free_rows.pop(0)
        if self.pager is not None:
            pages = self.pager.take_kv(need)
        else:
            pages = [self._free_pages.pop() for _ in range(need)]
        copy_into(self.block_table[r], pages + [self.scratch_page] * (self.max_pages - need))
        self.row_of[rid], self._pages_of[r], self.capacity[r] = r, pages, need * self.page_size
        return r

    def take_all_rows(self) -> None:
        """Every row taken by a request of the same number, with pages for max_ctx tokens:
        for calibration and benchmarks, which address rows directly."""
        self.reset()
        for r in range(self.rows):
            self.row(r)

    def release(self, rid: int) -> None:
        r = self.row_of.pop(rid, None)
        if r is not None:
            self._give_back(self._pages_of.pop(r))
            self.capacity.pop(r, None)
            self._free_rows.append(r)

    def pages_of(self, rid: int) -> list[int]:
        """The pages request `rid`'s row holds (none if it holds no row)."""
        r = self.row_of.get(rid)
        return list(self._pages_of.get(r, [])) if r is not None else []

    def _give_back(self, pages: list[int]) -> None:
        if self.pager is not None:
            self.pager.free_kv(pages)
        else:
            self._free_pages.extend(pages)

    def repoint(self, src: int, dst: int) -> None:
        """Page `src`'s data now lies in page `dst` (the unified arena moved it): the row
        holding it reads `dst` from now on."""
        for r, pages in self._pages_of.items():
            if src in pages:
                pages[pages.index(src)] = dst
                copy_into(self.block_table[r], pages + [self.scratch_page] * (self.max_pages - len(pages)))
                return
        raise RuntimeError(f"page {src} belongs to no row")

    def reset(self) -> None:
        """Every row and page free (a new run on the same cache; contents are overwritten
        before they are read)."""
        if self.pager is not None:
            for pages in self._pages_of.values():
                self.pager.free_kv(pages)
        self.row_of.clear()
        self.capacity.clear()
        self._pages_of.clear()
        self._free_rows = list(range(self.rows))
        self._free_pages = list(range(self.pages - 1, -1, -1))  # pop() hands out page 0 first

    def slot_mapping(self, block_rows: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Flat cache slot (page * page_size + offset) of each token: `block_rows` [T, max_pages]
        the block-table rows of the tokens' requests, `pos` [T] their positions. Device-side,
        so a CUDA graph can compute it from its static inputs."""
        page = block_rows.gather(1, (pos // self.page_size).unsqueeze(1)).squeeze(1)
        return page.long() * self.page_size + pos % self.page_size
