"""Traces: generate one from a scenario, save it, load it back for replay.

File format (CSV or parquet, chosen by suffix): one row per request with columns
`timestamp` (seconds, float), `adapter` (name; empty / null = base model), `input_len`,
`output_len`. The population is not stored: it comes from the scenario, and a replayed
trace may only name adapters that exist in it.

Determinism: one `numpy.random.SeedSequence(seed)` is split into independent streams for
arrivals, adapter choice, input and output lengths, so changing one knob (say the output
length) never reshuffles the others.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sim.config import Scenario, WorkloadCfg
from sim.core.model import AdapterSpec, Request, Trace
from sim.errors import TraceError
from sim.workload.arrivals import arrival_times, make_process
from sim.workload.choice import choose_adapters
from sim.workload.lengths import sample_lengths
from sim.workload.population import build_population

COLUMNS = ("timestamp", "adapter", "input_len", "output_len")
SUFFIXES = (".csv", ".parquet")


# ---------------------------------------------------------------- generation


def generate_trace(sc: Scenario) -> Trace:
    """The scenario's workload over its adapter population; replays `arrival.path` when
    `arrival.process` is `trace` (then the whole file is replayed, num_requests ignored)."""
    adapters = build_population(sc.adapters, sc.model.shape())
    wl = sc.workload
    if wl.arrival.process == "trace":
        tr = load_trace(wl.arrival.path or "", adapters)
        return Trace(tr.adapters, tr.requests, {**tr.meta, "seed": sc.seed, "scenario": sc.name})
    requests = generate_requests(wl, adapters, sc.seed, source=f"scenario {sc.name!r}")
    return Trace(adapters, requests, _summary(sc, adapters, requests))


def generate_requests(
    wl: WorkloadCfg, adapters: Sequence[AdapterSpec], seed: int, source: str = "<scenario>"
) -> tuple[Request, ...]:
    """n requests sorted by arrival with rid 0..n-1 (the seam for callers without a Scenario)."""
    n = wl.num_requests
    arr_rng, choice_rng, in_rng, out_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    times = arrival_times(make_process(wl.arrival), n, arr_rng)
    idx = choose_adapters(wl.adapter_choice, n, len(adapters), choice_rng, source)
    inp = sample_lengths(wl.input_len, n, in_rng)
    out = sample_lengths(wl.output_len, n, out_rng)
    names = [None] + [a.name for a in adapters]
    return _requests(times, [names[i] for i in idx], inp, out)


def _requests(
    times: np.ndarray, adapters: list[str | None], inp: np.ndarray, out: np.ndarray
) -> tuple[Request, ...]:
    order = np.argsort(times, kind="stable")
    return tuple(
        Request(rid, float(times[j]), adapters[j], int(inp[j]), int(out[j]))
        for rid, j in enumerate(order)
    )


def _summary(sc: Scenario, adapters: Sequence[AdapterSpec], requests: Sequence[Request]) -> dict:
    wl = sc.workload
    return {
        "source": "generated",
        "scenario": sc.name,
        "seed": sc.seed,
        "num_requests": len(requests),
        "n_adapters": len(adapters),
        "arrival": wl.arrival.model_dump(exclude={"path"}),
        "adapter_choice": wl.adapter_choice.model_dump(exclude_none=True),
        "input_len": wl.input_len.model_dump(),
        "output_len": wl.output_len.model_dump(),
        "base_requests": sum(r.adapter is None for r in requests),
        "duration_s": requests[-1].arrival if requests else 0.0,
    }


# ---------------------------------------------------------------- saving


def save_trace(trace: Trace, path: str | Path) -> Path:
    """Write the requests (atomically: temp file in the same folder, then os.replace)."""
    p = Path(path)
    suffix = _suffix(p)
    reqs = trace.requests
    table = pa.table(
        {
            "timestamp": pa.array([r.arrival for r in reqs], pa.float64()),
            "adapter": pa.array([r.adapter for r in reqs], pa.string()),
            "input_len": pa.array([r.input_len for r in reqs], pa.int64()),
            "output_len": pa.array([r.output_len for r in reqs], pa.int64()),
        }
    )
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if suffix == ".parquet":
            pq.write_table(table, tmp)
        else:
            # str(float) is the shortest string that parses back to the same float: exact
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(COLUMNS)
                w.writerows((r.arrival, r.adapter or "", r.input_len, r.output_len) for r in reqs)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _suffix(p: Path) -> str:
    s = p.suffix.lower()
    if s not in SUFFIXES:
        raise TraceError(
            str(p), "", f"unknown trace format {p.suffix!r}; expected one of {SUFFIXES}"
        )
    return s


# ---------------------------------------------------------------- loading


def load_trace(path: str | Path, adapters: tuple[AdapterSpec, ...]) -> Trace:
    """Read and validate a trace file for replay; rows are sorted by timestamp (stable)
    and numbered rid 0..n-1 in that order. Every problem is a one-line TraceError."""
    p = Path(path)
    src = str(p)
    suffix = _suffix(p)
    if not p.is_file():
        raise TraceError(src, "", "file not found")
    if p.stat().st_size == 0:
        raise TraceError(
            src, "", f"empty file; expected columns {','.join(COLUMNS)} and one row per request"
        )
    if suffix == ".parquet":
        cols, row = _read_parquet(p), (lambda i: f"row {i + 1}")
    else:
        cols, row = _read_csv(p), (lambda i: f"row {i + 1} (line {i + 2})")
    times, names, inp, out = cols
    if len(times) == 0:
        raise TraceError(src, "", "no requests (the file has a header but no rows)")
    _check(src, row, times, names, inp, out, adapters)
    resorted = bool(np.any(np.diff(times) < 0))
    reqs = _requests(times, names, inp, out)
    meta = {
        "source": src,
        "num_requests": len(reqs),
        "n_adapters": len(adapters),
        "resorted": resorted,
    }
    meta["base_requests"] = sum(r.adapter is None for r in reqs)
    meta["duration_s"] = reqs[-1].arrival
    return Trace(tuple(adapters), reqs, meta)


_Cols = tuple[np.ndarray, list, np.ndarray, np.ndarray]


def _read_csv(p: Path) -> _Cols:
    src = str(p)
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise TraceError(src, "", f"empty file; expected columns {','.join(COLUMNS)}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise TraceError(src, "", f"not a readable CSV: {_first_line(e)}") from None
    df.columns = [str(c).strip() for c in df.columns]
    _require_columns(src, list(df.columns))

    def numbers(col: str) -> np.ndarray:
        vals = [v if isinstance(v, str) else "" for v in df[col]]  # short rows give NaN
        try:
            return np.array([float(v) if v.strip() else np.nan for v in vals], dtype=np.float64)
        except ValueError:
            for i, v in enumerate(vals):
                try:
                    float(v)
                except ValueError:
                    raise TraceError(
                        src,
                        f"row {i + 1} (line {i + 2}), column {col}",
                        f"expected a number, got {v!r}",
                    ) from None
            raise

    names = [v if isinstance(v, str) and v.strip() else None for v in df["adapter"]]
    return numbers("timestamp"), names, numbers("input_len"), numbers("output_len")


def _read_parquet(p: Path) -> _Cols:
    src = str(p)
    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError) as e:
        raise TraceError(
            src, "", f"not a readable parquet file (truncated or corrupt?): {_first_line(e)}"
        ) from None
    _require_columns(src, table.column_names)

    def numbers(col: str) -> np.ndarray:
        arr = table.column(col)
        if not (
            pa.types.is_integer(arr.type)
            or pa.types.is_floating(arr.type)
            or pa.types.is_null(arr.type)
        ):
            raise TraceError(src, f"column {col}", f"expected numbers, got type {arr.type}")
        return np.array(arr.to_pylist(), dtype=np.float64)  # None -> nan

    col = table.column("adapter")
    t = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)):
        raise TraceError(
            src,
            "column adapter",
            f"expected adapter names (strings, null = base model), got type {col.type}",
        )
    names = [v if v else None for v in col.to_pylist()]
    return numbers("timestamp"), names, numbers("input_len"), numbers("output_len")


def _require_columns(src: str, have: list[str]) -> None:
    for c in COLUMNS:
        if c not in have:
            raise TraceError(
                src,
                f"column {c}",
                f"missing; expected columns {','.join(COLUMNS)}, found {','.join(have)}",
            )


def _check(
    src: str,
    row: Callable[[int], str],
    times: np.ndarray,
    names: list[str | None],
    inp: np.ndarray,
    out: np.ndarray,
    adapters: Sequence[AdapterSpec],
) -> None:
    def fail(mask: np.ndarray, col: str, what: str, vals: np.ndarray) -> None:
        bad = np.flatnonzero(mask)
        if bad.size:
            i = int(bad[0])
            more = f" ({bad.size - 1} more rows)" if bad.size > 1 else ""
            raise TraceError(
                src, f"{row(i)}, column {col}", f"expected {what}, got {vals[i]!r}{more}"
            )

    fail(~np.isfinite(times), "timestamp", "a finite number of seconds", times)
    fail(times < 0, "timestamp", "a non-negative number of seconds", times)
    for col, v in (("input_len", inp), ("output_len", out)):
        fail(~np.isfinite(v) | (v != np.floor(v)), col, "an integer", v)
        fail(v <= 0, col, "a positive integer", v)
        fail(v >= 2**62, col, "a plausible token count", v)
    known = {a.name for a in adapters}
    for i, name in enumerate(names):
        if name is not None and name not in known:
            listing = _listing(adapters)
            raise TraceError(
                src,
                f"{row(i)}, column adapter",
                f"unknown adapter {name!r}; the population has {listing}",
            )


def _listing(adapters: Sequence[AdapterSpec]) -> str:
    if not adapters:
        return "no adapters"
    if len(adapters) <= 6:
        return ", ".join(a.name for a in adapters)
    return f"{len(adapters)} adapters ({adapters[0].name} ... {adapters[-1].name})"


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__
