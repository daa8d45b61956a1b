"""Issue #6 table: lookahead vs the best existing policy per workload, paired by seed, and the
share of lru's P99-TTFT excess over each oracle it removes (run from the repo root)."""

import numpy as np
import pandas as pd

EXISTING = ["lru", "slora", "overlap", "history"]
METRICS = {"ttft_median_ms": "P50 TTFT", "ttft_p99_ms": "P99 TTFT", "e2e_mean_ms": "mean E2E"}


def gap_closed(means: pd.Series, oracle: str) -> str:
    """Share of lru's P99-TTFT excess over `oracle` that lookahead removes (means over seeds)."""
    d = means["lru"] - means[oracle]
    if d <= 1:
        return "n/a (lru at oracle)"
    return f"{(means['lru'] - means['lookahead']) / d:.0%}"


def paired(p: pd.DataFrame) -> str:
    """lookahead vs the existing policy with the best mean: mean change over seeds ± its
    standard error, and in how many seeds lookahead was at least as good."""
    means = p.mean()
    best = means[EXISTING].idxmin()
    d = (p["lookahead"] / p[best] - 1) * 100
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return f"{means['lookahead']:.0f}/{means[best]:.0f} {best} ({d.mean():+.1f} ± {se:.1f} %, {(d <= 0).sum()}/{len(d)})"


def main() -> None:
    df = pd.read_parquet("results/lookahead_equal_memory/summaries.parquet")
    rows = []
    for g, x in sorted(df.groupby("group")):
        row = {"workload": g}
        for m, label in METRICS.items():
            row[f"{label}: lookahead/best"] = paired(x.pivot_table(index="seed", columns="policy", values=m))
        p99 = x.groupby("policy")["ttft_p99_ms"].mean()
        row["P99 gap closed vs zero_load"] = gap_closed(p99, "zero_load")
        row["vs resident"] = gap_closed(p99, "resident")
        rows.append(row)
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
