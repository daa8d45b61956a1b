"""Per-request records and summaries with SGLang bench_serving's definitions (DESIGN §4).

TTFT = first token - arrival; E2E = finish - arrival; TPOT = (E2E - TTFT) / (output - 1)
(only for output > 1); ITL = every gap between consecutive output tokens. Percentiles use
numpy's default (linear) definition, as bench_serving does. Summaries are derived from the
records, so a saved parquet reproduces them exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sim.core.model import RequestState
from sim.core.records import RecordColumns
from sim.files import atomic_write

RECORD_COLUMNS: tuple[str, ...] = (
    "rid",
    "policy",
    "adapter",
    "arrival",
    "admitted",
    "first_token",
    "finish",
    "input_len",
    "output_len",
    "ttft",
    "e2e",
    "tpot",
    "adapter_hit",
    "adapter_wait",
    "skipped",
)


def _columns_of(states: Sequence[RequestState]) -> RecordColumns:
    cols = RecordColumns()
    for i, st in enumerate(states):
        cols.add(st, i)
    return cols


def _array(a, dtype) -> np.ndarray:
    return np.frombuffer(a, dtype=dtype) if len(a) else np.zeros(0, dtype=dtype)


def _ordered(cols: RecordColumns) -> dict[str, np.ndarray]:
    """The columns as arrays, rows in arrival order."""
    types = {"q": np.int64, "d": float, "b": np.int8}
    raw = {k: _array(v, types[v.typecode]) for k, v in cols.cols.items()}
    order = np.argsort(raw["seq"], kind="stable")
    return {k: v[order] for k, v in raw.items()}


def build_records(states: Sequence[RequestState], step_ends: Sequence[float], policy: str) -> pd.DataFrame:
    """One row per request (seconds). Unfinished requests keep NaN finish/e2e/tpot.

    `step_ends` is accepted for symmetry with itl_array; token times come from it there."""
    del step_ends  # finish times are already on the states
    return records_frame(_columns_of(states), policy)


def records_frame(cols: RecordColumns, policy: str) -> pd.DataFrame:
    """The records of a run from its RecordColumns (sim.core.records), in arrival order."""
    c = _ordered(cols)
    arrival, first, finish = c["arrival"], c["first_token"], c["finish"]
    out_len = c["output_len"]
    ttft = first - arrival
    e2e = finish - arrival
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(out_len > 1, (e2e - ttft) / (out_len - 1), np.nan)
    hit = c["adapter_hit"]
    names = np.array(cols.adapters + [None], dtype=object)[:-1]
    n = len(arrival)
    return pd.DataFrame(
        {
            "rid": c["rid"],
            "policy": pd.Series([policy] * n),
            # inferred string dtype: the base model (None) is a missing value
            "adapter": pd.Series(list(names[c["adapter"]])),
            "arrival": arrival,
            "admitted": c["admitted"],
            "first_token": first,
            "finish": finish,
            "input_len": c["input_len"],
            "output_len": out_len,
            "ttft": ttft,
            "e2e": e2e,
            "tpot": tpot,
            "adapter_hit": pd.arrays.BooleanArray(hit == 1, hit == -1),
            "adapter_wait": c["adapter_wait"],
            "skipped": c["skipped"],
        },
        columns=list(RECORD_COLUMNS),
    )


def _ends_array(step_ends) -> np.ndarray:
    """Step end times as float64: a StepLog without a copy, else any sequence."""
    if hasattr(step_ends, "buffer"):
        return _array(step_ends.buffer(), float)
    return np.asarray(step_ends, dtype=float)


def itl_array(states: Sequence[RequestState], step_ends) -> np.ndarray:
    """All inter-token gaps, request by request. Token 1 is at first_token_at, token j+2 at
    step_ends[first_decode_step + j] for j < decode_steps. Memory: one float per output
    token; summaries use `Itl.stats`, which does not build this."""
    return Itl.of(states, step_ends).array()


class Itl:
    """A run's inter-token gaps, held as its decode steps rather than one float per token.

    Every request decodes in every step while it runs, so all gaps but each request's first
    are step-to-step gaps shared by the whole batch: the gap into step s appears once for
    every request that decoded in steps s-1 and s. `stats` takes the exact mean, median and
    P99 from those (value, count) pairs, so a million-request run's ITL summary costs memory
    per step, not per token. `numpy.asarray(itl)` builds the per-token array (validation, plots)."""

    def __init__(self, first_step: np.ndarray, n: np.ndarray, t1: np.ndarray, ends: np.ndarray):
        self.first_step, self.n, self.t1, self.ends = first_step, n, t1, ends

    @classmethod
    def of(cls, states: Sequence[RequestState], step_ends) -> Itl:
        """Requests in the order given."""
        return cls.of_columns(_columns_of(states), step_ends)

    @classmethod
    def of_columns(cls, cols: RecordColumns, step_ends) -> Itl:
        """From a run's RecordColumns, requests in arrival order (as `of` over the states)."""
        c = _ordered(cols)
        live = ~np.isnan(c["first_token"]) & (c["decode_steps"] > 0)
        first_step, n, t1 = c["first_decode_step"][live], c["decode_steps"][live], c["first_token"][live]
        ends = _ends_array(step_ends)
        if len(n) and (first_step.min() < 0 or (first_step + n).max() > len(ends)):
            raise ValueError("a request's decode steps fall outside step_ends")
        return cls(first_step, n, t1, ends)

    def __len__(self) -> int:
        return int(self.n.sum())

    def array(self) -> np.ndarray:
        first_step, n, t1, ends = self.first_step, self.n, self.t1, self.ends
        if len(n) == 0:
            return np.zeros(0)
        starts = np.cumsum(n) - n  # position of each request's first gap in the output
        offset = np.arange(int(n.sum())) - np.repeat(starts, n)  # j within its request
        idx = np.repeat(first_step, n) + offset
        prev = np.where(offset == 0, np.repeat(t1, n), ends[np.maximum(idx - 1, 0)])
        return ends[idx] - prev

    def __array__(self, dtype=None, copy=None):
        a = self.array()
        return a if dtype is None else a.astype(dtype)

    def weighted(self) -> tuple[np.ndarray, np.ndarray]:
        """(gap values, how many times each occurs): each request's first gap once, then the
        step-to-step gaps with their multiplicity."""
        first_step, n, t1, ends = self.first_step, self.n, self.t1, self.ends
        first = ends[first_step] - t1
        steps = len(ends)
        # request r covers the gaps into steps first+1 .. first+n-1
        delta = np.bincount(first_step + 1, minlength=steps + 1) - np.bincount(first_step + n, minlength=steps + 1)
        mult = np.cumsum(delta[:steps])
        keep = np.flatnonzero(mult > 0)
        gaps = ends[keep] - ends[keep - 1]
        return np.concatenate([first, gaps]), np.concatenate([np.ones(len(first), np.int64), mult[keep]])

    def stats(self) -> dict[str, float]:
        """ttft-style mean / median / P99 (ms) as `_stats` gives them over `array()`: the
        order statistics are exact; the mean is a weighted sum (equal to the last digits)."""
        if len(self.n) == 0:
            return _stats("itl", np.zeros(0))
        v, w = self.weighted()
        order = np.argsort(v, kind="stable")
        v, cum = v[order], np.cumsum(w[order])
        total = int(cum[-1])

        def kth(k: int) -> float:  # k-th smallest (0-based) of the expanded multiset
            return float(v[np.searchsorted(cum, k, side="right")])

        half = total // 2
        median = kth(half) if total % 2 else (kth(half - 1) + kth(half)) / 2
        h = (total - 1) * 0.99  # numpy's "linear" percentile
        lo = int(np.floor(h))
        a, g = kth(lo), h - lo
        b = kth(min(lo + 1, total - 1))
        p99 = a + (b - a) * g if g < 0.5 else b - (b - a) * (1 - g)
        mean = float(np.dot(v, w[order].astype(float)) / total)
        return {"itl_mean_ms": mean * 1e3, "itl_median_ms": median * 1e3, "itl_p99_ms": p99 * 1e3}


