"""Public LLM serving traces read as lorasim workloads: Azure LLM inference and BurstGPT CSVs.

These files give arrival times and token counts but no adapter, so `sim.workload.trace` draws
each request's adapter from the scenario's `workload.adapter_choice`. This module only reads
them, and is built for files of millions of rows: pandas' C parser in chunks of ~1M rows, the
numbers checked with vectorised numpy, never one Python object per cell of the whole file.
Bad cells still get the lorasim reader's one-line error naming file, row (line) and column.

Rules, the same for every format:
- rows with 0 input or 0 output tokens (BurstGPT logs failed requests with 0 response tokens)
  are skipped and counted: the simulator needs at least one token of each;
- with `limit`, the first `limit` usable rows in file order are kept and reading stops there
  (a prefix of a huge trace; the rows after it are not checked);
- blank lines are ignored; anything else that is not a count or a time is an error.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from sim.errors import TraceError


@dataclass(frozen=True)
class Layout:
    """Where a format keeps the three values a request needs."""

    name: str
    time: str
    input: str
    output: str
    clock: Literal["datetime", "seconds"]  # wall-clock timestamps, or seconds from any origin
    time_expected: str  # what a bad timestamp cell should have been

    @property
    def columns(self) -> tuple[str, str, str]:
        return (self.time, self.input, self.output)


LAYOUTS: dict[str, Layout] = {
    # Azure/AzurePublicDataset AzureLLMInferenceTrace_{code,conv}.csv (2023, 7-digit fractions)
    # and the 2024 week-long traces (6-digit fractions with a +00:00 offset)
    "azure": Layout(
        "azure", "TIMESTAMP", "ContextTokens", "GeneratedTokens", "datetime",
        "an ISO 8601 timestamp like 2023-11-16 18:15:46.6805900",
    ),
    # HPMLL/BurstGPT data/BurstGPT_*.csv: Timestamp is seconds from the trace's first day
    "burstgpt": Layout(
        "burstgpt", "Timestamp", "Request tokens", "Response tokens", "seconds",
        "a finite number of seconds",
    ),
}
OTHER_HEADERS = {"lorasim": ("timestamp", "adapter", "input_len", "output_len")}
SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip")
COUNT = "a non-negative integer token count"
MAX_COUNT = 2**53  # beyond this float64 no longer holds every integer
CHUNK_ROWS = 1 << 20
_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


@dataclass
class Rows:
    """A trace's usable rows in file order, and what was skipped. `times` holds int64
    nanoseconds since the epoch (datetime clocks) or float64 seconds (seconds clocks)."""

    times: np.ndarray
    inp: np.ndarray  # int64
    out: np.ndarray  # int64
    rows_read: int  # data rows looked at, blank lines excluded
    zero_input: int  # skipped: 0 input tokens
    zero_output: int  # skipped: 0 output tokens (a row with both counts in both)
    skipped: int

    def arrivals(self) -> np.ndarray:
        """Float64 seconds from the earliest row, in file order. Nanosecond differences are
        exact integers, so each arrival is the double nearest the exact decimal difference."""
        if self.times.dtype.kind == "i":
            return (self.times - self.times.min()).astype(np.float64) / 1e9
        return self.times - self.times.min()


def read_rows(
    path: str | Path, fmt: str, limit: int | None = None, chunk_rows: int = CHUNK_ROWS
) -> Rows:
    """Read and check an `fmt` trace ('azure' | 'burstgpt'); every problem is a TraceError."""
    lay = LAYOUTS[fmt]
    p = Path(path)
    src = str(p)
    if not p.name.lower().endswith(SUFFIXES):
        raise TraceError(
            src, "", f"a {fmt} trace is a CSV file; expected a name ending in {', '.join(SUFFIXES)}"
        )
    if not p.is_file():
        raise TraceError(src, "", "file not found")
    header = _header(src, p, lay)
    acc = _Accumulator(src, lay, header, limit)
    # every column is parsed (no usecols): only then does the C parser refuse a row with
    # more fields than the header instead of silently dropping the extra ones
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            with pd.read_csv(
                p,
                index_col=False,
                dtype={header[lay.time]: str} if lay.clock == "datetime" else None,
                chunksize=chunk_rows if limit is None else min(chunk_rows, max(2 * limit, 1024)),
                skip_blank_lines=False,  # so row i of the file is line i + 2
                keep_default_na=False,
                na_values=[""],
                skipinitialspace=True,
                encoding="utf-8",
                engine="c",
            ) as reader:
                for chunk in reader:
                    if acc.take(chunk):
                        break
    except pd.errors.ParserWarning:  # every row of a chunk longer than the header
        raise TraceError(src, "", "rows have more fields than the header; expected one field per "
                                  "header column") from None
    except (ValueError, OSError, EOFError) as e:  # pandas' ParserError is a ValueError
        raise _unreadable(src, e) from None
    return acc.rows()


def _header(src: str, p: Path, lay: Layout) -> dict[str, str]:
    """The file's names of the layout's columns (matched after stripping spaces)."""
    expected = ",".join(lay.columns)
    if p.stat().st_size == 0:
        raise TraceError(src, "", f"empty file; expected a header with {expected}, one row per request")
    try:
        names = [str(c) for c in pd.read_csv(p, nrows=0, skipinitialspace=True, encoding="utf-8").columns]
    except pd.errors.EmptyDataError:
        raise TraceError(src, "", f"no header; expected one with {expected}") from None
    except (ValueError, OSError, EOFError) as e:
        raise _unreadable(src, e) from None
    have = {n.strip(): n for n in names}
    for col in lay.columns:
        if col not in have:
            found = ",".join(names) or "nothing"
            hint = _guess(set(have), lay.name)
            raise TraceError(
                src, f"column {col}",
                f"missing; the {lay.name} format has columns {expected}, found {found}{hint}",
            )
    return {col: have[col] for col in lay.columns}


def _guess(have: set[str], fmt: str) -> str:
    """A hint when the header is another known format's."""
    others = {k: v.columns for k, v in LAYOUTS.items() if k != fmt} | OTHER_HEADERS
    for name, cols in others.items():
        if set(cols) <= have:
            return f" (this looks like the {name} format: set workload.arrival.format: {name})"
    return ""


