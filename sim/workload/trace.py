"""Traces: generate one from a scenario, save it, load it back for replay.

File format (CSV or parquet, chosen by suffix): one row per request with columns
`timestamp` (seconds, float), `adapter` (name; empty / null = base model), `input_len`,
`output_len`. The population is not stored: it comes from the scenario, and a replayed
trace may only name adapters that exist in it. Public traces without adapters (Azure LLM
inference, BurstGPT; `sim.workload.trace_formats`) replay with adapters drawn from the
scenario's `adapter_choice`, from the same seeded stream a generated workload uses.

Determinism: one `numpy.random.SeedSequence(seed)` is split into independent streams for
arrivals, adapter choice, input and output lengths, so changing one knob (say the output
length) never reshuffles the others.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sim.config import Scenario, WorkloadCfg
from sim.core.model import AdapterSpec, Request, Trace
from sim.errors import TraceError
from sim.files import atomic_write
from sim.workload.arrivals import arrival_times, make_process
from sim.workload.choice import check_choice, choose_adapters
from sim.workload.lengths import sample_lengths
from sim.workload.population import build_population
from sim.workload.trace_formats import read_rows

COLUMNS = ("timestamp", "adapter", "input_len", "output_len")
SUFFIXES = (".csv", ".parquet")
_TRACE_ONLY = {"path", "format", "time_scale"}  # ArrivalCfg keys a generated trace leaves at default


# ---------------------------------------------------------------- generation


def generate_trace(sc: Scenario) -> Trace:
    """The scenario's workload over its adapter population. `arrival.process: trace` replays
    `arrival.path` instead: a lorasim file whole (num_requests ignored); an azure or burstgpt
    file (see `replay_public_trace`). Trace arrivals are multiplied by `arrival.time_scale`."""
    adapters = build_population(sc.adapters, sc.model.shape())
    wl = sc.workload
    arr = wl.arrival
    if arr.process == "trace" and arr.format != "lorasim":
        return replay_public_trace(sc, adapters)
    if arr.process == "trace":
        tr = load_trace(arr.path or "", adapters)
        reqs = tr.requests
        scaled = {}
        if arr.time_scale != 1.0:
            s = arr.time_scale
            reqs = tuple(
                Request(r.rid, r.arrival * s, r.adapter, r.input_len, r.output_len) for r in reqs
            )
            scaled = {"time_scale": arr.time_scale, "duration_s": reqs[-1].arrival}
        return Trace(tr.adapters, reqs, {**tr.meta, **scaled, "seed": sc.seed, "scenario": sc.name})
    requests = generate_requests(wl, adapters, sc.seed, source=sc.source)
    return Trace(adapters, requests, _summary(sc, adapters, requests))


def generate_requests(
    wl: WorkloadCfg, adapters: Sequence[AdapterSpec], seed: int, source: str = "<scenario>"
) -> tuple[Request, ...]:
    """n requests sorted by arrival with rid 0..n-1 (the seam for callers without a Scenario)."""
    n = wl.num_requests
    arr_rng, choice_rng, in_rng, out_rng = _streams(seed)
    times = arrival_times(make_process(wl.arrival), n, arr_rng)
    names = _adapter_names(wl, adapters, n, choice_rng, source)
    inp = sample_lengths(wl.input_len, n, in_rng)
    out = sample_lengths(wl.output_len, n, out_rng)
    return _requests(times, names, inp, out)


def replay_public_trace(sc: Scenario, adapters: tuple[AdapterSpec, ...]) -> Trace:
    """An azure or burstgpt trace: its arrivals (seconds from its earliest row, times
    `time_scale`) and token counts, with adapters drawn by `adapter_choice` in arrival order
    from the seed's adapter stream, so the same seed and request count give the same
    adapters as a generated workload. An explicit `num_requests` replays the file's first
    num_requests usable rows; rows with 0 input or output tokens are skipped and counted
    in the meta (`skipped_rows`)."""
    wl = sc.workload
    arr = wl.arrival
    limit = wl.num_requests if "num_requests" in wl.model_fields_set else None
    check_choice(wl.adapter_choice, len(adapters), sc.source)  # before reading a huge file
    rows = read_rows(arr.path or "", arr.format, limit)
    order = np.argsort(rows.times, kind="stable")
    times = rows.arrivals()[order] * arr.time_scale
    names = _adapter_names(wl, adapters, len(order), _streams(sc.seed)[1], sc.source)
    reqs = _requests(times, names, rows.inp[order], rows.out[order])
    meta = {
        "source": arr.path,
        "format": arr.format,
        "scenario": sc.name,
        "seed": sc.seed,
        "num_requests": len(reqs),
        "num_requests_limit": limit,
        "n_adapters": len(adapters),
        "rows_read": rows.rows_read,
        "skipped_rows": rows.skipped,
        "skipped_zero_input": rows.zero_input,
        "skipped_zero_output": rows.zero_output,
        "resorted": bool(np.any(order != np.arange(len(order)))),
        "time_scale": arr.time_scale,
        "adapter_choice": wl.adapter_choice.model_dump(exclude_none=True),
        "base_requests": sum(r.adapter is None for r in reqs),
        "duration_s": reqs[-1].arrival,
    }
    return Trace(tuple(adapters), reqs, meta)


def _streams(seed: int) -> list[np.random.Generator]:
    """Independent streams for arrivals, adapter choice, input and output lengths."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]