def _union_length(starts: np.ndarray, ends: np.ndarray) -> float:
    """Total length covered by a set of intervals (overlaps counted once)."""
    if len(starts) == 0:
        return 0.0
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], ends[order]
    reach = np.maximum.accumulate(e)
    # a new disjoint block starts where an interval begins after everything before it ended
    new_block = np.r_[True, s[1:] > reach[:-1]]
    b_start = s[new_block]
    b_end = np.maximum.reduceat(e, np.flatnonzero(new_block))
    return float(np.sum(b_end - b_start))


def hidden_load_fraction(timeline: pd.DataFrame) -> float:
    """Share of the PCIe lane's busy time that lies under prefill/decode compute: how much
    of the loading `overlap`-style policies hide (DESIGN: >= 90 % on a workload built for
    it). Blocking copies are compute-lane rows of kind "blocking" and hide nothing.
    Intersection of the two unions = |P| + |C| - |P u C|. NaN without copies."""
    pcie = timeline[timeline["lane"] == "pcie"]
    if pcie.empty:
        return np.nan
    comp = timeline[(timeline["lane"] == "compute") & timeline["kind"].isin(["prefill", "decode"])]
    ps, pe = pcie["start"].to_numpy(float), pcie["end"].to_numpy(float)
    cs, ce = comp["start"].to_numpy(float), comp["end"].to_numpy(float)
    p = _union_length(ps, pe)
    if p <= 0:
        return np.nan
    both = _union_length(np.r_[ps, cs], np.r_[pe, ce])
    return (p + _union_length(cs, ce) - both) / p


