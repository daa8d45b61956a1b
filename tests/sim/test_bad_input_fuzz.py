"""Bad input fuzz: hundreds of mutated scenario files, trace files (CSV and parquet) and sweep
files through the CLI (`run` / `sweep`, in-process via `sim.cli.main`). Each must end in a
one-line `error:` on stderr naming the file and the key (or row), exit code 2, and no
traceback; impossible scenarios are rejected before anything runs."""

from __future__ import annotations

import contextlib
import copy
import io
import math
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from sim import cli

ROOT = Path(__file__).resolve().parents[2]

BASE = {
    "name": "fz",
    "seed": 1,
    "model": {"preset": "llama-3.2-1b"},
    "hardware": {"preset": "h100", "contention": 0.1, "pin_cache": "warm", "pinned_gbps": 50.0,
                 "pageable_gbps": 10.0, "copy_overhead_us": 5.0, "disk_gbps": 2.0},
    "adapters": {"count": 3, "rank": 8, "targets": ["q_proj", "v_proj"]},
    "workload": {
        "num_requests": 4,
        "arrival": {"process": "gamma", "rate": 50.0, "cv": 2.0},
        "adapter_choice": {"dist": "skewed", "alpha": 1.5, "base_fraction": 0.25},
        "input_len": {"dist": "random", "len": 64, "range_ratio": 0.5},
        "output_len": {"dist": "fixed", "len": 4},
    },
    "serving": {"max_loras_per_batch": 2, "max_loras_prefetch": 1, "max_loaded_loras": 3,
                "max_running_requests": 8, "max_prefill_tokens": 512, "chunked_prefill_size": 256,
                "kv_cache_tokens": 4000, "copy_mode": "flat", "host_mode": "pinned", "eviction": "fifo"},
    "policies": ["lru"],
    "policy_options": {"slora": {"lookahead": 4}},
}

# invalid values per kind of leaf
POS_INT = [0, -1, "abc", 1.5, [1], {"a": 1}]
POS_NUM = [0, -2.5, "fast", float("nan"), [1.0]]
NONNEG_INT = [-1, "abc", 2.5, [0]]
NONNEG_NUM = [-0.5, "x", [0.0]]
LEAVES: dict[str, list] = {
    "name": [[1, 2], {"a": 1}],
    "seed": ["abc", 1.5, [1]],
    "model.preset": ["gpt-5", 7, ["tiny"]],
    "hardware.preset": ["tpu", 3],
    "hardware.contention": [-0.1, 1.5, "x"],
    "hardware.pin_cache": ["lukewarm", 1],
    "hardware.pinned_gbps": POS_NUM,
    "hardware.pageable_gbps": POS_NUM[:3],
    "hardware.copy_overhead_us": NONNEG_NUM,
    "hardware.disk_gbps": POS_NUM[:3],
    "hardware.lora_compute_scale": NONNEG_NUM,
    "hardware.lora_prefill_scale": NONNEG_NUM,
    "adapters.count": POS_INT,
    "adapters.rank": POS_INT,
    "adapters.targets": [["bogus_proj"], [], 5, "some"],
    "workload.num_requests": POS_INT,
    "workload.arrival.process": ["weibull", 1],
    "workload.arrival.rate": POS_NUM + [-math.inf],
    "workload.arrival.cv": POS_NUM,
    "workload.adapter_choice.dist": ["pareto", 2],
    "workload.adapter_choice.alpha": [1.0, 0.5, 0, -2, "x"],
    "workload.adapter_choice.base_fraction": [1.0, -0.1, 3, "x"],
    "workload.input_len.dist": ["normal"],
    "workload.input_len.len": POS_INT,
    "workload.input_len.range_ratio": [-0.1, 1.5, "x"],
    "workload.output_len.dist": ["gauss", 0],
    "workload.output_len.len": POS_INT,
    "serving.max_loras_per_batch": POS_INT,
    "serving.max_loras_prefetch": NONNEG_INT,
    "serving.max_loaded_loras": [0, -3, "x", 1],  # 1 < max_loras_per_batch
    "serving.max_running_requests": POS_INT,
    "serving.max_prefill_tokens": POS_INT,
    "serving.chunked_prefill_size": POS_INT,
    "serving.kv_cache_tokens": POS_INT + [10],  # 10: shorter than every request
    "serving.copy_mode": ["zero_copy", 1],
    "serving.host_mode": ["mmap", 0],
    "serving.eviction": ["random", 0],
    "serving.lora_drain_wait_threshold": [-0.5, "soon", math.inf, [1]],
    "serving.lora_refused": ["break", 0],
    "serving.host_reload": ["tokenizer", 0],
    "policies": [["bogus"], [], "lru", [1]],
}
MAPPINGS = ["", "model", "hardware", "adapters", "workload", "workload.arrival",
            "workload.adapter_choice", "workload.input_len", "workload.output_len", "serving"]


