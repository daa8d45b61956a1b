"""`lorasim compare` end to end on real engine files and a tiny scenario; `lorasim trace
--format` feeding it; bad input gives one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from experiments.compare import check_lengths, comparison_table, output_paths
from experiments.engine_results import read_engine_results
from sim.config import parse_scenario
from sim.workload import generate_trace

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
TINY = (
    "name: tiny\nseed: 1\nadapters: {count: 4, rank: 16}\n"
    "workload: {num_requests: 8, arrival: {process: poisson, rate: 20}, "
    "input_len: {dist: fixed, len: 32}, output_len: {dist: fixed, len: 16}}\n"
    "serving: {max_loras_per_batch: 2}\n"
)


def lorasim(*args):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture
def scenario(tmp_path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


@pytest.mark.parametrize("name,engine,same", [("sglang_llama70b_h200_online.jsonl", "sglang", False),
                                              ("vllm_opt125m_sweep_run0.json", "vllm", True)])
def test_compare_real_files_end_to_end(tmp_path, scenario, name, engine, same):
    out = tmp_path / "cmp"
    r = lorasim("compare", DATA / name, "--scenario", scenario, "-p", "overlap", "--out", out)
    assert r.returncode == 0, r.stderr
    assert f"{engine} run" in r.stdout and "median_ttft_ms" in r.stdout and "rel. error" in r.stdout
    table = pd.read_csv(out.with_suffix(".csv"))
    assert list(table.columns) == ["metric", "engine", "simulator", "rel_error"]
    row = table.set_index("metric").loc["median_ttft_ms"]
    assert row["engine"] > 0 and row["simulator"] > 0
    assert row["rel_error"] == pytest.approx((row["simulator"] - row["engine"]) / row["engine"])
    md = out.with_suffix(".md").read_text()
    assert "| median_ttft_ms |" in md and "overlap" in md
    assert out.with_suffix(".png").stat().st_size > 1000
    if same:  # the vLLM run was 8 prompts of 32 + 16 tokens, like the tiny scenario
        assert r.stderr == "" and "input tokens 256 vs 256; output tokens 128 vs 128" in r.stdout
    else:  # the SGLang run had other requests: said on stderr, not silently
        assert "warning: the engine completed 2400 requests, the scenario's trace has 8" in r.stderr


def test_vllm_file_compares_all_its_percentiles(scenario):
    eng = read_engine_results(DATA / "vllm_opt125m_sweep_run0.json")
    sim = {"median_ttft_ms": 50.0, "p99_e2e_latency_ms": 876.8009717071254}
    t = comparison_table(eng.metrics, sim).set_index("metric")
    assert t.loc["median_ttft_ms", "rel_error"] == pytest.approx(50.0 / 44.92285849846667 - 1)
    assert t.loc["p99_e2e_latency_ms", "rel_error"] == pytest.approx(0.0)
    assert {"mean_tpot_ms", "p99_itl_ms", "request_throughput"} <= set(t.index)


def test_length_check_matches_an_exported_trace_and_flags_a_different_one(tmp_path):
    """A run of exactly the scenario's requests passes; one with other lengths is flagged."""
    sc = parse_scenario(json.loads(json.dumps({"adapters": {"count": 2}, "workload": {"num_requests": 3}})))
    trace = generate_trace(sc)
    base = json.loads((DATA / "vllm_opt125m_sweep_run0.json").read_text())
    ins = [r.input_len for r in trace.requests]
    outs = [r.output_len for r in trace.requests]
    same = base | {"input_lens": ins, "output_lens": outs, "ttfts": [0.1] * 3, "itls": [[0.01]] * 3}
    p = tmp_path / "same.json"
    p.write_text(json.dumps(same))
    line, warns = check_lengths(read_engine_results(p), trace)
    assert warns == [] and "input lengths: match" in line and "output lengths: match" in line
    p.write_text(json.dumps(same | {"input_lens": [i + 1 for i in ins]}))
    line, warns = check_lengths(read_engine_results(p), trace)
    assert warns == [f"input lengths differ from the scenario's trace: 3 of 3 differ (mean {sum(ins) / 3 + 1:.1f} "
                     f"in the file vs {sum(ins) / 3:.1f} in the trace)"]
    p.write_text(json.dumps(same | {k: same[k][:2] for k in ("input_lens", "output_lens", "ttfts", "itls")}))
    _, warns = check_lengths(read_engine_results(p), trace)
    assert "the engine ran 2 requests, the scenario's trace has 3" in warns[0]


def test_output_paths_drop_a_given_suffix(tmp_path):
    assert output_paths(tmp_path / "a.csv")["md"] == tmp_path / "a.md"
    assert output_paths(tmp_path / "run.v1")["png"] == tmp_path / "run.v1.png"


@pytest.mark.parametrize(
    "make,expect",
    [
        (lambda d: d / "nope.jsonl", "nope.jsonl: file not found"),
        (lambda d: (d / "x.json").write_text("{oops") and d / "x.json", "x.json: not JSON"),
        (lambda d: (d / "u.json").write_text('{"latency": 3}') and d / "u.json", "u.json: unknown format"),
        (lambda d: (d / "k.json").write_text('{"mean_e2el_ms": 2, "median_ttft_ms": 1}') and d / "k.json",
         "k.json: run 1: missing key 'completed'"),
    ],
)
def test_bad_result_files_are_one_line(tmp_path, scenario, make, expect):
    r = lorasim("compare", make(tmp_path), "--scenario", scenario)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0] and "Traceback" not in r.stderr


def test_bad_policy_and_scenario_are_one_line(tmp_path, scenario):
    r = lorasim("compare", DATA / "vllm_opt125m_sweep_run0.json", "--scenario", scenario, "-p", "bogus")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--policy" in r.stderr
    r = lorasim("compare", DATA / "vllm_opt125m_sweep_run0.json", "--scenario", tmp_path / "none.yaml")
    assert r.returncode == 2 and "none.yaml" in r.stderr and "Traceback" not in r.stderr


def test_help_explains():
    r = lorasim("compare", "--help")
    assert r.returncode == 0 and "--scenario" in r.stdout and "relative error" in r.stdout