def host_gaps(timeline: pd.DataFrame, max_gap_s: float = 0.002) -> np.ndarray:
    """Seconds between one compute-lane operation ending and the next starting, for gaps of
    at most `max_gap_s`: the host time a serving loop spends between back-to-back forwards
    (noticing the end, scheduling, preparing and launching the next). Longer gaps are idle
    periods with no work waiting. Their median calibrates `compute.forward_overhead_us`."""
    comp = timeline[timeline["lane"] == "compute"].sort_values("start")
    gaps = comp["start"].to_numpy(float)[1:] - comp["end"].to_numpy(float)[:-1]
    return gaps[(gaps > 0) & (gaps <= max_gap_s)]


def wake_latencies(records: pd.DataFrame, timeline: pd.DataFrame, max_s: float = 0.002) -> np.ndarray:
    """Seconds from each arrival that found the compute lane idle to that request's admission
    (at most `max_s`; later ones waited for something else): how long the serving loop's idle
    scheduler takes to notice an arrival and form its batch. Their median calibrates
    `compute.wake_us`."""
    comp = timeline[timeline["lane"] == "compute"].sort_values("start")
    starts, ends = comp["start"].to_numpy(float), comp["end"].to_numpy(float)
    arr, adm = records["arrival"].to_numpy(float), records["admitted"].to_numpy(float)
    # busy at t: some operation that started at or before t ends after it, i.e. the latest
    # end among the operations started by t lies beyond t
    k = np.searchsorted(starts, arr, side="right")
    latest_end = np.r_[-np.inf, np.maximum.accumulate(ends)] if len(ends) else np.array([-np.inf])
    busy = latest_end[k] > arr
    d = adm - arr
    return d[~busy & (d >= 0) & (d <= max_s)]


