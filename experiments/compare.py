"""`lorasim compare`: a real engine's benchmark run next to the simulator's on the same scenario.

The engine ran the scenario's workload (exported with `lorasim trace --format ...`); the
simulator runs it under one policy. The table gives each bench_serving metric on both sides
and the simulator's relative error, (sim - engine) / engine. Before trusting the numbers the
user needs to know the two ran the same requests, so per-request lengths (or the token
totals) in the engine's file are checked against the scenario's trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.engine_results import METRICS, EngineRun
from sim.core.model import Trace

# bench_serving name -> key of the simulator's summary (sim.metrics.summarize)
SIM_KEYS: dict[str, str] = {
    "completed": "completed",
    "duration": "duration_s",
    "request_throughput": "request_throughput",
    "output_throughput": "output_throughput",
    "mean_ttft_ms": "ttft_mean_ms",
    "median_ttft_ms": "ttft_median_ms",
    "p99_ttft_ms": "ttft_p99_ms",
    "mean_tpot_ms": "tpot_mean_ms",
    "median_tpot_ms": "tpot_median_ms",
    "p99_tpot_ms": "tpot_p99_ms",
    "mean_itl_ms": "itl_mean_ms",
    "median_itl_ms": "itl_median_ms",
    "p99_itl_ms": "itl_p99_ms",
    "mean_e2e_latency_ms": "e2e_mean_ms",
    "median_e2e_latency_ms": "e2e_median_ms",
    "p99_e2e_latency_ms": "e2e_p99_ms",
}
TABLE_COLUMNS = ("metric", "engine", "simulator", "rel_error")


@dataclass
class Comparison:
    """What `lorasim compare` prints and saves."""

    engine: EngineRun
    policy: str
    table: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    lengths: str = ""


def sim_metrics(summary: dict) -> dict[str, float]:
    """The simulator's summary under bench_serving's names."""
    return {m: float(summary.get(SIM_KEYS[m], math.nan)) for m in METRICS}


def comparison_table(engine: dict[str, float], sim: dict[str, float]) -> pd.DataFrame:
    """One row per metric the engine reported; rel_error NaN where the engine's value is 0."""
    rows = []
    for m in METRICS:
        e, s = engine.get(m, math.nan), sim.get(m, math.nan)
        if math.isnan(e):
            continue
        rel = (s - e) / e if e != 0 and not math.isnan(s) else math.nan
        rows.append((m, e, s, rel))
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def _differ(a: np.ndarray, b: np.ndarray) -> str:
    bad = int(np.sum(a != b))
    return "match" if bad == 0 else f"{bad} of {len(a)} differ (mean {a.mean():.1f} in the file vs {b.mean():.1f} in the trace)"


def check_lengths(engine: EngineRun, trace: Trace) -> tuple[str, list[str]]:
    """(one-line summary, warnings) comparing the requests the engine ran with the trace's.

    With per-request lengths: count, then input and output lengths request by request (both
    sides are in arrival order); otherwise the token totals, when the file has them."""
    inp = np.array([r.input_len for r in trace.requests], dtype=float)
    out = np.array([r.output_len for r in trace.requests], dtype=float)
    n = len(inp)
    warns: list[str] = []
    reqs = engine.requests
    if reqs is not None:
        parts = [f"requests: {len(reqs)} in the file, {n} in the trace"]
        if len(reqs) != n:
            warns.append(f"the engine ran {len(reqs)} requests, the scenario's trace has {n}: not the same workload")
            return "; ".join(parts), warns
        ok = reqs["ok"].to_numpy()
        if not ok.all():
            warns.append(f"{int((~ok).sum())} of {n} requests failed in the engine run; their lengths are not compared")
        for name, col, mine in (("input", "input_len", inp), ("output", "output_len", out)):
            verdict = _differ(reqs[col].to_numpy()[ok], mine[ok])
            parts.append(f"{name} lengths: {verdict}")
            if verdict != "match":
                warns.append(f"{name} lengths differ from the scenario's trace: {verdict}")
        return "; ".join(parts), warns
    completed = engine.metrics.get("completed", math.nan)
    parts = [f"no per-request lengths in the file (SGLang --output-details / vLLM --save-detailed); "
             f"completed {completed:.0f}, trace {n}"]
    if not math.isnan(completed) and int(completed) != n:
        warns.append(f"the engine completed {completed:.0f} requests, the scenario's trace has {n}")
    for key, mine, name in (("total_input_tokens", inp, "input"), ("total_output_tokens", out, "output")):
        theirs = engine.info.get(key)
        if isinstance(theirs, (int, float)):
            parts.append(f"{name} tokens {theirs:.0f} vs {mine.sum():.0f}")
            if int(theirs) != int(mine.sum()):
                warns.append(f"{name} tokens: {theirs:.0f} in the file, {mine.sum():.0f} in the scenario's trace")
    return "; ".join(parts), warns