@dataclass
class Case:
    name: str
    files: dict[str, str | bytes]
    argv: list[str]
    must: list[str] = field(default_factory=list)  # substrings of the error line ({d}: folder)


def _get(d, key):
    for p in key.split("."):
        d = d[p]
    return d


def _set(d, key, v):
    parts = key.split(".")
    for p in parts[:-1]:
        d = d[p]
    d[parts[-1]] = v


def _del(d, key):
    parts = key.split(".")
    for p in parts[:-1]:
        d = d[p]
    del d[parts[-1]]


def _dump(d) -> str:
    return yaml.safe_dump(d, sort_keys=False)


def _mutated(key=None, value=None, drop=None, extra=None, base=BASE) -> dict:
    d = copy.deepcopy(base)
    if key is not None:
        _set(d, key, value)
    if drop is not None:
        _del(d, drop)
    if extra is not None:
        (d if extra == "" else _get(d, extra))["bogus_key"] = 1
    return d


def run_case(d: dict, name: str, must: list[str]) -> Case:
    return Case(name, {"s.yaml": _dump(d)}, ["run", "{d}/s.yaml", "-p", "lru"], ["{d}/s.yaml", *must])


GARBAGE = bytes(np.random.default_rng(0).integers(0, 256, 600, dtype=np.uint8))