def post_load_gaps(timeline: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Seconds from a prefill to the next forward on the compute lane: (after prefills that
    follow a blocking load, after every other prefill). A blocking policy's load is collected,
    and its temporary pinned copies freed, right after the prefill it was made for, so the
    difference of their medians is the scheduler time a finished pin-per-load costs
    (calibrates `pcie.unpin_per_tensor_us`; round 13: 1.2-2.2 ms on the H200)."""
    c = timeline[timeline["lane"] == "compute"].sort_values("start")
    kind = c["kind"].to_numpy()
    starts, ends = c["start"].to_numpy(float), c["end"].to_numpy(float)
    after, other = [], []
    for i in range(1, len(c) - 1):
        if kind[i] == "prefill" and kind[i + 1] in ("prefill", "decode"):
            (after if kind[i - 1] == "blocking" else other).append(starts[i + 1] - ends[i])
    return np.asarray(after, dtype=float), np.asarray(other, dtype=float)


def relative_w1(gpu_runs: Sequence[np.ndarray], sim: np.ndarray, points: int = 200) -> float:
    """Wasserstein-1 distance between `sim`'s distribution and the pooled `gpu_runs`', over the
    GPU mean: how far the whole CDF is off, on average, in units of a typical value (quantiles
    at `points` evenly spaced levels). Unlike one quantile it does not jump when a few values
    cross a gap in a bimodal distribution. NaN without data."""
    g = np.concatenate([np.asarray(x, dtype=float) for x in gpu_runs]) if len(gpu_runs) else np.array([])
    g, s = g[np.isfinite(g)], np.asarray(sim, dtype=float)
    s = s[np.isfinite(s)]
    if len(g) == 0 or len(s) == 0 or g.mean() <= 0:
        return float("nan")
    u = (np.arange(points) + 0.5) / points
    qs, qg = np.quantile(s, u, method="inverted_cdf"), np.quantile(g, u, method="inverted_cdf")
    return float(np.mean(np.abs(qs - qg)) / g.mean())


def pin_tail(pin_s: np.ndarray, slow_factor: float = 1.5) -> tuple[float, float]:
    """(fraction, extra seconds) of slow pins among pin durations `pin_s` (the "pin" rows of
    GPU timelines): a pin is slow above `slow_factor` x the median; extra is their mean excess
    over the median. Calibrates `pcie.pin_tail_fraction` / `pin_tail_ms` (sim.hw.pcie.PinTail)."""
    d = np.asarray(pin_s, dtype=float)
    if len(d) == 0:
        raise ValueError("no pins to measure")
    med = float(np.median(d))
    slow = d[d > slow_factor * med]
    if len(slow) == 0:
        return 0.0, 0.0
    return len(slow) / len(d), float(np.mean(slow - med))


def _stats(prefix: str, values: np.ndarray, median_key: str = "median") -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return {f"{prefix}_mean_ms": np.nan, f"{prefix}_{median_key}_ms": np.nan, f"{prefix}_p99_ms": np.nan}
    return {
        f"{prefix}_mean_ms": float(np.mean(v)) * 1e3,
        f"{prefix}_{median_key}_ms": float(np.median(v)) * 1e3,
        f"{prefix}_p99_ms": float(np.percentile(v, 99)) * 1e3,
    }


def summarize(
    records: pd.DataFrame,
    itl: Itl | np.ndarray | None,
    counters: dict | None = None,
    timeline: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Flat scalars over completed requests, plus loading metrics.

    duration_s runs from the first arrival to the last finish; pcie_busy_frac is the union
    of "pcie" lane intervals, clipped to that window, over duration_s."""
    counters = counters or {}
    done = records[records["finish"].notna()]
    t0 = float(records["arrival"].min()) if len(records) else np.nan
    t1 = float(done["finish"].max()) if len(done) else np.nan
    duration = t1 - t0 if len(done) else np.nan
    has_dur = bool(duration > 0)
    out: dict[str, float] = {
        "completed": int(len(done)),
        "duration_s": duration,
        "request_throughput": len(done) / duration if has_dur else np.nan,
        "output_throughput": float(done["output_len"].sum()) / duration if has_dur else np.nan,
    }
    out |= _stats("ttft", done["ttft"].to_numpy())
    out |= _stats("e2e", done["e2e"].to_numpy())
    out |= _stats("tpot", done["tpot"].to_numpy())
    if isinstance(itl, Itl):
        out |= itl.stats()
    else:
        out |= _stats("itl", np.zeros(0) if itl is None else np.asarray(itl))
    hits = records["adapter_hit"].dropna()
    out["hit_rate"] = float(hits.astype(bool).mean()) if len(hits) else np.nan
    out["loads"] = int(counters.get("loads", 0))
    out["bytes_moved"] = int(counters.get("bytes_moved", 0))
    out["disk_reads"] = int(counters.get("disk_reads", 0))  # host-tier misses read from disk

    busy = 0.0
    blocking = 0.0
    out["pcie_hidden_frac"] = np.nan
    if timeline is not None and len(timeline):
        out["pcie_hidden_frac"] = hidden_load_fraction(timeline)
        pcie = timeline[timeline["lane"] == "pcie"]
        if len(pcie) and has_dur:
            s = np.clip(pcie["start"].to_numpy(float), t0, t1)
            e = np.clip(pcie["end"].to_numpy(float), t0, t1)
            busy = _union_length(s, e) / duration
        comp = timeline[(timeline["lane"] == "compute") & (timeline["kind"] == "blocking")]
        blocking = float((comp["end"] - comp["start"]).sum())
    out["pcie_busy_frac"] = busy
    out["gpu_stall_ms"] = (blocking + float(counters.get("stall_s", 0.0))) * 1e3
    out["prefetch_wasted"] = int(counters.get("prefetch_wasted", 0))
    return out


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    """Atomic: readers see the old file or the new one, never a partial write."""
    atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def read_parquet(path: str | Path) -> pd.DataFrame:
    return pd.read_parquet(path)
