"""Host time of the unified arena's bookkeeping (gpu.arena), which runs on the scheduler thread
between forwards: KV pages taken and freed, adapter runs placed and evicted, on an arena the
size of an 80 GB GPU's (40,000 pages of 2 MiB) with rank-64 Llama-3.1-8B adapters (160 pages).
Prints its figures; nothing is asserted. Needs numpy only (no GPU, no torch).

    python benchmarks/bench_arena.py [PAGES]
"""

from __future__ import annotations

import random
import sys
import time

from gpu.arena import PageArena


def run(pages: int = 40_000, adapter_pages: int = 160, ops: int = 2_000, seed: int = 0) -> None:
    rng = random.Random(seed)
    arena = PageArena(pages, transit=adapter_pages)
    rows: list[list[int]] = []
    names: list[str] = []
    t = {"take_kv": [0.0, 0], "free_kv": [0.0, 0], "place": [0.0, 0], "evict": [0.0, 0]}
    moved = 0

    def timed(kind: str, fn):
        t0 = time.perf_counter()
        out = fn()
        t[kind][0] += time.perf_counter() - t0
        t[kind][1] += 1
        return out

    for i in range(ops):
        op = rng.random()
        if op < 0.35 and arena.free_pages > 200:  # a request's row: up to 2048 tokens
            rows.append(timed("take_kv", lambda: arena.take_kv(rng.randint(1, 128))))
        elif op < 0.6 and rows:
            row = rows.pop(rng.randrange(len(rows)))
            timed("free_kv", lambda row=row: arena.free_kv(row))
        elif op < 0.85 and arena.free_pages >= adapter_pages:
            name = f"a{i}"
            _, moves = timed("place", lambda name=name: arena.place_adapter(name, adapter_pages))
            names.append(name)
            moved += len(moves)
            # a KV page moved out of the way is now at its destination: keep the rows right
            where = {m.src: m.dst for m in moves if m.owner is None}
            rows = [[where.get(p, p) for p in r] for r in rows]
        elif names:
            name = names.pop(rng.randrange(len(names)))
            timed("evict", lambda name=name: arena.free_adapter(name))
    print(f"arena of {pages} pages, adapters of {adapter_pages} pages, {ops} random operations "
          f"({moved} page moves asked for):")
    for kind, (secs, n) in t.items():
        if n:
            print(f"  {kind:8s} {n:5d} calls, {secs / n * 1e3:7.3f} ms each")


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 40_000)