def scenario_cases() -> list[Case]:
    cases = []
    for key, values in LEAVES.items():
        for i, v in enumerate(values):
            cases.append(run_case(_mutated(key, v), f"scenario:{key}={v!r}#{i}", [key.rsplit(".", 1)[0]]))
    for m in MAPPINGS:
        where = f"{m}.bogus_key" if m else "bogus_key"
        cases.append(run_case(_mutated(extra=m), f"scenario:extra:{where}", [where]))
    for key in ("adapters", "adapters.count"):
        cases.append(run_case(_mutated(drop=key), f"scenario:missing:{key}", ["adapters"]))
    semantic = [
        ("phased-without-phases", {"workload.adapter_choice": {"dist": "phased"}}, "workload.adapter_choice"),
        ("phase-beyond-population", {"workload.adapter_choice": {"dist": "phased", "phases": [
            {"requests": 2, "adapters": [1, 9]}]}}, "workload.adapter_choice.phases[0].adapters"),
        ("phase-reversed", {"workload.adapter_choice": {"dist": "phased", "phases": [
            {"requests": 2, "adapters": [3, 1]}]}}, "workload.adapter_choice.phases[0].adapters"),
        ("phase-zero", {"workload.adapter_choice": {"dist": "phased", "phases": [
            {"requests": 2, "adapters": [0, 1]}]}}, "workload.adapter_choice.phases[0].adapters"),
        ("phase-no-requests", {"workload.adapter_choice": {"dist": "phased", "phases": [
            {"requests": 0, "adapters": [1, 2]}]}}, "workload.adapter_choice.phases[0].requests"),
        ("phase-missing-range", {"workload.adapter_choice": {"dist": "phased", "phases": [
            {"requests": 3}]}}, "workload.adapter_choice.phases[0].adapters"),
        ("zipf-s-zero", {"workload.adapter_choice": {"dist": "zipf", "s": 0}}, "workload.adapter_choice.s"),
        ("zipf-s-negative", {"workload.adapter_choice": {"dist": "zipf", "s": -1.5}}, "workload.adapter_choice.s"),
        ("trace-without-path", {"workload.arrival": {"process": "trace"}}, "workload.arrival"),
        ("group-count-zero", {"adapters": {"groups": [{"count": 0, "rank": 8}]}}, "adapters.groups[0].count"),
        ("group-and-count", {"adapters": {"count": 2, "groups": [{"count": 1}]}}, "adapters"),
        ("group-bad-targets", {"adapters": {"groups": [{"count": 1, "targets": ["x_proj"]}]}},
         "adapters.groups[0].targets"),
        ("groups-not-list", {"adapters": {"groups": 3}}, "adapters.groups"),
        ("loaded-below-batch", {"serving.max_loaded_loras": 2, "serving.max_loras_per_batch": 4}, "serving"),
        ("prompt-longer-than-kv", {"workload.input_len": {"dist": "fixed", "len": 5000}},
         "serving.kv_cache_tokens"),
        ("output-longer-than-kv", {"workload.output_len": {"dist": "random", "len": 4100}},
         "serving.kv_cache_tokens"),
        ("kv-exactly-one-short", {"workload.input_len": {"dist": "fixed", "len": 3997}},
         "serving.kv_cache_tokens"),
        ("tiny-rate", {"workload.arrival": {"process": "poisson", "rate": 5e-324}}, "workload.arrival"),
        ("opts-unknown-policy", {"policy_options": {"nopolicy": {}}}, "policy_options.nopolicy"),
        ("opts-unknown-option", {"policy_options": {"slora": {"bogus": 1}}}, "policy_options.slora"),
        ("opts-slora-negative", {"policy_options": {"slora": {"lookahead": -1}}}, "policy_options.slora"),
        ("opts-slora-string", {"policy_options": {"slora": {"lookahead": "x"}}}, "policy_options.slora"),
        ("opts-overlap-zero", {"policy_options": {"overlap": {"launch_ahead": 0}}}, "policy_options.overlap"),
        ("opts-idle-reserve", {"policy_options": {"idle_cache": {"kv_reserve": -1}}}, "policy_options.idle_cache"),
        ("opts-overlap-pipelined", {"policy_options": {"overlap": {"pipelined": "yes"}}}, "policy_options.overlap"),
        ("opts-overlap-string", {"policy_options": {"overlap": {"launch_ahead": "x"}}}, "policy_options.overlap"),
        ("opts-history-zero", {"policy_options": {"history": {"half_life_s": 0}}}, "policy_options.history"),
        ("opts-history-string", {"policy_options": {"history": {"half_life_s": "x"}}}, "policy_options.history"),
        ("opts-history-preds", {"policy_options": {"history": {"max_predictions": -1}}}, "policy_options.history"),
        ("opts-lookahead-inflight", {"policy_options": {"lookahead": {"max_inflight": 0}}},
         "policy_options.lookahead"),
        ("opts-lookahead-wait", {"policy_options": {"lookahead": {"wait_factor": -1}}}, "policy_options.lookahead"),
        ("opts-lookahead-nan", {"policy_options": {"lookahead": {"busy_wait_factor": float("nan")}}},
         "policy_options.lookahead"),
        ("opts-not-mapping", {"policy_options": {"slora": 5}}, "policy_options.slora"),
        ("opts-resident", {"policy_options": {"resident": {"x": 1}}}, "policy_options.resident"),
        ("profile-missing", {"hardware.profile": "nope/profile.yaml"}, "nope/profile.yaml"),
        ("peft-missing", {"adapters": {"peft_dir": "nope_dir"}}, "nope_dir: adapters.peft_dir"),
    ]
    for name, upd, key in semantic:
        d = copy.deepcopy(BASE)
        for k, v in upd.items():
            _set(d, k, v)
        must = [key] if "nope" in key or "peft" in key else ["{d}/s.yaml", key]
        cases.append(Case(f"scenario:{name}", {"s.yaml": _dump(d)}, ["run", "{d}/s.yaml", "-p", "lru"], must))
    whole = {
        "empty": "", "list": "[1, 2]\n", "number": "5\n", "string": "just words\n",
        "unclosed": "adapters: {count: 3\n", "bad-indent": "adapters:\n  count: 3\n rank: 4\n",
        "tab": "adapters:\n\tcount: 3\n", "nul": "adapters: {count: 3}\x00\n",
        "dup-anchor": "a: *missing\n", "garbage": GARBAGE, "utf16": "adapters: {count: 3}\n".encode("utf-16"),
        "only-comment": "# nothing\n", "null": "null\n",
    }
    for name, content in whole.items():
        cases.append(Case(f"scenario-file:{name}", {"s.yaml": content}, ["run", "{d}/s.yaml", "-p", "lru"],
                          ["{d}/s.yaml"]))
    cases.append(Case("scenario-file:missing", {}, ["run", "{d}/none.yaml"], ["{d}/none.yaml", "not found"]))
    cases.append(Case("scenario-file:directory", {"sub/x.txt": "x"}, ["run", "{d}/sub"], ["{d}/sub"]))
    return cases