def _unreadable(src: str, e: BaseException) -> TraceError:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    m = _FIELDS.search(msg)
    if m:
        want, line, got = m.groups()
        return TraceError(src, f"row {int(line) - 1} (line {line})",
                          f"expected {want} fields like the header, got {got}")
    return TraceError(src, "", f"not a readable CSV: {msg}")


@dataclass
class _Accumulator:
    """Checks chunks in file order and keeps their usable rows until `limit` is reached."""

    src: str
    lay: Layout
    header: dict[str, str]  # layout column -> the file's name for it
    limit: int | None
    offset: int = 0  # data rows (blank lines included) before the current chunk
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    kept: int = 0
    rows_read: int = 0
    zero_input: int = 0
    zero_output: int = 0
    skipped: int = 0

    def take(self, chunk: pd.DataFrame) -> bool:
        """Check and keep one chunk; True once `limit` rows are kept (stop reading)."""
        n = len(chunk)
        lay, h = self.lay, self.header
        t, t_bad = (_datetimes if lay.clock == "datetime" else _numbers)(chunk[h[lay.time]])
        i, i_bad = _counts(chunk[h[lay.input]])
        o, o_bad = _counts(chunk[h[lay.output]])
        blank = chunk[list(h.values())].isna().all(axis=1).to_numpy()
        usable = ~(t_bad | i_bad | o_bad | blank)
        keep = usable & (i > 0) & (o > 0)
        cut = n
        if self.limit is not None and n:
            reached = np.cumsum(keep) >= self.limit - self.kept
            if reached[-1]:
                cut = int(np.argmax(reached)) + 1
        bad = np.flatnonzero(~(usable | blank)[:cut])
        if bad.size:
            j = int(bad[0])
            col = next(c for c, m in zip(lay.columns, (t_bad, i_bad, o_bad), strict=True) if m[j])
            what = lay.time_expected if col == lay.time else COUNT
            self._fail(j, col, chunk[h[col]].iloc[j], what)
        k, u = keep[:cut], usable[:cut]
        self.parts.append((t[:cut][k], i[:cut][k], o[:cut][k]))
        self.kept += int(k.sum())
        self.rows_read += int((~blank[:cut]).sum())
        self.zero_input += int((u & (i[:cut] == 0)).sum())
        self.zero_output += int((u & (o[:cut] == 0)).sum())
        self.skipped += int((u & ~k).sum())
        self.offset += n
        return cut < n or (self.limit is not None and self.kept >= self.limit)

    def _fail(self, j: int, col: str, raw: object, what: str) -> None:
        line = self.offset + j + 2  # line 1 is the header
        where = f"row {line - 1} (line {line}), column {col}"
        if _missing(raw):
            raise TraceError(self.src, where, f"empty cell; expected {what}")
        raise TraceError(self.src, where, f"expected {what}, got {_show(raw)}")

    def rows(self) -> Rows:
        if not self.kept:
            if not self.rows_read:
                raise TraceError(self.src, "", "no requests (the file has a header but no rows)")
            raise TraceError(
                self.src, "",
                f"no usable requests: all {self.rows_read} rows have 0 input or 0 output tokens",
            )
        t, i, o = (np.concatenate(c) for c in zip(*self.parts, strict=True))
        return Rows(t, i.astype(np.int64), o.astype(np.int64), self.rows_read,
                    self.zero_input, self.zero_output, self.skipped)


def _counts(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values and a bad mask (empty, not a number, negative, fractional, huge)."""
    v = _floats(col)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(v) | (v < 0) | (v != np.floor(v)) | (v >= MAX_COUNT)
    return v, bad


def _numbers(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    v = _floats(col)
    return v, ~np.isfinite(v)


def _floats(col: pd.Series) -> np.ndarray:
    """The column as float64, NaN where a cell is empty or not a number."""
    if pd.api.types.is_bool_dtype(col):
        return np.full(len(col), np.nan)
    if not pd.api.types.is_numeric_dtype(col):
        col = pd.to_numeric(col, errors="coerce")
    return col.to_numpy(dtype=np.float64, na_value=np.nan)


def _datetimes(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Int64 UTC nanoseconds and a bad mask. ISO 8601 keeps every fractional digit up to 9
    (Azure 2023 writes 7); offsets are honoured and naive times taken as UTC."""
    try:
        ts = pd.to_datetime(col, format="ISO8601", errors="coerce", utc=True)
    except (ValueError, TypeError, OverflowError):  # coerce should prevent it; never a traceback
        ts = pd.Series([_one_datetime(v) for v in col], index=col.index, dtype="datetime64[ns, UTC]")
    ns = ts.dt.tz_convert(None).dt.as_unit("ns").to_numpy().view(np.int64)
    return ns, ts.isna().to_numpy()


def _one_datetime(v: object) -> pd.Timestamp:
    try:
        return pd.to_datetime(v, format="ISO8601", utc=True)
    except (ValueError, TypeError, OverflowError):
        return pd.NaT


def _missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _show(v: object) -> str:
    if isinstance(v, str):
        return repr(v)
    x = float(v)  # type: ignore[arg-type]
    return str(int(x)) if x.is_integer() else repr(x)
