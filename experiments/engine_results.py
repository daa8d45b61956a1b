"""Read a real engine's benchmark output so `lorasim compare` can set it next to a simulation.

Two writers are understood (field names checked against their source, docs/compare.md):

- SGLang `python -m sglang.bench_serving --output-file F`: JSONL, one object appended per run;
  with `--output-details` it adds per-request `input_lens`, `output_lens`, `ttfts` and `itls`
  (seconds). E2E latency is `*_e2e_latency_ms`.
- vLLM `vllm bench serve --save-result` (or `--append-result`, one object per line):
  `*_e2el_ms`; with `--save-detailed` also `input_lens`, `output_lens`, `ttfts`, `itls`,
  `latencies`, `errors`.

Metrics are returned under bench_serving's names (`mean_e2e_latency_ms`, ...). Every problem
with the file is one EngineResultError line naming the file, the run and the key.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.errors import LorasimError

# bench_serving's metric names, in the order they are printed
METRICS: tuple[str, ...] = (
    "completed",
    "duration",
    "request_throughput",
    "output_throughput",
    "mean_ttft_ms",
    "median_ttft_ms",
    "p99_ttft_ms",
    "mean_tpot_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "mean_itl_ms",
    "median_itl_ms",
    "p99_itl_ms",
    "mean_e2e_latency_ms",
    "median_e2e_latency_ms",
    "p99_e2e_latency_ms",
)
# keys that tell the writers apart (one suffices)
_SGLANG_KEYS = ("mean_e2e_latency_ms", "median_e2e_latency_ms", "total_output_tokens_retokenized")
_VLLM_KEYS = ("mean_e2el_ms", "median_e2el_ms", "endpoint_type")
REQUIRED = ("completed", "median_ttft_ms")
PER_REQUEST = ("input_lens", "output_lens", "ttfts", "itls")


class EngineResultError(LorasimError):
    """The engine's result file cannot be read; the message is one line."""


