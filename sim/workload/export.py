"""Traces in the forms real engines' benchmark clients replay (docs/compare.md).

`lorasim trace --format F` writes one of these so the same workload can be run on SGLang or
vLLM and the result compared with the simulator (`lorasim compare`). Each client keeps a
different part of a request, so each format says what it keeps (`KEEPS`); `read_export` reads
a file back to exactly those fields, which is what the round-trip tests check.

Prompts are words (" hi" is one token for Llama tokenizers), so an engine counts the input
length up to its tokenizer and chat template; the output length is enforced with
`ignore_eos` where the client passes it per request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from sim.core.model import Request, Trace
from sim.errors import TraceError
from sim.files import atomic_write

PROMPT_WORD = "hi"
# SGLang's mooncake replay writes 128 filler words per hash id
# (python/sglang/benchmark/datasets/mooncake.py), so one id per 128 input tokens makes its
# prompts about input_length long (Mooncake's own traces use 512-token blocks)
MOONCAKE_TOKENS_PER_HASH = 128

# what each format keeps of (arrival, adapter, input length, output length)
KEEPS: dict[str, tuple[str, ...]] = {
    "sglang": ("adapter", "input_len", "output_len"),
    "mooncake": ("timestamp", "adapter", "input_len", "output_len"),
    "vllm": ("timestamp", "adapter", "input_len", "output_len"),
}
FORMATS = tuple(KEEPS)
# how each file is replayed and what that replay loses (printed by `lorasim trace`)
REPLAY: dict[str, str] = {
    "sglang": "python -m sglang.bench_serving --backend sglang-oai-chat --dataset-name openai "
    "--dataset-path F --num-prompts N --request-rate R: per-request adapters and lengths; arrivals are Poisson at R, "
    "not the trace's",
    "mooncake": "python -m sglang.bench_serving --backend sglang --dataset-name mooncake "
    "--dataset-path F --num-prompts N --mooncake-num-rounds 1: the trace's arrivals and output lengths; input "
    "lengths rounded to 128-token blocks of filler; adapters only via --lora-name (random, not per request)",
    "vllm": "vllm bench serve --dataset-name custom --dataset-path F --num-prompts N --disable-shuffle "
    "--skip-chat-template --custom-output-len L --lora-modules ...: input lengths; one output length for all, adapters "
    "random or round-robin, arrivals from --request-rate",
}
COLUMNS = ("timestamp", "adapter", "input_len", "output_len")


def _prompt(n: int) -> str:
    return " ".join([PROMPT_WORD] * n)


def _sglang_row(r: Request) -> dict:
    """SGLang bench_serving `--dataset-name openai`: every key but messages/max_tokens/model is
    sent as-is in that request's body, so `lora_path` picks its adapter and `ignore_eos`
    makes it generate exactly max_tokens."""
    row: dict = {
        "messages": [{"role": "user", "content": _prompt(r.input_len)}],
        "max_tokens": r.output_len,
        "ignore_eos": True,
    }
    if r.adapter is not None:
        row["lora_path"] = r.adapter
    return row


def _mooncake_rows(reqs: Iterable[Request]) -> Iterable[dict]:
    """Mooncake trace lines (SGLang `--dataset-name mooncake`): arrival in ms, lengths, and
    hash ids, one per MOONCAKE_TOKENS_PER_HASH input tokens, never shared between requests
    (lorasim models no prefix cache). `adapter` is ours: SGLang's reader ignores unknown keys."""
    next_id = 0
    for r in reqs:
        blocks = max(1, round(r.input_len / MOONCAKE_TOKENS_PER_HASH))
        yield {
            "timestamp": r.arrival * 1e3,
            "input_length": r.input_len,
            "output_length": r.output_len,
            "hash_ids": list(range(next_id, next_id + blocks)),
            "adapter": r.adapter,
        }
        next_id += blocks


def _vllm_row(r: Request) -> dict:
    """vLLM bench serve `--dataset-name custom` reads `prompt` only; the other keys document
    the request for lorasim and for the caller (output length and adapter are set on the
    command line, docs/compare.md)."""
    return {
        "prompt": _prompt(r.input_len),
        "output_tokens": r.output_len,
        "adapter": r.adapter,
        "timestamp": r.arrival,
    }


def export_trace(trace: Trace, path: str | Path, fmt: str) -> Path:
    """Write `trace` as JSONL in format `fmt` (one of FORMATS), atomically."""
    if fmt not in KEEPS:
        raise TraceError(str(path), "--format", f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    reqs = trace.requests
    rows: Iterable[dict]
    if fmt == "sglang":
        rows = (_sglang_row(r) for r in reqs)
    elif fmt == "mooncake":
        rows = _mooncake_rows(reqs)
    else:
        rows = (_vllm_row(r) for r in reqs)

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")

    return atomic_write(path, write)


def _words(text: object) -> int:
    return len(str(text).split())


_READERS: dict[str, Callable[[dict], tuple]] = {
    "sglang": lambda d: (math.nan, d.get("lora_path"), _words(d["messages"][0]["content"]), d["max_tokens"]),
    "mooncake": lambda d: (d["timestamp"] / 1e3, d.get("adapter"), d["input_length"], d["output_length"]),
    "vllm": lambda d: (d["timestamp"], d.get("adapter"), _words(d["prompt"]), d["output_tokens"]),
}


def read_export(path: str | Path, fmt: str) -> pd.DataFrame:
    """An exported file back as rows of COLUMNS (timestamp NaN where the format has none);
    mooncake lengths are its own fields, not the blocks an engine will send."""
    p = Path(path)
    if fmt not in _READERS:
        raise TraceError(str(p), "--format", f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not p.is_file():
        raise TraceError(str(p), "", "file not found")
    rows = []
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(_READERS[fmt](json.loads(line)))
            except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
                raise TraceError(str(p), f"line {n}", f"not a {fmt} trace line ({type(e).__name__}: {e})") from None
    return pd.DataFrame(rows, columns=list(COLUMNS))