# ------------------------------------------------------------------------------- traces

TRACE_ROWS = [("0.0", "lora-0001", "64", "4"), ("0.01", "", "32", "2"), ("0.02", "lora-0002", "16", "3")]
TRACE_SC = {**copy.deepcopy(BASE), "workload": {"arrival": {"process": "trace", "path": "t.csv"}}}


def _csv(rows, header=("timestamp", "adapter", "input_len", "output_len")) -> str:
    return "\n".join([",".join(header), *(",".join(r) for r in rows)]) + "\n"


def _trace_case(name: str, fname: str, content, must: list[str]) -> Case:
    sc = copy.deepcopy(TRACE_SC)
    sc["workload"]["arrival"]["path"] = fname
    return Case(f"trace:{name}", {"s.yaml": _dump(sc), fname: content}, ["run", "{d}/s.yaml", "-p", "lru"],
                [f"{{d}}/{fname}", *must])


def _parquet(cols: dict) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf)
    return buf.getvalue()


def trace_cases() -> list[Case]:
    cases = []
    cols = ["timestamp", "adapter", "input_len", "output_len"]
    bad = {
        "timestamp": ["abc", "", "-1", "nan", "inf", "1e400", "-inf"],
        "input_len": ["abc", "", "0", "-4", "1.5", "nan", "inf", "1e30"],
        "output_len": ["x", "", "0", "-1", "2.5", "nan"],
        "adapter": ["lora-9999", "nobody"],
    }
    for col, values in bad.items():
        k = cols.index(col)
        for v in values:
            rows = [list(r) for r in TRACE_ROWS]
            rows[1][k] = v
            cases.append(_trace_case(f"csv:{col}={v!r}", "t.csv", _csv(rows), ["row 2", col]))
    for col in cols:
        header = tuple(c for c in cols if c != col)
        rows = [tuple(x for j, x in enumerate(r) if cols[j] != col) for r in TRACE_ROWS]
        cases.append(_trace_case(f"csv:no-{col}", "t.csv", _csv(rows, header), [f"column {col}"]))
    rows = [list(r) for r in TRACE_ROWS]
    cases.append(_trace_case("csv:extra-field", "t.csv", _csv([*rows[:2], [*rows[2], "9"]]), ["row 3"]))
    cases.append(_trace_case("csv:short-row", "t.csv", _csv([rows[0], rows[1][:2]]), ["row 2"]))
    cases.append(_trace_case("csv:empty", "t.csv", "", ["empty"]))
    cases.append(_trace_case("csv:header-only", "t.csv", _csv([]), ["no requests"]))
    cases.append(_trace_case("csv:garbage", "t.csv", GARBAGE, []))
    cases.append(_trace_case("csv:nul", "t.csv", _csv(TRACE_ROWS).replace("32", "3\x002"), []))
    cases.append(_trace_case("csv:no-header", "t.csv", "\n".join(",".join(r) for r in TRACE_ROWS), ["column"]))
    long = [list(r) for r in TRACE_ROWS]
    long[2][2] = "9000"  # longer than the KV cache: rejected up front, naming the scenario key
    sc = copy.deepcopy(TRACE_SC)
    cases.append(Case("trace:csv:longer-than-kv", {"s.yaml": _dump(sc), "t.csv": _csv(long)},
                      ["run", "{d}/s.yaml", "-p", "lru"], ["{d}/s.yaml", "serving.kv_cache_tokens", "request 2"]))

    good = {"timestamp": pa.array([0.0, 0.01, 0.02]), "adapter": pa.array(["lora-0001", None, "lora-0002"]),
            "input_len": pa.array([64, 32, 16]), "output_len": pa.array([4, 2, 3])}
    raw = _parquet(good)
    for frac in (0.0, 0.1, 0.3, 0.5, 0.8, 0.95):
        cases.append(_trace_case(f"parquet:truncated-{frac}", "t.parquet", raw[: int(len(raw) * frac)], []))
    for cut in (1, 4, 8, 12):
        cases.append(_trace_case(f"parquet:cut-{cut}", "t.parquet", raw[:-cut], []))
    flipped = bytearray(raw)
    flipped[len(raw) // 2: len(raw) // 2 + 40] = b"\xff" * 40
    cases.append(_trace_case("parquet:corrupt-middle", "t.parquet", bytes(flipped), []))
    cases.append(_trace_case("parquet:garbage", "t.parquet", GARBAGE, []))
    cases.append(_trace_case("parquet:csv-inside", "t.parquet", _csv(TRACE_ROWS), []))
    variants = {
        "timestamp-strings": ({"timestamp": pa.array(["a", "b", "c"])}, ["column timestamp"]),
        "adapter-ints": ({"adapter": pa.array([1, 2, 3])}, ["column adapter"]),
        "input-strings": ({"input_len": pa.array(["1", "2", "3"])}, ["column input_len"]),
        "input-null": ({"input_len": pa.array([64, None, 16])}, ["row 2", "input_len"]),
        "ts-null": ({"timestamp": pa.array([0.0, 0.1, None])}, ["row 3", "timestamp"]),
        "ts-negative": ({"timestamp": pa.array([0.0, -1.0, 0.2])}, ["row 2", "timestamp"]),
        "ts-nan": ({"timestamp": pa.array([0.0, float("nan"), 0.2])}, ["row 2", "timestamp"]),
        "output-zero": ({"output_len": pa.array([4, 0, 3])}, ["row 2", "output_len"]),
        "input-negative": ({"input_len": pa.array([-64, 32, 16])}, ["row 1", "input_len"]),
        "input-fraction": ({"input_len": pa.array([64.5, 32.0, 16.0])}, ["row 1", "input_len"]),
        "unknown-adapter": ({"adapter": pa.array(["lora-0001", "zzz", None])}, ["row 2", "adapter"]),
        "bool-lengths": ({"output_len": pa.array([True, False, True])}, ["column output_len"]),
    }
    for name, (upd, must) in variants.items():
        cases.append(_trace_case(f"parquet:{name}", "t.parquet", _parquet({**good, **upd}), must))
    for col in cols:
        cases.append(_trace_case(f"parquet:no-{col}", "t.parquet",
                                 _parquet({k: v for k, v in good.items() if k != col}), [f"column {col}"]))
    cases.append(_trace_case("parquet:zero-rows", "t.parquet",
                             _parquet({k: v.slice(0, 0) for k, v in good.items()}), ["no requests"]))
    cases.append(_trace_case("parquet:empty-file", "t.parquet", b"", ["empty"]))
    cases.append(_trace_case("json-suffix", "t.json", "[]", ["trace format"]))
    sc = copy.deepcopy(TRACE_SC)
    sc["workload"]["arrival"]["path"] = "missing.csv"
    cases.append(Case("trace:missing-file", {"s.yaml": _dump(sc)}, ["run", "{d}/s.yaml", "-p", "lru"],
                      ["missing.csv", "not found"]))
    return cases


# ------------------------------------------------------------------------------- sweeps

SWEEP = {"name": "fz", "base": copy.deepcopy(BASE), "policies": ["lru", "overlap"],
         "axes": {"workload.arrival.rate": [50, 100]}}


def _sweep_case(name: str, d, must: list[str], extra_files: dict | None = None) -> Case:
    content = d if isinstance(d, str | bytes) else _dump(d)
    return Case(f"sweep:{name}", {"w.yaml": content, **(extra_files or {})},
                ["sweep", "{d}/w.yaml", "--out", "{d}/out", "--workers", "1", "--no-plots", "--no-progress"],
                ["{d}/w.yaml", *must])


def sweep_cases() -> list[Case]:
    def m(**upd):
        d = copy.deepcopy(SWEEP)
        for k, v in upd.items():
            if v is None:
                d.pop(k, None)
            else:
                d[k] = v
        return d

    ax = "workload.arrival.rate"
    cases = [
        _sweep_case("axes-not-mapping", m(axes="rate"), ["axes"]),
        _sweep_case("axis-not-list", m(axes={ax: 5}), ["axes." + ax]),
        _sweep_case("axis-empty", m(axes={ax: []}), ["axes"]),
        _sweep_case("axis-rate-zero", m(axes={ax: [0, 10]}), ["axes." + ax]),
        _sweep_case("axis-rate-negative", m(axes={ax: [-1]}), ["axes." + ax]),
        _sweep_case("axis-rate-string", m(axes={ax: ["fast"]}), ["axes." + ax]),
        _sweep_case("axis-typo", m(axes={"workload.arival.rate": [1]}), ["axes.workload.arival.rate"]),
        _sweep_case("axis-through-scalar", m(axes={"seed.x": [1]}), ["axes.seed.x"]),
        _sweep_case("axis-bad-slots", m(axes={"serving.max_loras_per_batch": [2, 0]}),
                    ["axes.serving.max_loras_per_batch"]),
        _sweep_case("axis-bad-choice", m(axes={"workload.adapter_choice": [{"dist": "skewed", "alpha": 0.5}]}),
                    ["axes.workload.adapter_choice"]),
        _sweep_case("policy-axis-bogus", m(policies=None, axes={"policy": ["lru", "bogus"]}), ["axes.policy"]),
        _sweep_case("policy-axis-and-list", m(axes={"policy": ["lru"]}), ["policies"]),
        _sweep_case("policies-bogus", m(policies=["bogus"]), ["policies"]),
        _sweep_case("policies-empty", m(policies=[]), ["policies"]),
        _sweep_case("policies-string", m(policies="lru"), ["policies"]),
        _sweep_case("zip-single", m(zip=[[ax]]), ["zip[0]"]),
        _sweep_case("zip-unknown", m(zip=[["nope", ax]]), ["zip[0]"]),
        _sweep_case("zip-unequal", m(axes={ax: [1, 2], "seed": [1, 2, 3]}, zip=[[ax, "seed"]]), ["zip[0]"]),
        _sweep_case("zip-not-list", m(zip="x"), ["zip"]),
        _sweep_case("repeats-zero", m(repeats=0), ["repeats"]),
        _sweep_case("repeats-string", m(repeats="x"), ["repeats"]),
        _sweep_case("em-slots-zero", m(equal_memory={"adapter_slots": 0}), ["equal_memory.adapter_slots"]),
        _sweep_case("em-share", m(equal_memory={"prefetch_share": 1.5}), ["equal_memory.prefetch_share"]),
        _sweep_case("em-extra", m(equal_memory={"bogus": 1}), ["equal_memory.bogus"]),
        _sweep_case("em-axis-without-block", m(axes={"equal_memory.adapter_slots": [4]}),
                    ["axes.equal_memory.adapter_slots"]),
        _sweep_case("em-axis-unknown", m(equal_memory={}, axes={"equal_memory.slots": [4]}),
                    ["axes.equal_memory.slots"]),
        _sweep_case("em-with-slot-axis", m(equal_memory={}, axes={"serving.max_loras_per_batch": [4]}),
                    ["axes.serving.max_loras_per_batch"]),
        _sweep_case("no-base", m(base=None), ["base"]),
        _sweep_case("base-and-file", m(base_file="x.yaml"), ["base"]),
        _sweep_case("base-file-missing", m(base=None, base_file="nope.yaml"), ["base_file"]),
        _sweep_case("base-not-mapping", m(base=5), ["base"]),
        _sweep_case("extra-key", m(bogus=1), ["bogus"]),
        _sweep_case("name-list", m(name=[1]), ["name"]),
        _sweep_case("kv-too-small", m(axes={"serving.kv_cache_tokens": [4000, 10]}), ["serving.kv_cache_tokens"]),
        _sweep_case("bad-policy-options", m(base={**copy.deepcopy(BASE),
                                                 "policy_options": {"overlap": {"launch_ahead": 0}}}),
                    ["policy_options.overlap"]),
    ]
    for name, content in {"empty": "", "list": "[1]\n", "garbage": GARBAGE, "unclosed": "axes: {a: [1\n",
                          "string": "hello\n"}.items():
        cases.append(_sweep_case(f"file-{name}", content, []))
    # a bad base_file: errors name that file
    for name, content in {"garbage": GARBAGE, "list": "[1]\n", "bad-count": _dump(_mutated("adapters.count", 0))}.items():
        d = m(base=None, base_file="b.yaml")
        c = _sweep_case(f"base-file-{name}", d, [], {"b.yaml": content})
        c.must = ["{d}/b.yaml"] + (["adapters.count"] if name == "bad-count" else [])
        cases.append(c)
    # the base scenario mutated: errors name the sweep file and the base key
    for key in ("adapters.count", "serving.max_loras_per_batch", "workload.arrival.cv", "serving.kv_cache_tokens",
                "workload.input_len.len", "hardware.contention", "serving.eviction", "adapters.targets"):
        d = m(base=_mutated(key, LEAVES[key][0]))
        cases.append(_sweep_case(f"base:{key}", d, [key.rsplit(".", 1)[0]]))
    # a trace file in the base that does not load: rejected before any run, naming the trace
    base = copy.deepcopy(TRACE_SC)
    rows = [list(r) for r in TRACE_ROWS]
    rows[2][3] = "-5"
    c = _sweep_case("base-trace-bad-row", m(base=base), [], {"t.csv": _csv(rows)})
    c.must = ["{d}/t.csv", "row 3", "output_len"]
    cases.append(c)
    return cases


ALL = scenario_cases() + trace_cases() + sweep_cases()


def invoke(argv: list[str]) -> tuple[int | None, str, str, str]:
    """sim.cli.main in-process: (exit code, stdout, stderr, uncaught exception traceback)."""
    out, err = io.StringIO(), io.StringIO()
    code, exc = None, ""
    old = sys.argv
    sys.argv = ["lorasim", *argv]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - the CLI would have printed a traceback
        exc = traceback.format_exc()
    finally:
        sys.argv = old
    return code, out.getvalue(), err.getvalue(), exc


def _materialise(case: Case, d: Path) -> list[str]:
    for rel, content in case.files.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    return [a.replace("{d}", str(d)) for a in case.argv]


def test_enough_cases():
    assert len(ALL) >= 200
    assert len({c.name for c in ALL}) == len(ALL)


def test_valid_inputs_run(tmp_path):
    """The unmutated scenario, trace and sweep all run: each failure below is the mutation's."""
    good = [
        Case("s", {"s.yaml": _dump(BASE)}, ["run", "{d}/s.yaml", "-p", "lru", "-p", "overlap", "--check"]),
        _trace_case("t", "t.csv", _csv(TRACE_ROWS), []),
        _trace_case("p", "t.parquet", _parquet({
            "timestamp": pa.array([0.0, 0.01]), "adapter": pa.array(["lora-0001", None]),
            "input_len": pa.array([64, 32]), "output_len": pa.array([4, 2])}), []),
        _sweep_case("w", SWEEP, []),
    ]
    for c in good:
        d = tmp_path / c.name.replace(":", "_")
        d.mkdir()
        code, out, err, exc = invoke(_materialise(c, d))
        assert code == 0 and not exc, (c.name, err, exc)


@pytest.mark.parametrize("case", ALL, ids=[c.name for c in ALL])
def test_bad_input_is_one_line_exit_2_no_traceback(case, tmp_path):
    argv = _materialise(case, tmp_path)
    code, out, err, exc = invoke(argv)
    assert not exc, f"uncaught exception (a traceback for the user):\n{exc}"
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}; stderr: {err!r}"
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    line = lines[0]
    assert line.startswith("error: ")
    for s in case.must:
        s = s.replace("{d}", str(tmp_path))
        assert s in line, f"{s!r} not in {line!r}"
    if case.argv[0] == "sweep":  # rejected before anything was written
        assert not (tmp_path / "out" / "index").exists() or not list((tmp_path / "out" / "index").iterdir())


def test_real_subprocess_sample(tmp_path):
    """The same contract through a real `python -m sim` process (warnings, imports, exit code)."""
    sample = [c for c in ALL if c.name in {
        "scenario-file:garbage", "scenario:serving.kv_cache_tokens=10#6", "trace:parquet:truncated-0.5",
        "trace:csv:input_len='abc'", "sweep:axis-rate-zero", "sweep:kv-too-small",
        "scenario:opts-overlap-string"}]
    assert len(sample) == 7
    for c in sample:
        d = tmp_path / c.name.replace(":", "_").replace("'", "").replace("=", "_").replace("#", "_")
        d.mkdir()
        argv = _materialise(c, d)
        r = subprocess.run([sys.executable, "-m", "sim", *argv], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 2, (c.name, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, (c.name, r.stderr)