def _adapter_names(
    wl: WorkloadCfg, adapters: Sequence[AdapterSpec], n: int, rng: np.random.Generator, source: str
) -> list[str | None]:
    idx = choose_adapters(wl.adapter_choice, n, len(adapters), rng, source)
    names = [None] + [a.name for a in adapters]
    return [names[i] for i in idx]


def _requests(
    times: np.ndarray, adapters: list[str | None], inp: np.ndarray, out: np.ndarray
) -> tuple[Request, ...]:
    """Requests in stable arrival order, rid = position; plain Python numbers, not numpy."""
    order = np.argsort(times, kind="stable")
    ts = times[order].astype(np.float64).tolist()
    ins = inp[order].astype(np.int64).tolist()
    outs = out[order].astype(np.int64).tolist()
    names = [adapters[j] for j in order.tolist()]
    return tuple(
        Request(rid, t, a, i, o)
        for rid, (t, a, i, o) in enumerate(zip(ts, names, ins, outs, strict=True))
    )


def _summary(sc: Scenario, adapters: Sequence[AdapterSpec], requests: Sequence[Request]) -> dict:
    wl = sc.workload
    return {
        "source": "generated",
        "scenario": sc.name,
        "seed": sc.seed,
        "num_requests": len(requests),
        "n_adapters": len(adapters),
        "arrival": wl.arrival.model_dump(exclude=_TRACE_ONLY),
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

    def write(tmp: Path) -> None:
        if suffix == ".parquet":
            pq.write_table(table, tmp)
        else:
            # str(float) is the shortest string that parses back to the same float: exact
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(COLUMNS)
                w.writerows((r.arrival, r.adapter or "", r.input_len, r.output_len) for r in reqs)

    return atomic_write(p, write)


def _suffix(p: Path) -> str:
    s = p.suffix.lower()
    if s not in SUFFIXES:
        raise TraceError(
            str(p), "", f"unknown trace format {p.suffix!r}; expected one of {SUFFIXES}"
        )
    return s


# ---------------------------------------------------------------- loading

RowLabel = Callable[[int], str]


@dataclass
class _Columns:
    """The four trace columns as read, before validation. Numbers are float64, NaN = empty."""

    times: np.ndarray
    names: list[str | None]
    inp: np.ndarray
    out: np.ndarray
    row: RowLabel  # how an error names row i (0-based) of this file


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
            src, "", f"empty file; expected a header {','.join(COLUMNS)} and one row per request"
        )
    cols = _read_parquet(p) if suffix == ".parquet" else _read_csv(p)
    if len(cols.times) == 0:
        raise TraceError(src, "", "no requests (the file has a header but no rows)")
    _check(src, cols, adapters)
    reqs = _requests(cols.times, cols.names, cols.inp, cols.out)
    meta = {
        "source": src,
        "num_requests": len(reqs),
        "n_adapters": len(adapters),
        "resorted": bool(np.any(np.diff(cols.times) < 0)),
        "base_requests": sum(r.adapter is None for r in reqs),
        "duration_s": reqs[-1].arrival,
    }
    return Trace(tuple(adapters), reqs, meta)


