"""benchmarks/bench_prefill_graphs.py: `--gemms` marks each token bucket that a larger bucket
beats, naming the smallest such bucket; on CPU the whole benchmark runs on the tiny model."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_prefill_graphs.py"


def test_a_bucket_beaten_by_larger_ones_points_at_the_smallest_of_them():
    beaten_by = runpy.run_path(str(BENCH))["beaten_by"]
    ms = {384: 10.6, 448: 15.5, 512: 12.6, 576: 14.0, 640: 15.9}
    assert beaten_by(ms) == {448: 512}
    assert beaten_by({16: 3.0, 32: 2.0, 48: 1.0}) == {16: 32, 32: 48}
    assert beaten_by({16: 1.0, 32: 2.0}) == {}


def test_gemm_table_has_a_row_per_bucket(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench_prefill_graphs.py", "--gemms", "--tokens", "16",
                                      "--max-tokens", "64", "--reps", "1", "--idle-ms", "0"])
    runpy.run_path(str(BENCH), run_name="__main__")
    out = capsys.readouterr().out.split("weight matmuls of a prefill")[1]
    rows = [ln.split() for ln in out.splitlines()[2:] if ln.strip()]
    assert [int(r[0]) for r in rows] == [16, 32, 48, 64]
    assert all(float(r[1]) > 0 for r in rows)
