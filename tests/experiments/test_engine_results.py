"""Real SGLang / vLLM benchmark outputs (tests/data, sources in tests/data/README.md) parse
under bench_serving's metric names; broken files are one-line errors naming file and key."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from experiments.engine_results import EngineResultError, read_engine_results

DATA = Path(__file__).resolve().parents[1] / "data"
SGLANG = DATA / "sglang_llama70b_h200_online.jsonl"
SGLANG_INF = DATA / "sglang_lora_one_request_inf_rate.jsonl"
VLLM = DATA / "vllm_opt125m_sweep_run0.json"
VLLM_FAILED = DATA / "vllm_all_requests_failed.json"


def test_sglang_jsonl_defaults_to_the_last_run_and_selects_others():
    last = read_engine_results(SGLANG)
    assert (last.engine, last.run, last.runs) == ("sglang", 7, 7)
    assert last.metrics["median_ttft_ms"] == pytest.approx(83.16566958092153)
    assert last.metrics["mean_e2e_latency_ms"] == pytest.approx(5302.550664339797)
    assert math.isnan(last.metrics["p99_ttft_ms"])  # this bench_serving version wrote no P99
    # old files have no request_throughput: completed / duration
    assert last.metrics["request_throughput"] == pytest.approx(2400 / 313.96794493007474)
    first = read_engine_results(SGLANG, run=1)
    assert first.metrics["completed"] == 300 and first.info["request_rate"] == 1.0
    assert first.requests is None and first.itls is None


def test_sglang_infinity_request_rate_parses():
    r = read_engine_results(SGLANG_INF)
    assert r.info["request_rate"] == math.inf and r.metrics["completed"] == 1


def test_vllm_names_map_to_bench_serving_names():
    r = read_engine_results(VLLM)
    assert (r.engine, r.runs) == ("vllm", 1)
    assert r.metrics["p99_e2e_latency_ms"] == pytest.approx(876.8009717071254)  # from p99_e2el_ms
    assert r.metrics["median_tpot_ms"] == pytest.approx(8.323490332986694)
    assert r.metrics["request_throughput"] == pytest.approx(5.859229976904171)
    assert r.info["model_id"] == "facebook/opt-125m"


def test_vllm_all_failed_run_has_no_e2e_keys():
    r = read_engine_results(VLLM_FAILED)
    assert r.metrics["completed"] == 0 and math.isnan(r.metrics["mean_e2e_latency_ms"])


def test_per_request_arrays_are_read(tmp_path):
    """The real vLLM file plus the per-request keys `--save-detailed` adds (values made up:
    no committed public file with them was found; docs/compare.md)."""
    obj = json.loads(VLLM.read_text())
    obj |= {"input_lens": [32, 32, 40], "output_lens": [16, 0, 16], "ttfts": [0.1, 0.0, 0.2],
            "itls": [[0.01] * 15, [], [0.02] * 15], "latencies": [0.3, 0.0, 0.5], "errors": ["", "boom", ""]}
    p = tmp_path / "detailed.json"
    p.write_text(json.dumps(obj))
    r = read_engine_results(p)
    assert r.requests["ok"].tolist() == [True, False, True]
    assert r.requests["e2e"].tolist() == [0.3, 0.0, 0.5]
    assert len(r.itls) == 30
    # SGLang keeps no latency per request: ttft + sum(itls)
    sg = json.loads(SGLANG.read_text().splitlines()[-1])
    sg |= {"input_lens": [10, 12], "output_lens": [3, 2], "ttfts": [0.1, 0.2], "itls": [[0.01, 0.02], [0.05]],
           "generated_texts": ["a", "b"], "errors": ["", ""]}
    p2 = tmp_path / "sg.jsonl"
    p2.write_text(json.dumps(sg) + "\n")
    r2 = read_engine_results(p2)
    assert r2.requests["e2e"].tolist() == pytest.approx([0.13, 0.25])


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "file not found"),
        ("", "empty file"),
        ("{not json", "not JSON (Expecting property name"),
        ('{"a": 1}\n{oops\n', "line 2: not JSON"),
        ('{"foo": 1, "bar": 2}', "unknown format: expected SGLang bench_serving (mean_e2e_latency_ms) or vLLM "
                                 "bench serve (mean_e2el_ms) keys, found foo, bar"),
        ('{"mean_e2el_ms": 1.0, "completed": 3}', "run 1: missing key 'median_ttft_ms'"),
        ('{"mean_e2el_ms": 1.0, "completed": 3, "median_ttft_ms": "fast"}',
         "run 1: key 'median_ttft_ms': expected a number, got 'fast'"),
        ('[1, 2]', "run 2: expected a JSON object of results, got int"),
        ('{"mean_e2e_latency_ms": 1, "completed": 2, "median_ttft_ms": 3, "input_lens": [1], "output_lens": [1, 2], '
         '"ttfts": [0.1, 0.2], "itls": [[], []]}', "key 'input_lens': has 1 entries but 'ttfts' has 2"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, content, message):
    p = tmp_path / "r.json"
    if content is not None:
        p.write_text(content)
    with pytest.raises(EngineResultError) as e:
        read_engine_results(p)
    text = str(e.value)
    assert "\n" not in text and text.startswith(str(p)) and message in text


def test_run_out_of_range():
    with pytest.raises(EngineResultError, match=r"--run: expected 1\.\.7 \(the file has 7 run\(s\)\), got 8"):
        read_engine_results(SGLANG, run=8)
