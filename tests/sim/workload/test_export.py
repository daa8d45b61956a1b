"""Exported traces read back to the scenario's requests, as far as each format keeps them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sim.config import parse_scenario
from sim.errors import TraceError
from sim.workload import generate_trace
from sim.workload.export import FORMATS, KEEPS, MOONCAKE_TOKENS_PER_HASH, export_trace, read_export


@pytest.fixture(scope="module")
def trace():
    sc = parse_scenario({
        "name": "t", "seed": 3, "adapters": {"count": 5, "rank": 8},
        "workload": {"num_requests": 30, "arrival": {"process": "poisson", "rate": 10},
                     "adapter_choice": {"dist": "zipf", "s": 1.2, "base_fraction": 0.2},
                     "input_len": {"dist": "random", "len": 700, "range_ratio": 0.2},
                     "output_len": {"dist": "random", "len": 40, "range_ratio": 0.5}},
    })
    return generate_trace(sc)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_keeps_what_the_format_promises(tmp_path, trace, fmt):
    path = export_trace(trace, tmp_path / f"t.{fmt}.jsonl", fmt)
    back = read_export(path, fmt)
    reqs = trace.requests
    assert len(back) == len(reqs)
    assert back["input_len"].tolist() == [r.input_len for r in reqs]
    assert back["output_len"].tolist() == [r.output_len for r in reqs]
    assert [None if a is None or (isinstance(a, float) and math.isnan(a)) else a for a in back["adapter"]] == \
        [r.adapter for r in reqs]
    assert any(r.adapter is None for r in reqs) and any(r.adapter for r in reqs)
    if "timestamp" in KEEPS[fmt]:
        np.testing.assert_allclose(back["timestamp"], [r.arrival for r in reqs], rtol=0, atol=1e-9)
    else:
        assert back["timestamp"].isna().all()


def test_sglang_lines_are_openai_dataset_rows(tmp_path, trace):
    """What SGLang's `openai` loader needs: messages and max_tokens; the rest goes in the body."""
    path = export_trace(trace, tmp_path / "s.jsonl", "sglang")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r, row in zip(trace.requests, rows, strict=True):
        assert row["messages"][0]["role"] == "user" and row["max_tokens"] == r.output_len
        assert row["ignore_eos"] is True
        assert row.get("lora_path") == r.adapter  # absent for the base model
        assert "model" not in row  # the loader drops it; the adapter goes by lora_path


def test_mooncake_lines_have_ms_timestamps_and_unshared_hash_ids(tmp_path, trace):
    path = export_trace(trace, tmp_path / "m.jsonl", "mooncake")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    ids = [i for row in rows for i in row["hash_ids"]]
    assert len(ids) == len(set(ids))
    for r, row in zip(trace.requests, rows, strict=True):
        assert row["timestamp"] == pytest.approx(r.arrival * 1e3)
        assert len(row["hash_ids"]) == max(1, round(r.input_len / MOONCAKE_TOKENS_PER_HASH))


def test_unknown_format_and_bad_lines_are_one_line_errors(tmp_path, trace):
    with pytest.raises(TraceError, match="unknown format 'csv2'; expected one of sglang, mooncake, vllm"):
        export_trace(trace, tmp_path / "x.jsonl", "csv2")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi"}\n')
    with pytest.raises(TraceError, match=r"bad.jsonl: line 1: not a vllm trace line \(KeyError"):
        read_export(bad, "vllm")
    with pytest.raises(TraceError, match="file not found"):
        read_export(tmp_path / "missing.jsonl", "sglang")