def _fmt(v: float, metric: str) -> str:
    if math.isnan(v):
        return "-"
    if metric == "completed":
        return f"{v:.0f}"
    return f"{v:.2f}"


def markdown(c: Comparison, scenario: str) -> str:
    """The comparison as a markdown page: source, table, length check, warnings."""
    e = c.engine
    lines = [
        f"# {e.engine} run vs lorasim ({c.policy})",
        "",
        f"- engine result: `{e.source}` (run {e.run} of {e.runs})",
        f"- scenario: `{scenario}`, policy `{c.policy}`",
        f"- lengths: {c.lengths}",
        "",
        "| metric | engine | simulator | rel. error |",
        "|---|---:|---:|---:|",
    ]
    for r in c.table.itertuples(index=False):
        rel = "-" if math.isnan(r.rel_error) else f"{r.rel_error:+.1%}"
        lines.append(f"| {r.metric} | {_fmt(r.engine, r.metric)} | {_fmt(r.simulator, r.metric)} | {rel} |")
    if c.warnings:
        lines += ["", "**Warnings**", ""] + [f"- {w}" for w in c.warnings]
    return "\n".join(lines) + "\n"


def plot(c: Comparison, sim_ttft_s: np.ndarray, path: Path) -> Path:
    """Bars of the latency metrics on both sides; the TTFT CDFs when the file has per-request TTFTs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = c.table[c.table["metric"].str.endswith("_ms")]
    have_cdf = c.engine.requests is not None
    fig, axes = plt.subplots(1, 2 if have_cdf else 1, figsize=(13 if have_cdf else 8, 4.5), squeeze=False)
    ax = axes[0][0]
    x = np.arange(len(lat))
    ax.bar(x - 0.2, lat["engine"], 0.4, label=c.engine.engine)
    ax.bar(x + 0.2, lat["simulator"], 0.4, label=f"lorasim ({c.policy})")
    ax.set_xticks(x, [m.removesuffix("_ms") for m in lat["metric"]], rotation=45, ha="right")
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("bench_serving metrics")
    if have_cdf:
        ax = axes[0][1]
        reqs = c.engine.requests
        for label, v in ((c.engine.engine, reqs.loc[reqs["ok"], "ttft"].to_numpy()),
                         (f"lorasim ({c.policy})", np.asarray(sim_ttft_s, dtype=float))):
            v = np.sort(v[np.isfinite(v)]) * 1e3
            ax.plot(v, np.arange(1, len(v) + 1) / max(len(v), 1), label=label)
        ax.set_xlabel("TTFT (ms)")
        ax.set_ylabel("fraction of requests")
        ax.set_title("TTFT CDF")
        ax.legend()
    fig.tight_layout()
    from experiments.store import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return path


def output_paths(out: Path) -> dict[str, Path]:
    """OUT.csv, OUT.md and OUT.png (a suffix given on OUT is dropped)."""
    stem = out.with_suffix("") if out.suffix.lower() in (".csv", ".md", ".png") else out
    return {ext: stem.parent / f"{stem.name}.{ext}" for ext in ("csv", "md", "png")}


def run_compare(result_file: Path, scenario: Path, policy: str, run: int | None = None,
                out: Path | None = None) -> tuple[Comparison, dict[str, Path]]:
    """Read the engine's run, simulate the scenario under `policy`, build the comparison and,
    with `out`, write OUT.csv / OUT.md / OUT.png. Bad input raises one-line LorasimErrors."""
    from experiments.engine_results import read_engine_results
    from experiments.store import atomic_write_text
    from sim.errors import LorasimError
    from sim.policies import registry
    from sim.runner import load_scenario, simulate
    from sim.workload import generate_trace

    engine = read_engine_results(result_file, run)
    try:
        registry.check_name(policy)
    except ValueError as e:
        raise LorasimError(f"--policy: {e}") from None
    sc = load_scenario(scenario)
    trace = generate_trace(sc)
    lengths, warns = check_lengths(engine, trace)
    res = simulate(sc, policy, trace=trace)
    table = comparison_table(engine.metrics, sim_metrics(res.summary))
    if engine.metrics.get("completed") == 0:
        warns.insert(0, "the engine run completed no requests: its latencies are not measurements")
    c = Comparison(engine, policy, table, warns, lengths)
    paths: dict[str, Path] = {}
    if out is not None:
        paths = output_paths(out)
        atomic_write_text(paths["csv"], table.to_csv(index=False))
        atomic_write_text(paths["md"], markdown(c, str(scenario)))
        plot(c, res.records["ttft"].to_numpy(), paths["png"])
    return c, paths