@dataclass
class EngineRun:
    """One benchmark run of an engine.

    metrics:  bench_serving names -> value (NaN where the file has none).
    requests: per request (when the file has them): input_len, output_len, ttft, e2e (s),
              ok (the request succeeded); None otherwise.
    itls:     every inter-token latency of the successful requests (s), or None.
    """

    engine: str
    source: str
    run: int
    runs: int
    metrics: dict[str, float]
    requests: pd.DataFrame | None = None
    itls: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _load_objects(path: Path) -> list[Any]:
    """The file's runs: one JSON document, or JSON lines."""
    src = str(path)
    if not path.is_file():
        raise EngineResultError(f"{src}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EngineResultError(f"{src}: not JSON (not UTF-8 text)") from None
    if not text.strip():
        raise EngineResultError(f"{src}: empty file; expected a SGLang bench_serving or vLLM bench serve result (JSON)")
    try:
        doc = json.loads(text)
        return doc if isinstance(doc, list) else [doc]
    except json.JSONDecodeError as whole:
        if whole.msg != "Extra data":  # not several JSON documents one after another
            raise EngineResultError(f"{src}: not JSON ({whole.msg} at line {whole.lineno} column {whole.colno})") from None
        lines = [(n, s) for n, s in enumerate(text.splitlines(), 1) if s.strip()]
        out = []
        for n, s in lines:
            try:
                out.append(json.loads(s))
            except json.JSONDecodeError as e:
                raise EngineResultError(f"{src}: line {n}: not JSON ({e.msg} at column {e.colno})") from None
        return out


def detect_engine(obj: dict[str, Any]) -> str | None:
    """"sglang" or "vllm" from the keys each writer uses, None if neither."""
    if any(k in obj for k in _VLLM_KEYS):
        return "vllm"
    if any(k in obj for k in _SGLANG_KEYS):
        return "sglang"
    return None


def _number(src: str, where: str, key: str, v: Any) -> float:
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise EngineResultError(f"{src}: {where}: key {key!r}: expected a number, got {v!r}")
    return float(v)


def _metrics(src: str, where: str, obj: dict[str, Any], engine: str) -> dict[str, float]:
    out = {}
    for m in METRICS:
        key = m.replace("e2e_latency", "e2el") if engine == "vllm" else m
        out[m] = _number(src, where, key, obj.get(key))
    dur = out["duration"]
    if math.isnan(out["request_throughput"]) and dur > 0 and not math.isnan(out["completed"]):
        out["request_throughput"] = out["completed"] / dur  # old bench_serving files lack it
    return out


def _per_request(src: str, where: str, obj: dict[str, Any], engine: str) -> tuple[pd.DataFrame | None, np.ndarray | None]:
    """Per-request arrays when the file has them (SGLang --output-details, vLLM --save-detailed)."""
    if not all(k in obj for k in PER_REQUEST):
        return None, None
    arrays = {k: obj[k] for k in (*PER_REQUEST, "latencies", "errors") if obj.get(k) is not None}
    n = len(arrays["ttfts"]) if isinstance(arrays["ttfts"], list) else -1
    for k, v in arrays.items():
        if not isinstance(v, list):
            raise EngineResultError(f"{src}: {where}: key {k!r}: expected a list (one entry per request), got {type(v).__name__}")
        if len(v) != n:
            raise EngineResultError(f"{src}: {where}: key {k!r}: has {len(v)} entries but 'ttfts' has {n}; expected one per request")
    try:
        ttft = np.array(arrays["ttfts"], dtype=float)
        itl_lists = [np.asarray(x if x is not None else [], dtype=float) for x in arrays["itls"]]
        inp = np.array(arrays["input_lens"], dtype=float)
        outp = np.array(arrays["output_lens"], dtype=float)
        e2e = (np.array(arrays["latencies"], dtype=float) if "latencies" in arrays
               else ttft + np.array([x.sum() for x in itl_lists]))  # SGLang stores no latency per request
    except (TypeError, ValueError) as e:
        raise EngineResultError(f"{src}: {where}: per-request arrays: expected numbers ({e})") from None
    # without errors: both writers record 0 output tokens for a failed request
    ok = np.array([not e for e in arrays["errors"]], dtype=bool) if "errors" in arrays else outp > 0
    df = pd.DataFrame({"input_len": inp, "output_len": outp, "ttft": ttft, "e2e": e2e, "ok": ok})
    itls = np.concatenate([x for x, good in zip(itl_lists, ok, strict=True) if good] or [np.zeros(0)])
    return df, itls


def read_engine_results(path: str | Path, run: int | None = None) -> EngineRun:
    """Run `run` (1-based; default the last, as both writers append) of an engine's result file."""
    p = Path(path)
    src = str(p)
    objs = _load_objects(p)
    if not objs:
        raise EngineResultError(f"{src}: no runs (an empty JSON list)")
    runs = len(objs)
    if run is None:
        run = runs
    if not 1 <= run <= runs:
        raise EngineResultError(f"{src}: --run: expected 1..{runs} (the file has {runs} run(s)), got {run}")
    obj = objs[run - 1]
    where = f"run {run}"
    if not isinstance(obj, dict):
        raise EngineResultError(f"{src}: {where}: expected a JSON object of results, got {type(obj).__name__}")
    engine = detect_engine(obj)
    if engine is None:
        keys = ", ".join(list(obj)[:8]) or "none"
        raise EngineResultError(
            f"{src}: unknown format: expected SGLang bench_serving ({_SGLANG_KEYS[0]}) or vLLM bench serve "
            f"({_VLLM_KEYS[0]}) keys, found {keys}"
        )
    for k in REQUIRED:
        if k not in obj:
            raise EngineResultError(f"{src}: {where}: missing key {k!r} (every {engine} result has it)")
    metrics = _metrics(src, where, obj, engine)
    requests, itls = _per_request(src, where, obj, engine)
    info = {k: obj.get(k) for k in ("backend", "dataset_name", "request_rate", "max_concurrency", "model_id",
                                    "total_input_tokens", "total_output_tokens") if k in obj}
    return EngineRun(engine, src, run, runs, metrics, requests, itls, info)
