"""Issue #6 table: lookahead vs the best existing policy per workload, paired by seed, and the
share of lru's P99-TTFT excess over each oracle it removes (run from the repo root).

Besides the oracles run in the sweep, a bound no loading policy can beat without knowing which
adapters will be asked for: `zero_load`'s own request times (the same slots, copies free), with
one adapter copy added to the first request of each adapter (its adapter cannot be on the GPU
before some request names it). It ignores the queueing such copies cause, so it is optimistic,
and the share of the gap closed against it is a lower bound. It re-simulates the zero_load runs
(about 15 s).
"""

import math

import numpy as np
import pandas as pd

from experiments.sweep import load_sweep
from sim.core.effects import LoadJob
from sim.hw import load_hardware
from sim.runner import simulate
from sim.workload import generate_trace

EXISTING = ["lru", "slora", "overlap", "history"]
METRICS = {"ttft_median_ms": "P50 TTFT", "ttft_p99_ms": "P99 TTFT", "e2e_mean_ms": "mean E2E"}


def gap_closed(means: pd.Series, oracle: str) -> str:
    """Share of lru's P99-TTFT excess over `oracle` that lookahead removes (means over seeds)."""
    d = means["lru"] - means[oracle]
    if d <= 1:
        return "n/a (lru at oracle)"
    return f"{(means['lru'] - means['lookahead']) / d:.0%}"


def first_use_bound(sweep_file: str) -> pd.Series:
    """P99 TTFT (ms) of the compulsory-miss bound per workload group, mean over seeds."""
    rows = []
    for r in load_sweep(sweep_file).runs:
        if r.policy != "zero_load":
            continue
        sc = r.scenario
        trace = generate_trace(sc)
        rec = simulate(sc, "zero_load", trace=trace).records.sort_values("arrival")
        hw = load_hardware(sc.hardware, sc.model.shape())
        spec = trace.adapters[0]  # every adapter of these populations has the same size
        job = LoadJob(0, spec, 0, "load", "prefetch", copy_mode=sc.serving.copy_mode, host_mode="pinned")
        first = ~rec.adapter.duplicated().to_numpy()
        ttft = rec.ttft.to_numpy() + np.where(first, hw.copy.load_time(job).total, 0.0)
        rows.append((r.group, float(np.percentile(ttft, 99)) * 1e3))
    return pd.DataFrame(rows, columns=["group", "p99"]).groupby("group").p99.mean()


def paired(p: pd.DataFrame) -> tuple[str, float]:
    """lookahead vs the existing policy with the best mean: mean change over seeds ± its
    standard error, and in how many seeds lookahead was at least as good; and the change in
    standard errors (> 0: lookahead worse)."""
    means = p.mean()
    best = means[EXISTING].idxmin()
    d = (p["lookahead"] / p[best] - 1) * 100
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    cell = f"{means['lookahead']:.0f}/{means[best]:.0f} {best} ({d.mean():+.1f} ± {se:.1f} %, {(d <= 0).sum()}/{len(d)})"
    return cell, d.mean() / se if se > 0 else (0.0 if d.mean() <= 0 else math.inf)


def main() -> None:
    df = pd.read_parquet("results/lookahead_equal_memory/summaries.parquet")
    bound = first_use_bound("configs/sweeps/lookahead_equal_memory.yaml")
    rows, z = [], []
    for g, x in sorted(df.groupby("group")):
        row = {"workload": g}
        for m, label in METRICS.items():
            row[f"{label}: lookahead/best"], zm = paired(x.pivot_table(index="seed", columns="policy", values=m))
            z.append(zm)
        p99 = x.groupby("policy")["ttft_p99_ms"].mean()
        p99["first-use bound"] = bound[g]
        row["P99 gap closed vs first-use bound"] = gap_closed(p99, "first-use bound")
        row["vs zero_load"] = gap_closed(p99, "zero_load")
        row["vs resident"] = gap_closed(p99, "resident")
        rows.append(row)
    print(pd.DataFrame(rows).to_markdown(index=False))
    z = np.array(z)
    print(f"\nlookahead better than the best existing policy, or worse by at most one standard error of "
          f"the paired change: {(z <= 1).sum()}/{len(z)} cells; at most two: {(z <= 2).sum()}/{len(z)}; "
          f"worse by more than one: {', '.join(f'{v:.1f}' for v in sorted(z[z > 1])) or 'none'} standard errors")


if __name__ == "__main__":
    main()
