"""benchmarks/bench_arena.py runs a random mix of arena operations and prints one line per kind
(its timings are printed, not asserted)."""

from __future__ import annotations

import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_arena.py"


def test_bench_arena_prints_each_operation(capsys):
    run = runpy.run_path(str(BENCH))["run"]
    run(pages=2_000, adapter_pages=40, ops=400)
    out = capsys.readouterr().out
    assert out.startswith("arena of 2000 pages, adapters of 40 pages, 400 random operations")
    for kind in ("take_kv", "free_kv", "place", "evict"):
        assert f"  {kind} " in out