def _read_csv(p: Path) -> _Columns:
    """Plain csv module: exact float parsing, a field-count check per row, real line numbers."""
    src = str(p)
    try:
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f, skipinitialspace=True)
            header = [c.strip() for c in next(reader, [])]
            _require_columns(src, header)
            rows, lines = [], []
            for fields in reader:
                if not fields:
                    continue  # blank line
                if len(fields) != len(header):
                    raise TraceError(
                        src,
                        f"row {len(rows) + 1} (line {reader.line_num})",
                        f"expected {len(header)} fields like the header, got {len(fields)}",
                    )
                rows.append(fields)
                lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error) as e:
        raise TraceError(src, "", f"not a readable CSV: {_first_line(e)}") from None

    def row(i: int) -> str:
        return f"row {i + 1} (line {lines[i]})"

    def numbers(col: str) -> np.ndarray:
        k = header.index(col)
        out = np.empty(len(rows), dtype=np.float64)
        for i, fields in enumerate(rows):
            v = fields[k].strip()
            if not v:
                raise TraceError(src, f"{row(i)}, column {col}", "empty cell; expected a number")
            try:
                out[i] = float(v)
            except ValueError:
                raise TraceError(
                    src, f"{row(i)}, column {col}", f"expected a number, got {v!r}"
                ) from None
        return out

    ka = header.index("adapter")
    names = [fields[ka].strip() or None for fields in rows]
    return _Columns(numbers("timestamp"), names, numbers("input_len"), numbers("output_len"), row)


def _read_parquet(p: Path) -> _Columns:
    src = str(p)
    try:
        table = pq.read_table(p)
    except (pa.ArrowException, OSError) as e:
        raise TraceError(
            src, "", f"not a readable parquet file (truncated or corrupt?): {_first_line(e)}"
        ) from None
    _require_columns(src, table.column_names)

    def row(i: int) -> str:
        return f"row {i + 1}"

    def numbers(col: str) -> np.ndarray:
        arr = table.column(col)
        if not (
            pa.types.is_integer(arr.type)
            or pa.types.is_floating(arr.type)
            or pa.types.is_null(arr.type)
        ):
            raise TraceError(src, f"column {col}", f"expected numbers, got type {arr.type}")
        vals = arr.to_pylist()
        if arr.null_count:
            i = vals.index(None)
            raise TraceError(src, f"{row(i)}, column {col}", "null; expected a number")
        return np.array(vals, dtype=np.float64)

    col = table.column("adapter")
    t = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)):
        raise TraceError(
            src,
            "column adapter",
            f"expected adapter names (strings, null = base model), got type {col.type}",
        )
    names = [v.strip() or None if v is not None else None for v in col.to_pylist()]
    return _Columns(numbers("timestamp"), names, numbers("input_len"), numbers("output_len"), row)


def _require_columns(src: str, have: list[str]) -> None:
    for c in COLUMNS:
        if c not in have:
            found = ",".join(have) or "nothing"
            raise TraceError(
                src, f"column {c}", f"missing; expected columns {','.join(COLUMNS)}, found {found}"
            )


def _check(src: str, cols: _Columns, adapters: Sequence[AdapterSpec]) -> None:
    def fail(mask: np.ndarray, col: str, what: str, vals: np.ndarray) -> None:
        bad = np.flatnonzero(mask)
        if bad.size:
            i = int(bad[0])
            more = f" ({bad.size - 1} more such rows)" if bad.size > 1 else ""
            raise TraceError(
                src, f"{cols.row(i)}, column {col}", f"expected {what}, got {_show(vals[i])}{more}"
            )

    fail(~np.isfinite(cols.times), "timestamp", "a finite number of seconds", cols.times)
    fail(cols.times < 0, "timestamp", "a non-negative number of seconds", cols.times)
    for col, v in (("input_len", cols.inp), ("output_len", cols.out)):
        fail(~np.isfinite(v) | (v != np.floor(v)), col, "an integer", v)
        fail(v <= 0, col, "a positive integer", v)
        fail(v >= 2**53, col, "a plausible token count", v)
    known = {a.name for a in adapters}
    for i, name in enumerate(cols.names):
        if name is not None and name not in known:
            raise TraceError(
                src,
                f"{cols.row(i)}, column adapter",
                f"unknown adapter {name!r}; the population has {_listing(adapters)}",
            )


def _show(v: float) -> str:
    x = float(v)
    return str(int(x)) if x.is_integer() else repr(x)


def _listing(adapters: Sequence[AdapterSpec]) -> str:
    if not adapters:
        return "no adapters"
    if len(adapters) <= 6:
        return ", ".join(a.name for a in adapters)
    return f"{len(adapters)} adapters ({adapters[0].name} ... {adapters[-1].name})"


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__
