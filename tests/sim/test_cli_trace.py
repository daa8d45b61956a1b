"""`lorasim trace --format`: engine-replayable exports from the CLI; bad formats are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sim.runner import load_scenario
from sim.workload import generate_trace, load_trace
from sim.workload.export import read_export

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = (
    "name: t\nseed: 5\nadapters: {count: 3, rank: 8}\n"
    "workload: {num_requests: 12, arrival: {process: gamma, rate: 5, cv: 2}}\n"
)


def lorasim(*args):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture
def scenario(tmp_path) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(SCENARIO)
    return p


def test_mooncake_export_replays_the_scenarios_arrivals(tmp_path, scenario):
    out = tmp_path / "m.jsonl"
    r = lorasim("trace", scenario, "--format", "mooncake", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "wrote 12 requests" in r.stdout and f"--dataset-path {out} --num-prompts 12" in r.stdout
    trace = generate_trace(load_scenario(scenario))
    back = read_export(out, "mooncake")
    assert back["timestamp"].tolist() == pytest.approx([q.arrival for q in trace.requests])
    assert back["adapter"].tolist() == [q.adapter for q in trace.requests]


def test_default_format_is_still_lorasims_own(tmp_path, scenario):
    r = lorasim("trace", scenario, "--out", tmp_path / "t.csv")
    assert r.returncode == 0, r.stderr
    t = load_trace(tmp_path / "t.csv", generate_trace(load_scenario(scenario)).adapters)
    assert len(t.requests) == 12


@pytest.mark.parametrize("args,expect", [
    (["--format", "sglang2"], "--format: unknown format 'sglang2'; expected one of csv, parquet, sglang, mooncake, vllm"),
    (["--format", "parquet"], "--format parquet writes a .parquet file"),
])
def test_bad_format_is_one_line(tmp_path, scenario, args, expect):
    r = lorasim("trace", scenario, "--out", tmp_path / "t.csv", *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0]


def test_help_names_the_formats():
    r = lorasim("trace", "--help")
    assert r.returncode == 0 and "mooncake" in r.stdout and "bench_serving" in r.stdout
